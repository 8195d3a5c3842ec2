// Idle next-hop connections of one I/O thread, kept a short while for the
// next session relaying to the same next hops.
//
// Why: a guard relays one or two messages per client session; opening the
// next-hop connection (TCP handshake, banner, EHLO, maybe TLS) for each costs
// the inner server a process or a session and our client a round trip or
// four. Postfix's smtp client keeps connections for 2 s after a delivery
// (smtp_connection_cache_time_limit) for the same reason.
//
// One pool per io_context (an Asio service), used only from that context's
// thread: no locking. A connection is parked only between transactions, and
// checked when taken: one that the next hop closed, or on which it said
// anything unasked (a 421 on its idle timeout), is closed instead of used.
// A parked connection that nobody takes within `idle` gets QUIT.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "smtp_stream.hpp"

namespace mxguard::guard {

struct relay_cache_settings {
  std::chrono::milliseconds idle{0};     // 0 = no caching
  std::chrono::milliseconds max_age{0};  // no reuse after this long since the connect
  std::size_t capacity = 0;              // idle connections per I/O thread
  bool enabled() const { return idle.count() > 0 && capacity > 0; }
};

// A next-hop connection between transactions: the stream after EHLO (and
// STARTTLS) and what its EHLO reply offered.
struct relay_connection {
  std::unique_ptr<smtp_stream> stream;
  std::string peer;  // "ip:port"
  bool has_size = false;
  bool has_8bitmime = false;
  bool has_pipelining = false;
  std::chrono::steady_clock::time_point connected_at;
};

class relay_pool final : public asio::execution_context::service {
 public:
  using key_type = relay_pool;
  static inline asio::execution_context::id id;

  explicit relay_pool(asio::execution_context& owner) : service(owner) {}

  // The pool of the io_context `executor` belongs to.
  static relay_pool& of(const asio::any_io_executor& executor);

  // The most recently parked live connection for `key` (next hops, EHLO
  // name, TLS use), nullopt when there is none.
  std::optional<relay_connection> take(const std::string& key);
  // Parks `c` for `settings.idle`; when the pool is full or `c` is too old,
  // says QUIT to it instead.
  void park(std::string key, relay_connection c, const relay_cache_settings& settings,
            const asio::any_io_executor& executor);

 private:
  struct parked {
    std::string key;
    relay_connection connection;
    std::chrono::steady_clock::time_point expires;
  };

  void shutdown() override;
  void arm_sweep(const asio::any_io_executor& executor);
  asio::awaitable<void> sweep();

  std::vector<parked> idle_;  // oldest first
  std::unique_ptr<asio::steady_timer> sweep_timer_;
  bool sweeping_ = false;
  bool shut_down_ = false;
};

// QUIT with a short deadline, then close: a connection's polite end.
asio::awaitable<void> say_goodbye(std::unique_ptr<smtp_stream> stream);

}  // namespace mxguard::guard
