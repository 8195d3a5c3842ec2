// mxguard::ops HTTP endpoint: /metrics for Prometheus, /healthz and /readyz
// for orchestrators and balancers.
//
//   GET|HEAD /metrics  200, registry text (prometheus_content_type)
//   GET|HEAD /healthz  200 "ok\n"          (the event loop answers at all)
//   GET|HEAD /readyz   200 "ready\n", or 503 with the readiness reason
//   other paths 404; other methods on these paths 405; a header block over
//   the limit 431; a malformed request 400; past the connection cap 503.
//
// HTTP/1.1 with keep-alive, on Boost.Beast. Runs on the io_context it is
// given (a control context, not an SMTP worker: a scrape renders the whole
// registry on that thread). All its state lives on one strand, so that
// context may be run by any number of threads. Errors are logged with
// ops::log_message; nothing is thrown out of the io_context.
//
// Untrusted input: meant for a private network, but bounded anyway: header
// size, total time to read one request and to write one response, number of
// connections. An idle keep-alive connection closes after `read_timeout`.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "mxguard/ops/metrics.hpp"

namespace mxguard::ops {

struct readiness {
  bool ready = true;
  std::string reason;  // the 503 body when not ready
};

inline constexpr auto default_http_read_timeout = std::chrono::seconds(10);
inline constexpr auto default_http_write_timeout = std::chrono::seconds(10);
inline constexpr std::size_t default_http_max_header_bytes = 8192;
inline constexpr std::size_t default_http_max_connections = 16;

struct http_endpoint_settings {
  std::string listen = "127.0.0.1:9465";  // "host:port" or "[v6]:port"; port 0 picks one
  // Whole request, from the end of the previous response (or the accept).
  std::chrono::milliseconds read_timeout = default_http_read_timeout;
  // Whole response: a scraper that stops reading is dropped.
  std::chrono::milliseconds write_timeout = default_http_write_timeout;
  std::size_t max_header_bytes = default_http_max_header_bytes;
  std::size_t max_connections = default_http_max_connections;
};

class http_endpoint {
 public:
  // `reg` and `ready` are used on the io_context's threads until stop() has
  // taken effect; `reg` must outlive the endpoint. `ready` is called for
  // each /readyz on the io_context's thread, so it must be quick and
  // thread-safe; empty means always ready.
  http_endpoint(boost::asio::io_context& io, http_endpoint_settings settings,
                registry& reg = metrics(), std::function<readiness()> ready = {});
  // stop(); must run before the io_context is destroyed.
  ~http_endpoint();
  http_endpoint(const http_endpoint&) = delete;
  http_endpoint& operator=(const http_endpoint&) = delete;

  // Binds and listens at once, then accepts on the io_context. Throws
  // std::invalid_argument on a malformed `listen` and std::system_error when
  // it cannot listen: both are start-up configuration errors.
  void start();
  // The bound address (the real port when `listen` asked for port 0).
  boost::asio::ip::tcp::endpoint local_endpoint() const { return local_; }
  std::uint16_t port() const { return local_.port(); }

  // Closes the acceptor and every open connection. Callable from any thread;
  // takes effect on the endpoint's strand, so from another thread it is done
  // once the io_context has run that handler. Idempotent.
  void stop();

  struct state;  // shared with the connection coroutines

 private:
  std::shared_ptr<state> state_;
  boost::asio::ip::tcp::endpoint local_;
};

}  // namespace mxguard::ops
