// The scan pool: a fixed set of worker threads running libclamav off the I/O
// threads, a bounded queue in front of them, and the engine they use, which
// a reload replaces while scans run.
//
// A session hands its message over and awaits the result on its own
// executor; the I/O thread never blocks. When the queue is full the answer is
// immediate (`overloaded`); when no result comes within the timeout the
// session goes on without one (`timeout`) and the worker drops the job.
//
// Reloads (a changed signature directory, or `reload()` on SIGHUP) build the
// new engine on the pool's own reload thread, then swap it in: scans in
// flight finish on the old engine, which is freed by the last of them. A
// failed load keeps the old engine and logs why.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "mxguard/scan/engine.hpp"

namespace mxguard::scan {

struct pool_settings {
  unsigned workers = 2;
  std::size_t queue_size = 64;  // jobs waiting for a worker; past it `overloaded`
  std::chrono::milliseconds timeout{30000};
  // Messages larger than this go to an unlinked temporary file in
  // `limits.temp_dir` for libclamav instead of being read from memory.
  std::uint64_t temp_file_above = 32u << 20;
  std::string temp_dir = "/tmp";
};

struct signature_source {
  std::string directory;
  engine_limits limits;
  std::chrono::milliseconds check_interval{60000};  // 0 = only on reload()
  friend bool operator==(const signature_source&, const signature_source&) = default;
};

struct pool_counters {
  std::uint64_t scans = 0, viruses = 0, errors = 0, overloaded = 0, timeouts = 0;
  std::uint64_t reloads = 0, reload_failures = 0;
};

class scanner {
 public:
  explicit scanner(pool_settings settings);
  ~scanner();
  scanner(const scanner&) = delete;
  scanner& operator=(const scanner&) = delete;

  // Loads the signatures now, on the calling thread (start-up: the guard does
  // not take mail before its scanner can scan). Returns false with `error`.
  bool load_now(const signature_source& source, std::string& error);
  // Watches `source` from now on (a changed source is loaded at once, off
  // the calling thread).
  void watch(const signature_source& source);
  // Loads again off the calling thread even if nothing seems changed (SIGHUP).
  void reload();

  // Scans `head` + `*body` on the pool; completes on the caller's executor.
  boost::asio::awaitable<result> scan(std::string head, std::shared_ptr<const std::string> body);

  std::shared_ptr<const engine> current() const;
  std::size_t queued() const;
  std::size_t busy() const { return busy_.load(std::memory_order_relaxed); }
  unsigned workers() const { return settings_.workers; }
  pool_counters counters() const;
  // Stops workers and the reload thread; queued jobs are answered `overloaded`.
  void stop();

 private:
  struct job;
  void work();
  void reload_loop();
  result run(const job& j) const;
  void finish(const std::shared_ptr<job>& j, result r);

  pool_settings settings_;
  mutable std::mutex engine_mutex_;
  std::shared_ptr<const engine> engine_;

  mutable std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::shared_ptr<job>> queue_;
  std::size_t idle_ = 0;
  bool stopping_ = false;
  std::atomic<std::size_t> busy_{0};
  std::vector<std::thread> threads_;

  std::mutex reload_mutex_;
  std::condition_variable reload_cv_;
  signature_source source_;
  bool watching_ = false;
  std::uint64_t watch_generation_ = 0;
  bool reload_requested_ = false;
  bool reload_stopping_ = false;
  std::thread reload_thread_;

  struct atomic_counters {
    std::atomic<std::uint64_t> scans{0}, viruses{0}, errors{0}, overloaded{0}, timeouts{0},
        reloads{0}, reload_failures{0};
  } counters_;
};

}  // namespace mxguard::scan
