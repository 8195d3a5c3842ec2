#include "runtime.hpp"

#include <chrono>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "dnsbl_check.hpp"
#include "header_rule_check.hpp"

namespace mxguard::guard {

std::shared_ptr<const runtime_snapshot> make_snapshot(
    std::shared_ptr<const config> cfg, std::shared_ptr<const runtime_snapshot> previous,
    std::shared_ptr<ratelimit::state_store> store) {
  auto snap = std::make_shared<runtime_snapshot>();
  if (!cfg->values.tls.cert.empty()) {
    auto tls = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
    tls->set_options(boost::asio::ssl::context::default_workarounds |
                     boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                     boost::asio::ssl::context::no_tlsv1 | boost::asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    tls->use_certificate_chain_file(cfg->values.tls.cert, ec);
    if (ec) throw config_error(cfg->values.tls.cert + ": tls.cert: " + ec.message());
    tls->use_private_key_file(cfg->values.tls.key, boost::asio::ssl::context::pem, ec);
    if (ec) throw config_error(cfg->values.tls.key + ": tls.key: " + ec.message());
    snap->server_tls = std::move(tls);
  }
  if (cfg->dnsbl_enabled || cfg->client_names_wanted()) {
    if (previous && previous->dnsbl && previous->cfg->values.dnsbl == cfg->values.dnsbl)
      snap->dnsbl = previous->dnsbl;
    else
      snap->dnsbl = std::make_shared<dnsbl::engine>(cfg->dnsbl);
  }
  auto policy = std::make_shared<policy_chain>();
  // Cheapest first: the rate limits answer from memory, the DNS lists may wait.
  if (cfg->limits.any() || cfg->values.greylist.enabled) {
    if (!store)
      store = ratelimit::make_embedded_store(static_cast<std::size_t>(cfg->values.limits.max_keys));
    snap->limits = std::make_shared<limit_check>(store, cfg, snap->dnsbl);
    policy->add(snap->limits);
  }
  if (cfg->dnsbl_enabled) policy->add(std::make_shared<dnsbl_check>(snap->dnsbl, cfg));
  if (cfg->header_rules.size() > 0 || cfg->body_rules.size() > 0)
    policy->add(std::make_shared<header_rule_check>(cfg));
  snap->policy = std::move(policy);
  snap->cfg = std::move(cfg);
  return snap;
}

// Values that live elsewhere, read when Prometheus scrapes.
void daemon_state::register_gauges() {
  ops::add_process_metrics(metrics_);
  metrics_.add_gauge_callback("mxguard_sessions_open", "SMTP sessions open now.",
                              [this] { return static_cast<double>(slots_.sessions()); });
  metrics_.add_gauge_callback(
      "mxguard_buffered_bytes", "Message bytes held by all sessions (server.max_buffered_bytes).",
      [this] { return static_cast<double>(buffered_bytes_->load(std::memory_order_relaxed)); });
  metrics_.add_gauge_callback("mxguard_blocklist_entries", "Entries on the blocklist.",
                              [this] { return static_cast<double>(blocks_.size()); });
  metrics_.add_counter_callback("mxguard_auto_blocks_total",
                                "Clients this instance blocked by an auto-block rule.",
                                [this] { return static_cast<double>(blocks_.auto_blocks()); });
  metrics_.add_counter_callback(
      "mxguard_auto_blocks_skipped_total",
      "Auto-blocks not made because the blocklist was at blocklist.max_entries.",
      [this] { return static_cast<double>(blocks_.auto_blocks_skipped()); });
  metrics_.add_gauge_callback(
      "mxguard_scan_queue_depth", "Messages waiting for a scan thread.",
      [this] { return scanner ? static_cast<double>(scanner->queued()) : 0.0; });
  metrics_.add_gauge_callback("mxguard_scan_busy_workers", "Scan threads scanning now.", [this] {
    return scanner ? static_cast<double>(scanner->busy()) : 0.0;
  });
  metrics_.add_gauge_callback("mxguard_scan_signatures", "Signatures of the engine in use.",
                              [this] {
                                auto e = scanner ? scanner->current() : nullptr;
                                return e ? static_cast<double>(e->signatures()) : 0.0;
                              });
  metrics_.add_counter_callback(
      "mxguard_scan_reload_failures_total", "Signature reloads that failed (old engine kept).",
      [this] { return scanner ? static_cast<double>(scanner->counters().reload_failures) : 0.0; });
  metrics_.add_gauge_callback("mxguard_redis_up",
                              "1 when Redis answers, 0 when it does not (or is not configured).",
                              [this] {
                                if (!store) return 0.0;
                                auto h = store->health();
                                return h.remote && h.up ? 1.0 : 0.0;
                              });
  metrics_.add_counter_callback("mxguard_redis_calls_total", "Redis commands sent.", [this] {
    return store ? static_cast<double>(store->health().calls) : 0.0;
  });
  metrics_.add_counter_callback(
      "mxguard_redis_answered_total", "Redis commands answered in time.",
      [this] { return store ? static_cast<double>(store->health().answered) : 0.0; });
  metrics_.add_counter_callback(
      "mxguard_redis_latency_seconds_total", "Summed latency of the answered Redis commands.",
      [this] { return store ? store->health().latency_seconds_total : 0.0; });
  auto dnsbl_counter = [this](std::string name, std::string help, auto field) {
    metrics_.add_counter_callback(std::move(name), std::move(help), [this, field] {
      auto snap = current();
      return snap && snap->dnsbl ? static_cast<double>((snap->dnsbl->stats().*field).load()) : 0.0;
    });
  };
  using counters = dnsbl::engine::counters;
  dnsbl_counter("mxguard_dnsbl_queries_total", "DNS list lookups asked for (cache included).",
                &counters::queries);
  dnsbl_counter("mxguard_dnsbl_cache_hits_total", "DNS list lookups answered from the cache.",
                &counters::cache_hits);
  dnsbl_counter("mxguard_dnsbl_timeouts_total", "DNS list queries that timed out.",
                &counters::timeouts);
  dnsbl_counter("mxguard_dnsbl_errors_total", "DNS list queries that failed.", &counters::errors);
  metrics_.add_callback_family(
      ops::metric_type::gauge, "mxguard_dnsbl_site_healthy",
      "1 when the list passes its RFC 5782 health check, 0 when it does not.", {"site"}, [this] {
        std::vector<ops::sample> out;
        auto snap = current();
        if (!snap || !snap->dnsbl) return out;
        for (const auto& [domain, healthy] : snap->dnsbl->health_report())
          out.push_back({{domain}, healthy ? 1.0 : 0.0});
        return out;
      });
}

daemon_state::daemon_state() : relay_tls_(boost::asio::ssl::context::tls_client) {
  // Opportunistic TLS towards next hops: encrypt when offered, do not verify
  // (the next hops are ours, addressed by IP; RFC 7435).
  relay_tls_.set_verify_mode(boost::asio::ssl::verify_none);
  relay_tls_.set_options(boost::asio::ssl::context::default_workarounds |
                         boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3);
  // Session ids differ between restarts so that log lines never collide.
  std::random_device rd;
  session_counter_.store((static_cast<std::uint64_t>(rd()) & 0xffff) << 32);
  register_gauges();
}

boost::asio::awaitable<void> dnsbl_health_loop(std::weak_ptr<dnsbl::engine> weak) {
  auto executor = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer timer(executor);
  for (;;) {
    std::chrono::milliseconds interval;
    {
      auto engine = weak.lock();
      if (!engine || engine->config().health_interval.count() <= 0) co_return;
      co_await engine->check_health();
      interval = engine->config().health_interval;
    }
    timer.expires_after(interval);
    auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec) co_return;
  }
}

std::shared_ptr<const std::string> daemon_state::budgeted(std::string message,
                                                          std::int64_t reserved) {
  struct holder {
    holder(std::string t, std::int64_t r, std::shared_ptr<std::atomic<std::int64_t>> b)
        : text(std::move(t)), reserved(r), budget(std::move(b)) {}
    holder(const holder&) = delete;
    holder& operator=(const holder&) = delete;
    ~holder() { budget->fetch_sub(reserved, std::memory_order_relaxed); }
    std::string text;
    std::int64_t reserved;
    std::shared_ptr<std::atomic<std::int64_t>> budget;
  };
  auto held = std::make_shared<holder>(std::move(message), reserved, buffered_bytes_);
  return {held, &held->text};  // aliasing: the string lives as long as its holder
}

}  // namespace mxguard::guard
