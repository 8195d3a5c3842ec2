// Relay policy, access list, session caps, PROXY protocol and reload.
#include <csignal>

#include "common.hpp"

namespace mxguard::test {
namespace {

TEST(RelayPolicy, ForeignDomainAndEveryTrickRefused) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "soft_error_delay_after = 100\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.command("EHLO client.test").code, 250);
  ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  struct row {
    const char* label;
    const char* rcpt;
  } rows[] = {
      {"foreign domain", "<user@foreign.example>"},
      {"percent hack", "<user%foreign.example@example.org>"},
      {"source route", "<@example.org:user@foreign.example>"},
      {"source route list", "<@a.example,@example.org:user@foreign.example>"},
      {"bang path", "<foreign.example!user@example.org>"},
      {"quoted @", "<\"user@foreign.example\"@example.org>"},
      {"quoted %", "<\"user%foreign.example\"@example.org>"},
      {"trailing dot", "<user@example.org.>"},
      {"ip literal", "<user@[127.0.0.1]>"},
      {"ipv6 literal", "<user@[IPv6:::1]>"},
      {"parent of a subdomain pattern", "<user@org>"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto reply = c.command(std::string("RCPT TO:") + r.rcpt);
    EXPECT_EQ(reply.code, 554) << reply.text;
    EXPECT_NE(reply.text.find("5.7.1 Relay access denied"), std::string::npos);
  }
  // A subdomain is ours by the ".example.org" pattern, and routes by parent.
  EXPECT_EQ(c.command("RCPT TO:<user@dept.example.org>").code, 250);
  EXPECT_EQ(sink.messages().size(), 0u);
}

TEST(RelayPolicy, TrustedNetworkRelaysOutboundViaDefaultRoute) {
  temp_dir dir;
  smtp_sink inbound(dir, {}, "inbound");
  smtp_sink outbound(dir, {}, "outbound");
  guard mx(dir, base_config(quoted(inbound.address()), "",
                            "\n[[route]]\ndomain = \"*\"\nnext_hops = [" +
                                quoted(outbound.address()) + "]\n"));
  // 127.0.0.1 is not trusted: no outbound relay.
  {
    smtp_client c;
    ASSERT_TRUE(c.connect(mx.port()));
    c.read_reply();
    EXPECT_EQ(c.start_transaction("a@example.org", "someone@gmail.example").code, 554);
  }
  // Same config plus trusted_networks: write a config where 127.0.0.0/8 is trusted.
  std::string trusted = base_config(
      quoted(inbound.address()), "",
      "\n[[route]]\ndomain = \"*\"\nnext_hops = [" + quoted(outbound.address()) + "]\n");
  trusted.replace(trusted.find("command_timeout = \"5s\"\n"), 0,
                  "trusted_networks = [\"127.0.0.0/8\"]\n");
  mx.reload(trusted);
  std::this_thread::sleep_for(300ms);
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@example.org", "someone@gmail.example").code, 250);
  EXPECT_EQ(c.send_message(make_message("out", "x\r\n")).code, 250);
  EXPECT_TRUE(outbound.wait_messages(1));
  // Even a trusted client cannot use the tricks.
  ASSERT_EQ(c.command("MAIL FROM:<a@example.org>").code, 250);
  EXPECT_EQ(c.command("RCPT TO:<user%gmail.example@example.org>").code, 554);
}

// A reload applies what it can (the banner) and names what it cannot.
TEST(Reload, RestartOnlyKeysAreNamedAndKeptTheRestApplies) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  auto changed = base_config(quoted(sink.address()), "banner = \"ESMTP reloaded\"\n");
  changed.replace(changed.find("workers = 2\n"), 12, "workers = 1\n");
  mx.reload(changed);
  bool named = false;
  for (int i = 0; i < 50 && !named; ++i) {
    named = mx.log().find("server.workers change only on restart") != std::string::npos;
    if (!named) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(named) << mx.log();
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  auto greeting = c.read_reply();
  EXPECT_NE(greeting.text.find("ESMTP reloaded"), std::string::npos) << greeting.text;
}

// A refused client that says nothing more is closed after
// server.refused_session_time, not after command_timeout: its slot (and its
// per-IP count) is free again at once.
TEST(Access, SilentRefusedClientIsClosedAfterTheRefusedSessionTime) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "refused_session_time = \"1s\"\n",
                            "\n[access]\nrules = [\"127.0.0.1 REJECT go away\"]\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  EXPECT_EQ(c.read_reply().code, 554);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer(5s));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 800ms);
  EXPECT_LT(took, 3s);
}

TEST(Access, RejectDeferAndOkAtConnect) {
  temp_dir dir;
  smtp_sink sink(dir);
  std::string cfg =
      base_config(quoted(sink.address()), "",
                  "\n[access]\nrules = [\"127.0.0.2 REJECT go away\", \"127.0.0.3 DEFER\", "
                  "\"127.0.0.0/24 REJECT\", \"127.0.0.4 OK\"]\n");
  // The guard listens on all of 127.0.0.0/8 here so clients can use 127.0.0.x.
  cfg.replace(cfg.find("127.0.0.1:@PORT@"), 16, "0.0.0.0:@PORT@");
  guard mx(dir, cfg);
  struct row {
    const char* source;
    int code;
  } rows[] = {{"127.0.0.2", 554},
              {"127.0.0.3", 421},
              {"127.0.0.5", 554},
              {"127.0.0.4", 220},
              {"127.0.1.1", 220}};
  for (const auto& r : rows) {
    SCOPED_TRACE(r.source);
    smtp_client c;
    ASSERT_TRUE(c.connect_from(r.source, mx.port()));
    auto banner = c.read_reply();
    EXPECT_EQ(banner.code, r.code) << banner.text;
    if (r.code == 421) {
      EXPECT_TRUE(c.closed_by_peer());  // 421: closing
    } else if (r.code == 554) {
      // RFC 5321 §3.1: after a 554 greeting, wait for QUIT; 503 to the rest.
      EXPECT_EQ(c.command("EHLO x").code, 503);
      EXPECT_EQ(c.command("QUIT").code, 221);
      EXPECT_TRUE(c.closed_by_peer());
    }
  }
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.2", mx.port()));
  EXPECT_NE(c.read_reply().text.find("go away"), std::string::npos);
}

TEST(Admission, GlobalCapGives421) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "max_sessions = 3\n"));
  std::vector<smtp_client> held(3);
  for (auto& c : held) {
    ASSERT_TRUE(c.connect(mx.port()));
    ASSERT_EQ(c.read_reply().code, 220);
  }
  smtp_client extra;
  ASSERT_TRUE(extra.connect(mx.port()));
  auto r = extra.read_reply();
  EXPECT_EQ(r.code, 421);
  EXPECT_NE(r.text.find("4.7.0"), std::string::npos);
  EXPECT_TRUE(extra.closed_by_peer());
  // A slot comes back when a session ends.
  held[0].command("QUIT");
  held[0].close();
  std::this_thread::sleep_for(200ms);
  smtp_client again;
  ASSERT_TRUE(again.connect(mx.port()));
  EXPECT_EQ(again.read_reply().code, 220);
}

