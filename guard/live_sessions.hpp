// The sessions alive in this process, so that `mxguardctl drain` can reach
// those waiting for a command between transactions: they are told at once
// (421 4.3.2) instead of holding the drain until their command_timeout.
//
// Intrusive, so that a session pays two pointers for it (the idle-session
// budget is about 2 KiB) and no allocation.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include <boost/intrusive/list.hpp>

namespace mxguard::guard {

class live_sessions {
 public:
  class member : public boost::intrusive::list_base_hook<> {
   public:
    // Null once the member is being destroyed.
    virtual std::shared_ptr<member> share() = 0;
    // Called on any thread; the member does its part on its own executor.
    virtual void wake_for_drain() = 0;

   protected:
    ~member() = default;
  };

  void add(member& m) {
    std::lock_guard lock(mutex_);
    members_.push_back(m);
  }
  void remove(member& m) {
    std::lock_guard lock(mutex_);
    members_.erase(members_.iterator_to(m));
  }

  // Wakes every live member. The members are kept alive outside the lock,
  // so that a last reference dropped here does not re-enter remove().
  void wake_all_for_drain() {
    std::vector<std::shared_ptr<member>> alive;
    {
      std::lock_guard lock(mutex_);
      alive.reserve(members_.size());
      for (auto& m : members_)
        if (auto shared = m.share()) alive.push_back(std::move(shared));
    }
    for (auto& m : alive) m->wake_for_drain();
  }

 private:
  std::mutex mutex_;
  boost::intrusive::list<member, boost::intrusive::constant_time_size<false>> members_;
};

}  // namespace mxguard::guard
