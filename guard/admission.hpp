// Admission: the global and per-client session caps, before any allocation.
//
// Like sendmail's MaxDaemonChildren, but per client network and without
// processes. A granted slot is a move-only RAII token; its destructor gives
// the slot back, so no path (exception, cancellation, early return) can leak
// a count and lock a client out. Thread-safe: called from every I/O thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

#include "mxguard/net.hpp"
#include "mxguard/verdict.hpp"

namespace mxguard::guard {

class admission;

class session_slot {
 public:
  session_slot() = default;
  session_slot(session_slot&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)), key_(other.key_) {}
  session_slot& operator=(session_slot&& other) noexcept;
  session_slot(const session_slot&) = delete;
  session_slot& operator=(const session_slot&) = delete;
  ~session_slot() { release(); }

  explicit operator bool() const { return owner_ != nullptr; }
  void release();

 private:
  friend class admission;
  session_slot(admission* owner, ip_prefix key) : owner_(owner), key_(key) {}
  admission* owner_ = nullptr;
  ip_prefix key_;
};

struct admission_limits {
  std::int64_t max_sessions;
  std::int64_t max_sessions_per_ip;
  unsigned ipv6_prefix;
};

class admission {
 public:
  // A slot, or an empty one with `refusal` set to the 421 verdict and its rule.
  session_slot try_acquire(const boost::asio::ip::address& client, const admission_limits& limits,
                           verdict& refusal);

  std::int64_t sessions() const { return total_.load(std::memory_order_relaxed); }
  std::int64_t sessions_of(const boost::asio::ip::address& client, unsigned ipv6_prefix) const;

 private:
  friend class session_slot;
  void release(const ip_prefix& key);

  // Sharded so that threads admitting different clients rarely contend.
  static constexpr std::size_t shard_count = 16;
  struct shard {
    mutable std::mutex mutex;
    std::unordered_map<ip_prefix, std::int64_t, ip_prefix_hash> counts;
  };
  shard& shard_for(const ip_prefix& key) { return shards_[ip_prefix_hash{}(key) % shard_count]; }
  const shard& shard_for(const ip_prefix& key) const {
    return shards_[ip_prefix_hash{}(key) % shard_count];
  }

  std::atomic<std::int64_t> total_{0};
  shard shards_[shard_count];
};

}  // namespace mxguard::guard