TEST(Admission, PerClientCapGives421AndOthersStillServed) {
  temp_dir dir;
  smtp_sink sink(dir);
  std::string cfg = base_config(quoted(sink.address()), "max_sessions_per_ip = 2\n");
  cfg.replace(cfg.find("127.0.0.1:@PORT@"), 16, "0.0.0.0:@PORT@");
  guard mx(dir, cfg);
  std::vector<smtp_client> held(2);
  for (auto& c : held) {
    ASSERT_TRUE(c.connect_from("127.0.0.7", mx.port()));
    ASSERT_EQ(c.read_reply().code, 220);
  }
  smtp_client third;
  ASSERT_TRUE(third.connect_from("127.0.0.7", mx.port()));
  auto r = third.read_reply();
  EXPECT_EQ(r.code, 421);
  EXPECT_NE(r.text.find("from your address"), std::string::npos);
  smtp_client other;
  ASSERT_TRUE(other.connect_from("127.0.0.8", mx.port()));
  EXPECT_EQ(other.read_reply().code, 220);
}

TEST(ProxyProtocol, RealClientAddressIsWhatChecksSee) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "proxy_protocol_from = [\"127.0.0.1\"]\n",
                            "\n[access]\nrules = [\"203.0.113.9 REJECT blocked behind proxy\"]\n"));
  {
    smtp_client c;
    ASSERT_TRUE(c.connect(mx.port()));
    c.send("PROXY TCP4 203.0.113.9 192.0.2.1 40000 25\r\n");
    auto r = c.read_reply();
    EXPECT_EQ(r.code, 554);
    EXPECT_NE(r.text.find("blocked behind proxy"), std::string::npos);
  }
  {
    smtp_client c;
    ASSERT_TRUE(c.connect(mx.port()));
    // v2 header for 198.51.100.7:1234 → 192.0.2.1:25
    const unsigned char v2[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C, 198,  51,   100,  7,
                                192,  0,    2,    1,    0x04, 0xD2, 0x00, 0x19};
    c.send(std::string(reinterpret_cast<const char*>(v2), sizeof v2));
    EXPECT_EQ(c.read_reply().code, 220);
    EXPECT_EQ(c.command("QUIT").code, 221);
  }
  {
    // HAProxy with TLVs (SSL details, a unique ID, ...): 2000 bytes of them.
    smtp_client c;
    ASSERT_TRUE(c.connect(mx.port()));
    std::string header = {
        '\x0D', '\x0A', '\x0D', '\x0A', '\x00', '\x0D', '\x0A', '\x51', '\x55',
        '\x49', '\x54', '\x0A', '\x21', '\x11', '\x07', '\xDC'};  // PROXY, TCP4, 12 + 2000 bytes
    const unsigned char block[] = {198, 51, 100, 8, 192, 0, 2, 1, 0x04, 0xD3, 0x00, 0x19};
    header.append(reinterpret_cast<const char*>(block), sizeof block);
    header += std::string("\x04\x07\xCD", 3) + std::string(1997, 'x');  // one NOOP TLV
    c.send(header);
    EXPECT_EQ(c.read_reply().code, 220);
    EXPECT_EQ(c.command("QUIT").code, 221);
  }
  {
    smtp_client c;  // no header from a balancer: dropped without a banner
    ASSERT_TRUE(c.connect(mx.port()));
    c.send("EHLO not-a-proxy\r\n");
    EXPECT_TRUE(c.closed_by_peer());
  }
  std::this_thread::sleep_for(100ms);
  auto log = mx.log();
  EXPECT_NE(log.find("client=198.51.100.7:1234"), std::string::npos) << log;
  EXPECT_NE(log.find("client=198.51.100.8:1235"), std::string::npos) << log;
}

