// Rate limits and greylisting with the embedded store.
#include "common.hpp"
#include "dns_servers.hpp"

namespace mxguard::test {
namespace {

std::string listen_all(std::string cfg) {
  cfg.replace(cfg.find("127.0.0.1:@PORT@"), 16, "0.0.0.0:@PORT@");
  return cfg;
}

TEST(Limits, ConnectionRatePerClient) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, listen_all(base_config(quoted(sink.address()), "",
                                       "\n[limits]\nconnections_per_ip = \"5/1m\"\n")));
  int greeted = 0, refused = 0;
  for (int i = 0; i < 8; ++i) {
    smtp_client c;
    ASSERT_TRUE(c.connect_from("127.0.0.21", mx.port()));
    auto r = c.read_reply();
    if (r.code == 220) ++greeted;
    if (r.code == 421) {
      ++refused;
      EXPECT_NE(r.text.find("4.7.0"), std::string::npos);
    }
  }
  EXPECT_EQ(greeted, 5);
  EXPECT_EQ(refused, 3);
  smtp_client other;
  ASSERT_TRUE(other.connect_from("127.0.0.22", mx.port()));
  EXPECT_EQ(other.read_reply().code, 220);
}

TEST(Limits, BounceStormFromOneClientRefusedWhileOthersFlow) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, listen_all(base_config(quoted(sink.address()), "",
                                       "\n[limits]\nnull_sender_per_ip = \"10/1m\"\n")));
  smtp_client storm;
  ASSERT_TRUE(storm.connect_from("127.0.0.31", mx.port()));
  storm.read_reply();
  ASSERT_EQ(storm.command("EHLO storm.example").code, 250);
  int accepted = 0, limited = 0;
  for (int i = 0; i < 200; ++i) {
    auto r = storm.command("MAIL FROM:<>");
    if (r.code == 250) {
      ++accepted;
      storm.command("RSET");
    } else if (r.code == 452) {
      ++limited;
      EXPECT_NE(r.text.find("4.7.1"), std::string::npos);
    }
    if (i == 50) {
      // Meanwhile another client's mail flows.
      smtp_client other;
      ASSERT_TRUE(other.connect_from("127.0.0.32", mx.port()));
      other.read_reply();
      ASSERT_EQ(other.start_transaction("", "user@example.org").code, 250);
      EXPECT_EQ(other.send_message("Subject: real bounce\r\n\r\nx\r\n").code, 250);
    }
  }
  EXPECT_EQ(accepted, 10);
  EXPECT_EQ(limited, 190);
  EXPECT_TRUE(sink.wait_messages(1));
  // The storm's own non-bounce mail is not limited by the bounce limit.
  EXPECT_EQ(storm.command("MAIL FROM:<a@remote.example>").code, 250);
}

TEST(Limits, MessagesAndRecipientsPerClient) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, listen_all(base_config(
                    quoted(sink.address()), "",
                    "\n[limits]\nmessages_per_ip = \"3/1h\"\nrecipients_per_ip = \"4/1h\"\n")));
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.41", mx.port()));
  c.read_reply();
  ASSERT_EQ(c.command("EHLO x.example").code, 250);
  ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(c.command("RCPT TO:<u" + std::to_string(i) + "@example.org>").code, 250);
  EXPECT_EQ(c.command("RCPT TO:<u9@example.org>").code, 452);
  EXPECT_EQ(c.command("RSET").code, 250);
  EXPECT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  EXPECT_EQ(c.command("RSET").code, 250);
  EXPECT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  EXPECT_EQ(c.command("RSET").code, 250);
  EXPECT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 452);
}

