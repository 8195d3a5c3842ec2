#include "server.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mxguard/ops/log.hpp"
#include "proxy_protocol.hpp"
#include "session.hpp"

namespace mxguard::guard {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string endpoint_text(const tcp::endpoint& e) {
  return e.address().is_v6() ? fmt::format("[{}]:{}", e.address().to_string(), e.port())
                             : fmt::format("{}:{}", e.address().to_string(), e.port());
}

// One reply line, then close: used for clients refused before a session
// exists. A fresh socket's send buffer is empty, so the write cannot block;
// if it fails the client learns from the closed connection instead.
void refuse_now(tcp::socket& socket, std::string_view reply) {
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  std::string line(reply);
  line.append("\r\n");
  socket.write_some(asio::buffer(line), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

void log_connect_refusal(const tcp::endpoint& client, const verdict& v, daemon_state& state) {
  ops::event("REJECT")
      .add("stage", "connect")
      .add("rule", v.rule)
      .add("client", endpoint_text(client))
      .add("reply", v.reply)
      .emit();
  state.observe().refused("connect", v.rule, v.reply, client.address().to_string(), {});
  state.observe().connection_refused();
  if (!v.rule.starts_with("blocklist:")) state.blocks().event(v.rule, client.address(), false);
}

// `client_known`: false for a balancer's connection whose PROXY header named
// no client (LOCAL health checks, UNKNOWN): its own address stands in, for
// the caps and the logs, but earns no trust and no access-list OK.
void admit(tcp::socket socket, tcp::endpoint client, daemon_state& state,
           bool client_known = true) {
  auto snapshot = state.current();
  const auto& cfg = *snapshot->cfg;
  const auto address = normalize(client.address());
  // The cheapest refusal first: a blocked client gets one line and is gone.
  if (auto blocked = state.blocks().find(address)) {
    verdict v{action::reject, cfg.values.blocklist.reply, "blocklist:" + blocked->rule};
    log_connect_refusal(client, v, state);
    refuse_now(socket, v.reply);
    return;
  }
  verdict access = cfg.access.check(address);
  if (access.what == action::defer) {
    // 421 means "closing": nothing more to say.
    log_connect_refusal(client, access, state);
    refuse_now(socket, access.reply);
    return;
  }
  verdict refusal;
  auto slot = state.slots().try_acquire(
      address,
      {cfg.values.server.max_sessions, cfg.values.server.max_sessions_per_ip,
       static_cast<unsigned>(cfg.values.server.ipv6_prefix)},
      refusal);
  if (!slot) {
    log_connect_refusal(client, refusal, state);
    refuse_now(socket, refusal.reply);
    return;
  }
  // An access REJECT (554) still gets a session, counted by the caps, to wait
  // for QUIT as RFC 5321 §3.1 requires; the REJECT line is logged there.
  std::optional<verdict> refusal_at_connect;
  if (access.what == action::reject) refusal_at_connect = access;
  start_session(std::move(socket), client, std::move(snapshot), state, std::move(slot),
                client_known && access.what == action::accept, std::move(refusal_at_connect),
                client_known);
}

// Reads the PROXY header a balancer sends first. Peeks, so that not one
// byte of the SMTP dialogue after the header is consumed.
proxy_header invalid_header() {
  proxy_header h;
  h.state = proxy_header::status::invalid;
  return h;
}

asio::awaitable<proxy_header> peek_proxy_header(tcp::socket& socket) {
  // Most headers fit the first size; one with many TLVs grows the buffer.
  std::vector<char> buffer(256);
  proxy_header header;
  for (;;) {
    auto [wec] = co_await socket.async_wait(tcp::socket::wait_read, use_tuple);
    if (wec) co_return invalid_header();
    boost::system::error_code ec;
    auto n = socket.receive(asio::buffer(buffer), tcp::socket::message_peek, ec);
    if (ec || n == 0) co_return invalid_header();
    header = parse_proxy_header(std::string_view(buffer.data(), n));
    if (header.state != proxy_header::status::incomplete) co_return header;
    if (n == buffer.size()) {
      if (buffer.size() >= proxy_header_max) co_return invalid_header();
      buffer.resize(std::min(proxy_header_max, buffer.size() * 16));
      continue;  // more is there already
    }
    // Not all of it has arrived yet: wait a little rather than spin on peek.
    asio::steady_timer pause(socket.get_executor(), std::chrono::milliseconds(5));
    co_await pause.async_wait(use_tuple);
  }
}

// Reads the PROXY header a balancer sends first. Peeks, so that not one
// byte of the SMTP dialogue after the header is consumed.
asio::awaitable<void> read_proxy_header(tcp::socket socket, tcp::endpoint peer, daemon_state& state,
                                        duration timeout) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer deadline(socket.get_executor(), timeout);
  auto outcome = co_await (peek_proxy_header(socket) || deadline.async_wait(use_tuple));
  proxy_header header;
  if (outcome.index() == 0) header = std::get<0>(outcome);
  if (header.state != proxy_header::status::ok) {
    const char* rule = outcome.index() == 0 ? "proxy_protocol" : "proxy_protocol_timeout";
    ops::event("REJECT")
        .add("stage", "proxy")
        .add("rule", rule)
        .add("client", endpoint_text(peer))
        .emit();
    state.observe().refused("proxy", rule, "", peer.address().to_string(), {});
    state.observe().connection_refused();
    boost::system::error_code ec;
    socket.close(ec);
    co_return;
  }
  std::vector<char> consumed(header.length);
  boost::system::error_code ec;
  asio::read(socket, asio::buffer(consumed), ec);  // exactly the header, peeked whole before
  if (ec) co_return;
  admit(std::move(socket), header.source.value_or(peer), state, header.source.has_value());
}

}  // namespace

struct server::worker {
  asio::io_context io{1};
  std::vector<tcp::acceptor> acceptors;
};

server::server(daemon_state& state) : state_(state) {}
server::~server() {
  stop();
}

namespace {

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, daemon_state& state) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: out of descriptors or memory. Log and back off
      // instead of spinning; the sessions that end will free some.
      ops::log_message(ops::severity::warning, "ACCEPT_ERROR", ec.message());
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    boost::system::error_code pec;
    auto peer = socket.remote_endpoint(pec);
    if (pec) continue;  // already gone
    auto snapshot = state.current();
    bool from_balancer = false;
    for (const auto& n : snapshot->cfg->proxy_networks)
      if (n.contains(peer.address())) from_balancer = true;
    if (from_balancer) {
      auto executor = socket.get_executor();
      asio::co_spawn(executor,
                     read_proxy_header(std::move(socket), peer, state,
                                       snapshot->cfg->values.server.proxy_protocol_timeout),
                     [](std::exception_ptr e) {
                       if (e) ops::log_message(ops::severity::error, "PROXY_ERROR", "exception");
                     });
      continue;
    }
    // One connection's failure (an allocation, a socket error thrown) is
    // that connection's: the loop goes on, or this worker's listener would
    // take its share of new connections and never answer them.
    try {
      admit(std::move(socket), peer, state);
    } catch (const std::exception& e) {
      ops::log_message(ops::severity::error, "ACCEPT_ERROR",
                       fmt::format("{}: {}", endpoint_text(peer), e.what()));
    }
  }
}

}  // namespace

