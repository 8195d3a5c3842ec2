// mxguard::ops firewall feeders, the running half: feeders that push batches
// into nftables, ipset, a file or a hook program, and the runner that drives
// one of them from its own thread.
//
// Who calls what: the daemon builds one feeder per configured target from its
// settings (constructors throw std::invalid_argument on a bad name, path or
// limit: a configuration error, fatal at start), hands it to a feeder_runner,
// calls `reconcile(whole blocklist)` once at start and then `add`/`remove` from
// any thread, I/O threads included: those calls only take a mutex and update a
// map of pending changes keyed by prefix, so a flood of changes costs memory
// bounded by the number of distinct prefixes and never blocks on the kernel.
//
// The runner's thread applies pending changes as one batch when the oldest is
// `batch_interval` old or `batch_max` are pending, and wakes by itself for
// expiries and for refreshing elements written with a capped timeout. A failed
// batch is logged once per state change (FIREWALL_FEEDER_FAILED with the
// program's stderr, FIREWALL_FEEDER_RECOVERED), counted, and retried with
// backoff as a full reconcile, because a half-applied `ipset restore` leaves
// the set unknown.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mxguard/ops/firewall.hpp"

namespace mxguard::ops {

class feeder {
 public:
  virtual ~feeder() = default;
  virtual const char* kind() const = 0;  // "nft", "ipset", "file", "exec"
  virtual feeder_limits limits() const = 0;
  // Puts one batch into the target; an empty string on success, else the
  // error for the log. Called only from the runner's thread.
  virtual std::string apply(const batch_plan& plan) = 0;
  // Whether a failure leaves the target unknown, so the retry must be full.
  virtual bool full_after_failure() const { return true; }
};

// How nft/ipset are started. `prefix` goes before the program, e.g.
// {"/usr/sbin/ip", "netns", "exec", "NS"} to work in a network namespace.
struct command_options {
  std::vector<std::string> prefix;
  std::chrono::milliseconds timeout{10000};
};

// Older kernels keep set timeouts in 32-bit milliseconds; 24 days stays below
// 2^31 ms everywhere and refreshing once in 23 days costs nothing.
inline constexpr std::chrono::seconds nft_default_max_timeout{24 * 24 * 3600};

class nft_feeder : public feeder {
 public:
  struct options {
    nft_set_spec spec;  // from nft_set_spec::parse
    std::string nft = "/usr/sbin/nft";
    command_options command;
    std::chrono::seconds max_timeout = nft_default_max_timeout;
  };
  explicit nft_feeder(options o);
  const char* kind() const override { return "nft"; }
  feeder_limits limits() const override { return limits_; }
  std::string apply(const batch_plan& plan) override;

 private:
  options o_;
  feeder_limits limits_;
};

class ipset_feeder : public feeder {
 public:
  struct options {
    ipset_spec spec;  // from ipset_spec::make
    std::string ipset = "/usr/sbin/ipset";
    command_options command;
    std::chrono::seconds max_timeout = ipset_max_timeout;
  };
  explicit ipset_feeder(options o);
  const char* kind() const override { return "ipset"; }
  feeder_limits limits() const override { return limits_; }
  std::string apply(const batch_plan& plan) override;

 private:
  options o_;
  feeder_limits limits_;
};

// Rewrites the whole file on every batch: written to a temporary name in the
// same directory, fsync'ed and renamed over, so a reader never sees half a file.
class file_feeder : public feeder {
 public:
  explicit file_feeder(file_spec spec);
  const char* kind() const override { return "file"; }
  feeder_limits limits() const override;
  std::string apply(const batch_plan& plan) override;

 private:
  file_spec spec_;
};

// Runs `program add|del CIDR EXPIRES_UNIX REASON RULE` once per change. The
// hook must be idempotent: a full batch (start-up) repeats `add` for every
// entry, an extended ban is a second `add`, and a failed batch is retried.
class exec_feeder : public feeder {
 public:
  struct options {
    std::string program;  // absolute path
    std::chrono::milliseconds timeout{5000};
  };
  explicit exec_feeder(options o);
  const char* kind() const override { return "exec"; }
  feeder_limits limits() const override { return {}; }
  std::string apply(const batch_plan& plan) override;
  bool full_after_failure() const override { return false; }