TEST(Limits, DirectoryHarvestClosedAfterTooManyUnknownRecipients) {
  temp_dir dir;
  smtp_sink sink(dir, {"-f", "RCPT", "-B", "550 5.1.1 User unknown"});
  guard mx(dir, listen_all(base_config(quoted(sink.address()),
                                       "max_errors = 100\nsoft_error_delay_after = 100\n",
                                       "\n[limits]\nrefused_recipients_per_ip = \"5/1h\"\n")));
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.51", mx.port()));
  c.read_reply();
  ASSERT_EQ(c.command("EHLO harvester.example").code, 250);
  ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  int unknown = 0;
  smtp_reply r;
  for (int i = 0; i < 20; ++i) {
    r = c.command("RCPT TO:<guess" + std::to_string(i) + "@example.org>");
    if (r.code != 550) break;  // r.text: see the failure message
    ASSERT_NE(r.text.find("5.1.1"), std::string::npos) << r.text;
    ++unknown;
  }
  EXPECT_EQ(unknown, 6) << r.text;  // five fit the limit; the sixth refusal crosses it
  EXPECT_EQ(r.code, 421) << r.text;
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(Greylist, FirstAttemptDeferredRetryAfterDelayAccepted) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, listen_all(base_config(quoted(sink.address()), "",
                                       "\n[greylist]\nenabled = true\ndelay = \"1s\"\n"
                                       "allowlist_networks = [\"127.0.0.62\"]\n")));
  auto attempt = [&](const std::string& source) {
    smtp_client c;
    EXPECT_TRUE(c.connect_from(source, mx.port()));
    c.read_reply();
    auto r = c.start_transaction("sender@remote.example", "user@example.org");
    if (r.code == 250) r = c.send_message(make_message("grey", "x\r\n"));
    return r;
  };
  auto first = attempt("127.0.0.61");
  EXPECT_EQ(first.code, 451);
  EXPECT_NE(first.text.find("greylisted"), std::string::npos);
  EXPECT_EQ(attempt("127.0.0.61").code, 451);  // too early
  // Another address of the same /24 sending pool retries after the delay.
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(attempt("127.0.0.63").code, 250);
  EXPECT_EQ(attempt("127.0.0.62").code, 250);  // allowlisted network
  EXPECT_TRUE(sink.wait_messages(2));
}

// A provider whose outbound pool rotates addresses over several networks is
// known by the domain of its confirmed names: its retry from another network
// passes. A PTR that does not point back, or a generic dsl/pool name, keeps
// the network as key.
TEST(Greylist, RotatingPoolRecognisedByItsConfirmedNameDomain) {
  temp_dir dir;
  dnsmasq dns(
      dir,
      {"out-1.mx.example.com,127.0.1.5", "out-2.mx.example.com,127.0.2.6",
       "dsl-127-0-4-8.pool.example.net,127.0.4.8", "dsl-127-0-5-9.pool.example.net,127.0.5.9"},
      {"7.3.0.127.in-addr.arpa,out-3.mx.example.com"});
  smtp_sink sink(dir);
  guard mx(dir, listen_all(base_config(quoted(sink.address()), "",
                                       "\n[greylist]\nenabled = true\ndelay = \"1s\"\n"
                                       "\n[dnsbl]\nresolvers = [" +
                                           quoted(dns.resolver()) + "]\n")));
  auto attempt = [&](const std::string& from) {
    smtp_client c;
    EXPECT_TRUE(c.connect_from(from, mx.port()));
    c.read_reply();
    return c.start_transaction("news@example.com", "user@example.org").code;
  };
  EXPECT_EQ(attempt("127.0.1.5"), 451);  // first sight of example.com's triplet
  EXPECT_EQ(attempt("127.0.3.7"), 451);  // claims out-3.mx.example.com: not confirmed
  EXPECT_EQ(attempt("127.0.4.8"), 451);  // a generic name: its own network
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(attempt("127.0.2.6"), 250);  // another network, same confirmed domain
  EXPECT_EQ(attempt("127.0.5.9"), 451);  // pool.example.net's other network: a stranger
  EXPECT_NE(mx.log().find("as=d:example.com"), std::string::npos) << mx.log();
}

}  // namespace
}  // namespace mxguard::test
