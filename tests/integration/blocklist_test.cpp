// The blocklist end to end: refused at admission, shared by two instances
// through a real redis-server, auto-blocks from events, and the DNS zone
// that publishes it, asked by a real DNS client (drill, from ldnsutils).
#include "common.hpp"

namespace mxguard::test {
namespace {

struct ctl_output {
  int status = -1;
  std::string text;
};

ctl_output ctl(const temp_dir& dir, const fs::path& socket, std::vector<std::string> args) {
  static int n = 0;
  auto out = dir / ("blctl-" + std::to_string(++n) + ".out");
  std::vector<std::string> argv{MXGUARDCTL_BINARY, "-s", socket.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  child c(argv, out);
  return {c.wait_exit(20s).value_or(-1), read_file(out)};
}

std::string with_control(const temp_dir& dir, const std::string& name, const std::string& extra) {
  return "\n[control]\nsocket = " + quoted((dir / (name + ".sock")).string()) + "\n" + extra;
}

int greeting_from(const std::string& source, int port) {
  smtp_client c;
  if (!c.connect_from(source, port)) return 0;
  auto r = c.read_reply(3s);
  if (r.code == 220) c.command("QUIT");
  return r.code;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// drill's answer: status and the answer section's records.
std::string drill(const temp_dir& dir, int port, const std::string& name, const std::string& type,
                  bool tcp = false) {
  static int n = 0;
  auto out = dir / ("drill-" + std::to_string(++n) + ".out");
  std::vector<std::string> argv{"/usr/bin/drill", "-p", std::to_string(port)};
  if (tcp) argv.push_back("-t");
  argv.insert(argv.end(), {name, type, "@127.0.0.1"});
  child d(argv, out);
  d.wait_exit(10s);
  return read_file(out);
}

}  // namespace

TEST(Blocklist, ManualBlockIsRefusedAtAdmissionListedAndLifted) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "", with_control(dir, "mx", "")));
  auto socket = dir / "mx.sock";
  EXPECT_EQ(greeting_from("127.0.0.40", mx.port()), 220);
  auto blocked = ctl(dir, socket, {"block", "127.0.0.40", "--for", "1h", "--reason", "test flood"});
  ASSERT_EQ(blocked.status, 0) << blocked.text;
  EXPECT_EQ(greeting_from("127.0.0.40", mx.port()), 554);
  EXPECT_EQ(greeting_from("127.0.0.41", mx.port()), 220) << "only the blocked address";
  auto list = ctl(dir, socket, {"blocked"});
  EXPECT_NE(list.text.find("127.0.0.40/32"), std::string::npos) << list.text;
  EXPECT_NE(list.text.find("test flood"), std::string::npos) << list.text;
  EXPECT_NE(mx.log().find("REJECT stage=connect rule=blocklist:manual"), std::string::npos);
  // A range, then lifting both.
  ASSERT_EQ(ctl(dir, socket, {"block", "127.0.1.0/24"}).status, 0);
  EXPECT_EQ(greeting_from("127.0.1.9", mx.port()), 554);
  // Lifting an address inside a range names the range, and lifts nothing.
  auto inside = ctl(dir, socket, {"unblock", "127.0.1.9"});
  EXPECT_EQ(inside.status, 1) << inside.text;
  EXPECT_NE(inside.text.find("blocked by 127.0.1.0/24"), std::string::npos) << inside.text;
  EXPECT_EQ(greeting_from("127.0.1.9", mx.port()), 554);
  auto absent = ctl(dir, socket, {"unblock", "127.0.0.99"});
  EXPECT_EQ(absent.status, 1) << absent.text;
  EXPECT_NE(absent.text.find("not in the blocklist"), std::string::npos) << absent.text;
  // A duration it cannot read is an error, not a permanent block.
  auto week = ctl(dir, socket, {"block", "127.0.0.49", "--for", "1w"});
  EXPECT_EQ(week.status, 1) << week.text;
  EXPECT_NE(week.text.find("not a duration"), std::string::npos) << week.text;
  EXPECT_EQ(greeting_from("127.0.0.49", mx.port()), 220);
  EXPECT_EQ(ctl(dir, socket, {"unblock", "127.0.0.40"}).status, 0);
  EXPECT_EQ(ctl(dir, socket, {"unblock", "127.0.1.0/24"}).status, 0);
  EXPECT_EQ(greeting_from("127.0.0.40", mx.port()), 220);
  EXPECT_EQ(greeting_from("127.0.1.9", mx.port()), 220);
  // Hostile input gets a clear refusal, not an entry.
  auto bad = ctl(dir, socket, {"block", "127.0.0.1;rm"});
  EXPECT_EQ(bad.status, 1) << bad.text;
  EXPECT_NE(bad.text.find("not an address"), std::string::npos) << bad.text;
}

