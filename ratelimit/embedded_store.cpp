// The embedded state store: everything in this process. The default, and
// the fallback while Redis is away (redis.failure = "local").
#include <array>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#include "mxguard/ratelimit/ratelimit.hpp"

namespace mxguard::ratelimit {

namespace {

constexpr std::size_t shard_count = 16;

struct entry {
  millis expires = 0;
  millis tat = 0;           // rate keys
  millis checked_at = 0;    // rate keys: the latest `now` a check applied
  triplet_record triplet;   // greylist triplets
  std::int64_t passes = 0;  // greylist client counters
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
    touch(s, key, now).expires = now + ttl;
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
      auto& s = shard_for(client_key);
      std::lock_guard lock(s.mutex);
      auto& e = touch(s, client_key, now);
      if (e.expires > now && e.passes >= policy.auto_allowlist_after &&
          policy.auto_allowlist_after > 0) {
        answer.client_allowlisted = true;
        co_return answer;
      }
    }
    bool passed_now = false;
    {
      auto& s = shard_for(triplet_key);
      std::lock_guard lock(s.mutex);
      auto& e = touch(s, triplet_key, now);
      if (e.expires <= now) e.triplet = {};
      answer.outcome = greylist_step(e.triplet, now, policy);
      e.expires =
          now + (e.triplet.passed_at ? policy.lifetime : policy.delay + policy.retry_window);
      passed_now = answer.outcome.newly_passed;
      evict(s);
    }
    if (passed_now) {
      auto& s = shard_for(client_key);
      std::lock_guard lock(s.mutex);
      auto& e = touch(s, client_key, now);
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
    std::list<std::string> lru;  // most recently written first
  };

  shard& shard_for(const std::string& key) {
    return shards_[std::hash<std::string>{}(key) % shard_count];
  }

  // The entry for `key`, created if missing, moved to the front of the LRU.
  entry& touch(shard& s, const std::string& key, millis now) {
    auto it = s.entries.find(key);
    if (it == s.entries.end()) {
      s.lru.push_front(key);
      it = s.entries.emplace(key, entry{}).first;
      it->second.lru = s.lru.begin();
      it->second.expires = now;
    } else {
      s.lru.splice(s.lru.begin(), s.lru, it->second.lru);
    }
    return it->second;
  }

  void evict(shard& s) {
    while (s.entries.size() > per_shard_) {
      s.entries.erase(s.lru.back());
      s.lru.pop_back();
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
      auto& e = touch(s, keys[i].key, now);
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
      auto& s = shard_for(keys[i].key);
      auto& e = s.entries[keys[i].key];
      e.tat = tats[i];
      e.checked_at = ats[i];
      e.expires = ats[i] + gcra_ttl(tats[i], ats[i]);
      evict(s);
    }
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
