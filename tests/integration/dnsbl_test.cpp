// DNS lists end to end: the real mxguard against a real rbldnsd serving the
// zones of tests/data/dnsbl, and against a small fake DNS server (in this
// file) for what rbldnsd will not do: truncate, spoof, stay silent.
//
// Clients connect from 127.0.0.x source addresses; the zones list
//   bl.test   127.0.0.2, .10 (TXT), .11 (code outside the filter),
//             .14 (127.255.255.254), .15, .30; ::1 (ip6trie)
//   wl.test   127.0.0.2, .15 (127.0.10.2, an allowlist code)
//   w1.test   127.0.0.2, .12, .13        w2.test 127.0.0.2, .12
//   dbl.test  test, spam.example, bad-helo.example
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common.hpp"
#include "dns_servers.hpp"

namespace mxguard::test {
namespace {

// --- a fake DNS server ----------------------------------------------------------

// Answers over UDP and TCP on one port. Names starting with "10.0.0.127."
// are listed (127.0.0.2), everything else is NXDOMAIN; how the UDP answer is
// delivered depends on the mode.
class fake_dns {
 public:
  enum class mode {
    truncate_udp,      // UDP: TC bit, no records; TCP: the real answer
    wrong_id_first,    // a contrary answer with another ID, then the real one
    other_port_first,  // a contrary answer from another source port, then the real one
    other_port_only,   // only a "listed" answer from another source port
    servfail_tests,    // SERVFAIL to the RFC 5782 test entries, real answers otherwise
    refuse_all,        // REFUSED to everything (a resolver whose ACL leaves us out)
  };

  explicit fake_dns(mode m) : mode_(m) {
    for (int tries = 0; tries < 20 && tcp_fd_ < 0; ++tries) {
      if (udp_fd_ >= 0) ::close(udp_fd_);
      udp_fd_ = bound_socket(SOCK_DGRAM, 0);
      port_ = local_port(udp_fd_);
      tcp_fd_ = bound_socket(SOCK_STREAM, port_);
    }
    if (tcp_fd_ < 0 || ::listen(tcp_fd_, 16) != 0)
      throw std::runtime_error("fake_dns: no port for UDP and TCP");
    spoof_fd_ = bound_socket(SOCK_DGRAM, 0);
    if (::pipe(wake_) != 0) throw std::runtime_error("fake_dns: pipe");
    thread_ = std::thread([this] { run(); });
  }
  ~fake_dns() {
    char c = 0;
    (void)!::write(wake_[1], &c, 1);
    thread_.join();
    for (int fd : {udp_fd_, tcp_fd_, spoof_fd_, wake_[0], wake_[1]}) ::close(fd);
  }
  std::string resolver() const { return "127.0.0.1:" + std::to_string(port_); }
  int udp_queries() const { return udp_queries_; }
  int tcp_queries() const { return tcp_queries_; }

 private:
  static std::optional<std::array<std::uint8_t, 4>> listing(const dns_query& q) {
    if (q.type == 1 && q.name.starts_with("10.0.0.127."))
      return std::array<std::uint8_t, 4>{127, 0, 0, 2};
    return std::nullopt;
  }
  static std::vector<std::uint8_t> real_answer(const dns_query& q) {
    auto a = listing(q);
    return make_answer(q, q.id, a ? rcode_noerror : rcode_nxdomain, false, a);
  }

  void run() {
    for (;;) {
      pollfd p[3] = {{wake_[0], POLLIN, 0}, {udp_fd_, POLLIN, 0}, {tcp_fd_, POLLIN, 0}};
      if (::poll(p, 3, -1) < 0) continue;
      if (p[0].revents) return;
      if (p[1].revents & POLLIN) on_udp();
      if (p[2].revents & POLLIN) on_tcp();
    }
  }

  void on_udp() {
    std::uint8_t buffer[1500];
    sockaddr_in from{};
    socklen_t len = sizeof from;
    auto n =
        ::recvfrom(udp_fd_, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n <= 0) return;
    auto q = parse_query(buffer, static_cast<std::size_t>(n));
    if (!q) return;
    ++udp_queries_;
    auto send_from = [&](int fd, const std::vector<std::uint8_t>& msg) {
      ::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    };
    const auto listed = listing(*q);
    // What an attacker would like the guard to believe: the opposite.
    const auto contrary = listed ? make_answer(*q, q->id, rcode_nxdomain, false, std::nullopt)
                                 : make_answer(*q, q->id, rcode_noerror, false,
                                               std::array<std::uint8_t, 4>{127, 0, 0, 2});
    switch (mode_) {
      case mode::truncate_udp:
        send_from(udp_fd_, make_answer(*q, q->id, rcode_noerror, true, std::nullopt));
        break;
      case mode::wrong_id_first: {
        auto forged = contrary;
        forged[0] ^= 0x5a;  // another ID
        send_from(udp_fd_, forged);
        send_from(udp_fd_, real_answer(*q));
        break;
      }
      case mode::other_port_first:
        send_from(spoof_fd_, contrary);
        send_from(udp_fd_, real_answer(*q));
        break;
      case mode::other_port_only:
        send_from(spoof_fd_, make_answer(*q, q->id, rcode_noerror, false,
                                         std::array<std::uint8_t, 4>{127, 0, 0, 2}));
        break;
      case mode::refuse_all:
        send_from(udp_fd_, make_answer(*q, q->id, 5 /* REFUSED */, false, std::nullopt));
        break;
      case mode::servfail_tests:
        if (q->name.starts_with("2.0.0.127.") || q->name.starts_with("1.0.0.127."))
          send_from(udp_fd_, make_answer(*q, q->id, 2 /* SERVFAIL */, false, std::nullopt));
        else
          send_from(udp_fd_, real_answer(*q));
        break;
    }
  }

