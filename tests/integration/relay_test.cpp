// The before-queue relay against a real next hop (Postfix's smtp-sink).
#include "common.hpp"

namespace mxguard::test {
namespace {

TEST(Relay, MessageArrivesByteExact) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  EXPECT_EQ(c.read_reply().code, 220);
  ASSERT_EQ(c.start_transaction("sender@remote.example", "user@example.org").code, 250);
  std::string body;
  for (int i = 0; i < 200; ++i)
    body += "line " + std::to_string(i) + " \tof\ttext with trailing space \r\n";
  body += "8-bit: caf\xc3\xa9\r\n";
  auto message = make_message("byte exact", body);
  auto final_reply = c.send_message(message);
  EXPECT_EQ(final_reply.code, 250) << final_reply.text;
  EXPECT_EQ(c.command("QUIT").code, 221);
  ASSERT_TRUE(sink.wait_messages(1));
  auto dumps = sink.messages();
  ASSERT_EQ(dumps.size(), 1u);
  EXPECT_EQ(dumped_body(dumps[0]), as_dumped(message));
  EXPECT_NE(dumps[0].find("X-Mail-Args: <sender@remote.example>"), std::string::npos);
  EXPECT_NE(dumps[0].find("X-Rcpt-Args: <user@example.org>"), std::string::npos);
  EXPECT_NE(dumps[0].find("by mx.example.org (mxguard)"), std::string::npos);
}

// A message whose first line is folded would continue our Received header
// at the next hop, and what follows (a forged Subject or X-Spam-Status,
// passed by the header rules as body) would be headers there: an empty
// line keeps it body.
TEST(Relay, FoldedFirstLineStaysBody) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[header_rules]\nrules = [\"/^Subject:.*Casino/ REJECT no\"]\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("sender@remote.example", "user@example.org").code, 250);
  const std::string message = " x\r\nSubject: Casino\r\nX-Spam-Status: No\r\n\r\nbody\r\n";
  EXPECT_EQ(c.send_message(message).code, 250);
  ASSERT_TRUE(sink.wait_messages(1));
  const auto dump = sink.messages().front();
  EXPECT_NE(dump.find("(mxguard)"), std::string::npos) << dump;
  // Our Received header, then the empty line, then the client's text.
  EXPECT_NE(dump.find("\n\n x\nSubject: Casino\n"), std::string::npos) << dump;
}

TEST(Relay, DotStuffingRoundTrip) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  auto message = make_message("dots", ".\r\n..\r\n.leading dot\r\n...three\r\nend.\r\n. space\r\n");
  EXPECT_EQ(c.send_message(message).code, 250);
  ASSERT_TRUE(sink.wait_messages(1));
  EXPECT_EQ(dumped_body(sink.messages()[0]), as_dumped(message));
}

TEST(Relay, PipelinedCommandsAnsweredInOrder) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  auto ehlo = c.command("EHLO client.test");
  ASSERT_NE(ehlo.text.find("PIPELINING"), std::string::npos);
  // One write: the whole transaction, the message and QUIT (RFC 2920).
  c.send(
      "MAIL FROM:<a@remote.example>\r\n"
      "RCPT TO:<one@example.org>\r\n"
      "RCPT TO:<bad@foreign.example>\r\n"
      "RCPT TO:<two@example.org>\r\n"
      "DATA\r\n");
  EXPECT_EQ(c.read_reply().code, 250);  // MAIL
  EXPECT_EQ(c.read_reply().code, 250);  // RCPT one
  EXPECT_EQ(c.read_reply().code, 554);  // RCPT foreign
  EXPECT_EQ(c.read_reply().code, 250);  // RCPT two
  EXPECT_EQ(c.read_reply().code, 354);  // DATA
  c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_EQ(c.read_reply().code, 250);
  EXPECT_EQ(c.read_reply().code, 221);
  ASSERT_TRUE(sink.wait_messages(1));
  auto dump = sink.messages()[0];
  EXPECT_NE(dump.find("X-Rcpt-Args: <one@example.org>"), std::string::npos);
  EXPECT_NE(dump.find("X-Rcpt-Args: <two@example.org>"), std::string::npos);
  EXPECT_EQ(dump.find("foreign"), std::string::npos);
}

