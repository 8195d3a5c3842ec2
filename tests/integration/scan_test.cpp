// In-line virus scanning with libclamav: signatures written by the test
// (EICAR as an MD5 hash signature and as a body signature), real smtp-sink as
// the next hop, `zip` for archives.
#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "common.hpp"

namespace mxguard::test {
namespace {

// The EICAR test file, assembled at run time so that no file of this
// repository is itself "infected".
std::string eicar() {
  return std::string("X5O!P%@AP[4\\PZX54(P^)7CC)7}$") + "EICAR-STANDARD-ANTIVIRUS-" +
         "TEST-FILE!$H+H*";
}
// Its well-known MD5 and size, for the .hdb signature.
constexpr const char* eicar_md5 = "44d88612fea8a8f36de82e1278abb02f";

std::string base64(const std::string& data, std::size_t line_length) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string flat;
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(data[i]) << 16) |
                 (static_cast<unsigned char>(data[i + 1]) << 8) |
                 static_cast<unsigned char>(data[i + 2]);
    for (int k = 3; k >= 0; --k) flat.push_back(alphabet[(v >> (6 * k)) & 63]);
  }
  if (i < data.size()) {
    unsigned v = static_cast<unsigned char>(data[i]) << 16;
    if (i + 1 < data.size()) v |= static_cast<unsigned char>(data[i + 1]) << 8;
    flat.push_back(alphabet[(v >> 18) & 63]);
    flat.push_back(alphabet[(v >> 12) & 63]);
    flat.push_back(i + 1 < data.size() ? alphabet[(v >> 6) & 63] : '=');
    flat.push_back('=');
  }
  std::string out;
  for (std::size_t pos = 0; pos < flat.size(); pos += line_length)
    out += flat.substr(pos, line_length) + "\r\n";
  return out;
}

enum class signature_kind { md5, body };

// A signature directory holding one EICAR signature of `kind`.
fs::path make_signatures(const temp_dir& dir, signature_kind kind, const std::string& name) {
  auto sigs = dir / name;
  fs::create_directories(sigs);
  if (kind == signature_kind::md5)
    write_file(sigs / "test.hdb", std::string(eicar_md5) + ":68:Mxguard.Test.EICAR.MD5\n");
  else
    write_file(sigs / "test.ndb",
               "Mxguard.Test.EICAR.Body:0:*:" + hex("EICAR-STANDARD-ANTIVIRUS-TEST-FILE") + "\n");
  return sigs;
}

// Zips `files` (name → content) into `zip_name` with Debian's zip.
std::string make_zip(const temp_dir& dir,
                     const std::vector<std::pair<std::string, std::string>>& files,
                     const std::string& zip_name) {
  std::vector<std::string> argv{"/usr/bin/zip", "-q", "-j", (dir / zip_name).string()};
  for (const auto& [name, content] : files) {
    write_file(dir / name, content);
    argv.push_back((dir / name).string());
  }
  child zip(argv, dir / "zip.log");
  auto status = zip.wait_exit(10s);
  EXPECT_TRUE(status && *status == 0) << read_file(dir / "zip.log");
  return read_file(dir / zip_name);
}

std::string multipart(const std::string& subject,
                      const std::vector<std::pair<std::string, std::string>>& attachments,
                      std::size_t line_length = 76) {
  std::string m =
      "From: <sender@remote.example>\r\nTo: <user@example.org>\r\nSubject: " + subject +
      "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n"
      "--b0undary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n";
  for (const auto& [name, content] : attachments)
    m += "--b0undary\r\nContent-Type: application/octet-stream; name=\"" + name +
         "\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; "
         "filename=\"" +
         name + "\"\r\n\r\n" + base64(content, line_length);
  return m + "--b0undary--\r\n";
}

std::string scan_config(const smtp_sink& sink, const fs::path& sigs,
                        const std::string& scan_extra = "", const std::string& server_extra = "") {
  return base_config(quoted(sink.address()), server_extra,
                     "\n[scan]\nsignatures = " + quoted(sigs.string()) + "\n" + scan_extra);
}

smtp_reply send_one(int port, const std::string& message) {
  smtp_client c;
  if (!c.connect(port)) return {};
  c.read_reply();
  auto rcpt = c.start_transaction("sender@remote.example", "user@example.org");
  if (rcpt.code != 250) return rcpt;
  auto reply = c.send_message(message);
  c.command("QUIT");
  return reply;
}

