// The next-hop connection cache against a real next hop (smtp-sink): what
// the next hop's kernel shows (its established connections) and what the
// metrics count, session after session.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

#include "common.hpp"

namespace mxguard::test {
namespace {

using namespace std::chrono_literals;

// A scripted next hop for what a real server shows only by chance of
// timing or not at all: with `drop_second_mail`, it drops its first
// connection when the second transaction on it begins (a cached connection
// taken while the next hop is closing it); MAIL FROM a sender holding
// `refuse_sender` gets 550; a non-empty `data_reply` answers DATA instead of
// 354 (a refusal leaves the transaction open, as RFC 5321 has it). It keeps
// the transaction state a real server keeps: MAIL inside a transaction gets
// Postfix's 503 (counted as nested). It counts MAIL commands that came with
// their RCPT in one segment (pipelined). Every other command gets its usual
// reply.
class scripted_next_hop {
 public:
  struct script {
    bool drop_second_mail = false;
    std::string refuse_sender;
    std::string data_reply;
  };
  explicit scripted_next_hop(script s) : script_(std::move(s)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &length) != 0)
      throw std::runtime_error("scripted_next_hop: listen");
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_all(); });
  }
  ~scripted_next_hop() {
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    std::lock_guard lock(mutex_);
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : handlers_) t.join();
    for (int fd : connections_) ::close(fd);
    ::close(listener_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return accepted_; }
  int messages() const { return messages_; }
  int pipelined_mails() const { return pipelined_; }
  int nested_mails() const { return nested_; }

 private:
  void accept_all() {
    for (;;) {
      int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard lock(mutex_);
      connections_.push_back(fd);
      handlers_.emplace_back([this, fd, first = accepted_++ == 0] { serve(fd, first); });
    }
  }

  void serve(int fd, bool first) {
    auto say = [fd](std::string_view text) { ::send(fd, text.data(), text.size(), MSG_NOSIGNAL); };
    std::string buffer;
    auto next_line = [&](std::string& line) {
      for (;;) {
        if (auto end = buffer.find("\r\n"); end != std::string::npos) {
          line = buffer.substr(0, end);
          buffer.erase(0, end + 2);
          return true;
        }
        char chunk[4096];
        auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buffer.append(chunk, static_cast<std::size_t>(n));
      }
    };
    say("220 next-hop.test ESMTP\r\n");
    int mails = 0;
    bool in_transaction = false;
    for (std::string line; next_line(line);) {
      auto verb = line.substr(0, 4);
      if (verb == "EHLO") {
        in_transaction = false;
        say("250-next-hop.test\r\n250 PIPELINING\r\n");
      } else if (verb == "MAIL") {
        if (buffer.starts_with("RCPT ")) ++pipelined_;
        if (script_.drop_second_mail && first && ++mails == 2) {
          ::shutdown(fd, SHUT_RDWR);  // gone without a word, as in a race with our MAIL
          return;
        }
        if (in_transaction) {
          ++nested_;
          say("503 5.5.1 Error: nested MAIL command\r\n");
        } else if (!script_.refuse_sender.empty() &&
                   line.find(script_.refuse_sender) != std::string::npos) {
          say("550 5.7.1 Sender refused\r\n");
        } else {
          in_transaction = true;
          say("250 2.1.0 Ok\r\n");
        }
      } else if (verb == "DATA" && !script_.data_reply.empty()) {
        say(script_.data_reply + "\r\n");
      } else if (verb == "DATA") {
        say("354 go ahead\r\n");
        while (next_line(line) && line != ".") {
        }
        ++messages_;
        in_transaction = false;
        say("250 2.0.0 queued\r\n");
      } else if (verb == "QUIT") {
        say("221 2.0.0 Bye\r\n");
        return;
      } else {
        if (verb == "RSET") in_transaction = false;
        say("250 2.0.0 Ok\r\n");  // RCPT, RSET, NOOP
      }
    }
  }

  script script_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<int> messages_{0};
  std::atomic<int> pipelined_{0};
  std::atomic<int> nested_{0};
  std::mutex mutex_;
  std::vector<int> connections_;
  std::vector<std::thread> handlers_;
  std::thread acceptor_;
};

struct cached_relay {
  temp_dir dir;
  smtp_sink sink{dir};
  int metrics_port = free_port();
  std::unique_ptr<guard> mx;