TEST(Blocklist, BlockOnOneInstanceHoldsOnTheOtherWithinASecond) {
  temp_dir dir;
  redis_server redis(dir);
  smtp_sink sink(dir);
  auto config = [&](const std::string& name) {
    return base_config(
        quoted(sink.address()), "",
        "\n[redis]\nurl = " + quoted(redis.url()) + "\n" + with_control(dir, name, ""));
  };
  guard a(dir, config("a"), "a");
  guard b(dir, config("b"), "b");
  EXPECT_EQ(greeting_from("127.0.0.42", b.port()), 220);
  ASSERT_EQ(ctl(dir, dir / "a.sock", {"block", "127.0.0.42", "--for", "10m"}).status, 0);
  const auto blocked_at = std::chrono::steady_clock::now();
  int code = 0;
  while (std::chrono::steady_clock::now() - blocked_at < 1s) {
    code = greeting_from("127.0.0.42", b.port());
    if (code == 554) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(code, 554) << "B still greets the client 1 s after A blocked it";
  EXPECT_NE(ctl(dir, dir / "b.sock", {"blocked"}).text.find("127.0.0.42/32"), std::string::npos);
  ASSERT_EQ(ctl(dir, dir / "b.sock", {"unblock", "127.0.0.42"}).status, 0);
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(greeting_from("127.0.0.42", a.port()), 220) << "lifted on B, lifted on A";
}

TEST(Blocklist, ExpiredEntriesLeaveTheListWithRedisToo) {
  temp_dir dir;
  redis_server redis(dir);
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[redis]\nurl = " + quoted(redis.url()) + "\n" +
                                with_control(dir, "mx", "\n[blocklist]\nmax_entries = 1\n")));
  auto socket = dir / "mx.sock";
  ASSERT_EQ(ctl(dir, socket, {"block", "127.0.0.43", "--for", "1s"}).status, 0);
  EXPECT_NE(ctl(dir, socket, {"blocked"}).text.find("127.0.0.43/32"), std::string::npos);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(greeting_from("127.0.0.43", mx.port()), 220);
  // Nothing changed the list's version: the expired entry still held
  // max_entries (auto-blocking off) and was still shown.
  auto list = ctl(dir, socket, {"blocked"});
  EXPECT_EQ(list.text.find("127.0.0.43/32"), std::string::npos) << list.text;
  EXPECT_EQ(redis.cli("HLEN mxg:{bl}:entries").find("1"), std::string::npos)
      << "Redis dropped it too";
}

// Three relay attempts from `address`, each refused.
void relay_attempts_from(const std::string& address, int port) {
  smtp_client c;
  ASSERT_TRUE(c.connect_from(address, port));
  c.read_reply();
  c.command("EHLO harvester.test");
  c.command("MAIL FROM:<a@remote.example>");
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(c.command("RCPT TO:<x" + std::to_string(i) + "@foreign.example>").code, 554);
  c.command("QUIT");
}