bool wait_for_log(const guard& mx, const std::string& needle, std::size_t count = 1,
                  std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto log = mx.log();
    std::size_t seen = 0;
    for (auto pos = log.find(needle); pos != std::string::npos; pos = log.find(needle, pos + 1))
      ++seen;
    if (seen >= count) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

}  // namespace

TEST(Scan, EicarRefusedWithItsNameInEveryWrapping) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto zip = make_zip(dir, {{"eicar.com", eicar()}}, "eicar.zip");
  auto nested = make_zip(dir, {{"inner.zip", zip}, {"readme.txt", "hello\n"}}, "nested.zip");

  struct wrapping {
    std::string what;
    std::string message;
    bool md5_applies;  // a hash signature names a whole file: not a line in a text body
  };
  std::vector<wrapping> cases{
      {"plain", make_message("plain", "Look:\r\n" + eicar() + "\r\n"), false},
      {"base64 attachment", multipart("attached", {{"eicar.com", eicar()}}), true},
      {"zip", multipart("zipped", {{"eicar.zip", zip}}), true},
      {"nested zip", multipart("nested", {{"nested.zip", nested}}), true},
      // 4 characters a line: the file spread over 23 DATA lines.
      {"many lines", multipart("spread", {{"eicar.com", eicar()}}, 4), true},
  };
  for (auto kind : {signature_kind::md5, signature_kind::body}) {
    const std::string name = kind == signature_kind::md5 ? "MD5" : "Body";
    auto sigs = make_signatures(dir, kind, "sigs-" + name);
    guard mx(dir, scan_config(sink, sigs), "mx-" + name);
    for (const auto& c : cases) {
      if (kind == signature_kind::md5 && !c.md5_applies) continue;
      smtp_client client;
      ASSERT_TRUE(client.connect(mx.port()));
      client.read_reply();
      ASSERT_EQ(client.start_transaction("sender@remote.example", "user@example.org").code, 250);
      // Sent line by line: the scanner sees the message whole, however it came.
      client.send("DATA\r\n");
      ASSERT_EQ(client.read_reply().code, 354);
      std::size_t pos = 0;
      while (pos < c.message.size()) {
        auto eol = c.message.find("\r\n", pos);
        client.send(c.message.substr(pos, eol + 2 - pos));
        pos = eol + 2;
      }
      client.send(".\r\n");
      auto reply = client.read_reply();
      EXPECT_EQ(reply.code, 554) << name << " / " << c.what << ": " << reply.text;
      EXPECT_NE(reply.text.find("5.7.1 Virus found: Mxguard.Test.EICAR." + name), std::string::npos)
          << name << " / " << c.what << ": " << reply.text;
    }
    EXPECT_NE(mx.log().find("rule=virus"), std::string::npos);
    EXPECT_NE(mx.log().find("scan_name=Mxguard.Test.EICAR." + name), std::string::npos);
  }
  EXPECT_EQ(sink.messages().size(), 0u) << "an infected message reached the next hop";
}

TEST(Scan, CleanMessageWithAttachmentsRelayedByteExactWithScanHeader) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::body, "sigs");
  guard mx(dir, scan_config(sink, sigs));
  std::string binary;
  for (int i = 0; i < 5000; ++i) binary.push_back(static_cast<char>((i * 7919) & 0xff));
  auto zip = make_zip(dir, {{"report.txt", "quarterly numbers\n"}, {"data.bin", binary}}, "r.zip");
  auto message = multipart("clean", {{"data.bin", binary}, {"r.zip", zip}});
  auto reply = send_one(mx.port(), message);
  ASSERT_EQ(reply.code, 250) << reply.text;
  ASSERT_TRUE(sink.wait_messages(1));
  auto dump = sink.messages()[0];
  auto body = dumped_body(dump);
  const std::string header = "X-Virus-Scanned: mxguard (ClamAV ";
  ASSERT_TRUE(body.starts_with(header)) << body.substr(0, 200);
  auto first_line_end = body.find('\n');
  EXPECT_NE(body.substr(0, first_line_end).find("/1)"), std::string::npos)
      << "ClamAV version/signature count: " << body.substr(0, first_line_end);
  EXPECT_EQ(body.substr(first_line_end + 1), as_dumped(message));
  EXPECT_NE(mx.log().find("scan=clean"), std::string::npos);
}