  // One I/O thread, so every session finds what the one before it parked.
  explicit cached_relay(const std::string& relay_extra, std::string next_hop = "") {
    if (next_hop.empty()) next_hop = sink.address();
    auto config = base_config(test::quoted(next_hop), "workers = 1\n");
    // base_config sets workers = 2 first; TOML refuses a repeated key.
    config.replace(config.find("workers = 2\n"), 12, "");
    config.replace(config.find("[relay]\n") + 8, 0, relay_extra);
    config += "\n[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n";
    mx = std::make_unique<guard>(dir, config);
  }

  double connections(const std::string& how) {
    return metric(http_get(metrics_port, "/metrics"),
                  "mxguard_next_hop_connections_total{how=\"" + how + "\"}");
  }

  // A whole session: one message, QUIT. The final reply's code.
  int deliver(const std::string& subject) {
    smtp_client c;
    if (!c.connect(mx->port())) return -1;
    c.read_reply();
    if (auto r = c.start_transaction("a@remote.example", "user@example.org"); r.code != 250)
      return r.code;
    int code = c.send_message(make_message(subject, "body\r\n")).code;
    c.command("QUIT");
    return code;
  }

  bool sink_holds(int n, std::chrono::milliseconds timeout = 5s) {
    for (auto end = std::chrono::steady_clock::now() + timeout;;) {
      if (established_at(sink.port()) == n) return true;
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(20ms);
    }
  }
};

TEST(RelayCache, NextSessionReusesTheConnection) {
  cached_relay t("connection_cache_time = \"30s\"\n");
  EXPECT_EQ(t.deliver("first"), 250);
  // Parked, not closed: the next hop still holds it after the session ended.
  EXPECT_TRUE(t.sink_holds(1));
  EXPECT_EQ(t.deliver("second"), 250);
  EXPECT_EQ(t.deliver("third"), 250);
  ASSERT_TRUE(t.sink.wait_messages(3));
  EXPECT_EQ(t.connections("opened"), 1);
  EXPECT_EQ(t.connections("reused"), 2);
  EXPECT_TRUE(t.sink_holds(1));
}

TEST(RelayCache, IdleConnectionGetsQuitWhenItsTimeIsUp) {
  cached_relay t("connection_cache_time = \"500ms\"\n");
  EXPECT_EQ(t.deliver("one"), 250);
  EXPECT_TRUE(t.sink_holds(1));
  EXPECT_TRUE(t.sink_holds(0, 5s));
  EXPECT_EQ(t.deliver("two"), 250);  // a new one, the old one is gone
  EXPECT_EQ(t.connections("opened"), 2);
  EXPECT_EQ(t.connections("reused"), 0);
}

TEST(RelayCache, ZeroCacheTimeClosesAfterEachSession) {
  cached_relay t("connection_cache_time = \"0s\"\n");
  EXPECT_EQ(t.deliver("one"), 250);
  EXPECT_TRUE(t.sink_holds(0));
  EXPECT_EQ(t.deliver("two"), 250);
  EXPECT_EQ(t.connections("opened"), 2);
  EXPECT_EQ(t.connections("reused"), 0);
}

TEST(RelayCache, ConnectionTheNextHopDroppedIsNotUsed) {
  cached_relay t("connection_cache_time = \"30s\"\n");
  EXPECT_EQ(t.deliver("before"), 250);
  EXPECT_TRUE(t.sink_holds(1));
  // The next hop restarts: the parked connection is dead (FIN or reset).
  t.sink.restart();
  EXPECT_EQ(t.deliver("after"), 250);
  ASSERT_TRUE(t.sink.wait_messages(2));
  EXPECT_EQ(t.connections("opened"), 2);
}

TEST(RelayCache, ConnectionDroppedAtMailIsRetriedOnANewOne) {
  scripted_next_hop next_hop({.drop_second_mail = true, .refuse_sender = "", .data_reply = ""});
  cached_relay t("connection_cache_time = \"30s\"\n", next_hop.address());
  EXPECT_EQ(t.deliver("first"), 250);
  // The parked connection looks alive, and dies under our MAIL: the client
  // never hears of it.
  EXPECT_EQ(t.deliver("second"), 250);
  EXPECT_EQ(next_hop.messages(), 2);
  EXPECT_EQ(next_hop.connections(), 2);
  EXPECT_EQ(t.connections("reused"), 1);
}