  // One query per connection, with a two-byte length before each message.
  void on_tcp() {
    fd_guard conn(::accept4(tcp_fd_, nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.get() < 0) return;
    std::vector<std::uint8_t> in;
    std::uint8_t buffer[1500];
    const auto until = clock::now() + 2s;
    while (clock::now() < until) {
      if (in.size() >= 2 && in.size() >= 2u + ((in[0] << 8) | in[1])) break;
      pollfd p{conn.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) != 1) continue;
      auto n = ::recv(conn.get(), buffer, sizeof buffer, 0);
      if (n <= 0) return;
      in.insert(in.end(), buffer, buffer + n);
    }
    if (in.size() < 2) return;
    auto q = parse_query(in.data() + 2, in.size() - 2);
    if (!q) return;
    ++tcp_queries_;
    auto answer = real_answer(*q);
    std::vector<std::uint8_t> framed{static_cast<std::uint8_t>(answer.size() >> 8),
                                     static_cast<std::uint8_t>(answer.size() & 0xff)};
    framed.insert(framed.end(), answer.begin(), answer.end());
    ::send(conn.get(), framed.data(), framed.size(), MSG_NOSIGNAL);
  }

  mode mode_;
  int port_ = 0;
  int udp_fd_ = -1, tcp_fd_ = -1, spoof_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::atomic<int> udp_queries_{0}, tcp_queries_{0};
  std::thread thread_;
};

// --- configuration ---------------------------------------------------------------

// A guard on 0.0.0.0 (so clients can use any 127.0.0.x) and optionally ::1,
// with `dnsbl` as the body of its [dnsbl] section.
std::string dnsbl_config(const std::string& resolver, const std::string& dnsbl,
                         const std::string& next_hop = "127.0.0.1:9", bool ipv6 = false) {
  std::string cfg = base_config(quoted(next_hop), "",
                                "\n[dnsbl]\nresolvers = [" + quoted(resolver) + "]\n" + dnsbl);
  const std::string listen = "\"127.0.0.1:@PORT@\"";
  cfg.replace(cfg.find(listen), listen.size(),
              ipv6 ? "\"0.0.0.0:@PORT@\", \"[::1]:@PORT@\"" : "\"0.0.0.0:@PORT@\"");
  return cfg;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// The log lines of the guard that mention `needle`.
std::string lines_with(const std::string& log, const std::string& needle) {
  std::istringstream in(log);
  std::string line, out;
  while (std::getline(in, line))
    if (contains(line, needle)) out += line + "\n";
  return out;
}

// --- client lists at connect -------------------------------------------------------

TEST(DnsblClient, ListedIPv4RefusedAtConnectOthersPass) {
  temp_dir dir;
  rbldnsd dns(dir);
  guard mx(dir, dnsbl_config(dns.resolver(), "sites = [\"bl.test=127.0.0.[2..11]\"]\n"));
  struct row {
    const char* label;
    const char* source;
    int want;
  } rows[] = {
      {"listed", "127.0.0.10", 554},
      {"not listed", "127.0.0.20", 220},
      {"listed with a code outside the filter", "127.0.0.11", 220},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    smtp_client c;
    ASSERT_TRUE(c.connect_from(r.source, mx.port()));
    auto banner = c.read_reply(5s);
    EXPECT_EQ(banner.code, r.want) << banner.text;
    if (r.want == 554) {
      EXPECT_EQ(banner.text, std::string("554 5.7.1 Service unavailable; client [") + r.source +
                                 "] blocked using bl.test");
      // RFC 5321 §3.1: after a 554 greeting only QUIT is served.
      EXPECT_EQ(c.command("EHLO client.test").code, 503);
      EXPECT_EQ(c.command("QUIT").code, 221);
      EXPECT_TRUE(c.closed_by_peer());
    } else {
      EXPECT_EQ(c.command("EHLO client.test").code, 250);
    }
  }
  auto log = mx.log();
  EXPECT_TRUE(contains(log, "REJECT stage=connect rule=dnsbl:bl.test client=127.0.0.10")) << log;
  EXPECT_TRUE(contains(log, "client=127.0.0.10 score=1 listed=bl.test")) << log;
  // A listing outside the filter scores nothing: no DNSBL line at all.
  EXPECT_EQ(lines_with(lines_with(log, "client=127.0.0.11"), "DNSBL"), "") << log;
  EXPECT_FALSE(contains(log, "rule=dnsbl:bl.test client=127.0.0.11")) << log;
}

TEST(DnsblClient, ListedIPv6ClientRefused) {
  temp_dir dir;
  rbldnsd dns(dir);
  guard mx(dir, dnsbl_config(dns.resolver(), "sites = [\"bl.test=127.0.0.[2..11]\"]\n",
                             "127.0.0.1:9", true));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port(), "::1"));
  auto banner = c.read_reply(5s);
  EXPECT_EQ(banner.code, 554) << banner.text;
  EXPECT_EQ(banner.text, "554 5.7.1 Service unavailable; client [::1] blocked using bl.test");
  EXPECT_EQ(c.command("QUIT").code, 221);
  EXPECT_TRUE(c.closed_by_peer());
  // RFC 5782 §2.4: 32 nibbles, least significant first.
  EXPECT_EQ(
      dns.queries_for("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test"),
      1u);
  // IPv4 clients of the same guard are not affected.
  smtp_client v4;
  ASSERT_TRUE(v4.connect_from("127.0.0.20", mx.port()));
  EXPECT_EQ(v4.read_reply(5s).code, 220);
}

TEST(DnsblClient, AnswerOf127_255_255_254IsAnErrorNotAListing) {
  temp_dir dir;
  rbldnsd dns(dir);
  guard mx(dir, dnsbl_config(dns.resolver(), "sites = [\"bl.test\"]\n"));  // any code counts
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    smtp_client c;
    ASSERT_TRUE(c.connect_from("127.0.0.14", mx.port()));
    auto banner = c.read_reply(5s);
    EXPECT_EQ(banner.code, 220) << banner.text;
  }
  auto log = mx.log();
  EXPECT_TRUE(contains(log, "client=127.0.0.14 score=0 listed=\"\" timeouts=0 errors=1")) << log;
  // The list's state change is logged once, not once per client.
  EXPECT_EQ(count(log, "DNSBL severity=warning site=bl.test state=error"), 1u) << log;
  EXPECT_TRUE(contains(log, "127.255.255.254")) << log;
  EXPECT_FALSE(contains(log, "REJECT")) << log;
}