TEST(Scan, ClientCopiesOfScanHeadersAreRemoved) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::body, "sigs");
  guard mx(dir, scan_config(sink, sigs));
  std::string message =
      "From: <a@remote.example>\r\nX-Virus-Scanned: clean,\r\n trust me\r\n"
      "Subject: forged\r\nX-Virus-Status: Clean\r\n\r\nbody\r\n";
  ASSERT_EQ(send_one(mx.port(), message).code, 250);
  ASSERT_TRUE(sink.wait_messages(1));
  auto body = dumped_body(sink.messages()[0]);
  EXPECT_EQ(body.find("trust me"), std::string::npos) << body;
  EXPECT_EQ(body.find("X-Virus-Status"), std::string::npos) << body;
  EXPECT_NE(body.find("From: <a@remote.example>\nSubject: forged\n\nbody\n"), std::string::npos)
      << body;
}

TEST(Scan, SignatureDirectoryChangeReloadsWhileHundredSessionsRun) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::body, "sigs");
  // The directory is watched every 200 ms (freshclam's way: a new file).
  // The queue holds all 100 sessions: this is about the reload, not overload.
  guard mx(dir, scan_config(sink, sigs, "reload_check_interval = \"200ms\"\nqueue_size = 128\n",
                            "max_sessions_per_ip = 200\n"));
  const std::string marker = "MXGUARD-RELOAD-TEST-PATTERN";
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, failed{0};
  std::mutex first_failure_mutex;
  std::string first_failure;
  std::vector<std::thread> clients;
  for (int i = 0; i < 100; ++i)
    clients.emplace_back([&, i] {
      smtp_client c;
      if (!c.connect(mx.port())) {
        ++failed;
        return;
      }
      c.read_reply();
      c.command("EHLO client" + std::to_string(i) + ".test");
      while (!stop) {
        smtp_reply r = c.command("MAIL FROM:<s" + std::to_string(i) + "@remote.example>");
        if (r.code == 250) r = c.command("RCPT TO:<user@example.org>");
        if (r.code == 250) r = c.send_message(make_message("load", "clean text\r\n"));
        if (r.code != 250 && failed++ == 0) {
          std::lock_guard lock(first_failure_mutex);
          first_failure = r.text;
        }
        ++sent;
      }
      c.command("QUIT");
    });
  while (sent < 200) std::this_thread::sleep_for(10ms);
  // A new signature file appears, written aside and renamed in.
  write_file(dir / "new.ndb.tmp", "Mxguard.Test.New:0:*:" + hex(marker) + "\n");
  fs::rename(dir / "new.ndb.tmp", sigs / "new.ndb");
  EXPECT_TRUE(wait_for_log(mx, "SCAN_ENGINE_LOADED", 2)) << mx.log();
  int sent_at_reload = sent;
  while (sent < sent_at_reload + 200) std::this_thread::sleep_for(10ms);
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0) << "sessions failed across the reload, first: " << first_failure;
  auto reply = send_one(mx.port(), make_message("new", "text " + marker + " text\r\n"));
  EXPECT_EQ(reply.code, 554) << reply.text;
  EXPECT_NE(reply.text.find("Mxguard.Test.New"), std::string::npos) << reply.text;
}

TEST(Scan, CorruptSignatureFileKeepsTheOldEngine) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::body, "sigs");
  auto config = scan_config(sink, sigs, "reload_check_interval = \"0s\"\n");
  guard mx(dir, config);
  write_file(sigs / "broken.ndb", "this is not:a signature\n");
  mx.reload(config);  // SIGHUP reads the signatures again
  ASSERT_TRUE(wait_for_log(mx, "SCAN_RELOAD_FAILED")) << mx.log();
  EXPECT_NE(mx.log().find("broken.ndb"), std::string::npos) << "the error names the file";
  auto reply = send_one(mx.port(), make_message("still", eicar() + "\r\n"));
  EXPECT_EQ(reply.code, 554) << reply.text;
  EXPECT_NE(reply.text.find("Mxguard.Test.EICAR.Body"), std::string::npos) << reply.text;
  EXPECT_EQ(send_one(mx.port(), make_message("clean", "fine\r\n")).code, 250);
}

TEST(Scan, StartRefusedWhenSignaturesCannotLoad) {
  temp_dir dir;
  fs::create_directories(dir / "bad");
  write_file(dir / "bad" / "x.ndb", "garbage\n");
  auto config = base_config(quoted("127.0.0.1:9"), "",
                            "\n[scan]\nsignatures = " + quoted((dir / "bad").string()) + "\n");
  write_file(dir / "bad.toml", [&] {
    auto text = config;
    text.replace(text.find("@PORT@"), 6, "0");
    return text;
  }());
  child check({MXGUARD_BINARY, "--check-config", (dir / "bad.toml").string()}, dir / "check.log");
  auto status = check.wait_exit(30s);
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(*status, 0);
  EXPECT_NE(read_file(dir / "check.log").find("scan.signatures"), std::string::npos)
      << read_file(dir / "check.log");
}

