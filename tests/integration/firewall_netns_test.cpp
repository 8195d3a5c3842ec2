// Auto-block into the kernel: mxguard in a network namespace of its own,
// a client in another, a veth pair between them. The client floods the
// guard with relay attempts, is auto-blocked, the nftables set in the
// guard's namespace holds its address with a timeout, the kernel drops its
// next connection, and after the ban it connects again.
//
// Needs root, network namespaces and nftables; says so and skips otherwise.
#include <unistd.h>

#include "common.hpp"

namespace mxguard::test {
namespace {

// Runs a program (argument vector, no shell); its exit status, output in `out`.
int run(const temp_dir& dir, std::vector<std::string> argv, std::string* out = nullptr,
        std::chrono::milliseconds timeout = 10s) {
  static int n = 0;
  auto log = dir / ("netns-" + std::to_string(++n) + ".out");
  child c(argv, log);
  auto status = c.wait_exit(timeout);
  if (out) *out = read_file(log);
  return status.value_or(-1);
}

// Two namespaces joined by a veth pair; deleted however the test ends.
class namespaces {
 public:
  explicit namespaces(const temp_dir& dir) : dir_(dir) {
    const auto id = std::to_string(::getpid() % 100000);
    guard_ns = "mxg-g-" + id;
    client_ns = "mxg-c-" + id;
    std::string out;
    if (run(dir, {"/usr/sbin/ip", "netns", "add", guard_ns}, &out) != 0) {
      problem = "ip netns add failed: " + out;
      return;
    }
    created_guard_ = true;
    if (run(dir, {"/usr/sbin/ip", "netns", "add", client_ns}, &out) != 0) {
      problem = "ip netns add failed: " + out;
      return;
    }
    created_client_ = true;
    const std::string vg = "vg" + id, vc = "vc" + id;
    std::vector<std::vector<std::string>> steps{
        {"/usr/sbin/ip", "link", "add", vg, "netns", guard_ns, "type", "veth", "peer", "name", vc,
         "netns", client_ns},
        {"/usr/sbin/ip", "-n", guard_ns, "addr", "add", guard_address + "/24", "dev", vg},
        {"/usr/sbin/ip", "-n", client_ns, "addr", "add", client_address + "/24", "dev", vc},
        {"/usr/sbin/ip", "-n", guard_ns, "link", "set", vg, "up"},
        {"/usr/sbin/ip", "-n", client_ns, "link", "set", vc, "up"},
        {"/usr/sbin/ip", "-n", guard_ns, "link", "set", "lo", "up"},
        {"/usr/sbin/ip", "-n", client_ns, "link", "set", "lo", "up"},
    };
    for (const auto& step : steps)
      if (run(dir, step, &out) != 0) {
        problem = "network setup failed: " + out;
        return;
      }
  }
  ~namespaces() {
    if (created_guard_) run(dir_, {"/usr/sbin/ip", "netns", "del", guard_ns});
    if (created_client_) run(dir_, {"/usr/sbin/ip", "netns", "del", client_ns});
  }
  // A TCP connect from the client namespace: 0 connected, 1 refused,
  // 124 no answer within 2 s (dropped).
  int client_connect(int port) const {
    return run(dir_,
               {"/usr/sbin/ip", "netns", "exec", client_ns, "/usr/bin/timeout", "2", "/bin/bash",
                "-c", "exec 3<>/dev/tcp/" + guard_address + "/" + std::to_string(port)},
               nullptr, 5s);
  }

  std::string guard_ns, client_ns, problem;
  const std::string guard_address = "10.211.0.1", client_address = "10.211.0.2";

 private:
  const temp_dir& dir_;
  bool created_guard_ = false, created_client_ = false;
};

}  // namespace

TEST(FirewallNetns, FloodingClientIsDroppedByTheKernelUntilItsBanEnds) {
  if (!running_as_root()) GTEST_SKIP() << "needs root for network namespaces and nftables";
  if (!fs::exists("/usr/sbin/nft")) GTEST_SKIP() << "nftables (/usr/sbin/nft) is not installed";
  temp_dir dir;
  namespaces ns(dir);
  if (!ns.problem.empty()) GTEST_SKIP() << "the kernel refused: " << ns.problem;

  const int port = 2525;
  std::string config = "[server]\nlisten = [\"" + ns.guard_address + ":" + std::to_string(port) +
                       "\"]\nhostname = \"mx.example.org\"\nworkers = 1\n"
                       "\n[relay]\ndomains = [\"example.org\"]\n"
                       "\n[[route]]\ndomain = \"example.org\"\nnext_hops = [\"127.0.0.1:9\"]\n"
                       "\n[blocklist]\nauto_block = [\"relay 5/1m 8s\"]\nnever_block = []\n"
                       "nft_set = \"inet mxguard blocked\"\nnft_drop_chain = \"input\"\n";
  write_file(dir / "netns.toml", config);
  child mx({"/usr/sbin/ip", "netns", "exec", ns.guard_ns, MXGUARD_BINARY, "--config",
            (dir / "netns.toml").string()},
           dir / "mx.log");
  bool up = false;
  for (int i = 0; i < 50 && !up; ++i) {
    up = ns.client_connect(port) == 0;
    if (!up) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(up) << read_file(dir / "mx.log");

  // The flood: relay attempts, each refused at RCPT.
  for (int i = 0; i < 6; ++i) {
    std::string out;
    run(dir,
        {"/usr/sbin/ip", "netns", "exec", ns.client_ns, "/usr/bin/swaks", "--server",
         ns.guard_address + ":" + std::to_string(port), "--to", "x@foreign.example", "--from",
         "a@remote.example", "--quit-after", "RCPT", "--timeout", "3"},
        &out);
    if (i == 0) {
      EXPECT_NE(out.find("554 5.7.1 Relay access denied"), std::string::npos) << out;
    }
  }
  // The set in the guard's namespace holds the client, with a timeout.
  std::string set;
  for (int i = 0; i < 50; ++i) {
    run(dir,
        {"/usr/sbin/ip", "netns", "exec", ns.guard_ns, "/usr/sbin/nft", "list", "set", "inet",
         "mxguard", "blocked"},
        &set);
    if (set.find(ns.client_address) != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(set.find(ns.client_address), std::string::npos) << set << read_file(dir / "mx.log");
  EXPECT_NE(set.find("expires"), std::string::npos) << "elements carry a timeout: " << set;
  // The kernel drops the next connection: no answer at all, not even a refusal.
  std::string ruleset;
  run(dir, {"/usr/sbin/ip", "netns", "exec", ns.guard_ns, "/usr/sbin/nft", "list", "ruleset"},
      &ruleset);
  EXPECT_EQ(ns.client_connect(port), 124) << ruleset << read_file(dir / "mx.log");
  // After the ban (8 s) it connects again.
  int after = -1;
  for (int i = 0; i < 60 && after != 0; ++i) {
    std::this_thread::sleep_for(250ms);
    after = ns.client_connect(port);
  }
  EXPECT_EQ(after, 0) << "still dropped after the ban ended";
  EXPECT_NE(read_file(dir / "mx.log").find("BLOCK prefix=10.211.0.2/32 rule=auto:relay"),
            std::string::npos);
}

}  // namespace mxguard::test