namespace {

// SO_REUSEPORT lets any process of the same user bind a port already in use
// and take a share of its connections: a second mxguard started by mistake
// would serve half the clients, with its own configuration, silently. A
// bind without it first fails while anyone listens there.
void refuse_if_in_use(const tcp::endpoint& endpoint, const std::string& text) {
  asio::io_context probe_io;
  tcp::acceptor probe(probe_io);
  boost::system::error_code ec;
  probe.open(endpoint.protocol(), ec);
  if (!ec) probe.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && endpoint.address().is_v6()) probe.set_option(asio::ip::v6_only(true), ec);
  if (!ec) probe.bind(endpoint, ec);
  if (ec == asio::error::address_in_use)
    throw std::system_error(ec, "listen " + text + " (another process listens there)");
}

}  // namespace

void server::start(unsigned workers) {
  auto snapshot = state_.current();
  for (const auto& text : snapshot->cfg->values.server.listen) {
    auto hp = parse_host_port(text);
    refuse_if_in_use(tcp::endpoint(asio::ip::make_address(hp->host), hp->port), text);
  }
  for (unsigned i = 0; i < workers; ++i) {
    auto w = std::make_unique<worker>();
    for (const auto& text : snapshot->cfg->values.server.listen) {
      auto hp = parse_host_port(text);
      tcp::endpoint endpoint(asio::ip::make_address(hp->host), hp->port);
      tcp::acceptor acceptor(w->io);
      boost::system::error_code ec;
      acceptor.open(endpoint.protocol(), ec);
      if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) {
        int one = 1;
        if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
          ec.assign(errno, boost::system::system_category());
      }
      if (!ec && endpoint.address().is_v6()) acceptor.set_option(asio::ip::v6_only(true), ec);
      if (!ec) acceptor.bind(endpoint, ec);
      if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) throw std::system_error(ec, "listen " + text);
      w->acceptors.push_back(std::move(acceptor));
    }
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    for (auto& acceptor : w->acceptors)
      asio::co_spawn(w->io, accept_loop(acceptor, state_), [](std::exception_ptr e) {
        if (e) ops::log_message(ops::severity::error, "ACCEPT_LOOP", "ended by exception");
      });
  }
  for (auto& w : workers_) threads_.emplace_back([&io = w->io] { io.run(); });
}

void server::stop_accepting() {
  for (auto& w : workers_)
    asio::post(w->io, [&w = *w] {
      for (auto& a : w.acceptors) {
        boost::system::error_code ec;
        a.close(ec);
      }
    });
}

void server::stop() {
  for (auto& w : workers_) {
    asio::post(w->io, [&w = *w] {
      for (auto& a : w.acceptors) {
        boost::system::error_code ec;
        a.close(ec);
      }
    });
    w->io.stop();
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  workers_.clear();
}

}  // namespace mxguard::guard
