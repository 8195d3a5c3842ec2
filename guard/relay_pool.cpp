#include "relay_pool.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include "deadline.hpp"

namespace mxguard::guard {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::chrono::milliseconds goodbye_time{2000};

// Nothing to read and not closed: a peek that would block. A FIN reads as 0,
// a reset as an error, and an unasked reply (421 on the next hop's idle
// timeout, a TLS alert) as data; none of these is a connection to send MAIL on.
bool quiet_and_open(smtp_stream& s) {
  char byte;
  auto n = ::recv(s.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

asio::awaitable<void> say_goodbye(std::unique_ptr<smtp_stream> stream) {
  auto written = co_await within(goodbye_time, stream->write_all("QUIT\r\n"));
  if (written && !*written) {
    // Read the 221 so our close does not answer it with a reset.
    char reply[512];
    co_await within(goodbye_time, stream->read_some(asio::buffer(reply)));
  }
  stream->close();
}

relay_pool& relay_pool::of(const asio::any_io_executor& executor) {
  return asio::use_service<relay_pool>(asio::query(executor, asio::execution::context));
}

std::optional<relay_connection> relay_pool::take(const std::string& key) {
  const auto now = clock::now();
  for (auto i = idle_.size(); i-- > 0;) {
    if (idle_[i].key != key) continue;
    auto candidate = std::move(idle_[i]);
    idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
    if (candidate.expires > now && quiet_and_open(*candidate.connection.stream))
      return std::move(candidate.connection);
    candidate.connection.stream->close();
  }
  return std::nullopt;
}

void relay_pool::park(std::string key, relay_connection c, const relay_cache_settings& settings,
                      const asio::any_io_executor& executor) {
  const auto now = clock::now();
  if (shut_down_ || !settings.enabled() || !c.stream || now - c.connected_at >= settings.max_age) {
    if (c.stream) asio::co_spawn(executor, say_goodbye(std::move(c.stream)), asio::detached);
    return;
  }
  if (idle_.size() >= settings.capacity) {
    asio::co_spawn(executor, say_goodbye(std::move(idle_.front().connection.stream)),
                   asio::detached);
    idle_.erase(idle_.begin());
  }
  idle_.push_back({std::move(key), std::move(c), now + settings.idle});
  arm_sweep(executor);
}

void relay_pool::arm_sweep(const asio::any_io_executor& executor) {
  if (sweeping_) return;
  if (!sweep_timer_) sweep_timer_ = std::make_unique<asio::steady_timer>(executor);
  sweeping_ = true;
  asio::co_spawn(executor, sweep(), asio::detached);
}

// Runs while connections are parked: QUIT to each as its idle time ends.
asio::awaitable<void> relay_pool::sweep() {
  auto executor = co_await asio::this_coro::executor;
  while (!idle_.empty() && !shut_down_) {
    auto next = std::min_element(idle_.begin(), idle_.end(), [](const auto& a, const auto& b) {
                  return a.expires < b.expires;
                })->expires;
    sweep_timer_->expires_at(next);
    co_await sweep_timer_->async_wait(use_tuple);
    if (shut_down_) co_return;
    const auto now = clock::now();
    for (auto i = idle_.begin(); i != idle_.end();) {
      if (i->expires > now) {
        ++i;
        continue;
      }
      asio::co_spawn(executor, say_goodbye(std::move(i->connection.stream)), asio::detached);
      i = idle_.erase(i);
    }
  }
  sweeping_ = false;
}

void relay_pool::shutdown() {
  shut_down_ = true;
  for (auto& p : idle_) p.connection.stream->close();
  idle_.clear();
  if (sweep_timer_) sweep_timer_->cancel();
}

}  // namespace mxguard::guard
