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
  if (cfg->dnsbl_enabled) {
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
    snap->limits = std::make_shared<limit_check>(store, cfg);
    policy->add(snap->limits);
  }
  if (snap->dnsbl) policy->add(std::make_shared<dnsbl_check>(snap->dnsbl, cfg));
  if (cfg->header_rules.size() > 0 || cfg->body_rules.size() > 0)
    policy->add(std::make_shared<header_rule_check>(cfg));
  snap->policy = std::move(policy);
  snap->cfg = std::move(cfg);
  return snap;
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

}  // namespace mxguard::guard
