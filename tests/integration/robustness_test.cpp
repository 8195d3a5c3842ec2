// Hostile and broken clients: smuggling, garbage, long lines, idle and
// vanishing clients, many sessions at once.
#include <sys/resource.h>

#include "common.hpp"

namespace mxguard::test {
namespace {

// Each SMTP smuggling variant: a fake end-of-data followed by a second,
// smuggled transaction, then the real end.
TEST(Smuggling, NoVariantEndsDataEarlyOrReachesSinkAsTwoMessages) {
  struct row {
    const char* label;
    std::string fake_end;
  } rows[] = {
      {"LF.LF", "\n.\n"},     {"CR.CRLF", "\r.\r\n"},         {"LF.CRLF", "\n.\r\n"},
      {"CRLF.LF", "\r\n.\n"}, {"CRLF.CR", "\r\n.\r"},         {"CR.CR", "\r.\r"},
      {"LF.CR", "\n.\r"},     {"CRLF.CRCRLF", "\r\n.\r\r\n"},
  };
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  std::size_t expected = 0;
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    smtp_client c;
    ASSERT_TRUE(c.connect(mx.port()));
    c.read_reply();
    ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
    ASSERT_EQ(c.command("DATA").code, 354);
    c.send("Subject: smuggle " + std::string(r.label) + "\r\n\r\nfirst part" + r.fake_end +
           "MAIL FROM:<smuggler@evil.example>\r\n"
           "RCPT TO:<victim@example.org>\r\n"
           "DATA\r\n"
           "Subject: smuggled\r\n\r\nsmuggled body\r\n"
           ".\r\n");
    // Exactly one reply: the one for the whole message.
    auto r1 = c.read_reply();
    EXPECT_EQ(r1.code, 250) << r1.text;
    auto extra = c.command("NOOP");
    EXPECT_EQ(extra.code, 250) << "a second reply was pending: " << extra.text;
    ++expected;
    ASSERT_TRUE(sink.wait_messages(expected));
  }
  auto dumps = sink.messages();
  ASSERT_EQ(dumps.size(), expected);
  for (const auto& d : dumps) {
    EXPECT_EQ(d.find("X-Mail-Args: <smuggler@evil.example>"), std::string::npos);
    EXPECT_EQ(d.find("X-Rcpt-Args: <victim@example.org>"), std::string::npos);
    // The smuggled text is content of the one message.
    EXPECT_NE(d.find("smuggled body"), std::string::npos);
  }
}

TEST(Robustness, LongLineRefusedAndSessionContinues) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  c.send("EHLO " + std::string(5000, 'a') + "\r\n");
  auto r = c.read_reply();
  EXPECT_EQ(r.code, 500);
  EXPECT_NE(r.text.find("line too long"), std::string::npos);
  EXPECT_EQ(c.command("EHLO client.test").code, 250);
}

TEST(Robustness, MegabyteLineGarbageAndNulBytes) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir,
           base_config(quoted(sink.address()), "max_errors = 50\nsoft_error_delay_after = 50\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  c.send(std::string(1 << 20, 'Z') + "\r\n");
  EXPECT_EQ(c.read_reply().code, 500);
  EXPECT_EQ(c.command(std::string("HELO a\0b", 8)).code, 500);
  EXPECT_EQ(c.command("EHLO caf\xc3\xa9").code, 500);
  EXPECT_EQ(c.command("EHLO a\rb").code, 500);
  c.send("EHLO bare-lf\n");
  auto bare = c.read_reply();
  EXPECT_EQ(bare.code, 500);
  EXPECT_NE(bare.text.find("bare <LF>"), std::string::npos);
  std::string garbage;
  for (int i = 0; i < 256; ++i)
    if (i != '\n' && i != '\r') garbage.push_back(static_cast<char>(i));
  c.send(garbage + "\r\n");
  EXPECT_EQ(c.read_reply().code, 500);
  EXPECT_EQ(c.command("NOOP").code, 250);
  EXPECT_TRUE(mx.process().alive());
}