// A balancer's health check (PROXY v2 LOCAL) names no client: the
// balancer's own address stands in but earns no trust, even when the
// balancer sits inside relay.trusted_networks.
TEST(ProxyProtocol, HeaderWithoutAClientIsNeverTrusted) {
  temp_dir dir;
  smtp_sink sink(dir);
  std::string cfg =
      base_config(quoted(sink.address()), "proxy_protocol_from = [\"127.0.0.1\"]\n",
                  "\n[[route]]\ndomain = \"*\"\nnext_hops = [" + quoted(sink.address()) + "]\n");
  cfg.replace(cfg.find("command_timeout = \"5s\"\n"), 0, "trusted_networks = [\"127.0.0.0/8\"]\n");
  guard mx(dir, cfg);
  auto outbound_from = [&](const std::string& header) {
    smtp_client c;
    if (!c.connect(mx.port())) return 0;
    c.send(header);
    if (c.read_reply().code != 220) return 0;
    return c.start_transaction("a@example.org", "someone@elsewhere.example").code;
  };
  const std::string local = std::string("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12) +
                            std::string("\x20\x00\x00\x00", 4);  // LOCAL, no addresses
  EXPECT_EQ(outbound_from(local), 554);
  // The same balancer naming a trusted client may relay.
  EXPECT_EQ(outbound_from("PROXY TCP4 127.0.0.9 127.0.0.1 40000 25\r\n"), 250);
}

TEST(Reload, BadFileKeepsOldConfigurationGoodFileApplies) {
  temp_dir dir;
  smtp_sink sink(dir);
  std::string cfg = base_config(quoted(sink.address()));
  guard mx(dir, cfg);
  mx.reload("[server]\nlisten = [\"127.0.0.1:@PORT@\"]\nno_such_key = 1\n");
  std::this_thread::sleep_for(300ms);
  EXPECT_NE(mx.log().find("RELOAD severity=error"), std::string::npos) << mx.log();
  {
    smtp_client c;
    ASSERT_TRUE(c.connect(mx.port()));
    EXPECT_EQ(c.read_reply().code, 220);
    EXPECT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  }
  mx.reload(cfg + "\n[access]\nrules = [\"127.0.0.1 REJECT now refused\"]\n");
  std::this_thread::sleep_for(300ms);
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  EXPECT_EQ(c.read_reply().code, 554);
  EXPECT_TRUE(mx.process().alive());
}

TEST(Config, CheckConfigNamesFileLineAndKey) {
  temp_dir dir;
  struct row {
    const char* label;
    const char* text;
    const char* want;
  } rows[] = {
      {"unknown key",
       "[server]\nlisten = [\"127.0.0.1:25\"]\nhostname = \"a.b\"\nmax_sesions = 5\n",
       ":4: server.max_sesions: unknown key"},
      {"bad value", "[server]\nmax_sessions = \"many\"\n", ":2: server.max_sessions: must be"},
      {"out of range", "[server]\n\nmax_sessions = 0\n",
       ":3: server.max_sessions: 0 is out of range"},
      {"unknown section", "[srever]\nx = 1\n", ":1: srever: unknown section"},
      {"bad access rule", "[access]\nrules = [\"300.1.1.1 REJECT\"]\n",
       "access.rules[0]: bad address"},
      {"relay domain without route", "[relay]\ndomains = [\"example.org\"]\n",
       "relay.domains: 'example.org' has no [[route]]"},
      {"bad duration", "[server]\ncommand_timeout = \"5 minutes\"\n", ":2: server.command_timeout"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto file = dir / "bad.toml";
    write_file(file, r.text);
    child check({MXGUARD_BINARY, "--check-config", file.string()}, dir / "check.log");
    auto status = check.wait_exit(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(*status, 1);
    auto out = read_file(dir / "check.log");
    EXPECT_NE(out.find(file.string() + ""), std::string::npos) << out;
    EXPECT_NE(out.find(r.want), std::string::npos) << out;
    fs::remove(dir / "check.log");
  }
  auto good = dir / "good.toml";
  auto good_text = base_config("\"127.0.0.1:10025\"");
  good_text.replace(good_text.find("@PORT@"), 6, "2525");
  write_file(good, good_text);
  child check({MXGUARD_BINARY, "--check-config", good.string()}, dir / "good.log");
  EXPECT_EQ(check.wait_exit(10s).value_or(-1), 0);
  auto out = read_file(dir / "good.log");
  EXPECT_NE(out.find("max_sessions_per_ip = 20  # default"), std::string::npos) << out;
  EXPECT_NE(out.find("[[route]]"), std::string::npos);
}

}  // namespace
}  // namespace mxguard::test

namespace mxguard::test {
namespace {

TEST(Listen, Ipv4AndIpv6AddressesWithPerPrefixCounting) {
  temp_dir dir;
  smtp_sink sink(dir);
  std::string cfg = base_config(quoted(sink.address()), "max_sessions_per_ip = 1\n");
  cfg.replace(cfg.find("listen = [\"127.0.0.1:@PORT@\"]"), 29,
              "listen = [\"127.0.0.1:@PORT@\", \"[::1]:@PORT@\"]");
  guard mx(dir, cfg);
  smtp_client v6;
  ASSERT_TRUE(v6.connect(mx.port(), "::1")) << "no IPv6 loopback here";
  EXPECT_EQ(v6.read_reply().code, 220);
  ASSERT_EQ(v6.start_transaction("a@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(v6.send_message(make_message("over v6", "x\r\n")).code, 250);
  // ::1 and 127.0.0.1 are different clients; a second ::1 session is not.
  smtp_client v4;
  ASSERT_TRUE(v4.connect(mx.port()));
  EXPECT_EQ(v4.read_reply().code, 220);
  smtp_client v6_again;
  ASSERT_TRUE(v6_again.connect(mx.port(), "::1"));
  EXPECT_EQ(v6_again.read_reply().code, 421);
  ASSERT_TRUE(sink.wait_messages(1));
  EXPECT_NE(sink.messages()[0].find("Received: from client.test ([::1])"), std::string::npos);
}

}  // namespace
}  // namespace mxguard::test

namespace mxguard::test {
namespace {

TEST(EarlyTalker, ClientTalkingIntoTheGreetPauseIsRefused) {
  temp_dir dir;
  smtp_sink sink(dir);
  std::string cfg = base_config(quoted(sink.address()), "greet_pause = \"500ms\"\n");
  guard mx(dir, cfg);
  {
    // A spam engine firing blind: EHLO before the greeting is complete.
    smtp_client early;
    ASSERT_TRUE(early.connect(mx.port()));
    early.send("EHLO blind.example\r\n");
    auto r = early.read_reply();
    EXPECT_EQ(r.code, 554) << r.text;
    EXPECT_NE(r.text.find("220-mx.example.org"), std::string::npos);  // the teaser came first
    EXPECT_NE(r.text.find("talked before the greeting"), std::string::npos);
    EXPECT_EQ(early.read_reply().code, 503);  // its EHLO, answered after the 554
    EXPECT_EQ(early.command("QUIT").code, 221);
  }
  // A patient client waits for the final 220 and gets served.
  smtp_client patient;
  ASSERT_TRUE(patient.connect(mx.port()));
  auto start = std::chrono::steady_clock::now();
  auto banner = patient.read_reply();
  EXPECT_EQ(banner.code, 220);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms);
  ASSERT_EQ(patient.start_transaction("a@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(patient.send_message(make_message("patient", "x\r\n")).code, 250);
  std::this_thread::sleep_for(100ms);
  EXPECT_NE(mx.log().find("rule=pregreet"), std::string::npos);
}

}  // namespace
}  // namespace mxguard::test