namespace {

// Two clients in DATA; the first finishes, and once the one scan thread is
// busy with it (the metrics say so; a 5 MB attachment takes libclamav a few
// hundred ms here) the second finishes too and finds the pool full. (Fix: a
// fixed 300 ms pause before the first dot was meant to let both bodies be
// read; a slow daemon — the sanitized build, a loaded machine — had not read
// the large one by then, the small one was scanned first, and no scan ever
// found the pool busy.)
std::pair<smtp_reply, smtp_reply> overlap_two_scans(const guard& mx, int metrics_port) {
  std::string big;
  big.reserve(4 << 20);
  unsigned x = 12345;
  for (int i = 0; i < (4 << 20); ++i) {
    x = x * 1103515245u + 12345u;
    big.push_back(static_cast<char>(x >> 24));
  }
  auto large = multipart("large", {{"big.bin", big}});
  smtp_client a, b;
  EXPECT_TRUE(a.connect(mx.port()));
  EXPECT_TRUE(b.connect(mx.port()));
  a.read_reply();
  b.read_reply();
  EXPECT_EQ(a.start_transaction("a@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(b.start_transaction("b@remote.example", "user@example.org").code, 250);
  a.send("DATA\r\n");
  b.send("DATA\r\n");
  EXPECT_EQ(a.read_reply().code, 354);
  EXPECT_EQ(b.read_reply().code, 354);
  a.send(large + ".\r\n");
  b.send(make_message("small", "small one\r\n"));
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (metric(http_get(metrics_port, "/metrics"), "mxguard_scan_busy_workers") < 1 &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  b.send(".\r\n");
  auto second = b.read_reply(30s);
  auto first = a.read_reply(30s);
  return {first, second};
}

std::string metrics_section(int port) {
  return "\n[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
}

}  // namespace

TEST(Scan, SaturatedPoolTempFails) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::body, "sigs");
  const int metrics_port = free_port();
  guard mx(dir, scan_config(sink, sigs, "workers = 1\nqueue_size = 0\n") +
                    metrics_section(metrics_port));
  auto [first, second] = overlap_two_scans(mx, metrics_port);
  EXPECT_EQ(first.code, 250) << first.text;
  EXPECT_EQ(second.code, 451) << second.text;
  EXPECT_NE(second.text.find("4.7.0"), std::string::npos) << second.text;
  EXPECT_NE(mx.log().find("rule=scan_overload"), std::string::npos) << mx.log();
}

TEST(Scan, SaturatedPoolPassesWithHeaderWhenConfigured) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::body, "sigs");
  const int metrics_port = free_port();
  guard mx(dir,
           scan_config(sink, sigs, "workers = 1\nqueue_size = 0\noverload_action = \"pass\"\n") +
               metrics_section(metrics_port));
  auto [first, second] = overlap_two_scans(mx, metrics_port);
  EXPECT_EQ(first.code, 250) << first.text;
  EXPECT_EQ(second.code, 250) << second.text;
  ASSERT_TRUE(sink.wait_messages(2));
  bool marked = false;
  for (const auto& m : sink.messages())
    if (m.find("X-Virus-Status: Unscanned (scanner busy)") != std::string::npos) marked = true;
  EXPECT_TRUE(marked);
}

TEST(Scan, ScanTimeoutTempFails) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::body, "sigs");
  guard mx(dir, scan_config(sink, sigs, "timeout = \"10ms\"\n"));
  std::string big(4 << 20, 'A');
  auto reply = send_one(mx.port(), multipart("slow", {{"big.bin", big}}));
  EXPECT_EQ(reply.code, 451) << reply.text;
  EXPECT_NE(mx.log().find("rule=scan_timeout"), std::string::npos) << mx.log();
  // The pool goes on: a small message right after is scanned and relayed.
  // (The abandoned scan may still hold the one worker for a moment.)
  smtp_reply next;
  for (int i = 0; i < 50 && next.code != 250; ++i) {
    next = send_one(mx.port(), make_message("after", "fine\r\n"));
    if (next.code != 250) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(next.code, 250) << next.text;
}

