#include "blocklist.hpp"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "config.hpp"
#include "mxguard/ops/log.hpp"
#include "text.hpp"

namespace mxguard::guard {

namespace asio = boost::asio;

std::optional<auto_block_rule> auto_block_rule::parse(std::string_view text, std::string& error) {
  std::vector<std::string_view> words;
  std::size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && text[pos] == ' ') ++pos;
    auto end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    if (end > pos) words.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  if (words.size() < 2 || words.size() > 3) {
    error = "expected 'EVENT COUNT/WINDOW [BAN]', e.g. 'limits:* 20/1m 1h'";
    return std::nullopt;
  }
  auto_block_rule r;
  r.pattern = std::string(words[0]);
  if (!printable_ascii(r.pattern) || r.pattern.find('*') < r.pattern.size() - 1) {
    error = "the event pattern is printable ASCII with `*` only at its end";
    return std::nullopt;
  }
  auto limit = ratelimit::parse_rate(words[1]);
  if (!limit || !limit->enabled()) {
    error = "'" + std::string(words[1]) + "' is not COUNT/WINDOW (e.g. 20/1m)";
    return std::nullopt;
  }
  r.limit = *limit;
  if (words.size() == 3) {
    auto ban = parse_duration(words[2]);
    if (!ban || ban->count() <= 0) {
      error = "'" + std::string(words[2]) + "' is not a duration (e.g. 1h, 1d)";
      return std::nullopt;
    }
    r.ban = *ban;
  }
  r.source = std::string(text);
  return r;
}

bool auto_block_rule::matches(std::string_view event) const {
  if (!pattern.empty() && pattern.back() == '*')
    return event.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1));
  return event == pattern;
}

std::optional<ops::block_entry> to_block_entry(const ratelimit::block_record& r) {
  auto prefix = ip_prefix::parse(r.prefix);
  if (!prefix) return std::nullopt;
  ops::block_entry e;
  e.prefix = *prefix;
  e.reason = r.reason;
  e.rule = r.rule;
  e.created = ops::sys_clock::time_point(std::chrono::milliseconds(r.created_ms));
  e.expires = r.expires_ms == 0
                  ? ops::sys_clock::time_point::max()
                  : ops::sys_clock::time_point(std::chrono::milliseconds(r.expires_ms));
  return e;
}

std::optional<blocklist::hit> blocklist::find(const asio::ip::address& client) const {
  auto snap = snapshot_.load();
  const auto address = normalize(client);
  const auto& by_length = address.is_v4() ? snap->v4 : snap->v6;
  const auto now = ratelimit::wall_clock_now();
  // Longest prefix first (the map is ordered by length, descending).
  for (const auto& [length, prefixes] : by_length) {
    auto it = prefixes.find(ip_prefix(address, length));
    if (it == prefixes.end()) continue;
    const auto& r = snap->records[it->second];
    if (r.expires_ms != 0 && r.expires_ms <= now) continue;
    return hit{r.prefix, r.reason, r.rule, r.expires_ms};
  }
  return std::nullopt;
}

std::vector<ratelimit::block_record> blocklist::entries() const {
  return snapshot_.load()->records;
}

std::size_t blocklist::size() const {
  return snapshot_.load()->records.size();
}

void blocklist::add_feeder(std::unique_ptr<ops::feeder_runner> feeder) {
  feeders_.push_back(std::move(feeder));
}

asio::awaitable<void> blocklist::sync(ratelimit::state_store& store) {
  const auto now = ratelimit::wall_clock_now();
  // An entry held here has expired: list again whatever the version says.
  // Expiry changes no version by itself (Redis drops expired entries when it
  // lists them), and expired entries would count towards max_entries and be
  // shown by `mxguardctl blocked` for good.
  const auto held = snapshot_.load();
  const bool expired = held->earliest_expiry_ms != 0 && held->earliest_expiry_ms <= now;
  auto listing = co_await store.block_list(expired ? -1 : version_.load(), now);
  if (listing.failed || !listing.changed) co_return;
  auto next = std::make_shared<snapshot>();
  for (auto& r : listing.entries) {
    auto prefix = ip_prefix::parse(r.prefix);
    if (!prefix) continue;
    if (r.expires_ms != 0 &&
        (next->earliest_expiry_ms == 0 || r.expires_ms < next->earliest_expiry_ms))
      next->earliest_expiry_ms = r.expires_ms;
    r.prefix = prefix->to_string();
    auto& by_length = prefix->is_v4() ? next->v4 : next->v6;
    by_length[prefix->length()].emplace(*prefix, next->records.size());
    next->records.push_back(std::move(r));
  }
  // Feeders: a full reconcile the first time, then what changed.
  auto previous = snapshot_.load();
  if (!feeders_.empty()) {
    if (!feeders_reconciled_) {
      std::vector<ops::block_entry> all;
      for (const auto& r : next->records)
        if (auto e = to_block_entry(r)) all.push_back(std::move(*e));
      for (auto& f : feeders_) f->reconcile(all);
      feeders_reconciled_ = true;
    } else {
      std::map<std::string, const ratelimit::block_record*> before, after;
      for (const auto& r : previous->records) before[r.prefix] = &r;
      for (const auto& r : next->records) after[r.prefix] = &r;
      for (const auto& [prefix, r] : after) {
        auto old = before.find(prefix);
        if (old != before.end() && old->second->expires_ms == r->expires_ms) continue;
        if (auto e = to_block_entry(*r))
          for (auto& f : feeders_) f->add(*e);
      }
      for (const auto& [prefix, r] : before)
        if (!after.contains(prefix))
          if (auto p = ip_prefix::parse(prefix))
            for (auto& f : feeders_) f->remove(*p);
    }
  }
  snapshot_.store(std::move(next));
  version_.store(listing.version);
}