TEST(DnsblScore, WeightsReachingThresholdRefuseOneShortPasses) {
  temp_dir dir;
  rbldnsd dns(dir);
  guard mx(dir, dnsbl_config(dns.resolver(),
                             "sites = [\"w1.test=127.0.0.2*2\", \"w2.test=127.0.0.2*1\"]\n"
                             "threshold = 3\n"));
  struct row {
    const char* label;
    const char* source;
    int want;
  } rows[] = {
      {"2 + 1 = threshold", "127.0.0.12", 554},
      {"2: one short", "127.0.0.13", 220},
      {"listed nowhere", "127.0.0.20", 220},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    smtp_client c;
    ASSERT_TRUE(c.connect_from(r.source, mx.port()));
    auto banner = c.read_reply(5s);
    EXPECT_EQ(banner.code, r.want) << banner.text;
  }
  auto log = mx.log();
  EXPECT_TRUE(contains(log, "client=127.0.0.12 score=3 listed=w1.test,w2.test")) << log;
  EXPECT_TRUE(contains(log, "REJECT stage=connect rule=dnsbl:w1.test client=127.0.0.12")) << log;
  EXPECT_TRUE(contains(log, "client=127.0.0.13 score=2 listed=w1.test timeouts=0")) << log;
}

TEST(DnsblScore, AllowlistedClientPassesAlthoughBlocklisted) {
  temp_dir dir;
  rbldnsd dns(dir);
  guard mx(dir, dnsbl_config(dns.resolver(),
                             "sites = [\"bl.test=127.0.0.[2..11]*3\", "
                             "\"wl.test=127.0.[0..255].[1..3]*-5\"]\n"
                             "threshold = 3\nallowlist_threshold = -1\n"));
  // 127.0.0.15 is on bl.test (3) and wl.test (-5): -2, allowlisted.
  smtp_client ok;
  ASSERT_TRUE(ok.connect_from("127.0.0.15", mx.port()));
  auto banner = ok.read_reply(5s);
  EXPECT_EQ(banner.code, 220) << banner.text;
  EXPECT_EQ(ok.command("EHLO client.test").code, 250);
  // 127.0.0.10 is on bl.test only: refused by the same guard.
  smtp_client listed;
  ASSERT_TRUE(listed.connect_from("127.0.0.10", mx.port()));
  EXPECT_EQ(listed.read_reply(5s).code, 554);
  auto log = mx.log();
  EXPECT_TRUE(contains(log, "client=127.0.0.15 score=-2 listed=bl.test,wl.test")) << log;
  EXPECT_FALSE(contains(log, "rule=dnsbl:bl.test client=127.0.0.15")) << log;
}

