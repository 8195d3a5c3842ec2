// The runner: a thread, a map of pending changes, and the feeder_state.
//
// Pending changes are a map keyed by prefix rather than a queue: the latest
// change for a prefix is the only one that matters, and memory stays bounded by
// the number of distinct prefixes however fast an attack produces events.
#include <algorithm>
#include <utility>

#include "mxguard/ops/firewall_feeder.hpp"
#include "mxguard/ops/log.hpp"
#include "mxguard/ops/metrics.hpp"

namespace mxguard::ops {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Longest sleep with nothing due: bounds the damage of a wall-clock jump
// between the system-clock expiries and the steady-clock wait.
constexpr milliseconds idle_wake{30000};

}  // namespace

feeder_runner::feeder_runner(std::unique_ptr<feeder> f) : feeder_runner(std::move(f), options{}) {}

feeder_runner::feeder_runner(std::unique_ptr<feeder> f, options o)
    : feeder_(std::move(f)), o_(o), state_(feeder_->limits()) {
  thread_ = std::thread([this] { run(); });
}

feeder_runner::~feeder_runner() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  idle_.notify_all();
  thread_.join();
}

void feeder_runner::add(block_entry e) {
  {
    std::lock_guard lock(mu_);
    if (pending_.empty()) oldest_pending_ = steady::now();
    auto key = e.prefix;
    pending_.insert_or_assign(key, std::optional<block_entry>(std::move(e)));
    ++enqueued_;
  }
  wake_.notify_one();
}

void feeder_runner::remove(const ip_prefix& p) {
  {
    std::lock_guard lock(mu_);
    if (pending_.empty()) oldest_pending_ = steady::now();
    pending_.insert_or_assign(p, std::nullopt);
    ++enqueued_;
  }
  wake_.notify_one();
}

void feeder_runner::reconcile(std::vector<block_entry> all) {
  {
    std::lock_guard lock(mu_);
    // Earlier pending changes are superseded by the whole list.
    pending_.clear();
    oldest_pending_ = steady::now();
    pending_reconcile_ = std::move(all);
    ++enqueued_;
  }
  wake_.notify_one();
}

bool feeder_runner::wait_idle(milliseconds timeout) {
  std::unique_lock lock(mu_);
  const auto target = enqueued_;
  idle_.wait_for(lock, timeout, [&] { return tried_ >= target || stop_; });
  return tried_ >= target && last_ok_;
}

feeder_stats feeder_runner::stats() const {
  std::lock_guard lock(mu_);
  auto s = stats_;
  s.pending = pending_.size() + (pending_reconcile_ ? 1 : 0);
  return s;
}

void feeder_runner::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const auto now = steady::now();
    auto wake = now + idle_wake;
    if (!stats_.healthy) {
      wake = retry_at_;
    } else {
      if (pending_reconcile_ || pending_.size() >= o_.batch_max)
        wake = now;
      else if (!pending_.empty())
        wake = std::min(wake, oldest_pending_ + o_.batch_interval);
      if (synced_ && o_.resync_interval.count() > 0 && feeder_->full_after_failure()) {
        const auto at = last_full_ + o_.resync_interval;
        if (now >= at) resync_due_ = true;
        wake = std::min(wake, at);
      }
      // state_ belongs to this thread; reading it under mu_ is only incidental.
      if (const auto due = state_.next_due(); due != sys_clock::time_point::max()) {
        const auto left = std::chrono::ceil<milliseconds>(due - sys_clock::now());
        wake = std::min(wake, now + std::max(left, milliseconds{0}));
      }
    }
    if (now >= wake) {
      work(lock);
      continue;
    }
    wake_.wait_until(lock, wake);
  }
}