 private:
  options o_;
};

// A snapshot of a runner's counters (monotonic) and gauges (current), for the
// owner to export as metrics.
struct feeder_stats {
  std::uint64_t batches = 0;                            // applied successfully
  std::uint64_t failures = 0;                           // failed batches
  std::uint64_t added = 0, removed = 0, refreshed = 0;  // elements, over all batches
  std::uint64_t entries = 0;                            // gauge: elements in the target now
  std::uint64_t pending = 0;                            // gauge: changes queued, not applied yet
  std::uint64_t evicted = 0;    // gauge: left out for maxelem at the last plan
  std::uint64_t refused = 0;    // gauge: refused (/0, too short, family) at the last plan
  double last_lag_seconds = 0;  // enqueue of the oldest change → its batch applied
  bool healthy = true;          // the last batch succeeded
};

class feeder_runner {
 public:
  struct options {
    std::chrono::milliseconds batch_interval{100};
    std::size_t batch_max = 500;
    std::chrono::milliseconds retry_min{1000};
    std::chrono::milliseconds retry_max{60000};
    // A full batch this often puts back what someone removed by hand (`nft
    // flush ruleset`, a firewall reload); zero: never. Not for feeders whose
    // failures do not call for a full retry (the exec hook).
    std::chrono::milliseconds resync_interval{std::chrono::minutes{10}};
  };

  // Starts the thread. Nothing is applied before the first change or
  // `reconcile`. The first batch is always a full one, so call `reconcile`
  // first: with only `add` before it, the set is replaced by those entries.
  explicit feeder_runner(std::unique_ptr<feeder> f);
  feeder_runner(std::unique_ptr<feeder> f, options o);
  // Stops and joins; changes not applied yet are dropped (what the kernel
  // holds keeps its own timeouts).
  ~feeder_runner();
  feeder_runner(const feeder_runner&) = delete;
  feeder_runner& operator=(const feeder_runner&) = delete;

  void add(block_entry e);
  void remove(const ip_prefix& p);
  // The target holds exactly `all` (minus refused/evicted) once it is applied.
  void reconcile(std::vector<block_entry> all);

  // Blocks until everything queued before the call has been tried; true when
  // the attempt succeeded. For tests and an orderly shutdown.
  bool wait_idle(std::chrono::milliseconds timeout);

  feeder_stats stats() const;
  const char* kind() const { return feeder_->kind(); }

 private:
  void run();
  void work(std::unique_lock<std::mutex>& lock);

  std::unique_ptr<feeder> feeder_;
  options o_;
  feeder_state state_;  // runner thread only

  mutable std::mutex mu_;
  std::condition_variable wake_, idle_;
  std::map<ip_prefix, std::optional<block_entry>> pending_;
  std::optional<std::vector<block_entry>> pending_reconcile_;
  std::chrono::steady_clock::time_point oldest_pending_{};
  std::uint64_t enqueued_ = 0, tried_ = 0;
  bool last_ok_ = true;
  bool stop_ = false;
  feeder_stats stats_;  // under mu_
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point retry_at_{};
  std::chrono::steady_clock::time_point last_full_{};
  bool synced_ = false, resync_due_ = false;

  std::thread thread_;  // last: started when everything above exists
};

class registry;

// Registers mxguard_firewall_* series (label `feeder` = kind(), so one runner
// per kind) read from `runners` at scrape time: batches, failures, elements
// changed by op, entries, pending, evicted, refused, lag, healthy. The runners
// must outlive every render() of `reg`.
void register_feeder_metrics(registry& reg, std::vector<const feeder_runner*> runners);

}  // namespace mxguard::ops