// --- domain lists at MAIL -------------------------------------------------------------

TEST(DnsblRhsbl, SenderDomainAndHeloRefusedAtMail) {
  temp_dir dir;
  rbldnsd dns(dir);
  guard mx(dir, dnsbl_config(dns.resolver(), "rhsbl_sites = [\"dbl.test=127.0.1.[2..99]\"]\n"));
  {
    smtp_client c;
    ASSERT_TRUE(c.connect_from("127.0.0.20", mx.port()));
    ASSERT_EQ(c.read_reply(5s).code, 220);
    ASSERT_EQ(c.command("EHLO client.test").code, 250);
    struct row {
      const char* label;
      const char* from;
      int want;
      std::string text;
    } rows[] = {
        {"listed sender domain", "<a@spam.example>", 554,
         "554 5.7.1 Service unavailable; sender <spam.example> blocked using dbl.test"},
        {"upper case", "<a@SPAM.Example>", 554,
         "554 5.7.1 Service unavailable; sender <SPAM.Example> blocked using dbl.test"},
        {"clean sender domain", "<a@clean.example>", 250, ""},
    };
    for (const auto& r : rows) {
      SCOPED_TRACE(r.label);
      auto reply = c.command(std::string("MAIL FROM:") + r.from, 5s);
      EXPECT_EQ(reply.code, r.want) << reply.text;
      if (!r.text.empty()) {
        EXPECT_EQ(reply.text, r.text);
      }
      if (reply.code == 250) {
        EXPECT_EQ(c.command("RSET").code, 250);
      }
    }
    EXPECT_EQ(c.command("MAIL FROM:<>", 5s).code, 250);  // the null sender has no domain
  }
  struct row {
    const char* label;
    const char* helo;
    int want;
    std::string text;
  } rows[] = {
      {"listed HELO name", "bad-helo.example", 554,
       "554 5.7.1 Service unavailable; helo <bad-helo.example> blocked using dbl.test"},
      {"listed HELO name, absolute", "bad-helo.example.", 554,
       "554 5.7.1 Service unavailable; helo <bad-helo.example.> blocked using dbl.test"},
      {"clean HELO name", "client.test", 250, ""},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    smtp_client c;
    ASSERT_TRUE(c.connect_from("127.0.0.20", mx.port()));
    ASSERT_EQ(c.read_reply(5s).code, 220);
    EXPECT_EQ(c.command(std::string("EHLO ") + r.helo).code, 250);
    auto reply = c.command("MAIL FROM:<a@clean.example>", 5s);
    EXPECT_EQ(reply.code, r.want) << reply.text;
    if (!r.text.empty()) {
      EXPECT_EQ(reply.text, r.text);
    }
  }
  auto log = mx.log();
  EXPECT_TRUE(contains(log, "REJECT stage=mail rule=rhsbl_sender:dbl.test")) << log;
  EXPECT_TRUE(contains(log, "REJECT stage=mail rule=rhsbl_helo:dbl.test")) << log;
  EXPECT_EQ(dns.queries_for("clean.example.dbl.test"), 1u);  // then cached
}

// --- replies and action ---------------------------------------------------------------

TEST(DnsblReply, TxtRecordAppendedWithReplyTxt) {
  temp_dir dir;
  rbldnsd dns(dir);
  guard mx(dir, dnsbl_config(dns.resolver(),
                             "sites = [\"bl.test=127.0.0.[2..11]\"]\n"
                             "rhsbl_sites = [\"dbl.test=127.0.1.[2..99]\"]\n"
                             "reply_txt = true\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.10", mx.port()));
  auto banner = c.read_reply(5s);
  EXPECT_EQ(banner.code, 554);
  EXPECT_EQ(banner.text,
            "554 5.7.1 Service unavailable; client [127.0.0.10] blocked using bl.test; "
            "Listed 127.0.0.10 for spam");
  smtp_client d;
  ASSERT_TRUE(d.connect_from("127.0.0.20", mx.port()));
  ASSERT_EQ(d.read_reply(5s).code, 220);
  ASSERT_EQ(d.command("EHLO client.test").code, 250);
  auto mail = d.command("MAIL FROM:<a@spam.example>", 5s);
  EXPECT_EQ(mail.code, 554);
  EXPECT_EQ(mail.text,
            "554 5.7.1 Service unavailable; sender <spam.example> blocked using dbl.test; "
            "Spam domain spam.example");
}