TEST(Relay, NextHopRecipientRefusalReachesClientAtRcpt) {
  temp_dir dir;
  // smtp-sink refusing every RCPT with a hard error, like "user unknown".
  smtp_sink sink(dir, {"-f", "RCPT", "-B", "550 5.1.1 User unknown"});
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  auto r = c.start_transaction("a@remote.example", "nobody@example.org");
  EXPECT_EQ(r.code, 550);
  EXPECT_NE(r.text.find("5.1.1 User unknown"), std::string::npos) << r.text;
  EXPECT_EQ(c.command("DATA").code, 554);  // no valid recipients
  EXPECT_EQ(sink.messages().size(), 0u);
}

TEST(Relay, NextHopDownGivesTemporaryFailure) {
  temp_dir dir;
  int dead = free_port();
  guard mx(dir, base_config(quoted("127.0.0.1:" + std::to_string(dead))));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  auto r = c.start_transaction("a@remote.example", "user@example.org");
  EXPECT_EQ(r.code, 451) << r.text;
  EXPECT_EQ(c.command("DATA").code, 554);
}

TEST(Relay, FailsOverToSecondNextHop) {
  temp_dir dir;
  smtp_sink sink(dir);
  int dead = free_port();
  guard mx(dir, base_config(quoted("127.0.0.1:" + std::to_string(dead)) + ", " +
                            quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(c.send_message(make_message("failover", "hello\r\n")).code, 250);
  EXPECT_TRUE(sink.wait_messages(1));
}

TEST(Relay, NextHopRefusingDataGivesItsReply) {
  temp_dir dir;
  smtp_sink sink(dir, {"-r", "."});  // soft-refuse the final dot
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(c.send_message(make_message("refused", "x\r\n")).code, 450);
}

TEST(Relay, NextHopDisconnectingAtDataGivesTemporaryFailure) {
  temp_dir dir;
  smtp_sink sink(dir, {"-q", "."});  // hang up instead of answering the dot
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  auto r = c.send_message(make_message("lost", "x\r\n"));
  EXPECT_EQ(r.code, 451) << r.text;
  // The session goes on: a new transaction works once the next hop is back.
  EXPECT_EQ(c.command("RSET").code, 250);
}

// example.org to `first`, other.example.org to `second`.
std::string two_routes(const smtp_sink& first, const smtp_sink& second) {
  return base_config(quoted(first.address()), "",
                     "\n[[route]]\ndomain = \"other.example.org\"\nnext_hops = [" +
                         quoted(second.address()) + "]\n");
}

TEST(Relay, RecipientsForAnotherRouteAreSplit) {
  temp_dir dir;
  smtp_sink first(dir, {}, "first");
  smtp_sink second(dir, {}, "second");
  guard mx(dir, two_routes(first, second));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  auto split = c.command("RCPT TO:<user@other.example.org>");
  EXPECT_EQ(split.code, 452);
  EXPECT_NE(split.text.find("4.5.3"), std::string::npos);
  EXPECT_EQ(c.send_message(make_message("first", "1\r\n")).code, 250);
  // The client sends the refused recipient in a new transaction.
  EXPECT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  EXPECT_EQ(c.command("RCPT TO:<user@other.example.org>").code, 250);
  EXPECT_EQ(c.send_message(make_message("second", "2\r\n")).code, 250);
  EXPECT_TRUE(first.wait_messages(1));
  EXPECT_TRUE(second.wait_messages(1));
  EXPECT_EQ(first.messages().size(), 1u);
  EXPECT_EQ(second.messages().size(), 1u);
}

// All recipients refused so far: the next hop's open transaction binds
// nothing, and a recipient of another route goes to that route's next hop,
// not to the one that refused the others.
TEST(Relay, AfterRefusedRecipientsAnotherRouteGetsItsOwnNextHop) {
  temp_dir dir;
  smtp_sink first(dir, {"-f", "RCPT", "-B", "550 5.1.1 User unknown"}, "first");
  smtp_sink second(dir, {}, "second");
  guard mx(dir, two_routes(first, second));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "nobody@example.org").code, 550);
  auto other = c.command("RCPT TO:<user@other.example.org>");
  EXPECT_EQ(other.code, 250) << other.text;
  EXPECT_EQ(c.send_message(make_message("to the second", "2\r\n")).code, 250);
  EXPECT_TRUE(second.wait_messages(1));
  EXPECT_EQ(first.messages().size(), 0u);
}

