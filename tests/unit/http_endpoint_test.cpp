// Component tests for ops/include/mxguard/ops/http_endpoint.hpp: a real
// endpoint on 127.0.0.1, port 0, driven by a plain Asio/Beast client.
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include "mxguard/ops/http_endpoint.hpp"

namespace mxguard::ops {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;
using response = http::response<http::string_body>;

constexpr auto client_patience = 5s;  // bounds every client wait; never reached when all is well

// A blocking-looking client whose every wait is bounded by run_for, so a
// broken server fails the test instead of hanging it.
class client {
 public:
  explicit client(std::uint16_t port, const char* address = "127.0.0.1") : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address(address), port));
  }

  void send(const std::string& raw) {
    boost::system::error_code ec;  // the server may have closed already: then read() tells
    asio::write(socket_, asio::buffer(raw), ec);
  }

  // One response; nullopt when the connection ended (or nothing came) first.
  std::optional<response> read(bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.skip(head);  // a HEAD response announces a body it does not send
    boost::system::error_code ec;
    bool done = false;
    http::async_read(socket_, buffer_, parser, [&](boost::system::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    if (!wait(done) || ec) return std::nullopt;
    return parser.release();
  }

  std::optional<response> get(const std::string& target, const std::string& method = "GET") {
    send(method + " " + target + " HTTP/1.1\r\nHost: test\r\n\r\n");
    return read(method == "HEAD");
  }

  // True when the server closes (EOF or reset) within `limit`.
  bool closed_within(std::chrono::steady_clock::duration limit) {
    char byte;
    boost::system::error_code ec;
    bool done = false;
    socket_.async_read_some(asio::buffer(&byte, 1), [&](boost::system::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    return wait(done, limit) && ec;
  }

 private:
  bool wait(const bool& done, std::chrono::steady_clock::duration limit = client_patience) {
    io_.restart();
    io_.run_for(limit);
    if (done) return true;
    socket_.cancel();
    io_.restart();
    io_.run();
    return false;
  }

  asio::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

http_endpoint_settings test_settings() {
  http_endpoint_settings s;
  s.listen = "127.0.0.1:0";
  return s;
}

class HttpEndpoint : public ::testing::Test {
 protected:
  HttpEndpoint() {
    reg_.add_counter_family("mxguard_rejects_total", "Refused transactions.", {"stage"})
        .with({"rcpt"})
        .inc(2);
  }

  void start(http_endpoint_settings settings = test_settings()) {
    endpoint_ = std::make_unique<http_endpoint>(io_, std::move(settings), reg_, [this] {
      return readiness{ready_.load(), "dnsbl: no resolver answers"};
    });
    endpoint_->start();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (endpoint_) endpoint_->stop();
    // run() returns only once stop() has ended the accept loop and every connection.
    if (thread_.joinable()) thread_.join();
  }

  std::uint16_t port() const { return endpoint_->port(); }

  asio::io_context io_;
  registry reg_;
  std::atomic<bool> ready_{true};
  std::unique_ptr<http_endpoint> endpoint_;
  std::thread thread_;
};

const char* const want_metrics =
    "# HELP mxguard_rejects_total Refused transactions.\n"
    "# TYPE mxguard_rejects_total counter\n"
    "mxguard_rejects_total{stage=\"rcpt\"} 2\n";

TEST_F(HttpEndpoint, ScrapeMetrics) {
  start();
  ASSERT_NE(port(), 0);
  client c(port());
  auto res = c.get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), http::status::ok);
  EXPECT_EQ((*res)[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res->body(), want_metrics);

  // Scraped again on the same connection: values are read at each scrape.
  reg_.add_gauge("late", "").set(1);
  auto again = c.get("/metrics?name[]=ignored");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body(), std::string(want_metrics) + "# TYPE late gauge\nlate 1\n");
}

TEST_F(HttpEndpoint, HeadSendsLengthWithoutBody) {
  start();
  client c(port());
  auto res = c.get("/metrics", "HEAD");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), http::status::ok);
  EXPECT_EQ((*res)[http::field::content_length], std::to_string(std::string(want_metrics).size()));
  EXPECT_EQ(res->body(), "");
  // The connection is still in step: nothing of a body was sent.
  auto next = c.get("/healthz");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body(), "ok\n");
}

TEST_F(HttpEndpoint, HealthAndReadiness) {
  start();
  client c(port());
  auto health = c.get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->result(), http::status::ok);
  EXPECT_EQ(health->body(), "ok\n");

  auto ready = c.get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->result(), http::status::ok);
  EXPECT_EQ(ready->body(), "ready\n");

  ready_ = false;
  auto not_ready = c.get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->result(), http::status::service_unavailable);
  EXPECT_EQ(not_ready->body(), "dnsbl: no resolver answers\n");
}