TEST(DnsblAction, RcptRefusesAtRcptAfterBannerEhloAndMail) {
  temp_dir dir;
  rbldnsd dns(dir);
  smtp_sink sink(dir);
  guard mx(dir, dnsbl_config(dns.resolver(),
                             "sites = [\"bl.test=127.0.0.[2..11]\"]\n"
                             "rhsbl_sites = [\"dbl.test=127.0.1.[2..99]\"]\n"
                             "action = \"rcpt\"\n",
                             sink.address()));
  {
    smtp_client c;
    ASSERT_TRUE(c.connect_from("127.0.0.10", mx.port()));
    auto banner = c.read_reply(5s);
    EXPECT_EQ(banner.code, 220) << banner.text;
    EXPECT_EQ(c.command("EHLO client.test").code, 250);
    EXPECT_EQ(c.command("MAIL FROM:<a@clean.example>", 5s).code, 250);
    for (const char* rcpt : {"<user@example.org>", "<other@example.org>"}) {
      SCOPED_TRACE(rcpt);
      auto reply = c.command(std::string("RCPT TO:") + rcpt, 5s);
      EXPECT_EQ(reply.code, 554) << reply.text;
      EXPECT_EQ(reply.text,
                "554 5.7.1 Service unavailable; client [127.0.0.10] blocked using bl.test");
    }
    EXPECT_EQ(c.command("DATA").code / 100, 5);  // no recipient
  }
  {
    // A listed sender domain, too, is refused at RCPT.
    smtp_client c;
    ASSERT_TRUE(c.connect_from("127.0.0.20", mx.port()));
    ASSERT_EQ(c.read_reply(5s).code, 220);
    EXPECT_EQ(c.command("EHLO client.test").code, 250);
    EXPECT_EQ(c.command("MAIL FROM:<a@spam.example>", 5s).code, 250);
    auto reply = c.command("RCPT TO:<user@example.org>", 5s);
    EXPECT_EQ(reply.code, 554) << reply.text;
    EXPECT_EQ(reply.text,
              "554 5.7.1 Service unavailable; sender <spam.example> blocked using dbl.test");
  }
  {
    // A clean client through the same guard is relayed.
    smtp_client c;
    ASSERT_TRUE(c.connect_from("127.0.0.20", mx.port()));
    ASSERT_EQ(c.read_reply(5s).code, 220);
    EXPECT_EQ(c.start_transaction("a@clean.example", "user@example.org").code, 250);
    EXPECT_EQ(c.send_message(make_message("hi", "clean")).code, 250);
    EXPECT_TRUE(sink.wait_messages(1));
  }
  auto log = mx.log();
  auto rejects = lines_with(log, "REJECT stage=rcpt rule=dnsbl:bl.test client=127.0.0.10");
  EXPECT_EQ(count(rejects, "\n"), 2u) << log;
  EXPECT_TRUE(contains(rejects, "helo=client.test")) << rejects;
  EXPECT_TRUE(contains(rejects, "from=a@clean.example")) << rejects;
  EXPECT_TRUE(contains(log, "REJECT stage=rcpt rule=rhsbl_sender:dbl.test client=127.0.0.20"))
      << log;
  EXPECT_EQ(sink.messages().size(), 1u);
}

// --- resolvers that misbehave ------------------------------------------------------------

TEST(DnsblResolver, SilentResolverDoesNotHoldTheBanner) {
  temp_dir dir;
  // A resolver that never answers: bound, never read.
  fd_guard silent(bound_socket(SOCK_DGRAM, 0));
  const std::string resolver = "127.0.0.1:" + std::to_string(local_port(silent.get()));
  guard mx(dir, dnsbl_config(resolver,
                             "sites = [\"bl.test=127.0.0.[2..11]\", \"w1.test\"]\n"
                             "timeout = \"400ms\"\nquery_timeout = \"5s\"\nattempts = 3\n"
                             "health_interval = \"0s\"\n"));
  smtp_client c;
  const auto start = clock::now();
  ASSERT_TRUE(c.connect_from("127.0.0.10", mx.port()));
  auto banner = c.read_reply(5s);
  const auto waited = clock::now() - start;
  EXPECT_EQ(banner.code, 220) << banner.text;
  EXPECT_LT(waited, 400ms + 400ms);
  EXPECT_GE(waited, 300ms);  // it did wait for the lists
  EXPECT_EQ(c.command("EHLO client.test").code, 250);
  // The queries were sent (and are still unread).
  int pending = 0;
  ASSERT_EQ(::ioctl(silent.get(), FIONREAD, &pending), 0);
  EXPECT_GT(pending, 0);
  auto log = mx.log();
  EXPECT_TRUE(contains(log, "client=127.0.0.10 score=0 listed=\"\" timeouts=2 errors=0")) << log;
}

