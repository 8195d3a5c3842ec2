// mxguard::ops metrics: a Prometheus registry rendered in text format 0.0.4.
//
// Registration (a family: name, help, label names) happens at start-up and may
// throw std::invalid_argument on a bad or duplicate name. A family hands out
// one series per label-value set with `with()`; that lookup takes the family's
// mutex, so hot code calls it once and caches the reference, which stays valid
// for the registry's lifetime (the default registry is never destroyed). The
// series' own operations are lock-free relaxed atomics, callable from any
// thread. Label values come from small fixed sets (stage, rule, DNSBL site),
// never from client text: each set lives as long as the registry, and the
// format requires UTF-8.
//
// Values kept elsewhere (queue depth, open sessions) are registered as
// callbacks, called by `render()` on the scraping thread: they must be
// thread-safe, quick, and capture only what outlives the registry.
//
// Output is deterministic: families in registration order, series sorted by
// label values (in label-name order).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mxguard::ops {

enum class metric_type { counter, gauge, histogram };

// A monotonically increasing count. Integral on purpose: an integer add is one
// `lock xadd` and exact under contention; fractional totals (seconds) belong
// in a histogram's `_sum`.
class counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(double v) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
  void sub(double v) noexcept { value_.fetch_sub(v, std::memory_order_relaxed); }
  void inc() noexcept { add(1); }
  void dec() noexcept { sub(1); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Fixed upper bounds (seconds, or whatever unit the name says), `le` inclusive.
class histogram {
 public:
  explicit histogram(std::span<const double> bounds);
  // NaN is ignored rather than poisoning `_sum` for the process lifetime.
  void observe(double v) noexcept;
  template <class Rep, class Period>
  void observe(std::chrono::duration<Rep, Period> d) noexcept {
    observe(std::chrono::duration<double>(d).count());
  }

  struct snapshot {
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
  };
  snapshot read() const;

 private:
  std::span<const double> bounds_;  // owned by the family
  // Per-bucket (not cumulative) counts, last one +Inf, so that an observation
  // touches one bucket; `_count` is their total, so it always equals +Inf.
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

namespace detail {

// Orders label-value lists of std::string or std::string_view alike, so a
// lookup by string_views allocates nothing when the series exists.
struct labels_less {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};

class family_base {
 public:
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;
  virtual ~family_base() = default;
  const std::string& name() const { return name_; }
  virtual void render(std::string& out) const = 0;

 protected:
  family_base(std::string name, std::string help, std::vector<std::string> label_names,
              metric_type type);
  void render_header(std::string& out) const;
  void check_arity(std::size_t n) const;

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  metric_type type_;
};

}  // namespace detail

// One metric name with its label names; one series per label-value set.
template <class Metric>
class family final : public detail::family_base {
 public:
  // The series for these label values, created on first use; throws
  // std::invalid_argument when the count differs from the label names'.
  Metric& with(std::initializer_list<std::string_view> values) {
    return with(std::span<const std::string_view>(values.begin(), values.size()));
  }
  Metric& with(std::span<const std::string_view> values);
  Metric& with(std::span<const std::string> values);
  void render(std::string& out) const override;

 private:
  friend class registry;
  family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds);
  template <class Values>
  Metric& find_or_create(const Values& values);

  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, Metric, detail::labels_less> series_;
};

extern template class family<counter>;
extern template class family<gauge>;
extern template class family<histogram>;

// One series of a callback family, as the callback reports it.
struct sample {
  std::vector<std::string> label_values;
  double value = 0;
};

class registry {
 public:
  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  family<counter>& add_counter_family(std::string name, std::string help,
                                      std::vector<std::string> label_names);
  family<gauge>& add_gauge_family(std::string name, std::string help,
                                  std::vector<std::string> label_names);
  // `bounds`: strictly increasing and finite; +Inf is implied (a trailing one is dropped).
  family<histogram>& add_histogram_family(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds);

  // A family without labels has exactly one series; these return it.
  counter& add_counter(std::string name, std::string help);
  gauge& add_gauge(std::string name, std::string help);
  histogram& add_histogram(std::string name, std::string help, std::vector<double> bounds);

  // Values computed at scrape time.
  void add_counter_callback(std::string name, std::string help, std::function<double()> fn);
  void add_gauge_callback(std::string name, std::string help, std::function<double()> fn);
  // Labelled: the callback reports its series; ones with the wrong number of
  // label values are skipped with a warning (a scrape must not throw).
  void add_callback_family(metric_type type, std::string name, std::string help,
                           std::vector<std::string> label_names,
                           std::function<std::vector<sample>()> fn);

  // Text exposition format 0.0.4 (`text/plain; version=0.0.4`).
  std::string render() const;

 private:
  detail::family_base& add(std::unique_ptr<detail::family_base> f);

  mutable std::mutex mutex_;
  // Append-only, so render() can walk a copy of the pointers without the lock
  // while a callback registers something.
  std::vector<std::unique_ptr<detail::family_base>> families_;
};

inline constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

// The process-wide registry, with the process_* metrics already in it.
registry& metrics();

// process_start_time_seconds, process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds, process_max_fds (from /proc/self).
void add_process_metrics(registry& r);

}  // namespace mxguard::ops
