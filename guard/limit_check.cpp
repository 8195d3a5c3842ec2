#include "limit_check.hpp"

#include <random>

#include <fmt/format.h>

#include "mxguard/dnsbl/client_name.hpp"
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
      return l.connections_per_ip.enabled() || l.counts(counter::connections);
    case stage::mail:
      return l.messages_per_ip.enabled() || l.null_sender_per_ip.enabled() ||
             l.messages_per_sender.enabled() || l.counts(counter::messages) ||
             l.counts(counter::null_sender);
    case stage::rcpt:
      return l.recipients_per_ip.enabled() || l.counts(counter::recipients) ||
             cfg_->values.greylist.enabled;
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

void limit_check::add_counters(counter what, const ratelimit::rate& per_ip,
                               std::string_view per_ip_name, std::string_view letter,
                               const session_facts& session, counter_set& out) const {
  const auto& l = cfg_->limits;
  const auto addr = normalize(session.client);
  const bool v6 = addr.is_v6();
  // "c:{198.51.100.0/24}198.51.100.7/32": the tag keeps all of one client's
  // counters in one Redis Cluster slot, so one script checks them together.
  const auto tag = std::string(letter) + ":{" +
                   ip_prefix(addr, v6 ? l.tag_ipv6_prefix : l.tag_ipv4_prefix).to_string() + "}";
  if (per_ip.enabled()) {
    const auto& v = cfg_->values.limits;
    out.keys.push_back(
        {tag +
             ip_prefix(addr, static_cast<unsigned>(v6 ? v.ipv6_prefix : v.ipv4_prefix)).to_string(),
         per_ip, 1});
    out.names.emplace_back(per_ip_name);
  }
  for (const auto& p : l.per_prefix) {
    if (p.what != what || p.ipv6 != v6) continue;
    out.keys.push_back({tag + ip_prefix(addr, p.length).to_string(), p.limit, 1});
    out.names.push_back(p.name);
  }
}

boost::asio::awaitable<verdict> limit_check::evaluate(stage s, const check_input& input) {
  const auto& session = input.session;
  if (session.trusted || session.allowlisted) co_return verdict::pass();
  const auto& l = cfg_->limits;
  const auto now = ratelimit::wall_clock_now();
  counter_set counters;
  if (s == stage::connect) {
    add_counters(counter::connections, l.connections_per_ip, "connections_per_ip", "c", session,
                 counters);
  } else if (s == stage::mail) {
    add_counters(counter::messages, l.messages_per_ip, "messages_per_ip", "m", session, counters);
    if (input.transaction.null_sender) {
      add_counters(counter::null_sender, l.null_sender_per_ip, "null_sender_per_ip", "n", session,
                   counters);
    } else if (l.messages_per_sender.enabled()) {
      counters.keys.push_back(
          {"s:" + lower_ascii(input.transaction.sender.text()), l.messages_per_sender, 1});
      counters.names.emplace_back("messages_per_sender");
    }
  } else if (s == stage::rcpt) {
    add_counters(counter::recipients, l.recipients_per_ip, "recipients_per_ip", "r", session,
                 counters);
  }
  if (!counters.keys.empty()) {
    auto d = co_await store_->check_rates(counters.keys, now);
    if (d.failed) co_return store_unavailable();
    if (!d.result.allowed) {
      auto rule = "limits:" + counters.names[d.refused_index];
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
  if (!session.greylist_as) session.greylist_as = co_await greylist_client(session);
  const std::string& network = *session.greylist_as;
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
          .add("as", network)
          .emit();
    co_return verdict::pass();
  }
  co_return refusal(action::defer, "greylist",
                    fmt::format("451 4.7.1 <{}>: Recipient address rejected: greylisted, try again "
                                "in {} seconds",
                                input.recipient ? input.recipient->text() : std::string(),
                                seconds_up(answer.outcome.wait)));
}

boost::asio::awaitable<std::string> limit_check::greylist_client(const session_facts& session) {
  const auto& g = cfg_->values.greylist;
  auto addr = normalize(session.client);
  if (g.fcrdns && names_) {
    // Large senders retry from another address, often in another network;
    // their confirmed name stays in their domain. Generic names (a range's
    // addresses written out, dsl, pool...) say nothing and are not used.
    auto name = co_await names_->confirmed_name(addr);
    if (name && !dnsbl::looks_generic(*name, addr))
      if (auto domain = dnsbl::registrable_domain(*name)) co_return "d:" + *domain;
  }
  co_return ip_prefix(addr, static_cast<unsigned>(addr.is_v4() ? g.ipv4_prefix : g.ipv6_prefix))
      .to_string();
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
  const auto& l = cfg_->limits;
  if (session.trusted || session.allowlisted) co_return verdict::pass();
  counter_set counters;
  add_counters(counter::refused_recipients, l.refused_recipients_per_ip,
               "refused_recipients_per_ip", "u", session, counters);
  // Each counter counts every refusal (a harvest goes on counting past the
  // limit), so they are counted one by one, not all-or-nothing.
  const auto now = ratelimit::wall_clock_now();
  std::string refused_by;
  for (std::size_t i = 0; i < counters.keys.size(); ++i) {
    auto d = co_await store_->count_event(counters.keys[i], now);
    if (!d.failed && !d.result.allowed && refused_by.empty()) refused_by = counters.names[i];
  }
  if (refused_by.empty()) co_return verdict::pass();
  co_return refusal(action::drop, "limits:" + refused_by,
                    "421 4.7.0 Error: too many unknown recipients, closing connection");
}

}  // namespace mxguard::guard
