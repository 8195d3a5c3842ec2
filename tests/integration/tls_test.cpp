// STARTTLS with a certificate made by the test, driven by swaks and openssl.
#include "common.hpp"

namespace mxguard::test {
namespace {

std::string tls_config(const temp_dir& dir, const std::string& next_hop) {
  return base_config(quoted(next_hop), "",
                     "\n[tls]\ncert = " + quoted((dir / "cert.pem").string()) +
                         "\nkey = " + quoted((dir / "key.pem").string()) + "\n");
}

TEST(StartTls, SwaksSendsOverTls) {
  temp_dir dir;
  ASSERT_TRUE(make_certificate(dir));
  smtp_sink sink(dir);
  guard mx(dir, tls_config(dir, sink.address()));
  child swaks({"/usr/bin/swaks", "--server", "127.0.0.1:" + std::to_string(mx.port()), "--tls",
               "--to", "user@example.org", "--from", "tls@remote.example", "--body", "secret body"},
              dir / "swaks.log");
  ASSERT_EQ(swaks.wait_exit(30s).value_or(-1), 0) << read_file(dir / "swaks.log");
  ASSERT_TRUE(sink.wait_messages(1));
  auto dump = sink.messages()[0];
  EXPECT_NE(dump.find("secret body"), std::string::npos);
  EXPECT_NE(dump.find("with ESMTPS"), std::string::npos) << dump;
}

TEST(StartTls, OfferedOnlyWithCertificateAndPlaintextInjectionDropped) {
  temp_dir dir;
  ASSERT_TRUE(make_certificate(dir));
  smtp_sink sink(dir);
  {
    guard plain(dir, base_config(quoted(sink.address())), "plain");
    smtp_client c;
    ASSERT_TRUE(c.connect(plain.port()));
    c.read_reply();
    EXPECT_EQ(c.command("EHLO x").text.find("STARTTLS"), std::string::npos);
    EXPECT_EQ(c.command("STARTTLS").code, 502);
  }
  guard mx(dir, tls_config(dir, sink.address()));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  EXPECT_NE(c.command("EHLO x").text.find("STARTTLS"), std::string::npos);
  // CVE-2011-0411: a command pipelined after STARTTLS in plaintext must not
  // be executed after the handshake.
  c.send("STARTTLS\r\nRSET\r\n");
  EXPECT_EQ(c.read_reply().code, 220);
  c.close();
  std::this_thread::sleep_for(200ms);
  EXPECT_NE(mx.log().find("rule=starttls_injection"), std::string::npos) << mx.log();
}

}  // namespace
}  // namespace mxguard::test
