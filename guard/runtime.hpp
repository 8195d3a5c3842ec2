// The daemon's shared state: the current configuration snapshot (swapped on
// SIGHUP), the admission counters, and process-wide budgets.
//
// A session takes the snapshot once, at accept, and keeps it for its life, so
// a reload never changes the rules under a transaction in progress.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <boost/asio/ssl/context.hpp>

#include "admission.hpp"
#include "blocklist.hpp"
#include "config.hpp"
#include "limit_check.hpp"
#include "live_sessions.hpp"
#include "mxguard/dnsbl/dnsbl.hpp"
#include "mxguard/ops/metrics.hpp"
#include "mxguard/scan/scanner.hpp"
#include "observe.hpp"
#include "policy.hpp"

namespace mxguard::guard {

struct runtime_snapshot {
  std::shared_ptr<const config> cfg;
  std::shared_ptr<boost::asio::ssl::context> server_tls;  // null: STARTTLS not offered
  std::shared_ptr<const policy_chain> policy;
  std::shared_ptr<dnsbl::engine> dnsbl;  // null when no lists are configured
  std::shared_ptr<limit_check> limits;   // null when no limit and no greylisting is on
};

// Builds everything a snapshot holds from a validated config (TLS contexts
// load their files here; a failure is a config_error). The DNSBL engine, and
// so its cache, is taken over from `previous` when [dnsbl] did not change.
// `store` is the daemon's state store, kept across reloads (null: a fresh
// embedded one, for --check-config).
std::shared_ptr<const runtime_snapshot> make_snapshot(
    std::shared_ptr<const config> cfg, std::shared_ptr<const runtime_snapshot> previous = nullptr,
    std::shared_ptr<ratelimit::state_store> store = nullptr);

// Runs the engine's RFC 5782 health checks every dnsbl.health_interval for
// as long as the engine exists (a reload that replaces it ends the loop).
boost::asio::awaitable<void> dnsbl_health_loop(std::weak_ptr<dnsbl::engine> engine);

class daemon_state {
 public:
  daemon_state();

  std::shared_ptr<const runtime_snapshot> current() const { return current_.load(); }
  void install(std::shared_ptr<const runtime_snapshot> next) { current_.store(std::move(next)); }

  admission& slots() { return slots_; }
  boost::asio::ssl::context& relay_tls() { return relay_tls_; }
  std::uint64_t next_session_number() { return session_counter_.fetch_add(1) + 1; }

  // Rate limits and greylisting state, for the life of the process.
  std::shared_ptr<ratelimit::state_store> store;

  // The scan pool, when [scan] signatures was set at start (its engine is
  // replaced on reload; the pool itself lives as long as the process).
  std::shared_ptr<scan::scanner> scanner;

  // Metrics of this daemon (served by [metrics] listen) and the one place
  // that counts decisions into them and into the statistics.
  ops::registry& metrics() { return metrics_; }
  // The shared blocklist, its auto-block rules and its publishers.
  blocklist& blocks() { return blocks_; }
  observer& observe() { return observer_; }

  // Whether the last attempt to open a next-hop connection succeeded (for
  // /readyz): true until one fails.
  std::atomic<bool>& next_hop_reachable() { return next_hop_reachable_; }

  // Set by `mxguardctl drain`: sessions between transactions close at their
  // next command instead of being waited for until they time out.
  std::atomic<bool>& draining() { return draining_; }
  // Every session, for the drain to wake those waiting for a command.
  live_sessions& sessions() { return sessions_; }

  // Message bytes held by all sessions and the scans they handed messages
  // to (server.max_buffered_bytes).
  std::atomic<std::int64_t>& buffered_bytes() { return *buffered_bytes_; }
  // `message` holding `reserved` bytes of that budget until its last owner
  // lets go: a scan a session stopped waiting for still counts.
  std::shared_ptr<const std::string> budgeted(std::string message, std::int64_t reserved);

 private:
  void register_gauges();

  std::atomic<std::shared_ptr<const runtime_snapshot>> current_;
  ops::registry metrics_;
  observer observer_{metrics_};
  blocklist blocks_;
  admission slots_;
  boost::asio::ssl::context relay_tls_;
  std::atomic<std::uint64_t> session_counter_{0};
  // Shared with the messages that carry a part of it, which may outlive us
  // in a scan queue.
  std::shared_ptr<std::atomic<std::int64_t>> buffered_bytes_ =
      std::make_shared<std::atomic<std::int64_t>>(0);
  std::atomic<bool> next_hop_reachable_{true};
  std::atomic<bool> draining_{false};
  live_sessions sessions_;
};

}  // namespace mxguard::guard