TEST(Blocklist, AutoBlockAfterRepeatedRefusalsThenRefusedAtAdmission) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[blocklist]\nauto_block = [\"relay 3/1m 1h\"]\n"
                            "never_block = [\"127.0.0.1/32\"]\n"));
  relay_attempts_from("127.0.0.43", mx.port());
  int code = 0;
  for (int i = 0; i < 50 && code != 554; ++i) {
    code = greeting_from("127.0.0.43", mx.port());
    if (code != 554) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(code, 554);
  EXPECT_NE(mx.log().find("BLOCK prefix=127.0.0.43/32 rule=auto:relay"), std::string::npos)
      << mx.log();
  // never_block and other clients are untouched.
  smtp_client own;
  ASSERT_TRUE(own.connect(mx.port()));
  own.read_reply();
  own.command("EHLO own.test");
  own.command("MAIL FROM:<a@remote.example>");
  for (int i = 0; i < 5; ++i) own.command("RCPT TO:<y" + std::to_string(i) + "@foreign.example>");
  own.command("QUIT");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(greeting_from("127.0.0.1", mx.port()), 220);
}

// Refusals arriving together (pipelined) while the first block is on its
// way to Redis: one block, the first offence, not one doubled ban per event.
TEST(Blocklist, ABurstOfEventsBlocksOnceWithRedis) {
  temp_dir dir;
  redis_server redis(dir);
  smtp_sink sink(dir);
  // No tarpit: the refusals come back as fast as the events go out.
  guard mx(dir, base_config(quoted(sink.address()), "soft_error_delay_after = 1000\n",
                            "\n[redis]\nurl = " + quoted(redis.url()) +
                                "\n[blocklist]\nauto_block = [\"relay 2/1m 1h\"]\n"
                                "never_block = [\"127.0.0.1/32\"]\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.47", mx.port()));
  c.read_reply();
  c.command("EHLO harvester.test");
  c.command("MAIL FROM:<a@remote.example>");
  std::string burst;
  for (int i = 0; i < 8; ++i) burst += "RCPT TO:<x" + std::to_string(i) + "@foreign.example>\r\n";
  c.send(burst);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(c.read_reply().code, 554);
  c.command("QUIT");
  std::string log;
  for (int i = 0; i < 50; ++i) {
    log = mx.log();
    if (log.find("BLOCK prefix=127.0.0.47/32") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(500ms);  // any further BLOCK lines
  log = mx.log();
  EXPECT_EQ(count_of(log, "BLOCK prefix=127.0.0.47/32"), 1u) << log;
  EXPECT_NE(log.find("offences=1"), std::string::npos) << log;
}

// An address sprayer cannot grow the list without end: at max_entries
// auto-block stops adding (and says so once); manual blocks still go in.
TEST(Blocklist, AutoBlockStopsAtMaxEntries) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[blocklist]\nauto_block = [\"relay 3/1m 1h\"]\n"
                            "never_block = [\"127.0.0.1/32\"]\nmax_entries = 1\n" +
                                with_control(dir, "mx", "")));
  const auto socket = dir / "mx.sock";
  relay_attempts_from("127.0.0.46", mx.port());
  int code = 0;
  for (int i = 0; i < 50 && code != 554; ++i) {
    code = greeting_from("127.0.0.46", mx.port());
    if (code != 554) std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(code, 554);
  relay_attempts_from("127.0.0.47", mx.port());
  bool logged = false;
  for (int i = 0; i < 50 && !logged; ++i) {
    logged = mx.log().find("BLOCKLIST_FULL entries=1 max_entries=1 skipped=127.0.0.47/32") !=
             std::string::npos;
    if (!logged) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(logged) << mx.log();
  EXPECT_EQ(greeting_from("127.0.0.47", mx.port()), 220);
  EXPECT_EQ(mx.log().find("BLOCK prefix=127.0.0.47/32"), std::string::npos) << mx.log();
  EXPECT_EQ(ctl(dir, socket, {"block", "127.0.0.48", "--for", "1h"}).status, 0);
  EXPECT_EQ(greeting_from("127.0.0.48", mx.port()), 554);
}

TEST(Blocklist, ImportFileAtStart) {
  temp_dir dir;
  smtp_sink sink(dir);
  write_file(dir / "import.txt", "# known bad\n127.0.0.44 spam run\n127.0.2.0/24\n");
  guard mx(
      dir,
      base_config(quoted(sink.address()), "",
                  "\n[blocklist]\nimport_file = " + quoted((dir / "import.txt").string()) + "\n"));
  int code = 0;
  for (int i = 0; i < 20 && code != 554; ++i) {
    code = greeting_from("127.0.0.44", mx.port());
    if (code != 554) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(code, 554);
  EXPECT_EQ(greeting_from("127.0.2.200", mx.port()), 554);
  EXPECT_EQ(greeting_from("127.0.0.45", mx.port()), 220);
}

TEST(Blocklist, IptablesFragmentsOnePerFamily) {
  temp_dir dir;
  smtp_sink sink(dir);
  write_file(dir / "import.txt", "192.0.2.0/24 spam run\n2001:db8:1::/64\n");
  const auto v4 = dir / "blocked.rules", v6 = dir / "blocked6.rules";
  guard mx(dir,
           base_config(quoted(sink.address()), "",
                       "\n[blocklist]\nimport_file = " + quoted((dir / "import.txt").string()) +
                           "\nfile_format = \"iptables\"\nfile = " + quoted(v4.string()) +
                           "\nfile6 = " + quoted(v6.string()) + "\n"));
  std::string rules4, rules6;
  for (int i = 0; i < 100; ++i) {
    rules4 = fs::exists(v4) ? read_file(v4) : "";
    rules6 = fs::exists(v6) ? read_file(v6) : "";
    if (rules4.find("COMMIT") != std::string::npos && rules6.find("COMMIT") != std::string::npos &&
        rules6.find("2001:db8:1::/64") != std::string::npos)
      break;
    std::this_thread::sleep_for(50ms);
  }
  // iptables-restore -n < blocked.rules; ip6tables-restore -n < blocked6.rules
  EXPECT_NE(rules4.find("*filter\n"), std::string::npos) << rules4;
  EXPECT_NE(rules4.find("-A mxguard-blocked -s 192.0.2.0/24 -j DROP"), std::string::npos) << rules4;
  EXPECT_EQ(rules4.find("2001:db8"), std::string::npos) << rules4;
  EXPECT_NE(rules6.find("-A mxguard-blocked -s 2001:db8:1::/64 -j DROP"), std::string::npos)
      << rules6;
  EXPECT_EQ(rules6.find("192.0.2."), std::string::npos) << rules6;
}

TEST(BlocklistZone, DrillAsksTheZoneOverUdpAndTcp) {
  temp_dir dir;
  smtp_sink sink(dir);
  int dns_port = free_port();
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[dnsbl_zone]\nlisten = [\"127.0.0.1:" + std::to_string(dns_port) +
                                "\"]\nzone = \"bl.example.org\"\n" + with_control(dir, "mx", "")));
  ASSERT_EQ(ctl(dir, dir / "mx.sock", {"block", "192.0.2.77", "--reason", "spam storm"}).status, 0);
  for (bool tcp : {false, true}) {
    auto listed = drill(dir, dns_port, "77.2.0.192.bl.example.org", "A", tcp);
    EXPECT_NE(listed.find("rcode: NOERROR"), std::string::npos) << listed;
    EXPECT_NE(listed.find("127.0.0.2"), std::string::npos) << listed;
    auto txt = drill(dir, dns_port, "77.2.0.192.bl.example.org", "TXT", tcp);
    EXPECT_NE(txt.find("spam storm"), std::string::npos) << txt;
    auto unlisted = drill(dir, dns_port, "78.2.0.192.bl.example.org", "A", tcp);
    EXPECT_NE(unlisted.find("rcode: NXDOMAIN"), std::string::npos) << unlisted;
    auto other = drill(dir, dns_port, "77.2.0.192.other.example", "A", tcp);
    EXPECT_NE(other.find("rcode: REFUSED"), std::string::npos) << other;
  }
  // RFC 5782 test entries.
  EXPECT_NE(drill(dir, dns_port, "2.0.0.127.bl.example.org", "A").find("127.0.0.2"),
            std::string::npos);
  EXPECT_NE(drill(dir, dns_port, "1.0.0.127.bl.example.org", "A").find("NXDOMAIN"),
            std::string::npos);
}

}  // namespace mxguard::test