void feeder_runner::work(std::unique_lock<std::mutex>& lock) {
  auto taken = std::move(pending_);
  pending_.clear();
  auto reconcile = std::move(pending_reconcile_);
  pending_reconcile_.reset();
  const auto seq = enqueued_;
  const bool had_input = !taken.empty() || reconcile.has_value();
  const auto oldest = oldest_pending_;
  const bool resync = std::exchange(resync_due_, false);
  lock.unlock();

  if (resync) state_.force_full();

  if (reconcile) state_.reset(std::move(*reconcile));
  for (auto& [prefix, change] : taken) {
    if (change)
      state_.upsert(std::move(*change));
    else
      state_.erase(prefix);
  }
  const auto plan = state_.plan(sys_clock::now());
  std::string error;
  if (plan.has_changes()) error = feeder_->apply(plan);
  if (error.empty()) {
    if (plan.has_changes()) state_.commit(plan);
  } else if (feeder_->full_after_failure()) {
    state_.force_full();
  }
  const auto applied = steady::now();

  lock.lock();
  const bool was_healthy = stats_.healthy;
  stats_.healthy = error.empty();
  stats_.evicted = plan.evicted;
  stats_.refused = plan.refused;
  if (error.empty()) {
    backoff_ = milliseconds{0};
    if (plan.has_changes()) {
      ++stats_.batches;
      stats_.added += plan.adds.size();
      stats_.removed += plan.removes.size();
      stats_.refreshed += plan.updates.size();
      stats_.entries = plan.effective.size();
      if (plan.full) {
        synced_ = true;
        last_full_ = applied;
      }
    }
    if (had_input)
      stats_.last_lag_seconds = std::chrono::duration<double>(applied - oldest).count();
  } else {
    ++stats_.failures;
    backoff_ = backoff_.count() == 0 ? o_.retry_min : std::min(backoff_ * 2, o_.retry_max);
    retry_at_ = applied + backoff_;
  }
  tried_ = std::max(tried_, seq);
  last_ok_ = error.empty();
  idle_.notify_all();
  lock.unlock();

  // Logged outside the lock: add() on an I/O thread must not wait for a write(2).
  if (!error.empty() && was_healthy)
    event("FIREWALL_FEEDER_FAILED", severity::error)
        .add("feeder", feeder_->kind())
        .add("error", error)
        .emit();
  else if (error.empty() && !was_healthy)
    event("FIREWALL_FEEDER_RECOVERED", severity::warning).add("feeder", feeder_->kind()).emit();
  lock.lock();
}

void register_feeder_metrics(registry& reg, std::vector<const feeder_runner*> runners) {
  using field = double (*)(const feeder_stats&);
  auto family = [&reg, &runners](metric_type type, std::string name, std::string help, field f) {
    reg.add_callback_family(type, std::move(name), std::move(help), {"feeder"}, [runners, f] {
      std::vector<sample> out;
      for (const auto* r : runners) out.push_back({{r->kind()}, f(r->stats())});
      return out;
    });
  };
  family(metric_type::counter, "mxguard_firewall_batches_total", "Firewall feeder batches applied.",
         [](const feeder_stats& s) { return static_cast<double>(s.batches); });
  family(metric_type::counter, "mxguard_firewall_batch_failures_total",
         "Firewall feeder batches that failed (retried as a full batch).",
         [](const feeder_stats& s) { return static_cast<double>(s.failures); });
  family(metric_type::gauge, "mxguard_firewall_entries", "Elements the feeder's target holds.",
         [](const feeder_stats& s) { return static_cast<double>(s.entries); });
  family(metric_type::gauge, "mxguard_firewall_pending", "Changes queued, not yet applied.",
         [](const feeder_stats& s) { return static_cast<double>(s.pending); });
  family(metric_type::gauge, "mxguard_firewall_evicted",
         "Entries left out because the target's maxelem is reached.",
         [](const feeder_stats& s) { return static_cast<double>(s.evicted); });
  family(metric_type::gauge, "mxguard_firewall_refused",
         "Entries refused (/0, too short a prefix, a family the target cannot hold).",
         [](const feeder_stats& s) { return static_cast<double>(s.refused); });
  family(metric_type::gauge, "mxguard_firewall_lag_seconds",
         "From the oldest change of the last applied batch being queued to the batch applied.",
         [](const feeder_stats& s) { return s.last_lag_seconds; });
  family(metric_type::gauge, "mxguard_firewall_healthy", "1 when the last batch succeeded.",
         [](const feeder_stats& s) { return s.healthy ? 1.0 : 0.0; });
  reg.add_callback_family(
      metric_type::counter, "mxguard_firewall_elements_total",
      "Elements added, removed and refreshed by firewall feeders.", {"feeder", "op"}, [runners] {
        std::vector<sample> out;
        for (const auto* r : runners) {
          const auto s = r->stats();
          out.push_back({{r->kind(), "add"}, static_cast<double>(s.added)});
          out.push_back({{r->kind(), "remove"}, static_cast<double>(s.removed)});
          out.push_back({{r->kind(), "refresh"}, static_cast<double>(s.refreshed)});
        }
        return out;
      });
}

}  // namespace mxguard::ops