asio::awaitable<void> blocklist::sync_loop(std::shared_ptr<ratelimit::state_store> store,
                                           std::chrono::milliseconds interval) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    co_await sync(*store);
    timer.expires_after(interval);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<bool> blocklist::block(ratelimit::state_store& store, ratelimit::block_record r) {
  auto prefix = ip_prefix::parse(r.prefix);
  if (!prefix) co_return false;
  r.prefix = prefix->to_string();
  if (r.created_ms == 0) r.created_ms = ratelimit::wall_clock_now();
  ops::event("BLOCK")
      .add("prefix", r.prefix)
      .add("rule", r.rule)
      .add("reason", r.reason)
      .add("expires_ms", r.expires_ms)
      .add("offences", r.offences)
      .emit();
  bool ok = co_await store.block_put(std::move(r));
  if (ok) co_await sync(store);
  co_return ok;
}

asio::awaitable<bool> blocklist::unblock(ratelimit::state_store& store, std::string prefix) {
  auto parsed = ip_prefix::parse(prefix);
  if (!parsed) co_return false;
  ops::event("UNBLOCK").add("prefix", parsed->to_string()).emit();
  bool ok = co_await store.block_remove(parsed->to_string());
  if (ok) co_await sync(store);
  co_return ok;
}

void blocklist::attach(asio::io_context& control, std::shared_ptr<ratelimit::state_store> store,
                       std::shared_ptr<const blocklist_policy> policy) {
  control_ = &control;
  store_ = std::move(store);
  policy_.store(std::move(policy));
}

void blocklist::set_policy(std::shared_ptr<const blocklist_policy> policy) {
  policy_.store(std::move(policy));
}

void blocklist::event(std::string_view name, const asio::ip::address& client, bool exempt) {
  if (exempt || control_ == nullptr) return;
  auto policy = policy_.load();
  if (!policy || policy->rules.empty()) return;
  const auto address = normalize(client);
  for (const auto& never : policy->never_block)
    if (never.contains(address)) return;
  bool any = false;
  for (const auto& r : policy->rules) any = any || r.matches(name);
  if (!any || find(address)) return;
  asio::co_spawn(*control_, count(std::string(name), address, std::move(policy)), asio::detached);
}

asio::awaitable<void> blocklist::count(std::string name, asio::ip::address client,
                                       std::shared_ptr<const blocklist_policy> policy) {
  const auto key = client_key(client, policy->ipv6_prefix);
  const auto prefix = key.to_string();
  for (std::size_t i = 0; i < policy->rules.size(); ++i) {
    const auto& rule = policy->rules[i];
    if (!rule.matches(name)) continue;
    // COUNT events in WINDOW block: the COUNT-th is the one over a limit of
    // COUNT-1 at the same pace (GCRA allows a burst of its count).
    if (rule.limit.count > 1) {
      ratelimit::rate pace{rule.limit.count - 1,
                           rule.limit.period * (rule.limit.count - 1) / rule.limit.count};
      ratelimit::rate_key counted{fmt::format("ab:{}:{}", i, prefix), pace, 1};
      auto decision = co_await store_->count_event(std::move(counted), ratelimit::wall_clock_now());
      if (decision.failed || decision.result.allowed) continue;
    }
    // Blocked meanwhile, or being blocked, by this or another event.
    if (find(client) || blocking_.contains(prefix)) co_return;
    if (size() >= policy->max_entries) {
      auto_blocks_skipped_.fetch_add(1, std::memory_order_relaxed);
      if (!full_logged_)
        ops::event("BLOCKLIST_FULL")
            .add("entries", size())
            .add("max_entries", policy->max_entries)
            .add("skipped", prefix)
            .emit();
      full_logged_ = true;
      co_return;
    }
    full_logged_ = false;
    std::int64_t offences = 1;
    {
      std::lock_guard lock(offences_mutex_);
      if (offences_.size() > 100000) offences_.clear();  // bounded memory, forgets the oldest
      offences = ++offences_[prefix];
    }
    // Repeat offenders stay out longer: the ban doubles each time, capped.
    auto ban = rule.ban.count() > 0 ? rule.ban : policy->ban_time;
    for (std::int64_t n = 1; n < offences && ban < policy->max_ban_time; ++n) ban *= 2;
    ban = std::min(ban, policy->max_ban_time);
    ratelimit::block_record r;
    r.prefix = prefix;
    r.created_ms = ratelimit::wall_clock_now();
    r.expires_ms = r.created_ms + ban.count();
    r.rule = "auto:" + rule.pattern;
    r.reason = fmt::format("{} past {}", name, ratelimit::to_string(rule.limit));
    r.offences = offences;
    auto_blocks_.fetch_add(1, std::memory_order_relaxed);
    struct in_flight {
      std::set<std::string>& set;
      std::string prefix;
      ~in_flight() { set.erase(prefix); }
    } marked{blocking_, *blocking_.insert(prefix).first};
    co_await block(*store_, std::move(r));  // returns once find() sees it
    co_return;
  }
}

}  // namespace mxguard::guard