TEST(DnsblRhsbl, HeloThatIsNoDomainNameIsNotLookedUp) {
  temp_dir dir;
  fd_guard silent(bound_socket(SOCK_DGRAM, 0));
  const std::string resolver = "127.0.0.1:" + std::to_string(local_port(silent.get()));
  guard mx(dir, dnsbl_config(resolver,
                             "sites = []\nrhsbl_sites = [\"dbl.test\"]\n"
                             "timeout = \"400ms\"\nhealth_interval = \"0s\"\n"));
  auto queries_after = [&](const std::string& helo) {
    smtp_client c;
    if (!c.connect_from("127.0.0.20", mx.port()) || c.read_reply(5s).code != 220) return -1;
    c.command("EHLO " + helo);
    c.command("MAIL FROM:<>");  // no sender domain: the HELO alone
    int pending = 0;
    ::ioctl(silent.get(), FIONREAD, &pending);
    c.command("QUIT");
    return pending;
  };
  EXPECT_EQ(queries_after("bad(name.example"), 0);
  EXPECT_GT(queries_after("good-name.example."), 0) << "a real name is looked up";
}

TEST(DnsblResolver, TruncatedAnswerRetriedOverTcp) {
  temp_dir dir;
  fake_dns dns(fake_dns::mode::truncate_udp);
  guard mx(dir, dnsbl_config(dns.resolver(),
                             "sites = [\"fake.test=127.0.0.[2..11]\"]\n"
                             "health_interval = \"0s\"\n"));
  const int udp_before = dns.udp_queries(), tcp_before = dns.tcp_queries();
  smtp_client c;
  ASSERT_TRUE(c.connect_from("127.0.0.10", mx.port()));
  auto banner = c.read_reply(5s);
  EXPECT_EQ(banner.code, 554) << banner.text;
  EXPECT_EQ(banner.text,
            "554 5.7.1 Service unavailable; client [127.0.0.10] blocked using fake.test");
  EXPECT_EQ(dns.udp_queries() - udp_before, 1);
  EXPECT_EQ(dns.tcp_queries() - tcp_before, 1);
  // NXDOMAIN over TCP: passes.
  smtp_client ok;
  ASSERT_TRUE(ok.connect_from("127.0.0.20", mx.port()));
  EXPECT_EQ(ok.read_reply(5s).code, 220);
  EXPECT_EQ(dns.tcp_queries() - tcp_before, 2);
}

TEST(DnsblResolver, RefusedByOneResolverAskedOfTheNext) {
  temp_dir dir;
  rbldnsd dns(dir);
  fake_dns refusing(fake_dns::mode::refuse_all);
  auto config = dnsbl_config(refusing.resolver(),
                             "sites = [\"bl.test=127.0.0.[2..11]\"]\n"
                             "health_interval = \"0s\"\n");
  const std::string one = "resolvers = [" + quoted(refusing.resolver()) + "]";
  config.replace(
      config.find(one), one.size(),
      "resolvers = [" + quoted(refusing.resolver()) + ", " + quoted(dns.resolver()) + "]");
  guard mx(dir, config);
  // Queries start at either resolver in turn: each one must end at rbldnsd.
  for (const char* source : {"127.0.0.10", "127.0.0.2", "127.0.0.15", "127.0.0.30"}) {
    SCOPED_TRACE(source);
    smtp_client c;
    ASSERT_TRUE(c.connect_from(source, mx.port()));
    EXPECT_EQ(c.read_reply(5s).code, 554);
  }
  EXPECT_GT(refusing.udp_queries(), 0);
}

TEST(DnsblResolver, SpoofedAnswersIgnored) {
  struct row {
    const char* label;
    fake_dns::mode mode;
    const char* source;
    int want;
  } rows[] = {
      // "Not listed" with a wrong ID first, then the real "listed".
      {"wrong ID first, listed client", fake_dns::mode::wrong_id_first, "127.0.0.10", 554},
      // "Listed" with a wrong ID first, then the real NXDOMAIN.
      {"wrong ID first, clean client", fake_dns::mode::wrong_id_first, "127.0.0.20", 220},
      // "Not listed" with the right ID from another port, then the real "listed".
      {"other port first, listed client", fake_dns::mode::other_port_first, "127.0.0.10", 554},
      {"other port first, clean client", fake_dns::mode::other_port_first, "127.0.0.20", 220},
      // Only a "listed" from another port: nothing counts, the wait times out.
      {"other port only", fake_dns::mode::other_port_only, "127.0.0.20", 220},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    temp_dir dir;
    fake_dns dns(r.mode);
    guard mx(dir, dnsbl_config(dns.resolver(),
                               "sites = [\"fake.test=127.0.0.[2..11]\"]\n"
                               "timeout = \"300ms\"\nquery_timeout = \"300ms\"\n"
                               "health_interval = \"0s\"\n"));
    smtp_client c;
    ASSERT_TRUE(c.connect_from(r.source, mx.port()));
    auto banner = c.read_reply(5s);
    EXPECT_EQ(banner.code, r.want) << banner.text;
    if (r.mode == fake_dns::mode::other_port_only) {
      EXPECT_TRUE(contains(mx.log(), "client=127.0.0.20 score=0 listed=\"\" timeouts=1"))
          << mx.log();
    }
  }
}

