// Bounce and double-bounce suppression: the forged-bounce storm stops at the
// first hop.
#include "common.hpp"

namespace mxguard::test {
namespace {

constexpr const char* batv_keys =
    "keys = [\"1:0123456789abcdef0123456789abcdef\", \"2:fedcba9876543210fedcba9876543210\"]\n";

std::string bounce_config(const temp_dir& dir, const smtp_sink& inner, const smtp_sink& outbound,
                          const std::string& sign_key = "2", const std::string& bounce = "") {
  write_file(dir / "example.org.users", "# valid local parts\nreal\nalice\npostmaster\n");
  std::string cfg = base_config(
      quoted(inner.address()), "",
      "\n[[route]]\ndomain = \"*\"\nnext_hops = [" + quoted(outbound.address()) +
          "]\n\n[batv]\ndomains = [\"example.org\"]\n" + batv_keys + "sign_key = " + sign_key +
          "\n\n[recipients]\n\"example.org\" = " + quoted((dir / "example.org.users").string()) +
          "\n" + bounce);
  cfg.replace(cfg.find("command_timeout = \"5s\"\n"), 0, "trusted_networks = [\"127.0.0.2\"]\n");
  cfg.replace(cfg.find("127.0.0.1:@PORT@"), 16, "0.0.0.0:@PORT@");
  return cfg;
}

TEST(BounceStorm, ForgedMailToUnknownUsersRefusedAtRcptAndRealCopyArrivesOnce) {
  temp_dir dir;
  smtp_sink inner(dir, {}, "inner");
  smtp_sink outbound(dir, {}, "outbound");
  guard mx(dir, bounce_config(dir, inner, outbound));
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.9", mx.port()));
  c.read_reply();
  ASSERT_EQ(c.command("EHLO botnet.example").code, 250);
  // From: and To: forged in our own domain, non-existent users, the real
  // target as Bcc.
  ASSERT_EQ(c.command("MAIL FROM:<ceo@example.org>").code, 250);
  for (auto user : {"nobody1", "nobody2", "nobody3"}) {
    auto r = c.command(std::string("RCPT TO:<") + user + "@example.org>");
    EXPECT_EQ(r.code, 550) << r.text;
    EXPECT_NE(r.text.find("5.1.1"), std::string::npos);
  }
  ASSERT_EQ(c.command("RCPT TO:<real@example.org>").code, 250);
  auto r = c.send_message(
      "From: <ceo@example.org>\r\nTo: <nobody1@example.org>, <nobody2@example.org>\r\n"
      "Subject: invoice\r\n\r\nforged\r\n");
  EXPECT_EQ(r.code, 250);
  // The backscatter the inner servers would have caused: bounces to the
  // forged sender, untagged, from outside — refused, not relayed.
  ASSERT_EQ(c.command("MAIL FROM:<>").code, 250);
  auto bounce = c.command("RCPT TO:<ceo@example.org>");
  EXPECT_EQ(bounce.code, 550) << bounce.text;
  EXPECT_NE(bounce.text.find("5.7.1"), std::string::npos);
  EXPECT_EQ(c.command("RSET").code, 250);

  ASSERT_TRUE(inner.wait_messages(1));
  std::this_thread::sleep_for(300ms);
  auto copies = inner.messages();
  ASSERT_EQ(copies.size(), 1u);  // the real recipient's copy, once
  EXPECT_NE(copies[0].find("X-Rcpt-Args: <real@example.org>"), std::string::npos);
  EXPECT_EQ(copies[0].find("nobody1@example.org>\nX-Rcpt"), std::string::npos);
  EXPECT_EQ(copies[0].find("X-Rcpt-Args: <nobody"), std::string::npos);
  EXPECT_EQ(outbound.messages().size(), 0u);  // no bounce went anywhere
}

TEST(Batv, RoundTripOutboundTaggedBounceStrippedForgedRefused) {
  temp_dir dir;
  smtp_sink inner(dir, {}, "inner");
  smtp_sink outbound(dir, {}, "outbound");
  guard mx(dir, bounce_config(dir, inner, outbound));
  // Outbound from a trusted client: the envelope sender is tagged.
  smtp_client out;
  ASSERT_TRUE(out.connect_from("127.0.0.2", mx.port()));
  out.read_reply();
  ASSERT_EQ(out.start_transaction("alice@example.org", "friend@elsewhere.example").code, 250);
  ASSERT_EQ(out.send_message(make_message("hello", "x\r\n")).code, 250);
  ASSERT_TRUE(outbound.wait_messages(1));
  auto dump = outbound.messages()[0];
  auto pos = dump.find("X-Mail-Args: <prvs=2");
  ASSERT_NE(pos, std::string::npos) << dump;
  auto tagged = dump.substr(pos + 14, dump.find('>', pos) - pos - 14);
  EXPECT_TRUE(tagged.ends_with("=alice@example.org")) << tagged;

  // The bounce to the tag comes back: accepted, relayed with the tag stripped.
  smtp_client remote;
  ASSERT_TRUE(remote.connect_from("127.0.0.9", mx.port()));
  remote.read_reply();
  auto r = remote.start_transaction("", tagged);
  EXPECT_EQ(r.code, 250) << r.text;
  EXPECT_EQ(remote.send_message("Subject: Undelivered Mail\r\n\r\nbounce\r\n").code, 250);
  ASSERT_TRUE(inner.wait_messages(1));
  EXPECT_NE(inner.messages()[0].find("X-Rcpt-Args: <alice@example.org>"), std::string::npos);

  struct row {
    const char* label;
    std::string rcpt;
  } rows[] = {
      {"untagged", "alice@example.org"},
      {"forged signature",
       tagged.substr(0, 10) + (tagged[10] == 'a' ? "b" : "a") + tagged.substr(11)},
      {"wrong key", "prvs=7" + tagged.substr(6)},
      {"expired", "prvs=2" + std::string("999") + tagged.substr(9)},
      {"other user", tagged.substr(0, 16) + "real@example.org"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.label);
    ASSERT_EQ(remote.command("MAIL FROM:<>").code, 250);
    auto refused = remote.command("RCPT TO:<" + row.rcpt + ">");
    EXPECT_EQ(refused.code, 550) << refused.text;
    EXPECT_EQ(remote.command("RSET").code, 250);
  }
  // postmaster takes untagged bounces (RFC 5321 §4.5.1).
  EXPECT_EQ(remote.start_transaction("", "postmaster@example.org").code, 250);

  // The senders of bounces get no tag: what answers them is a double bounce.
  ASSERT_EQ(out.command("RSET").code, 250);
  ASSERT_EQ(out.command("MAIL FROM:<MAILER-DAEMON@example.org>").code, 250);
  ASSERT_EQ(out.command("RCPT TO:<friend@elsewhere.example>").code, 250);
  ASSERT_EQ(out.send_message(make_message("notice", "x\r\n")).code, 250);
  ASSERT_TRUE(outbound.wait_messages(2));
  bool plain = false;
  for (const auto& m : outbound.messages())
    plain = plain || m.find("X-Mail-Args: <MAILER-DAEMON@example.org>") != std::string::npos;
  EXPECT_TRUE(plain);

  // A double bounce to a tagged address is one all the same: stripped, then
  // discarded (alice made a double-bounce address for the test).
  mx.reload(bounce_config(dir, inner, outbound, "2",
                          "\n[bounce]\ndouble_bounce_addresses = [\"alice@example.org\"]\n"));
  std::this_thread::sleep_for(300ms);
  smtp_client late;
  ASSERT_TRUE(late.connect_from("127.0.0.9", mx.port()));
  late.read_reply();
  ASSERT_EQ(late.start_transaction("", tagged).code, 250);
  EXPECT_EQ(late.send_message("Subject: double bounce\r\n\r\nx\r\n").code, 250);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(inner.messages().size(), 1u) << "only the first bounce went in";
}

// A list server (batv.exempt_clients) is not checked for tags at all: its
// late bounce to an expired tag goes in.
TEST(Batv, ExemptClientsAreNotCheckedForTags) {
  temp_dir dir;
  smtp_sink inner(dir, {}, "inner");
  smtp_sink outbound(dir, {}, "outbound");
  auto cfg = bounce_config(dir, inner, outbound);
  cfg.replace(cfg.find("sign_key = 2\n"), 13, "sign_key = 2\nexempt_clients = [\"127.0.0.7\"]\n");
  guard mx(dir, cfg);
  const std::string expired = "prvs=2999abcdef=alice@example.org";
  for (auto [client, code] : {std::pair{"127.0.0.7", 250}, std::pair{"127.0.0.9", 550}}) {
    SCOPED_TRACE(client);
    smtp_client c;
    ASSERT_TRUE(c.connect_from(client, mx.port()));
    c.read_reply();
    EXPECT_EQ(c.start_transaction("", expired).code, code);
  }
}

TEST(Batv, OldKeyStillAcceptedAfterRotation) {
  temp_dir dir;
  smtp_sink inner(dir, {}, "inner");
  smtp_sink outbound(dir, {}, "outbound");
  guard mx(dir, bounce_config(dir, inner, outbound, "1"));
  smtp_client out;
  ASSERT_TRUE(out.connect_from("127.0.0.2", mx.port()));
  out.read_reply();
  ASSERT_EQ(out.start_transaction("alice@example.org", "friend@elsewhere.example").code, 250);
  ASSERT_EQ(out.send_message(make_message("hello", "x\r\n")).code, 250);
  ASSERT_TRUE(outbound.wait_messages(1));
  auto dump = outbound.messages()[0];
  auto pos = dump.find("X-Mail-Args: <prvs=1");
  ASSERT_NE(pos, std::string::npos) << dump;
  auto tagged = dump.substr(pos + 14, dump.find('>', pos) - pos - 14);
  // Rotate: sign with key 2 from now on, key 1 kept for verification.
  mx.reload(bounce_config(dir, inner, outbound, "2"));
  std::this_thread::sleep_for(300ms);
  smtp_client remote;
  ASSERT_TRUE(remote.connect_from("127.0.0.9", mx.port()));
  remote.read_reply();
  EXPECT_EQ(remote.start_transaction("", tagged).code, 250);
}

TEST(DoubleBounce, DiscardedAndLoggedOrRejected) {
  temp_dir dir;
  smtp_sink inner(dir, {}, "inner");
  smtp_sink outbound(dir, {}, "outbound");
  guard mx(dir, bounce_config(dir, inner, outbound, "2",
                              "\n[bounce]\ndouble_bounce_addresses = [\"bounces@example.org\"]\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.9", mx.port()));
  c.read_reply();
  for (auto rcpt : {"MAILER-DAEMON@example.org", "bounces@example.org"}) {
    SCOPED_TRACE(rcpt);
    auto r = c.start_transaction("", rcpt);
    EXPECT_EQ(r.code, 250) << r.text;
    EXPECT_EQ(c.send_message("Subject: double bounce\r\n\r\nx\r\n").code, 250);
  }
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(inner.messages().size(), 0u);  // never relayed inward
  EXPECT_NE(mx.log().find("DISCARD stage=end_of_data rule=double_bounce"), std::string::npos);

  // A null-sender message with two recipients is refused at the second.
  ASSERT_EQ(c.command("MAIL FROM:<>").code, 250);
  ASSERT_EQ(c.command("RCPT TO:<postmaster@example.org>").code, 250);
  auto second = c.command("RCPT TO:<real@example.org>");
  EXPECT_EQ(second.code, 550);
  EXPECT_NE(second.text.find("5.5.3"), std::string::npos);
  EXPECT_EQ(c.command("RSET").code, 250);

  guard strict(dir,
               bounce_config(dir, inner, outbound, "2", "\n[bounce]\ndouble_bounce = \"reject\"\n"),
               "strict");
  smtp_client s;
  ASSERT_TRUE(s.connect_from("127.0.0.9", strict.port()));
  s.read_reply();
  EXPECT_EQ(s.start_transaction("", "mailer-daemon@example.org").code, 550);
}

}  // namespace
}  // namespace mxguard::test
