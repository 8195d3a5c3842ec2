// Postfix's reject_rbl_client pointed at mxguard's DNS zone. A server
// namespace holds mxguard (its zone on 127.0.0.1:53) and a private Postfix
// instance whose resolver, through /etc/netns/NS/resolv.conf (which
// `ip netns exec` mounts over /etc/resolv.conf), asks mxguard; a client
// namespace joined by a veth pair carries a client that gets blocked with
// `mxguardctl block` and one that does not. Postfix refuses the listed one
// naming bl.example.org and lets the other past its client restrictions.
//
// Needs root, network namespaces and Postfix; says so and skips otherwise.
#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "common.hpp"
#include "netns.hpp"

namespace mxguard::test {
namespace {

// The server namespace's resolver is mxguard's zone: `ip netns exec` mounts
// /etc/netns/NS/resolv.conf over /etc/resolv.conf. Removed at the end.
class netns_resolver {
 public:
  explicit netns_resolver(const std::string& ns) {
    std::error_code ec;
    created_netns_etc_ = !fs::exists("/etc/netns", ec);
    dir_ = fs::path("/etc/netns") / ns;
    fs::create_directories(dir_, ec);
    if (ec) {
      problem = "cannot create " + dir_.string() + ": " + ec.message();
      return;
    }
    write_file(dir_ / "resolv.conf", "nameserver 127.0.0.1\noptions attempts:1 timeout:2\n");
  }
  ~netns_resolver() {
    std::error_code ec;
    fs::remove(dir_ / "resolv.conf", ec);
    fs::remove(dir_, ec);
    if (created_netns_etc_) fs::remove("/etc/netns", ec);  // only when empty
  }
  std::string problem;

 private:
  fs::path dir_;
  bool created_netns_etc_ = false;
};

// A Postfix instance of its own (config, queue and data directories in the
// test's temp dir) started in the server namespace; stopped, and its master
// killed by PID, at the end.
class postfix_instance {
 public:
  postfix_instance(const temp_dir& dir, const veth_pair& ns) : dir_(dir), ns_(ns) {
    etc_ = dir / "postfix-etc";
    const auto queue = dir / "postfix-queue", data = dir / "postfix-data";
    for (const auto& d : {etc_, queue, data}) fs::create_directories(d);
    // Postfix's unprivileged processes work inside the queue and data directories.
    fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read |
                                    fs::perms::group_exec | fs::perms::others_read |
                                    fs::perms::others_exec);
    if (run_program(dir, {"/usr/bin/chown", "postfix:", data.string()}) != 0) {
      problem = "cannot chown the data directory to the postfix user";
      return;
    }
    write_file(etc_ / "main.cf",
               "compatibility_level = 3.6\n"
               "queue_directory = " +
                   queue.string() + "\ndata_directory = " + data.string() +
                   "\nmeta_directory = /etc/postfix\n"
                   "mail_owner = postfix\n"
                   "setgid_group = postdrop\n"
                   "myhostname = inner.example.net\n"
                   "mydomain = example.net\n"
                   "mydestination =\n"
                   "alias_maps =\n"
                   "alias_database =\n"
                   "local_recipient_maps =\n"
                   "relay_domains = example.org\n"
                   "inet_interfaces = " +
                   ns.server_address +
                   "\ninet_protocols = ipv4\n"
                   "mynetworks =\n"
                   "maillog_file = " +
                   (dir / "maillog").string() + "\nmaillog_file_prefixes = " + dir.path().string() +
                   "\nsmtpd_peername_lookup = no\n"
                   // A fresh smtpd per session: a reused smtpd did not ask the zone again
                   // after the block (it keeps DNSBL answers for its lifetime).
                   "max_use = 1\n"
                   "smtpd_client_restrictions = reject_rbl_client bl.example.org\n");
    write_file(etc_ / "master.cf",
               "smtp      inet  n - n - - smtpd\n"
               "postlog   unix-dgram n - n - 1 postlogd\n"
               "anvil     unix  - - n - 1 anvil\n"
               "rewrite   unix  - - n - - trivial-rewrite\n"
               "cleanup   unix  n - n - 0 cleanup\n"
               "proxymap  unix  - - n - - proxymap\n"
               "error     unix  - - n - - error\n");
    std::string out;
    if (run_program(dir,
                    {"/usr/sbin/ip", "netns", "exec", ns.server_ns, "/usr/sbin/postfix", "-c",
                     etc_.string(), "start"},
                    &out, 60s) != 0) {
      problem =
          "postfix -c " + etc_.string() + " start failed: " + out + read_file(dir / "maillog");
      return;
    }
    started_ = true;
    for (int i = 0; i < 50 && master_pid_ <= 0; ++i) {
      std::string pid = read_file(queue / "pid" / "master.pid");
      pid.erase(std::remove_if(pid.begin(), pid.end(), [](char c) { return c < '0' || c > '9'; }),
                pid.end());
      if (!pid.empty()) master_pid_ = std::stoi(pid);
      if (master_pid_ <= 0) std::this_thread::sleep_for(100ms);
    }
    if (master_pid_ <= 0) problem = "postfix master did not write its pid file";
  }
  ~postfix_instance() {
    if (started_)
      run_program(dir_, {"/usr/sbin/ip", "netns", "exec", ns_.server_ns, "/usr/sbin/postfix", "-c",
                         etc_.string(), "stop"});
    if (master_pid_ > 0) {
      for (int i = 0; i < 50 && ::kill(master_pid_, 0) == 0; ++i)
        std::this_thread::sleep_for(100ms);
      if (::kill(master_pid_, 0) == 0) ::kill(master_pid_, SIGKILL);
    }
  }