// --- cache ------------------------------------------------------------------------------

// --- RFC 5782 health checks ----------------------------------------------------------

// The health check runs at start; a list it failed would not count.
int banner_after_health_check(const guard& mx, const char* source) {
  std::this_thread::sleep_for(500ms);
  smtp_client c;
  if (!c.connect_from(source, mx.port())) return -1;
  return c.read_reply(5s).code;
}

TEST(DnsblHealth, TestEntryCountsWithAnyCleanCodeNotOnlyTheSitesFilter) {
  temp_dir dir;
  rbldnsd dns(dir);
  // 127.0.0.11 is listed with 127.0.0.20; the test entry 127.0.0.2 with 127.0.0.2.
  guard mx(dir, dnsbl_config(dns.resolver(),
                             "sites = [\"bl.test=127.0.0.20\"]\n"
                             "health_interval = \"1h\"\n"));
  EXPECT_EQ(banner_after_health_check(mx, "127.0.0.11"), 554) << mx.log();
  EXPECT_FALSE(contains(mx.log(), "health=failed")) << mx.log();
}

TEST(DnsblHealth, ResolverTroubleDuringTheCheckDoesNotSwitchTheListOff) {
  temp_dir dir;
  fake_dns dns(fake_dns::mode::servfail_tests);
  guard mx(dir, dnsbl_config(dns.resolver(),
                             "sites = [\"fake.test=127.0.0.[2..11]\"]\n"
                             "health_interval = \"1h\"\n"));
  EXPECT_EQ(banner_after_health_check(mx, "127.0.0.10"), 554) << mx.log();
  EXPECT_FALSE(contains(mx.log(), "health=failed")) << mx.log();
}

TEST(DnsblCache, ConcurrentClientsMakeOneQueryPerSiteThenNone) {
  temp_dir dir;
  rbldnsd dns(dir);
  auto cfg = dnsbl_config(dns.resolver(),
                          "sites = [\"bl.test=127.0.0.[2..11]\", \"bl.test=127.0.0.2*2\", "
                          "\"wl.test=127.0.10.2*-1\"]\n"
                          "threshold = 3\n");
  // Sessions of the first wave may still hold their per-IP slots when the
  // second wave connects.
  cfg.replace(cfg.find("workers = 2\n"), 0, "max_sessions_per_ip = 100\n");
  guard mx(dir, cfg);
  auto wave = [&] {
    std::vector<smtp_client> clients(20);
    for (auto& c : clients) ASSERT_TRUE(c.connect_from("127.0.0.30", mx.port()));
    for (auto& c : clients) {
      auto banner = c.read_reply(5s);
      EXPECT_EQ(banner.code, 554) << banner.text;  // 1 + 2 >= 3
    }
  };
  wave();
  // Two sites share the zone bl.test: one name, one query.
  EXPECT_EQ(dns.queries_for("30.0.0.127.bl.test"), 1u);
  EXPECT_EQ(dns.queries_for("30.0.0.127.wl.test"), 1u);
  wave();
  EXPECT_EQ(dns.queries_for("30.0.0.127.bl.test"), 1u);
  EXPECT_EQ(dns.queries_for("30.0.0.127.wl.test"), 1u);
  EXPECT_EQ(count(mx.log(), "REJECT stage=connect rule=dnsbl:bl.test client=127.0.0.30"), 40u);
}

// --- reload ---------------------------------------------------------------------------