TEST(Scan, VirusActionPassMarksTheMessage) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::md5, "sigs");
  guard mx(dir, scan_config(sink, sigs, "virus_action = \"pass\"\n"));
  ASSERT_EQ(send_one(mx.port(), multipart("passed", {{"eicar.com", eicar()}})).code, 250);
  ASSERT_TRUE(sink.wait_messages(1));
  EXPECT_NE(sink.messages()[0].find("X-Virus-Status: Infected (Mxguard.Test.EICAR.MD5"),
            std::string::npos)
      << sink.messages()[0];
}

TEST(Scan, VirusActionDiscardRelaysNothing) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto sigs = make_signatures(dir, signature_kind::md5, "sigs");
  guard mx(dir, scan_config(sink, sigs, "virus_action = \"discard\"\n"));
  EXPECT_EQ(send_one(mx.port(), multipart("dropped", {{"eicar.com", eicar()}})).code, 250);
  EXPECT_EQ(send_one(mx.port(), make_message("clean", "fine\r\n")).code, 250);
  ASSERT_TRUE(sink.wait_messages(1));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(sink.messages().size(), 1u);
  EXPECT_NE(mx.log().find("DISCARD stage=end_of_data rule=virus"), std::string::npos) << mx.log();
}

// [score]: WARN rules with scores, and each level's effect.
TEST(Score, TagsAndRefusesAtEachLevel) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[header_rules]\n"
                            "rules = ['/^X-Bulk: yes/ WARN score=2 bulk header']\n"
                            "body_rules = ['/cheap pills/ WARN score=4.5 pills', "
                            "'/casino/ WARN score=8 casino']\n"
                            "\n[score]\nenabled = true\ntag_level = 1\ntag2_level = 5\n"
                            "kill_level = 10\nsubject_tag = \"[SPAM] \"\n"));
  // 0: below tag_level: no header at all.
  ASSERT_EQ(send_one(mx.port(), make_message("zero", "hello\r\n")).code, 250);
  // 2: X-Spam-Status: No. A forged "Yes... no" from the client is removed.
  ASSERT_EQ(send_one(mx.port(), "X-Bulk: yes\r\nX-Spam-Status: No, forged\r\n" +
                                    make_message("two", "hello\r\n"))
                .code,
            250);
  // 6.5: spam: Yes and the Subject prefixed.
  ASSERT_EQ(send_one(mx.port(), "X-Bulk: yes\r\n" + make_message("six", "cheap pills\r\n")).code,
            250);
  // 12.5: refused; a rule counts once however many lines match.
  auto killed = send_one(mx.port(), make_message("kill", "cheap pills\r\ncasino\r\ncasino\r\n"));
  EXPECT_EQ(killed.code, 554) << killed.text;
  EXPECT_NE(killed.text.find("score 12.50"), std::string::npos) << killed.text;
  // 8: a repeated word cannot run the score up to kill_level.
  auto repeated = send_one(mx.port(), make_message("repeat", "casino\r\ncasino\r\ncasino\r\n"));
  EXPECT_EQ(repeated.code, 250) << repeated.text;

  ASSERT_TRUE(sink.wait_messages(4));
  auto dumps = sink.messages();
  ASSERT_EQ(dumps.size(), 4u);
  // The sink's files are not in arrival order: find each by its Subject.
  auto dump = [&](const std::string& subject) {
    for (const auto& d : dumps)
      if (d.find("Subject: " + subject + "\n") != std::string::npos) return d;
    ADD_FAILURE() << "no message with Subject: " << subject;
    return std::string();
  };
  EXPECT_EQ(dump("zero").find("X-Spam-Status"), std::string::npos) << dump("zero");
  EXPECT_NE(dump("two").find("X-Spam-Status: No, score=2.00"), std::string::npos) << dump("two");
  EXPECT_EQ(dump("two").find("forged"), std::string::npos) << dump("two");
  EXPECT_NE(dump("[SPAM] six").find("X-Spam-Status: Yes, score=6.50"), std::string::npos);
  EXPECT_NE(dump("[SPAM] repeat").find("X-Spam-Status: Yes, score=8.00"), std::string::npos);
  EXPECT_NE(mx.log().find("rule=score_kill"), std::string::npos);
}

TEST(Score, StatusHeaderOnEveryMessageByDefault) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "", "\n[score]\nenabled = true\n"));
  ASSERT_EQ(send_one(mx.port(), make_message("plain", "hello\r\n")).code, 250);
  ASSERT_TRUE(sink.wait_messages(1));
  EXPECT_NE(
      sink.messages()[0].find("X-Spam-Status: No, score=0.00 tagged_above=-999 required=6.31"),
      std::string::npos)
      << sink.messages()[0];
}

}  // namespace mxguard::test
