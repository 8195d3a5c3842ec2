// Auto-block into the kernel: mxguard in a network namespace of its own,
// a client in another, a veth pair between them. The client floods the
// guard with relay attempts, is auto-blocked, the nftables set in the
// guard's namespace holds its address with a timeout, the kernel drops its
// next connection, and after the ban it connects again.
//
// Needs root, network namespaces and nftables; says so and skips otherwise.
#include "common.hpp"
#include "netns.hpp"

namespace mxguard::test {
namespace {

// A TCP connect from the client namespace: 0 connected, 1 refused, 124 no
// answer within 2 s (dropped).
int client_connect(const temp_dir& dir, const veth_pair& ns, int port) {
  return run_program(
      dir,
      {"/usr/sbin/ip", "netns", "exec", ns.client_ns, "/usr/bin/timeout", "2", "/bin/bash", "-c",
       "exec 3<>/dev/tcp/" + ns.server_address + "/" + std::to_string(port)},
      nullptr, 5s);
}

}  // namespace

TEST(FirewallNetns, FloodingClientIsDroppedByTheKernelUntilItsBanEnds) {
  if (!running_as_root()) GTEST_SKIP() << "needs root for network namespaces and nftables";
  if (!fs::exists("/usr/sbin/nft")) GTEST_SKIP() << "nftables (/usr/sbin/nft) is not installed";
  temp_dir dir;
  veth_pair ns(dir, "g", "10.211.0", {"10.211.0.2"});
  const std::string client_address = ns.clients[0];
  if (!ns.problem.empty()) GTEST_SKIP() << "the kernel refused: " << ns.problem;

  const int port = 2525;
  std::string config = "[server]\nlisten = [\"" + ns.server_address + ":" + std::to_string(port) +
                       "\"]\nhostname = \"mx.example.org\"\nworkers = 1\n"
                       "\n[relay]\ndomains = [\"example.org\"]\n"
                       "\n[[route]]\ndomain = \"example.org\"\nnext_hops = [\"127.0.0.1:9\"]\n"
                       "\n[blocklist]\nauto_block = [\"relay 5/1m 8s\"]\nnever_block = []\n"
                       "nft_set = \"inet mxguard blocked\"\nnft_drop_chain = \"input\"\n";
  write_file(dir / "netns.toml", config);
  child mx({"/usr/sbin/ip", "netns", "exec", ns.server_ns, MXGUARD_BINARY, "--config",
            (dir / "netns.toml").string()},
           dir / "mx.log");
  bool up = false;
  for (int i = 0; i < 50 && !up; ++i) {
    up = client_connect(dir, ns, port) == 0;
    if (!up) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(up) << read_file(dir / "mx.log");

  // The flood: relay attempts, each refused at RCPT.
  for (int i = 0; i < 6; ++i) {
    std::string out;
    run_program(dir,
                {"/usr/sbin/ip", "netns", "exec", ns.client_ns, "/usr/bin/swaks", "--server",
                 ns.server_address + ":" + std::to_string(port), "--to", "x@foreign.example",
                 "--from", "a@remote.example", "--quit-after", "RCPT", "--timeout", "3"},
                &out);
    if (i == 0) {
      EXPECT_NE(out.find("554 5.7.1 Relay access denied"), std::string::npos) << out;
    }
  }
  // The set in the guard's namespace holds the client, with a timeout.
  std::string set;
  for (int i = 0; i < 50; ++i) {
    run_program(dir,
                {"/usr/sbin/ip", "netns", "exec", ns.server_ns, "/usr/sbin/nft", "list", "set",
                 "inet", "mxguard", "blocked"},
                &set);
    if (set.find(client_address) != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(set.find(client_address), std::string::npos) << set << read_file(dir / "mx.log");
  EXPECT_NE(set.find("expires"), std::string::npos) << "elements carry a timeout: " << set;
  // The kernel drops the next connection: no answer at all, not even a refusal.
  std::string ruleset;
  run_program(dir,
              {"/usr/sbin/ip", "netns", "exec", ns.server_ns, "/usr/sbin/nft", "list", "ruleset"},
              &ruleset);
  EXPECT_EQ(client_connect(dir, ns, port), 124) << ruleset << read_file(dir / "mx.log");
  // After the ban (8 s) it connects again.
  int after = -1;
  for (int i = 0; i < 60 && after != 0; ++i) {
    std::this_thread::sleep_for(250ms);
    after = client_connect(dir, ns, port);
  }
  EXPECT_EQ(after, 0) << "still dropped after the ban ended";
  EXPECT_NE(read_file(dir / "mx.log").find("BLOCK prefix=10.211.0.2/32 rule=auto:relay"),
            std::string::npos);
}

}  // namespace mxguard::test