// A reload that changes [dnsbl] builds a new engine while lookups of the old
// one are still waiting for a silent resolver on the same I/O threads; both
// generations must run to their deadlines side by side.
TEST(DnsblReload, LookupsInFlightSurviveANewEngine) {
  temp_dir dir;
  fd_guard silent(bound_socket(SOCK_DGRAM, 0));
  const std::string resolver = "127.0.0.1:" + std::to_string(local_port(silent.get()));
  auto config = [&](int threshold) {
    return dnsbl_config(resolver,
                        "sites = [\"bl.test\", \"w1.test\"]\n"
                        "timeout = \"600ms\"\nquery_timeout = \"150ms\"\nattempts = 5\n"
                        "threshold = " +
                            std::to_string(threshold) + "\n");
  };
  guard mx(dir, config(1));
  std::vector<smtp_client> old_engine(6), new_engine(6);
  for (std::size_t i = 0; i < old_engine.size(); ++i)
    ASSERT_TRUE(old_engine[i].connect_from("127.0.0." + std::to_string(40 + i), mx.port()));
  mx.reload(config(2));
  const auto until = clock::now() + 5s;
  while (!contains(mx.log(), "RELOAD") && clock::now() < until) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(contains(mx.log(), "RELOAD config=")) << mx.log();
  for (std::size_t i = 0; i < new_engine.size(); ++i)
    ASSERT_TRUE(new_engine[i].connect_from("127.0.0." + std::to_string(50 + i), mx.port()));
  for (auto* group : {&old_engine, &new_engine})
    for (auto& c : *group) {
      auto banner = c.read_reply(3s);
      EXPECT_EQ(banner.code, 220) << banner.text << "\n" << mx.log();
    }
  EXPECT_TRUE(mx.process().alive()) << mx.log();
  // Every lookup ended by its deadline (a timeout), none by an error.
  auto log = mx.log();
  for (int i = 40; i < 56; ++i) {
    if (i >= 46 && i < 50) continue;
    const std::string client = "client=127.0.0." + std::to_string(i) + " ";
    SCOPED_TRACE(client);
    EXPECT_TRUE(contains(lines_with(log, client), "timeouts=2 errors=0")) << log;
  }
  smtp_client after;
  ASSERT_TRUE(after.connect_from("127.0.0.60", mx.port()));
  EXPECT_EQ(after.read_reply(3s).code, 220);
}

// --- mxguard --check-ip / --check-domain --------------------------------------------------

TEST(DnsblCheckCommand, PrintsEachListAndTheVerdict) {
  temp_dir dir;
  rbldnsd dns(dir);
  auto cfg = dnsbl_config(dns.resolver(),
                          "sites = [\"bl.test=127.0.0.[2..11]*3\", "
                          "\"wl.test=127.0.[0..255].[1..3]*-5\"]\n"
                          "rhsbl_sites = [\"dbl.test=127.0.1.[2..99]*3\"]\n"
                          "threshold = 3\nallowlist_threshold = -1\n");
  cfg.replace(cfg.find("@PORT@"), 6, "2525");
  write_file(dir / "check.toml", cfg);
  struct row {
    const char* label;
    std::string option;
    std::string subject;
    int want_status;
    std::vector<std::string> want_lines;
  } rows[] = {
      {"listed IPv4",
       "--check-ip",
       "127.0.0.10",
       3,
       {"bl.test=127.0.0.[2..11]*3: listed answer=127.0.0.2 weight=3",
        "wl.test=127.0.[0..255].[1..3]*-5: not listed weight=0",
        "total=3 threshold=3 verdict=refused"}},
      {"code outside the filter",
       "--check-ip",
       "127.0.0.11",
       0,
       {"bl.test=127.0.0.[2..11]*3: not listed answer=127.0.0.20 weight=0",
        "total=0 threshold=3 verdict=passes"}},
      {"allowlisted",
       "--check-ip",
       "127.0.0.15",
       0,
       {"bl.test=127.0.0.[2..11]*3: listed answer=127.0.0.2 weight=3",
        "wl.test=127.0.[0..255].[1..3]*-5: listed answer=127.0.10.2 weight=-5",
        "total=-2 threshold=3 verdict=allowlisted"}},
      {"error answer",
       "--check-ip",
       "127.0.0.14",
       0,
       {"bl.test=127.0.0.[2..11]*3: error answer=127.255.255.254 weight=0 (answer "
        "127.255.255.254 is not a listing",
        "total=0 threshold=3 verdict=passes"}},
      {"listed IPv6",
       "--check-ip",
       "::1",
       3,
       {"bl.test=127.0.0.[2..11]*3: listed answer=127.0.0.3 weight=3",
        "total=3 threshold=3 verdict=refused"}},
      {"listed domain",
       "--check-domain",
       "spam.example",
       3,
       {"dbl.test=127.0.1.[2..99]*3: listed answer=127.0.1.2 weight=3",
        "total=3 threshold=3 verdict=refused"}},
      {"listed domain, absolute and upper case",
       "--check-domain",
       "SPAM.Example.",
       3,
       {"dbl.test=127.0.1.[2..99]*3: listed answer=127.0.1.2 weight=3",
        "total=3 threshold=3 verdict=refused"}},
      {"clean domain",
       "--check-domain",
       "clean.example",
       0,
       {"dbl.test=127.0.1.[2..99]*3: not listed weight=0", "total=0 threshold=3 verdict=passes"}},
      {"not an IP address", "--check-ip", "spam.example", 2, {"is not an IP address"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    const auto out_path = dir / ("check-" + r.subject + ".out");
    child run({MXGUARD_BINARY, "--config", (dir / "check.toml").string(), r.option, r.subject},
              out_path);
    auto status = run.wait_exit(10s);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(*status, r.want_status);
    auto out = read_file(out_path);
    for (const auto& line : r.want_lines) EXPECT_TRUE(contains(out, line)) << line << "\n" << out;
  }
}

}  // namespace
}  // namespace mxguard::test
