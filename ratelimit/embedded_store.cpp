// The embedded state store: everything in this process. The default, and
// the fallback while Redis is away (redis.failure = "local").
#include <algorithm>
#include <array>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#include "mxguard/ratelimit/ratelimit.hpp"

namespace mxguard::ratelimit {

namespace {

constexpr std::size_t shard_count = 16;

// What a full shard evicts first: rate counters and pass-cache marks (an
// address sprayer makes them by the thousand, and each is cheap to lose),
// then greylist triplets still waiting for their retry, and last the state
// that took a legitimate sender a delay to earn (passed triplets, a
// client's passes towards the auto-allowlist).
enum class keep : std::uint8_t { briefly, pending, earned };
constexpr std::size_t keep_classes = 3;

struct entry {
  millis expires = 0;
  millis tat = 0;           // rate keys
  millis checked_at = 0;    // rate keys: the latest `now` a check applied
  triplet_record triplet;   // greylist triplets
  std::int64_t passes = 0;  // greylist client counters
  keep kept = keep::briefly;
  std::list<std::string>::iterator lru;
};

class embedded_store final : public state_store {
 public:
  explicit embedded_store(std::size_t max_keys)
      : per_shard_(std::max<std::size_t>(16, max_keys / shard_count)) {}

  std::string_view name() const override { return "embedded"; }

  boost::asio::awaitable<bool> passed(std::string key, millis now) override {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = s.entries.find(key);
    co_return it != s.entries.end() && it->second.expires > now;
  }

  boost::asio::awaitable<void> mark_passed(std::string key, millis ttl, millis now) override {
    auto& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    touch(s, key, now, keep::briefly).expires = now + ttl;
    evict(s);
    co_return;
  }

  boost::asio::awaitable<bool> block_put(block_record record) override {
    std::lock_guard lock(block_mutex_);
    auto key = record.prefix;
    blocks_[key] = std::move(record);
    ++block_version_;
    co_return true;
  }

  boost::asio::awaitable<bool> block_remove(std::string prefix) override {
    std::lock_guard lock(block_mutex_);
    if (blocks_.erase(prefix) > 0) ++block_version_;
    co_return true;
  }

  boost::asio::awaitable<block_listing> block_list(std::int64_t known, millis now) override {
    std::lock_guard lock(block_mutex_);
    for (auto it = blocks_.begin(); it != blocks_.end();) {
      if (it->second.expires_ms != 0 && it->second.expires_ms <= now) {
        it = blocks_.erase(it);
        ++block_version_;
      } else {
        ++it;
      }
    }
    block_listing out;
    out.version = block_version_;
    if (known == block_version_) co_return out;
    out.changed = true;
    for (const auto& [prefix, record] : blocks_) out.entries.push_back(record);
    co_return out;
  }

  boost::asio::awaitable<store_decision> check_rates(std::vector<rate_key> keys,
                                                     millis now) override {
    co_return check(keys, now, false);
  }

  boost::asio::awaitable<store_decision> count_event(rate_key key, millis now) override {
    std::vector<rate_key> one;
    one.push_back(std::move(key));
    co_return check(one, now, true);
  }

  boost::asio::awaitable<grey_answer> greylist(std::string triplet_key, std::string client_key,
                                               greylist_policy policy, millis now) override {
    grey_answer answer;
    {
      // Looked up, not made: every client asks, few have passes.
      auto& s = shard_for(client_key);
      std::lock_guard lock(s.mutex);
      auto it = s.entries.find(client_key);
      if (it != s.entries.end() && it->second.expires > now &&
          it->second.passes >= policy.auto_allowlist_after && policy.auto_allowlist_after > 0) {
        answer.client_allowlisted = true;
        co_return answer;
      }
    }
    bool passed_now = false;
    {
      auto& s = shard_for(triplet_key);
      std::lock_guard lock(s.mutex);
      auto& e = touch(s, triplet_key, now, keep::pending);
      if (e.expires <= now) e.triplet = {};
      answer.outcome = greylist_step(e.triplet, now, policy);
      if (e.triplet.passed_at) rank(s, e, keep::earned);
      e.expires =
          now + (e.triplet.passed_at ? policy.lifetime : policy.delay + policy.retry_window);
      passed_now = answer.outcome.newly_passed;
      evict(s);
    }
    if (passed_now) {
      auto& s = shard_for(client_key);
      std::lock_guard lock(s.mutex);
      auto& e = touch(s, client_key, now, keep::earned);
      if (e.expires <= now) e.passes = 0;
      ++e.passes;
      e.expires = now + policy.lifetime;
      evict(s);
    }
    co_return answer;
  }

  // In one process every session is ours: a plain count per key.
  boost::asio::awaitable<lease_answer> acquire_lease(std::string key, std::string,
                                                     std::int64_t limit, millis) override {
    std::lock_guard lock(leases_mutex_);
    auto& count = leases_[key];
    lease_answer answer;
    answer.allowed = count < limit;
    if (answer.allowed)
      ++count;
    else if (count == 0)
      leases_.erase(key);
    co_return answer;
  }
  boost::asio::awaitable<void> release_lease(std::string key, std::string, millis) override {
    std::lock_guard lock(leases_mutex_);
    auto it = leases_.find(key);
    if (it != leases_.end() && --it->second <= 0) leases_.erase(it);
    co_return;
  }
  boost::asio::awaitable<void> heartbeat(std::string, millis) override { co_return; }

