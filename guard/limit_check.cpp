#include "limit_check.hpp"

#include <random>

#include <fmt/format.h>

#include "mxguard/ops/log.hpp"

namespace mxguard::guard {

namespace {

std::int64_t seconds_up(ratelimit::millis ms) {
  return (ms + 999) / 1000;
}

verdict refusal(action what, std::string rule, std::string reply) {
  verdict v;
  v.what = what;
  v.rule = std::move(rule);
  v.reply = std::move(reply);
  return v;
}

// redis.failure = "tempfail": the shared state cannot be asked.
verdict store_unavailable() {
  return refusal(action::defer, "limits:store_unavailable",
                 "451 4.3.0 Error: temporary failure, try again later");
}

}  // namespace

bool limit_check::applies_to(stage s) const {
  const auto& l = cfg_->limits;
  switch (s) {
    case stage::connect:
      return l.connections_per_ip.enabled();
    case stage::mail:
      return l.messages_per_ip.enabled() || l.null_sender_per_ip.enabled() ||
             l.messages_per_sender.enabled();
    case stage::rcpt:
      return l.recipients_per_ip.enabled() || cfg_->values.greylist.enabled;
    default:
      return false;
  }
}

std::string limit_check::client_key(const session_facts& session) const {
  const auto& l = cfg_->values.limits;
  auto addr = normalize(session.client);
  return ip_prefix(addr, static_cast<unsigned>(addr.is_v4() ? l.ipv4_prefix : l.ipv6_prefix))
      .to_string();
}

boost::asio::awaitable<verdict> limit_check::evaluate(stage s, const check_input& input) {
  const auto& session = input.session;
  if (session.trusted || session.allowlisted) co_return verdict::pass();
  const auto& l = cfg_->limits;
  const auto client = client_key(session);
  const auto now = ratelimit::wall_clock_now();
  std::vector<ratelimit::rate_key> keys;
  std::vector<std::string_view> names;
  auto add = [&](const ratelimit::rate& r, std::string key, std::string_view name) {
    if (!r.enabled()) return;
    keys.push_back({std::move(key), r, 1});
    names.push_back(name);
  };
  if (s == stage::connect) {
    add(l.connections_per_ip, "c:" + client, "connections_per_ip");
  } else if (s == stage::mail) {
    add(l.messages_per_ip, "m:" + client, "messages_per_ip");
    if (input.transaction.null_sender)
      add(l.null_sender_per_ip, "n:" + client, "null_sender_per_ip");
    else
      add(l.messages_per_sender, "s:" + lower_ascii(input.transaction.sender.text()),
          "messages_per_sender");
  } else if (s == stage::rcpt) {
    add(l.recipients_per_ip, "r:" + client, "recipients_per_ip");
  }
  if (!keys.empty()) {
    auto d = co_await store_->check_rates(keys, now);
    if (d.failed) co_return store_unavailable();
    if (!d.result.allowed) {
      auto rule = "limits:" + std::string(names[d.refused_index]);
      auto wait = seconds_up(d.result.retry_after);
      if (s == stage::connect)
        co_return refusal(action::drop, rule,
                          fmt::format("421 4.7.0 Error: too many connections from your address, "
                                      "try again in {} seconds",
                                      wait));
      co_return refusal(action::defer, rule,
                        fmt::format("452 4.7.1 Error: {} rate limit exceeded, try again in {} "
                                    "seconds",
                                    s == stage::mail ? "message" : "recipient", wait));
    }
  }
  if (s == stage::rcpt && cfg_->values.greylist.enabled) co_return co_await greylist(input);
  co_return verdict::pass();
}

boost::asio::awaitable<verdict> limit_check::greylist(const check_input& input) {
  const auto& session = input.session;
  for (const auto& n : cfg_->greylist_allowlist_networks)
    if (n.contains(session.client)) co_return verdict::pass();
  if (!input.transaction.null_sender &&
      cfg_->greylist_allowlist_senders.matches(input.transaction.sender.domain))
    co_return verdict::pass();
  const auto& g = cfg_->values.greylist;
  auto addr = normalize(session.client);
  auto network =
      ip_prefix(addr, static_cast<unsigned>(addr.is_v4() ? g.ipv4_prefix : g.ipv6_prefix))
          .to_string();
  std::string triplet = "g:" + network + ":" + lower_ascii(input.transaction.sender.text()) + ":" +
                        lower_ascii(input.recipient ? input.recipient->text() : "");
  auto answer = co_await store_->greylist(triplet, "gc:" + network, cfg_->greylist,
                                          ratelimit::wall_clock_now());
  if (answer.failed) co_return store_unavailable();
  if (answer.client_allowlisted || answer.outcome.what == ratelimit::grey_result::pass) {
    if (answer.outcome.newly_passed)
      ops::event("GREYLIST")
          .add("sid", session.id)
          .add("client", session.client.to_string())
          .add("result", "passed")
          .emit();
    co_return verdict::pass();
  }
  co_return refusal(action::defer, "greylist",
                    fmt::format("451 4.7.1 <{}>: Recipient address rejected: greylisted, try again "
                                "in {} seconds",
                                input.recipient ? input.recipient->text() : std::string(),
                                seconds_up(answer.outcome.wait)));
}

const std::string& instance_id() {
  static const std::string id = [] {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
  }();
  return id;
}

boost::asio::awaitable<verdict> limit_check::acquire_lease(const session_facts& session,
                                                           bool& granted) {
  granted = false;
  const auto limit = cfg_->limits.concurrent_per_ip;
  if (limit <= 0 || session.trusted || session.allowlisted) co_return verdict::pass();
  auto answer = co_await store_->acquire_lease("l:" + client_key(session), instance_id(), limit,
                                               cfg_->values.limits.lease_ttl.count());
  if (answer.failed) co_return store_unavailable();
  if (!answer.allowed)
    co_return refusal(action::drop, "limits:concurrent_per_ip",
                      "421 4.7.0 Error: too many concurrent sessions from your address, try again "
                      "later");
  granted = true;
  co_return verdict::pass();
}

boost::asio::awaitable<void> limit_check::release_lease(const session_facts& session) {
  co_await store_->release_lease("l:" + client_key(session), instance_id(),
                                 cfg_->values.limits.lease_ttl.count());
}

boost::asio::awaitable<verdict> limit_check::count_refused_recipient(const session_facts& session) {
  const auto& r = cfg_->limits.refused_recipients_per_ip;
  if (!r.enabled() || session.trusted || session.allowlisted) co_return verdict::pass();
  // A named key, not a braced temporary: GCC 12 mishandles aggregate
  // temporaries in co_await expressions.
  ratelimit::rate_key key;
  key.key = "u:" + client_key(session);
  key.limit = r;
  auto d = co_await store_->count_event(std::move(key), ratelimit::wall_clock_now());
  if (d.failed || d.result.allowed) co_return verdict::pass();
  co_return refusal(action::drop, "limits:refused_recipients_per_ip",
                    "421 4.7.0 Error: too many unknown recipients, closing connection");
}

}  // namespace mxguard::guard
