// The zone responder's sockets: one UDP loop and one TCP accept loop per
// listen address, one coroutine per TCP connection, all on the owner's
// io_context. The packets themselves are zone_answerer's (zone_answer.cpp).
#include <exception>
#include <list>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "mxguard/dnsbl/zone.hpp"
#include "mxguard/ops/log.hpp"

namespace mxguard::dnsbl {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Datagrams answered in a row before the UDP loop lets other work on the
// io_context run: under a flood, TCP clients and timers still get their turn.
constexpr int udp_burst = 64;
constexpr auto accept_backoff = std::chrono::milliseconds(100);
constexpr int port_zero_attempts = 20;

// "127.0.0.1:5300", "[::1]:5300".
std::optional<asio::ip::tcp::endpoint> parse_listen(std::string_view text) {
  std::string_view host, port;
  if (text.starts_with('[')) {
    auto close = text.find("]:");
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // v6 needs brackets
  }
  if (port.empty() || port.size() > 5) return std::nullopt;
  unsigned p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    p = p * 10 + static_cast<unsigned>(c - '0');
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address(std::string(host), ec);
  if (ec || p > 65535) return std::nullopt;
  return tcp::endpoint(address, static_cast<unsigned short>(p));
}

void count_reply(zone_counters& c, const std::vector<std::uint8_t>& r) {
  if (r.size() >= 4 && (r[2] & 0x02)) ++c.truncated;
  switch (r.size() >= 4 ? r[3] & 0x0f : -1) {
    case 0:
      ++c.noerror;
      break;
    case 1:
      ++c.formerr;
      break;
    case 2:
      ++c.servfail;
      break;
    case 3:
      ++c.nxdomain;
      break;
    case 4:
      ++c.notimp;
      break;
    case 5:
      ++c.refused;
      break;
    default:
      break;
  }
}

void log_failure(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    ops::log_message(ops::severity::error, "DNSBL_ZONE",
                     std::string("coroutine failed: ") + ex.what());
  } catch (...) {
    ops::log_message(ops::severity::error, "DNSBL_ZONE", "coroutine failed");
  }
}

}  // namespace

namespace detail {

struct zone_state {
  zone_state(asio::io_context& context, zone_settings s, zone_lookup lookup)
      : io(context), answerer(s, std::move(lookup)), settings(std::move(s)) {}

  asio::io_context& io;
  zone_answerer answerer;
  zone_settings settings;
  std::vector<std::unique_ptr<udp::socket>> udp_sockets;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::list<tcp::socket*> connections;  // open TCP connections, closed by stop()
  bool stopped = false;
  zone_counters counters;
};

}  // namespace detail

