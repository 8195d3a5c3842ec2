// Rate limits and greylisting as policy, over the state store.
//
// connect: connections per client; MAIL: messages, null-sender messages and
// messages per sender; RCPT: recipients per client, then greylisting. The
// session also reports refused recipients (a directory-harvest signal).
// Trusted and allowlisted clients are not limited.
#pragma once

#include <memory>

#include "config.hpp"
#include "mxguard/dnsbl/dnsbl.hpp"
#include "mxguard/ratelimit/ratelimit.hpp"
#include "policy.hpp"

namespace mxguard::guard {

// This process's name in shared state (leases): random, new at every start.
const std::string& instance_id();

class limit_check final : public stage_check {
 public:
  // `names` (may be null) looks up clients' confirmed names for greylisting.
  limit_check(std::shared_ptr<ratelimit::state_store> store, std::shared_ptr<const config> cfg,
              std::shared_ptr<dnsbl::engine> names = nullptr)
      : store_(std::move(store)), cfg_(std::move(cfg)), names_(std::move(names)) {}
  std::string_view name() const override { return "limits"; }
  bool applies_to(stage s) const override;
  boost::asio::awaitable<verdict> evaluate(stage s, const check_input& input) override;

  // Counts a refused recipient; a verdict (421, close) once the client has
  // refused more than limits.refused_recipients_per_ip.
  boost::asio::awaitable<verdict> count_refused_recipient(const session_facts& session);

  // limits.concurrent_per_ip: a lease for this session (true), or a 421
  // verdict. `release_lease` must follow every lease that was granted.
  boost::asio::awaitable<verdict> acquire_lease(const session_facts& session, bool& granted);
  boost::asio::awaitable<void> release_lease(const session_facts& session);

 private:
  using counter = config::compiled_limits::counter;
  struct counter_set {
    std::vector<ratelimit::rate_key> keys;
    std::vector<std::string> names;  // the rule each key enforces
  };
  std::string client_key(const session_facts& session) const;
  // The client's counters of one kind: the `*_per_ip` one and limits.per_prefix's.
  void add_counters(counter what, const ratelimit::rate& per_ip, std::string_view per_ip_name,
                    std::string_view letter, const session_facts& session, counter_set& out) const;
  boost::asio::awaitable<verdict> greylist(const check_input& input);
  // Who the client is for greylisting: "d:example.com" for a sender known by
  // its confirmed name, else its network.
  boost::asio::awaitable<std::string> greylist_client(const session_facts& session);
  std::shared_ptr<ratelimit::state_store> store_;
  std::shared_ptr<const config> cfg_;
  std::shared_ptr<dnsbl::engine> names_;
};

}  // namespace mxguard::guard