  std::string problem;

 private:
  const temp_dir& dir_;
  const veth_pair& ns_;
  fs::path etc_;
  bool started_ = false;
  pid_t master_pid_ = -1;
};

// swaks from `source` in the client namespace to Postfix, up to RCPT.
std::string rcpt_from(const temp_dir& dir, const veth_pair& ns, const std::string& source) {
  std::string out;
  run_program(
      dir,
      {"/usr/sbin/ip", "netns", "exec", ns.client_ns, "/usr/bin/swaks", "--server",
       ns.server_address + ":25", "--local-interface", source, "--helo", "client.example", "--from",
       "a@remote.example", "--to", "x@example.org", "--quit-after", "RCPT", "--timeout", "10"},
      &out, 30s);
  return out;
}

}  // namespace

TEST(PostfixRbl, RejectRblClientAtMxguardsZoneRefusesAListedClient) {
  if (!running_as_root()) GTEST_SKIP() << "needs root for network namespaces and /etc/netns";
  if (!fs::exists("/usr/sbin/postfix") || !fs::exists("/usr/lib/postfix/sbin/smtpd"))
    GTEST_SKIP() << "Postfix (/usr/sbin/postfix) is not installed";
  if (!fs::exists("/usr/bin/swaks")) GTEST_SKIP() << "swaks is not installed";
  temp_dir dir;
  veth_pair ns(dir, "p", "10.214.0", {"10.214.0.2", "10.214.0.3"});
  if (!ns.problem.empty()) GTEST_SKIP() << "the kernel refused: " << ns.problem;
  netns_resolver resolver(ns.server_ns);
  if (!resolver.problem.empty()) GTEST_SKIP() << resolver.problem;

  const auto socket = dir / "mx.sock";
  write_file(dir / "rbl.toml",
             "[server]\nlisten = [\"127.0.0.1:2525\"]\n"
             "hostname = \"mx.example.org\"\nworkers = 1\n"
             "\n[relay]\ndomains = [\"example.org\"]\n"
             "\n[[route]]\ndomain = \"example.org\"\n"
             "next_hops = [\"127.0.0.1:9\"]\n"
             "\n[dnsbl_zone]\nlisten = [\"127.0.0.1:53\"]\n"
             "zone = \"bl.example.org\"\n"
             "\n[control]\nsocket = " +
                 quoted(socket.string()) + "\n");
  child mx({"/usr/sbin/ip", "netns", "exec", ns.server_ns, MXGUARD_BINARY, "--config",
            (dir / "rbl.toml").string()},
           dir / "mx.log");
  // Up once the namespace's resolver (glibc, through the mounted resolv.conf)
  // gets the zone's RFC 5782 test entry from it.
  std::string answer;
  for (int i = 0; i < 50; ++i) {
    run_program(dir,
                {"/usr/sbin/ip", "netns", "exec", ns.server_ns, "/usr/bin/getent", "ahostsv4",
                 "2.0.0.127.bl.example.org"},
                &answer, 10s);
    if (answer.find("127.0.0.2") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_NE(answer.find("127.0.0.2"), std::string::npos) << answer << read_file(dir / "mx.log");

  postfix_instance postfix(dir, ns);
  if (!postfix.problem.empty()) GTEST_SKIP() << "Postfix could not be set up: " << postfix.problem;

  // Before the block the client gets past the client restrictions.
  auto before = rcpt_from(dir, ns, ns.clients[0]);
  EXPECT_NE(before.find("<-  250 2.1.5 Ok"), std::string::npos)
      << before << read_file(dir / "maillog");

  std::string blocked;
  ASSERT_EQ(run_program(dir,
                        {MXGUARDCTL_BINARY, "-s", socket.string(), "block", ns.clients[0], "--for",
                         "1h", "--reason", "flooding the gateway"},
                        &blocked),
            0)
      << blocked;
  // The zone follows the blocklist within its sync interval; Postfix asks anew per session.
  std::string listed;
  for (int i = 0; i < 20; ++i) {
    listed = rcpt_from(dir, ns, ns.clients[0]);
    if (listed.find("<** 554") != std::string::npos) break;
    std::this_thread::sleep_for(250ms);
  }
  std::string lookup;  // what the zone says, for the failure message
  if (listed.find("<** 554") == std::string::npos)
    run_program(dir,
                {"/usr/sbin/ip", "netns", "exec", ns.server_ns, "/usr/bin/drill",
                 "2.0.214.10.bl.example.org", "A", "@127.0.0.1"},
                &lookup, 10s);
  EXPECT_NE(listed.find("<** 554 5.7.1 Service unavailable; Client host [" + ns.clients[0] +
                        "] blocked using bl.example.org"),
            std::string::npos)
      << listed << "\nthe zone: " << lookup << read_file(dir / "maillog")
      << read_file(dir / "mx.log");
  EXPECT_NE(listed.find("flooding the gateway"), std::string::npos)
      << "Postfix quotes the zone's TXT reason: " << listed;

  auto unlisted = rcpt_from(dir, ns, ns.clients[1]);
  EXPECT_NE(unlisted.find("<-  250 2.1.5 Ok"), std::string::npos)
      << unlisted << read_file(dir / "maillog");
  EXPECT_EQ(unlisted.find("bl.example.org"), std::string::npos) << unlisted;
  EXPECT_NE(read_file(dir / "maillog").find("blocked using bl.example.org"), std::string::npos);
}

}  // namespace mxguard::test
