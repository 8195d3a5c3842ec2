#include "mxguard/ops/http_endpoint.hpp"

#include <exception>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <unordered_set>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "mxguard/net.hpp"
#include "mxguard/ops/log.hpp"

namespace mxguard::ops {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

struct http_endpoint::state {
  state(asio::io_context& io, http_endpoint_settings s, registry& r, std::function<readiness()> f)
      : strand(asio::make_strand(io)),
        acceptor(strand),
        settings(std::move(s)),
        reg(r),
        ready(std::move(f)) {}

  asio::strand<asio::io_context::executor_type> strand;
  tcp::acceptor acceptor;
  const http_endpoint_settings settings;
  registry& reg;
  const std::function<readiness()> ready;

  // Touched on the strand only.
  std::size_t active = 0;
  std::unordered_set<beast::tcp_stream*> open;
  bool stopped = false;
};

namespace {

using state = http_endpoint::state;
using request = http::request<http::empty_body>;
using response = http::response<http::string_body>;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto accept_backoff = std::chrono::milliseconds(100);
// Room past the header limit, so that the parser's header_limit (431) trips
// before the buffer's own limit does.
constexpr std::size_t buffer_slack = 1024;
constexpr unsigned http_1_1 = 11;  // for answers to requests too broken to have a version

std::string endpoint_text(const tcp::endpoint& e) {
  return e.address().is_v6() ? fmt::format("[{}]:{}", e.address().to_string(), e.port())
                             : fmt::format("{}:{}", e.address().to_string(), e.port());
}

void log_connection(severity level, std::string_view word, const std::string& peer,
                    std::string_view reason) {
  event(word, level).add("peer", peer).add("reason", reason).emit();
}

void log_exception(std::string_view word, std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    log_message(severity::error, word, x.what());
  } catch (...) {
    log_message(severity::error, word, "unknown exception");
  }
}

response make_response(http::status status, unsigned version, bool keep_alive, bool head,
                       std::string body,
                       std::string_view content_type = "text/plain; charset=utf-8") {
  response res(status, version);
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(keep_alive);
  if (head) {
    // HEAD announces the length GET would send, and sends nothing.
    res.content_length(body.size());
  } else {
    res.body() = std::move(body);
    res.prepare_payload();
  }
  return res;
}

response respond(const request& req, const state& s) {
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  const bool head = req.method() == http::verb::head;
  const bool keep = req.keep_alive();
  const unsigned version = req.version();

  if (target != "/metrics" && target != "/healthz" && target != "/readyz")
    return make_response(http::status::not_found, version, keep, head, "not found\n");
  if (req.method() != http::verb::get && !head) {
    auto res =
        make_response(http::status::method_not_allowed, version, keep, false, "GET or HEAD\n");
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  if (target == "/metrics")
    return make_response(http::status::ok, version, keep, head, s.reg.render(),
                         prometheus_content_type);
  if (target == "/healthz") return make_response(http::status::ok, version, keep, head, "ok\n");
  readiness r = s.ready ? s.ready() : readiness{};
  if (r.ready) return make_response(http::status::ok, version, keep, head, "ready\n");
  return make_response(http::status::service_unavailable, version, keep, head, r.reason + "\n");
}

// Counts a connection from accept to the end of its coroutine, whichever
// path ends it; taken in the accept loop so the cap check cannot race.
class connection_slot {
 public:
  explicit connection_slot(std::shared_ptr<state> s) : s_(std::move(s)) { ++s_->active; }
  connection_slot(connection_slot&& o) noexcept : s_(std::move(o.s_)) {}
  connection_slot& operator=(connection_slot&&) = delete;
  ~connection_slot() {
    if (s_) --s_->active;
  }

 private:
  std::shared_ptr<state> s_;
};

// Lets stop() reach the stream while the coroutine owns it.
class registration {
 public:
  registration(state& s, beast::tcp_stream& stream) : s_(s), stream_(&stream) {
    s_.open.insert(stream_);
  }
  registration(const registration&) = delete;
  registration& operator=(const registration&) = delete;
  ~registration() { s_.open.erase(stream_); }

 private:
  state& s_;
  beast::tcp_stream* stream_;
};

bool is_http_parse_error(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category();
}

asio::awaitable<void> serve(std::shared_ptr<state> s, connection_slot slot, tcp::socket socket) {
  if (s->stopped) co_return;  // stop() ran between accept and this coroutine's start
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) co_return;  // already gone
  const std::string peer = endpoint_text(remote);
  beast::tcp_stream stream(std::move(socket));
  registration reg(*s, stream);
  beast::flat_buffer buffer(s->settings.max_header_bytes + buffer_slack);

  // stop() may close the stream while a completed write is still queued for
  // this coroutine; the next read would then fail with EBADF, not abort.
  while (!s->stopped) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(s->settings.max_header_bytes));
    stream.expires_after(s->settings.read_timeout);
    auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);

    response res;
    if (!rec) {
      try {
        res = respond(parser.get(), *s);
      } catch (const std::exception& e) {
        log_connection(severity::error, "HTTP_ERROR", peer, e.what());
        res = make_response(http::status::internal_server_error, parser.get().version(), false,
                            false, "internal error\n");
      }
    } else if (rec == http::error::header_limit || rec == http::error::buffer_overflow) {
      log_connection(severity::warning, "HTTP_REFUSED", peer, "request header too large");
      res = make_response(http::status::request_header_fields_too_large, http_1_1, false, false,
                          "request header too large\n");
    } else if (rec == http::error::end_of_stream || rec == http::error::partial_message ||
               rec == asio::error::operation_aborted) {
      break;  // the client left, or stop() closed the stream
    } else if (is_http_parse_error(rec)) {
      log_connection(severity::warning, "HTTP_REFUSED", peer, rec.message());
      res = make_response(http::status::bad_request, http_1_1, false, false, "bad request\n");
    } else {
      // An idle keep-alive connection timing out is the normal end of a
      // scraper's connection; only a request left half-sent is worth a line.
      if (rec != beast::error::timeout || parser.got_some())
        log_connection(severity::warning, "HTTP_DROPPED", peer, rec.message());
      break;
    }

    stream.expires_after(s->settings.write_timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    if (wec) {
      if (wec != asio::error::operation_aborted && !s->stopped)
        log_connection(severity::warning, "HTTP_DROPPED", peer, wec.message());
      break;
    }
    if (!res.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.close();
}

// Refused before a coroutine exists: a fresh socket's send buffer is empty,
// so this short write cannot block.
void refuse_now(tcp::socket& socket) {
  static constexpr std::string_view reply =
      "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(reply), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

asio::awaitable<void> accept_loop(std::shared_ptr<state> s) {
  for (;;) {
    auto [ec, socket] = co_await s->acceptor.async_accept(use_tuple);
    if (s->stopped || ec == asio::error::operation_aborted || !s->acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: back off instead of spinning on the error.
      log_message(severity::warning, "HTTP_ACCEPT_ERROR", ec.message());
      asio::steady_timer pause(s->strand, accept_backoff);
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (s->active >= s->settings.max_connections) {
      boost::system::error_code pec;
      auto remote = socket.remote_endpoint(pec);
      log_connection(severity::warning, "HTTP_REFUSED",
                     pec ? std::string("?") : endpoint_text(remote), "too many connections");
      refuse_now(socket);
      continue;
    }
    connection_slot slot(s);
    asio::co_spawn(s->strand, serve(s, std::move(slot), std::move(socket)),
                   [](std::exception_ptr e) {
                     if (e) log_exception("HTTP_ERROR", e);
                   });
  }
}

}  // namespace

http_endpoint::http_endpoint(asio::io_context& io, http_endpoint_settings settings, registry& reg,
                             std::function<readiness()> ready)
    : state_(std::make_shared<state>(io, std::move(settings), reg, std::move(ready))) {}

http_endpoint::~http_endpoint() {
  stop();
}

void http_endpoint::start() {
  const auto& listen = state_->settings.listen;
  auto hp = parse_host_port(listen);
  boost::system::error_code ec;
  asio::ip::address address;
  if (hp) address = asio::ip::make_address(hp->host, ec);
  if (!hp || ec) throw std::invalid_argument("metrics listen address is not host:port: " + listen);
  const tcp::endpoint endpoint(address, hp->port);

  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) local_ = acceptor.local_endpoint(ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    throw std::system_error(ec, "listen " + listen);
  }
  asio::co_spawn(state_->strand, accept_loop(state_), [](std::exception_ptr e) {
    if (e) log_exception("HTTP_ACCEPT_LOOP", e);
  });
}

void http_endpoint::stop() {
  asio::dispatch(state_->strand, [s = state_] {
    s->stopped = true;
    boost::system::error_code ec;
    s->acceptor.close(ec);
    // Each connection's pending read or write ends with operation_aborted,
    // and its coroutine unwinds; the set is not changed before that runs.
    for (auto* stream : s->open) stream->close();
  });
}

}  // namespace mxguard::ops