namespace {

using state_ptr = std::shared_ptr<detail::zone_state>;

// Free coroutines, not members: each holds the state by shared_ptr, so
// destroying the zone_responder while they are suspended is safe.
asio::awaitable<void> serve_udp(state_ptr s, udp::socket& socket) {
  std::vector<std::uint8_t> buffer(65536);  // the largest datagram: never cut a query short
  udp::endpoint peer;
  auto executor = co_await asio::this_coro::executor;
  int burst = 0;
  while (!s->stopped) {
    boost::system::error_code ec;
    // Non-blocking receive first: a busy socket is drained without a trip
    // through the reactor per datagram.
    std::size_t n = socket.receive_from(asio::buffer(buffer), peer, 0, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      burst = 0;
      auto [wec] = co_await socket.async_wait(udp::socket::wait_read, use_tuple);
      if (wec && (s->stopped || wec == asio::error::operation_aborted)) co_return;
      continue;
    }
    if (ec) {
      if (s->stopped || !socket.is_open()) co_return;
      // ICMP errors from earlier sends surface here (connection_refused):
      // they concern a past requester, not this socket.
      continue;
    }
    ++s->counters.queries;
    // Resolvers send from ephemeral ports (or 53). A "query" from another
    // privileged port is a forged source aiming our reply at a UDP service
    // (echo, daytime, chargen, ...) that would answer back: CVE-2024-2169.
    const auto port = peer.port();
    auto reply = port < 1024 && port != 53
                     ? std::nullopt
                     : s->answerer.answer(std::span(buffer.data(), n), zone_transport::udp);
    if (!reply) {
      ++s->counters.dropped;
    } else {
      count_reply(s->counters, *reply);
      // Non-blocking send: with the socket buffer full the answer is dropped
      // and the requester retries, rather than queueing without bound.
      socket.send_to(asio::buffer(*reply), peer, 0, ec);
      if (ec) ++s->counters.dropped;
    }
    if (++burst >= udp_burst) {
      burst = 0;
      co_await asio::post(executor, asio::use_awaitable);
    }
  }
}

asio::awaitable<void> serve_connection(state_ptr s, tcp::socket socket) {
  s->connections.push_front(&socket);
  auto self = s->connections.begin();
  struct unregister {
    state_ptr& s;
    std::list<tcp::socket*>::iterator it;
    ~unregister() { s->connections.erase(it); }
  } guard{s, self};

  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  std::vector<std::uint8_t> query;
  std::vector<std::uint8_t> framed;
  for (;;) {
    // The idle timeout bounds waiting for a query and reading all of it, so a
    // client trickling bytes cannot hold a slot longer than an idle one.
    timer.expires_after(s->settings.tcp_idle_timeout);
    std::uint8_t length[2];
    auto got_length = co_await (asio::async_read(socket, asio::buffer(length), use_tuple) ||
                                timer.async_wait(use_tuple));
    if (got_length.index() == 1 || std::get<0>(std::get<0>(got_length))) break;
    query.resize((std::size_t{length[0]} << 8) | length[1]);
    auto got_body = co_await (asio::async_read(socket, asio::buffer(query), use_tuple) ||
                              timer.async_wait(use_tuple));
    if (got_body.index() == 1 || std::get<0>(std::get<0>(got_body))) break;

    ++s->counters.queries;
    auto reply = s->answerer.answer(std::span(query.data(), query.size()), zone_transport::tcp);
    if (!reply) {
      // The framing is intact, so the connection can go on; the idle
      // timeout ends a client that only sends garbage.
      ++s->counters.dropped;
      continue;
    }
    count_reply(s->counters, *reply);
    framed.resize(reply->size() + 2);
    framed[0] = static_cast<std::uint8_t>(reply->size() >> 8);
    framed[1] = static_cast<std::uint8_t>(reply->size() & 0xff);
    std::copy(reply->begin(), reply->end(), framed.begin() + 2);
    timer.expires_after(s->settings.tcp_idle_timeout);
    auto sent = co_await (asio::async_write(socket, asio::buffer(framed), use_tuple) ||
                          timer.async_wait(use_tuple));
    if (sent.index() == 1 || std::get<0>(std::get<0>(sent))) break;
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

asio::awaitable<void> serve_tcp(state_ptr s, tcp::acceptor& acceptor) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer backoff(executor);
  while (!s->stopped) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (s->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: say so, wait, and keep the listener.
      ops::event("WARN", ops::severity::warning)
          .add("component", "dnsbl_zone")
          .add("error", "accept: " + ec.message())
          .emit();
      backoff.expires_after(accept_backoff);
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    if (s->connections.size() >= s->settings.max_tcp_connections) {
      ++s->counters.tcp_rejected;
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    asio::co_spawn(executor, serve_connection(s, std::move(socket)), log_failure);
  }
}

}  // namespace

zone_responder::zone_responder(asio::io_context& io, zone_settings settings, zone_lookup lookup)
    : state_(std::make_shared<detail::zone_state>(io, std::move(settings), std::move(lookup))) {
  for (const auto& text : state_->settings.listen)
    if (!parse_listen(text))
      throw std::invalid_argument("listen: not an address:port: \"" + text + "\"");
}

zone_responder::~zone_responder() {
  stop();
}

void zone_responder::start() {
  auto& s = *state_;
  std::vector<std::unique_ptr<udp::socket>> udp_sockets;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  for (const auto& text : s.settings.listen) {
    const auto wanted = *parse_listen(text);
    // UDP and TCP on the same port: resolvers fall back from one to the
    // other at the same address. With port 0 the UDP port is picked first,
    // and taken again if TCP finds that port in use.
    for (int attempt = 0;; ++attempt) {
      auto u = std::make_unique<udp::socket>(s.io);
      udp::endpoint uep(wanted.address(), wanted.port());
      u->open(uep.protocol());
      if (uep.address().is_v6()) u->set_option(asio::ip::v6_only(true));
      u->bind(uep);
      const auto port = u->local_endpoint().port();
      auto t = std::make_unique<tcp::acceptor>(s.io);
      tcp::endpoint tep(wanted.address(), port);
      t->open(tep.protocol());
      t->set_option(tcp::acceptor::reuse_address(true));
      if (tep.address().is_v6()) t->set_option(asio::ip::v6_only(true));
      boost::system::error_code ec;
      t->bind(tep, ec);
      if (ec && wanted.port() == 0 && attempt < port_zero_attempts) continue;
      if (ec) throw boost::system::system_error(ec, "dnsbl zone: bind tcp " + text);
      t->listen(asio::socket_base::max_listen_connections);
      u->non_blocking(true);
      udp_sockets.push_back(std::move(u));
      acceptors.push_back(std::move(t));
      break;
    }
  }
  s.stopped = false;
  std::string where;
  for (std::size_t i = 0; i < udp_sockets.size(); ++i) {
    auto ep = udp_sockets[i]->local_endpoint();
    // Appended piece by piece: GCC 12 -O3 warns falsely (-Wrestrict) on "[" + string + "]".
    if (!where.empty()) where += ',';
    if (ep.address().is_v6()) where += '[';
    where += ep.address().to_string();
    if (ep.address().is_v6()) where += ']';
    where += ':';
    where += std::to_string(ep.port());
    asio::co_spawn(s.io, serve_udp(state_, *udp_sockets[i]), log_failure);
    asio::co_spawn(s.io, serve_tcp(state_, *acceptors[i]), log_failure);
  }
  for (auto& u : udp_sockets) s.udp_sockets.push_back(std::move(u));
  for (auto& t : acceptors) s.acceptors.push_back(std::move(t));
  ops::event("DNSBL_ZONE")
      .add("zone", s.settings.zone)
      .add("listen", where)
      .add("transport", "udp,tcp")
      .emit();
}

void zone_responder::stop() {
  auto& s = *state_;
  if (s.stopped && s.udp_sockets.empty()) return;
  s.stopped = true;
  boost::system::error_code ignored;
  for (auto& u : s.udp_sockets) u->close(ignored);
  for (auto& t : s.acceptors) t->close(ignored);
  for (auto* c : s.connections) c->close(ignored);
  // The sockets stay allocated (coroutines may still refer to them until they
  // see the close); the state that owns them goes with the last coroutine.
}

std::vector<udp::endpoint> zone_responder::udp_endpoints() const {
  std::vector<udp::endpoint> out;
  boost::system::error_code ec;
  for (const auto& u : state_->udp_sockets)
    if (auto ep = u->local_endpoint(ec); !ec) out.push_back(ep);
  return out;
}

std::vector<tcp::endpoint> zone_responder::tcp_endpoints() const {
  std::vector<tcp::endpoint> out;
  boost::system::error_code ec;
  for (const auto& t : state_->acceptors)
    if (auto ep = t->local_endpoint(ec); !ec) out.push_back(ep);
  return out;
}

const zone_counters& zone_responder::counters() const {
  return state_->counters;
}

}  // namespace mxguard::dnsbl