// MAIL and the first RCPT go to a next hop offering PIPELINING in one write;
// a MAIL it refuses still has its RCPT's reply read, so the dialogue stays
// in step for the next transaction on that connection.
TEST(RelayCache, MailAndFirstRcptPipelinedAndAMailRefusalKeepsStep) {
  scripted_next_hop next_hop(
      {.drop_second_mail = false, .refuse_sender = "refused@", .data_reply = ""});
  cached_relay t("connection_cache_time = \"30s\"\n", next_hop.address());
  smtp_client c;
  ASSERT_TRUE(c.connect(t.mx->port()));
  c.read_reply();
  auto refused = c.start_transaction("refused@remote.example", "user@example.org");
  EXPECT_EQ(refused.code, 550) << refused.text;
  EXPECT_NE(refused.text.find("Sender refused"), std::string::npos) << refused.text;
  EXPECT_EQ(c.command("RSET").code, 250);
  ASSERT_EQ(c.start_transaction("fine@remote.example", "user@example.org").code, 250);
  EXPECT_EQ(c.send_message(make_message("after a refusal", "x\r\n")).code, 250);
  EXPECT_EQ(c.command("QUIT").code, 221);
  EXPECT_EQ(next_hop.messages(), 1);
  EXPECT_EQ(next_hop.connections(), 1);
  EXPECT_EQ(next_hop.pipelined_mails(), 2);
}

// A refused DATA leaves the next hop's transaction open: it is reset before
// the connection serves again, in the same session or, parked, in the next.
TEST(RelayCache, RefusedDataEndsTheNextHopsTransaction) {
  scripted_next_hop next_hop(
      {.drop_second_mail = false, .refuse_sender = "", .data_reply = "554 5.7.1 Not today"});
  cached_relay t("connection_cache_time = \"30s\"\n", next_hop.address());
  smtp_client c;
  ASSERT_TRUE(c.connect(t.mx->port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  auto refused = c.send_message(make_message("refused", "x\r\n"));
  EXPECT_EQ(refused.code, 554) << refused.text;
  EXPECT_NE(refused.text.find("Not today"), std::string::npos) << refused.text;
  EXPECT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  auto again = c.command("RCPT TO:<user@example.org>");
  EXPECT_EQ(again.code, 250) << again.text;
  EXPECT_EQ(c.send_message(make_message("refused again", "x\r\n")).code, 554);
  EXPECT_EQ(c.command("QUIT").code, 221);
  EXPECT_EQ(t.deliver("next session"), 554);
  EXPECT_EQ(next_hop.nested_mails(), 0);
  EXPECT_EQ(next_hop.connections(), 1);
  EXPECT_EQ(t.connections("reused"), 1);
}

// RFC 5321 allows only 354 to DATA before the body: a next hop saying 250
// there has not taken the message, and the client must not hear success.
TEST(RelayCache, DataAnsweredWithSuccessIsAProtocolError) {
  scripted_next_hop next_hop(
      {.drop_second_mail = false, .refuse_sender = "", .data_reply = "250 2.0.0 Ok"});
  cached_relay t("connection_cache_time = \"30s\"\n", next_hop.address());
  smtp_client c;
  ASSERT_TRUE(c.connect(t.mx->port()));
  c.read_reply();
  ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
  auto r = c.send_message(make_message("never sent", "x\r\n"));
  EXPECT_EQ(r.code, 451) << r.text;
  EXPECT_NE(r.text.find("4.5.0"), std::string::npos) << r.text;
  EXPECT_EQ(c.command("QUIT").code, 221);
  EXPECT_EQ(next_hop.messages(), 0);
  // That connection is out of step: not parked, not reused.
  EXPECT_EQ(t.deliver("next"), 451);
  EXPECT_EQ(next_hop.connections(), 2);
  EXPECT_EQ(t.connections("reused"), 0);
}

TEST(RelayCache, SessionEndingInsideATransactionDoesNotParkIt) {
  cached_relay t("connection_cache_time = \"30s\"\n");
  {
    smtp_client c;
    ASSERT_TRUE(c.connect(t.mx->port()));
    c.read_reply();
    ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
    c.close();  // gone with the next hop's MAIL and RCPT open
  }
  EXPECT_TRUE(t.sink_holds(0));
  // After RSET the transaction is over: that connection can be parked.
  {
    smtp_client c;
    ASSERT_TRUE(c.connect(t.mx->port()));
    c.read_reply();
    ASSERT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 250);
    EXPECT_EQ(c.command("RSET").code, 250);
    EXPECT_EQ(c.command("QUIT").code, 221);
  }
  EXPECT_TRUE(t.sink_holds(1));
  EXPECT_EQ(t.deliver("reused"), 250);
  EXPECT_EQ(t.connections("opened"), 2);
  EXPECT_EQ(t.connections("reused"), 1);
  ASSERT_TRUE(t.sink.wait_messages(1));
}

}  // namespace
}  // namespace mxguard::test
