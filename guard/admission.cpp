#include "admission.hpp"

namespace mxguard::guard {

session_slot& session_slot::operator=(session_slot&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::exchange(other.owner_, nullptr);
    key_ = other.key_;
  }
  return *this;
}

void session_slot::release() {
  if (auto* owner = std::exchange(owner_, nullptr)) owner->release(key_);
}

session_slot admission::try_acquire(const boost::asio::ip::address& client,
                                    const admission_limits& limits, verdict& refusal) {
  if (total_.fetch_add(1, std::memory_order_relaxed) >= limits.max_sessions) {
    total_.fetch_sub(1, std::memory_order_relaxed);
    refusal = {action::drop, "421 4.7.0 Error: too many connections, try again later",
               "max_sessions"};
    return {};
  }
  auto key = client_key(client, limits.ipv6_prefix);
  auto& s = shard_for(key);
  {
    std::lock_guard lock(s.mutex);
    auto& count = s.counts[key];
    if (count >= limits.max_sessions_per_ip) {
      if (count == 0) s.counts.erase(key);
      total_.fetch_sub(1, std::memory_order_relaxed);
      refusal = {action::drop,
                 "421 4.7.0 Error: too many connections from your address, try again later",
                 "max_sessions_per_ip"};
      return {};
    }
    ++count;
  }
  return session_slot(this, key);
}

void admission::release(const ip_prefix& key) {
  auto& s = shard_for(key);
  {
    std::lock_guard lock(s.mutex);
    auto it = s.counts.find(key);
    if (it != s.counts.end() && --it->second <= 0) s.counts.erase(it);
  }
  total_.fetch_sub(1, std::memory_order_relaxed);
}

std::int64_t admission::sessions_of(const boost::asio::ip::address& client,
                                    unsigned ipv6_prefix) const {
  auto key = client_key(client, ipv6_prefix);
  const auto& s = shard_for(key);
  std::lock_guard lock(s.mutex);
  auto it = s.counts.find(key);
  return it == s.counts.end() ? 0 : it->second;
}

}  // namespace mxguard::guard