TEST_F(HttpEndpoint, UnknownPathsAndMethods) {
  struct row {
    const char* label;
    std::string method;
    std::string target;
    http::status want;
  };
  const row rows[] = {
      {"unknown path", "GET", "/", http::status::not_found},
      {"prefix of a path", "GET", "/metricsx", http::status::not_found},
      {"unknown path, other method", "DELETE", "/nope", http::status::not_found},
      {"POST metrics", "POST", "/metrics", http::status::method_not_allowed},
      {"PUT healthz", "PUT", "/healthz", http::status::method_not_allowed},
      {"unknown method", "BREW", "/readyz", http::status::method_not_allowed},
  };
  start();
  client c(port());  // one keep-alive connection for all: errors keep it usable
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto res = c.get(r.target, r.method);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result(), r.want);
    if (r.want == http::status::method_not_allowed) {
      EXPECT_EQ((*res)[http::field::allow], "GET, HEAD");
    }
  }
}

TEST_F(HttpEndpoint, OversizedHeaderRefusedAndServerLives) {
  auto settings = test_settings();
  settings.max_header_bytes = 1024;
  start(settings);
  {
    client c(port());
    c.send("GET /metrics HTTP/1.1\r\nHost: test\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
    // A 431 is the polite answer; a reset that overtakes it (the unread
    // request bytes make the kernel send RST on close) is fine too.
    auto res = c.read();
    if (res) {
      EXPECT_EQ(res->result(), http::status::request_header_fields_too_large);
    }
    EXPECT_TRUE(c.closed_within(client_patience));
  }
  client after(port());
  auto res = after.get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), http::status::ok);
}

TEST_F(HttpEndpoint, MalformedRequestGets400) {
  start();
  client c(port());
  c.send("GET /metrics HTTP/9.9 nonsense\r\n\r\n");
  auto res = c.read();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), http::status::bad_request);
  EXPECT_TRUE(c.closed_within(client_patience));
}

TEST_F(HttpEndpoint, SlowClientDroppedAfterReadTimeout) {
  auto settings = test_settings();
  settings.read_timeout = 300ms;
  start(settings);
  client slow(port());
  slow.send("GET /metrics HTTP/1.1\r\nHo");  // and never the rest
  const auto began = std::chrono::steady_clock::now();
  EXPECT_TRUE(slow.closed_within(client_patience));
  EXPECT_GE(std::chrono::steady_clock::now() - began, 250ms);

  // An idle keep-alive connection ends the same way.
  client idle(port());
  ASSERT_TRUE(idle.get("/healthz"));
  EXPECT_TRUE(idle.closed_within(client_patience));
}

TEST_F(HttpEndpoint, ConnectionCapRefusesTheExtraOne) {
  auto settings = test_settings();
  settings.max_connections = 2;
  start(settings);
  auto first = std::make_unique<client>(port());
  client second(port());
  ASSERT_TRUE(first->get("/healthz"));  // both accepted and counted
  ASSERT_TRUE(second.get("/healthz"));

  client third(port());
  auto refused = third.read();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->result(), http::status::service_unavailable);
  EXPECT_TRUE(third.closed_within(client_patience));

  // A slot comes back when a connection ends; the server sees that EOF on
  // its own schedule, so poll for it with a bound.
  first.reset();
  bool served = false;
  for (int i = 0; i < 200 && !served; ++i) {
    client next(port());
    auto res = next.get("/healthz");
    served = res && res->result() == http::status::ok;
    if (!served) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(served);
}

TEST_F(HttpEndpoint, StopClosesAcceptorAndConnections) {
  start();
  client c(port());
  ASSERT_TRUE(c.get("/healthz"));
  endpoint_->stop();  // from another thread than the io_context's
  EXPECT_TRUE(c.closed_within(client_patience));
  thread_.join();  // run() ran out of work: nothing of the endpoint is left pending
  EXPECT_THROW(client{port()}, boost::system::system_error);  // refused
}

TEST_F(HttpEndpoint, ListenAddresses) {
  {
    http_endpoint bad(io_, http_endpoint_settings{.listen = "localhost:9100"}, reg_);
    EXPECT_THROW(bad.start(), std::invalid_argument);  // names are not resolved
  }
  {
    http_endpoint bad(io_, http_endpoint_settings{.listen = "127.0.0.1"}, reg_);
    EXPECT_THROW(bad.start(), std::invalid_argument);
  }
  auto settings = test_settings();
  settings.listen = "[::1]:0";
  try {
    start(settings);
  } catch (const std::system_error& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  EXPECT_TRUE(endpoint_->local_endpoint().address().is_v6());
  client c(port(), "::1");
  auto res = c.get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), http::status::ok);
}

}  // namespace
}  // namespace mxguard::ops