TEST(Relay, SeveralTransactionsOnOneConnection) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.command("EHLO client.test").code, 250);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
    ASSERT_EQ(c.command("RCPT TO:<user@example.org>").code, 250);
    if (i == 2) {
      EXPECT_EQ(c.command("RSET").code, 250);  // abandoned at the next hop too
      continue;
    }
    EXPECT_EQ(c.send_message(make_message("n" + std::to_string(i), "x\r\n")).code, 250);
  }
  EXPECT_TRUE(sink.wait_messages(4));
  EXPECT_EQ(sink.messages().size(), 4u);
}

TEST(Relay, OversizeMessageRefusedWhileReading) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "max_message_size = 4096\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  auto ehlo = c.command("EHLO client.test");
  EXPECT_NE(ehlo.text.find("SIZE 4096"), std::string::npos);
  EXPECT_EQ(c.command("MAIL FROM:<a@remote.example> SIZE=5000").code, 552);
  ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  ASSERT_EQ(c.command("RCPT TO:<user@example.org>").code, 250);
  std::string big(8000, 'x');
  auto r = c.send_message(make_message("big", big + "\r\n"));
  EXPECT_EQ(r.code, 552);
  EXPECT_NE(r.text.find("5.3.4"), std::string::npos);
  // The dialogue stayed in step: the session goes on.
  EXPECT_EQ(c.command("NOOP").code, 250);
  EXPECT_EQ(sink.messages().size(), 0u);
}

TEST(Relay, HeaderRuleRejectAndDiscard) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[header_rules]\nrules = ['/^Subject:.*Make Money Fast/ REJECT spam "
                            "not wanted', '/^Subject:.*Casino/ DISCARD', '/^X-Mailer: bulk/ WARN "
                            "bulk']\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  auto rejected = c.send_message(make_message("Make Money Fast now", "x\r\n"));
  EXPECT_EQ(rejected.code, 550);
  EXPECT_NE(rejected.text.find("5.7.1 spam not wanted"), std::string::npos);

  ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  ASSERT_EQ(c.command("RCPT TO:<user@example.org>").code, 250);
  // A folded Subject is unfolded before matching.
  auto discarded =
      c.send_message("From: <a@remote.example>\r\nSubject: Online\r\n casino bonus\r\n\r\nx\r\n");
  EXPECT_EQ(discarded.code, 250);

  ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  ASSERT_EQ(c.command("RCPT TO:<user@example.org>").code, 250);
  EXPECT_EQ(c.send_message("Subject: fine\r\nX-Mailer: bulk 1.0\r\n\r\nx\r\n").code, 250);
  ASSERT_TRUE(sink.wait_messages(1));
  std::this_thread::sleep_for(200ms);
  auto dumps = sink.messages();
  ASSERT_EQ(dumps.size(), 1u);  // only the WARN-ed message was relayed
  EXPECT_NE(dumps[0].find("Subject: fine"), std::string::npos);
  auto log = mx.log();
  EXPECT_NE(log.find("DISCARD stage=end_of_data rule=header_rules[1]"), std::string::npos) << log;
}

TEST(Relay, SwaksDeliversThroughGuard) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address())));
  child swaks({"/usr/bin/swaks", "--server", "127.0.0.1:" + std::to_string(mx.port()), "--to",
               "user@example.org", "--from", "swaks@remote.example", "--header",
               "Subject: via swaks", "--body", "hello from swaks", "--pipeline"},
              dir / "swaks.log");
  auto status = swaks.wait_exit(30s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0) << read_file(dir / "swaks.log");
  ASSERT_TRUE(sink.wait_messages(1));
  EXPECT_NE(sink.messages()[0].find("hello from swaks"), std::string::npos);
}

}  // namespace
}  // namespace mxguard::test
