#include "runtime.hpp"

#include <chrono>
#include <random>

#include "header_rule_check.hpp"

namespace mxguard::guard {

std::shared_ptr<const runtime_snapshot> make_snapshot(std::shared_ptr<const config> cfg) {
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
  auto policy = std::make_shared<policy_chain>();
  if (cfg->header_rules.size() > 0) policy->add(std::make_shared<header_rule_check>(cfg));
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

}  // namespace mxguard::guard