 private:
  std::mutex leases_mutex_;
  std::unordered_map<std::string, std::int64_t> leases_;

  struct shard {
    std::mutex mutex;
    std::unordered_map<std::string, entry> entries;
    // One LRU per keep class, most recently written first.
    std::array<std::list<std::string>, keep_classes> lru;
  };

  shard& shard_for(const std::string& key) {
    return shards_[std::hash<std::string>{}(key) % shard_count];
  }

  static std::list<std::string>& lru_of(shard& s, keep k) {
    return s.lru[static_cast<std::size_t>(k)];
  }

  // The entry for `key`, created if missing, moved to the front of its
  // class's LRU; an entry only ever moves up a class.
  entry& touch(shard& s, const std::string& key, millis now, keep k) {
    auto it = s.entries.find(key);
    if (it == s.entries.end()) {
      auto& lru = lru_of(s, k);
      lru.push_front(key);
      it = s.entries.emplace(key, entry{}).first;
      it->second.lru = lru.begin();
      it->second.kept = k;
      it->second.expires = now;
      return it->second;
    }
    auto& e = it->second;
    auto& lru = lru_of(s, e.kept);
    lru.splice(lru.begin(), lru, e.lru);
    rank(s, e, k);
    return e;
  }

  static void rank(shard& s, entry& e, keep k) {
    if (k <= e.kept) return;
    auto& from = lru_of(s, e.kept);
    auto& to = lru_of(s, k);
    to.splice(to.begin(), from, e.lru);
    e.kept = k;
  }

  // Greylist state may fill three quarters of a shard, rate counters keep
  // the rest whatever greylisting holds: a sprayer's churn cannot push out
  // what senders earned, nor can greylisting push out the counters that
  // limit rates. Inside greylisting, pending triplets go first.
  void evict(shard& s) {
    const std::size_t greylist_share = per_shard_ - per_shard_ / 4;
    while (s.entries.size() > per_shard_) {
      auto& brief = lru_of(s, keep::briefly);
      auto& pending = lru_of(s, keep::pending);
      const bool trim_greylist = brief.empty() || s.entries.size() - brief.size() > greylist_share;
      auto& lru = !trim_greylist ? brief : !pending.empty() ? pending : lru_of(s, keep::earned);
      s.entries.erase(lru.back());
      lru.pop_back();
    }
  }

  store_decision check(std::vector<rate_key>& keys, millis now, bool always_consume) {
    store_decision out;
    // Keys may live in different shards: take them in shard order so that
    // two checks never wait on each other.
    std::vector<std::size_t> order(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return &shard_for(keys[a].key) < &shard_for(keys[b].key);
    });
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto i : order) {
      auto& s = shard_for(keys[i].key);
      if (locks.empty() || locks.back().mutex() != &s.mutex) locks.emplace_back(s.mutex);
    }
    // Callers read the clock before they wait for the lock, so concurrent
    // checks of one key can arrive with their times out of order: a check is
    // taken at no earlier a time than one already applied to its key. (Fix:
    // GCRA fits `count` events into one instant exactly, so of a client's
    // connections at exactly connections_per_ip, one stamped a millisecond
    // before the previous was refused, "try again in 1 seconds"; seen under
    // load in tests/sanitize.sh, Ops.StatisticsSurviveARestart.)
    std::vector<millis> tats(keys.size()), ats(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto& s = shard_for(keys[i].key);
      auto& e = touch(s, keys[i].key, now, keep::briefly);
      const millis at = ats[i] = e.expires > now ? std::max(now, e.checked_at) : now;
      millis tat = e.expires > at ? e.tat : 0;
      auto d = gcra(tat, at, keys[i].limit, keys[i].cost);
      if (!d.allowed && !always_consume) {
        out.result = d;
        out.refused_index = i;
        return out;
      }
      if (!d.allowed) {
        out.result = d;
        // Over the limit but counted anyway: push the TAT forward.
        tat = std::max(tat, at) +
              keys[i].limit.period / std::max<std::int64_t>(1, keys[i].limit.count);
      }
      tats[i] = tat;
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto& e = shard_for(keys[i].key).entries.at(keys[i].key);
      e.tat = tats[i];
      e.checked_at = ats[i];
      e.expires = ats[i] + gcra_ttl(tats[i], ats[i]);
    }
    // Only now: evicting between the writes could drop a key still to be written.
    for (const auto& k : keys) evict(shard_for(k.key));
    return out;
  }

  std::size_t per_shard_;
  std::array<shard, shard_count> shards_;
  std::mutex block_mutex_;
  std::map<std::string, block_record> blocks_;
  std::int64_t block_version_ = 1;
};

}  // namespace

std::shared_ptr<state_store> make_embedded_store(std::size_t max_keys) {
  return std::make_shared<embedded_store>(max_keys);
}

}  // namespace mxguard::ratelimit