TEST(Robustness, TooManyErrorsCloses) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir,
           base_config(quoted(sink.address()), "max_errors = 3\nsoft_error_delay_after = 10\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  EXPECT_EQ(c.command("BOGUS").code, 500);
  EXPECT_EQ(c.command("BOGUS").code, 500);
  c.send("BOGUS\r\n");
  EXPECT_EQ(c.read_reply().code, 500);
  auto r = c.read_reply();
  EXPECT_EQ(r.code, 421);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(Robustness, HttpRequestClosedAtOnce) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  EXPECT_EQ(c.command("GET / HTTP/1.0").code, 421);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(Robustness, IdleClientTimedOut) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "command_timeout = \"1s\"\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  auto start = std::chrono::steady_clock::now();
  auto r = c.read_reply(5s);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.code, 421);
  EXPECT_NE(r.text.find("4.4.2"), std::string::npos);
  EXPECT_LT(waited, 3s);
  EXPECT_TRUE(c.closed_by_peer());
}

// Slowloris: a command trickled a byte at a time must arrive whole within
// command_timeout; each byte does not start the clock again.
TEST(Robustness, TrickledCommandTimedOutAsAWhole) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "command_timeout = \"1s\"\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  const std::string command = "EHLO trickle.test\r\n";  // 19 bytes, 250 ms apart: 4.75 s
  auto start = std::chrono::steady_clock::now();
  smtp_reply r;
  for (char byte : command) {
    c.send(std::string(1, byte));
    r = c.read_reply(250ms);
    if (r.code != 0) break;
  }
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.code, 421) << r.text;
  EXPECT_NE(r.text.find("4.4.2"), std::string::npos) << r.text;
  EXPECT_LT(waited, 2500ms);
  EXPECT_TRUE(c.closed_by_peer());
}

// SO_REUSEPORT would let a second instance share the port silently.
TEST(Robustness, SecondInstanceOnTheSamePortRefusesToStart) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  child second({MXGUARD_BINARY, "--config", mx.config_path().string()}, dir / "second.log");
  EXPECT_EQ(second.wait_exit(10s).value_or(-1), 1);
  auto said = read_file(dir / "second.log");
  EXPECT_NE(said.find("another process listens there"), std::string::npos) << said;
  smtp_client c;  // the first one still serves
  ASSERT_TRUE(c.connect(mx.port()));
  EXPECT_EQ(c.read_reply().code, 220);
}

TEST(Robustness, SlowDataTimedOutAndNothingRelayed) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "data_timeout = \"1s\"\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  ASSERT_EQ(c.command("DATA").code, 354);
  c.send("Subject: slow\r\n\r\npart");
  auto r = c.read_reply(5s);
  EXPECT_EQ(r.code, 421);
  EXPECT_TRUE(c.closed_by_peer());
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(sink.messages().size(), 0u);
}

TEST(Robustness, ClientDisconnectingAtEveryStage) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  std::vector<std::string> scripts = {
      "",
      "EHLO x\r\n",
      "EHLO x\r\nMAIL FROM:<a@remote.example>\r\n",
      "EHLO x\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.org>\r\n",
      "EHLO x\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n",
      "EHLO x\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.org>\r\nDATA\r\nSubject: "
      "half\r\n\r\nhalf a mess",
      "EHLO x\r\nMAIL FR",
  };
  for (const auto& s : scripts) {
    smtp_client c;
    ASSERT_TRUE(c.connect(mx.port()));
    c.send(s);
    std::this_thread::sleep_for(50ms);
    c.close();
  }
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(sink.messages().size(), 0u);  // no half message was relayed
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  EXPECT_EQ(c.read_reply().code, 220);
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(c.send_message(make_message("after", "x\r\n")).code, 250);
}

TEST(Robustness, ThousandConcurrentSessionsAndNewClientStillGreetedFast) {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < 2200) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "max_sessions_per_ip = 2000\n"));
  std::vector<smtp_client> clients(1000);
  for (std::size_t i = 0; i < clients.size(); ++i) {
    ASSERT_TRUE(clients[i].connect(mx.port())) << i;
    // Half of them inside a transaction, half idle before EHLO.
    if (i % 2) clients[i].send("EHLO busy\r\nMAIL FROM:<a@remote.example>\r\n");
  }
  for (auto& c : clients) ASSERT_EQ(c.read_reply().code, 220);
  auto start = std::chrono::steady_clock::now();
  smtp_client fresh;
  ASSERT_TRUE(fresh.connect(mx.port()));
  auto banner = fresh.read_reply(2s);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(banner.code, 220);
  EXPECT_LT(took, 1s);
  ASSERT_EQ(fresh.start_transaction("a@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(fresh.send_message(make_message("under load", "x\r\n")).code, 250);
}

}  // namespace
}  // namespace mxguard::test
