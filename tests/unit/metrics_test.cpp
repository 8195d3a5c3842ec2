// Unit tests for ops/include/mxguard/ops/metrics.hpp: exposition text,
// escaping, histogram buckets, exact counts under contention, name checks.
#include <chrono>
#include <cmath>
#include <ctime>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "mxguard/ops/metrics.hpp"

namespace mxguard::ops {
namespace {

// The value of the unlabelled series `name` in rendered text, NaN if absent.
double sample_value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(name + " ")) return std::stod(line.substr(name.size() + 1));
  return NAN;
}

TEST(Metrics, CounterFamilyRendersSortedSeries) {
  registry r;
  auto& rejects =
      r.add_counter_family("mxguard_rejects_total", "Refused transactions.", {"stage", "rule"});
  rejects.with({"rcpt", "relay"}).inc();
  rejects.with({"connect", "dnsbl"}).inc(3);
  rejects.with({"connect", "access"}).inc(0);
  EXPECT_EQ(r.render(),
            "# HELP mxguard_rejects_total Refused transactions.\n"
            "# TYPE mxguard_rejects_total counter\n"
            "mxguard_rejects_total{stage=\"connect\",rule=\"access\"} 0\n"
            "mxguard_rejects_total{stage=\"connect\",rule=\"dnsbl\"} 3\n"
            "mxguard_rejects_total{stage=\"rcpt\",rule=\"relay\"} 1\n");
}

TEST(Metrics, FamiliesInRegistrationOrder) {
  registry r;
  r.add_gauge("zeta", "Registered first.").set(-2.5);
  r.add_counter("alpha_total", "").inc(7);
  r.add_gauge_family("empty", "No series yet.", {"pool"});
  EXPECT_EQ(r.render(),
            "# HELP zeta Registered first.\n"
            "# TYPE zeta gauge\n"
            "zeta -2.5\n"
            "# TYPE alpha_total counter\n"
            "alpha_total 7\n"
            "# HELP empty No series yet.\n"
            "# TYPE empty gauge\n");
}

TEST(Metrics, WithReturnsTheSameSeriesForever) {
  registry r;
  auto& f = r.add_counter_family("hits_total", "h", {"ip"});
  counter* first = &f.with({"192.0.2.1"});
  for (int i = 0; i < 1000; ++i) f.with({std::to_string(i)}).inc();
  const std::vector<std::string> key{"192.0.2.1"};
  EXPECT_EQ(&f.with(key), first);
  EXPECT_EQ(&f.with({"192.0.2.1"}), first);
}

TEST(Metrics, GaugeValues) {
  struct row {
    const char* label;
    std::function<void(gauge&)> act;
    const char* want;
  };
  const row rows[] = {
      {"zero", [](gauge&) {}, "0"},
      {"set", [](gauge& g) { g.set(0.25); }, "0.25"},
      {"inc dec", [](gauge& g) { g.inc(), g.inc(), g.dec(); }, "1"},
      {"add sub", [](gauge& g) { g.add(10), g.sub(2.5); }, "7.5"},
      {"large", [](gauge& g) { g.set(1e21); }, "1e+21"},
      {"+Inf", [](gauge& g) { g.set(INFINITY); }, "+Inf"},
      {"-Inf", [](gauge& g) { g.set(-INFINITY); }, "-Inf"},
      {"NaN", [](gauge& g) { g.set(NAN); }, "NaN"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.label);
    registry r;
    row.act(r.add_gauge("g", ""));
    EXPECT_EQ(r.render(), std::string("# TYPE g gauge\ng ") + row.want + "\n");
  }
}

TEST(Metrics, LabelValuesAndHelpEscaped) {
  registry r;
  r.add_counter_family("c_total", "Help with \\ and\nnewline and \"quotes\".", {"v"})
      .with({"a\\b\"c\nd"})
      .inc();
  EXPECT_EQ(r.render(),
            "# HELP c_total Help with \\\\ and\\nnewline and \"quotes\".\n"
            "# TYPE c_total counter\n"
            "c_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  registry r;
  auto& h =
      r.add_histogram_family("smtp_dnsbl_seconds", "DNSBL lookup time.", {"site"}, {0.5, 1, 2.5});
  auto& spamhaus = h.with({"zen"});
  for (double v : {0.25, 0.5, 0.75, 2.0, 100.0}) spamhaus.observe(v);
  spamhaus.observe(NAN);  // ignored
  h.with({"bl"}).observe(std::chrono::milliseconds(250));
  EXPECT_EQ(r.render(),
            "# HELP smtp_dnsbl_seconds DNSBL lookup time.\n"
            "# TYPE smtp_dnsbl_seconds histogram\n"
            "smtp_dnsbl_seconds_bucket{site=\"bl\",le=\"0.5\"} 1\n"
            "smtp_dnsbl_seconds_bucket{site=\"bl\",le=\"1\"} 1\n"
            "smtp_dnsbl_seconds_bucket{site=\"bl\",le=\"2.5\"} 1\n"
            "smtp_dnsbl_seconds_bucket{site=\"bl\",le=\"+Inf\"} 1\n"
            "smtp_dnsbl_seconds_sum{site=\"bl\"} 0.25\n"
            "smtp_dnsbl_seconds_count{site=\"bl\"} 1\n"
            "smtp_dnsbl_seconds_bucket{site=\"zen\",le=\"0.5\"} 2\n"
            "smtp_dnsbl_seconds_bucket{site=\"zen\",le=\"1\"} 3\n"
            "smtp_dnsbl_seconds_bucket{site=\"zen\",le=\"2.5\"} 4\n"
            "smtp_dnsbl_seconds_bucket{site=\"zen\",le=\"+Inf\"} 5\n"
            "smtp_dnsbl_seconds_sum{site=\"zen\"} 103.5\n"
            "smtp_dnsbl_seconds_count{site=\"zen\"} 5\n");
}

TEST(Metrics, UnlabelledHistogramAndTrailingInfDropped) {
  registry r;
  r.add_histogram("t_seconds", "", {0.1, INFINITY}).observe(0.05);
  EXPECT_EQ(r.render(),
            "# TYPE t_seconds histogram\n"
            "t_seconds_bucket{le=\"0.1\"} 1\n"
            "t_seconds_bucket{le=\"+Inf\"} 1\n"
            "t_seconds_sum 0.05\n"
            "t_seconds_count 1\n");
}

TEST(Metrics, CallbacksEvaluatedAtScrape) {
  registry r;
  double depth = 3;
  r.add_gauge_callback("queue_depth", "Jobs waiting.", [&depth] { return depth; });
  r.add_counter_callback("scans_total", "", [] { return 42.0; });
  r.add_callback_family(metric_type::gauge, "sessions", "Open sessions.", {"worker"}, [] {
    return std::vector<sample>{{{"1"}, 5}, {{"0"}, 4}, {{"too", "many"}, 9}};
  });
  const std::string tail =
      "# TYPE scans_total counter\n"
      "scans_total 42\n"
      "# HELP sessions Open sessions.\n"
      "# TYPE sessions gauge\n"
      "sessions{worker=\"0\"} 4\n"
      "sessions{worker=\"1\"} 5\n";
  EXPECT_EQ(r.render(),
            "# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\nqueue_depth 3\n" + tail);
  depth = 8;
  EXPECT_EQ(r.render(),
            "# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\nqueue_depth 8\n" + tail);
}

TEST(Metrics, ThrowingCallbackLeavesTheRestOfTheScrape) {
  registry r;
  r.add_gauge_callback("broken", "", []() -> double { throw std::runtime_error("no source"); });
  r.add_gauge("fine", "").set(1);
  EXPECT_EQ(r.render(), "# TYPE fine gauge\nfine 1\n");
}

TEST(Metrics, ConcurrentIncrementsSumExactly) {
  registry r;
  auto& family = r.add_counter_family("events_total", "", {"kind"});
  auto& cached = family.with({"cached"});
  auto& h = r.add_histogram("work_seconds", "", {0.5, 1.5});
  auto& g = r.add_gauge("level", "");
  constexpr int threads = 8;
  constexpr int per_thread = 100000;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      // Half the series are created by racing threads, to exercise with().
      auto& mine = family.with({t % 2 == 0 ? "even" : "odd"});
      for (int i = 0; i < per_thread; ++i) {
        cached.inc();
        mine.inc();
        h.observe(1.0);
        g.add(1);
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(cached.value(), std::uint64_t{threads} * per_thread);
  EXPECT_EQ(family.with({"even"}).value(), std::uint64_t{threads / 2} * per_thread);
  EXPECT_EQ(family.with({"odd"}).value(), std::uint64_t{threads / 2} * per_thread);
  auto snap = h.read();
  EXPECT_EQ(snap.cumulative, (std::vector<std::uint64_t>{0, 800000, 800000}));
  EXPECT_EQ(snap.sum, 800000.0);  // integers: exact in a double
  EXPECT_EQ(g.value(), 800000.0);
}

TEST(Metrics, BadNamesRejected) {
  struct row {
    const char* label;
    std::function<void(registry&)> add;
  };
  const row rows[] = {
      {"empty name", [](registry& r) { r.add_counter("", "h"); }},
      {"leading digit", [](registry& r) { r.add_counter("1st_total", "h"); }},
      {"dash", [](registry& r) { r.add_gauge("queue-depth", "h"); }},
      {"space", [](registry& r) { r.add_gauge("queue depth", "h"); }},
      {"non-ASCII", [](registry& r) { r.add_gauge("d\xc3\xa9lai", "h"); }},
      {"duplicate family", [](registry& r) { r.add_gauge("taken", "h"); }},
      {"label with colon", [](registry& r) { r.add_counter_family("c", "h", {"a:b"}); }},
      {"reserved label", [](registry& r) { r.add_counter_family("c", "h", {"__name"}); }},
      {"empty label", [](registry& r) { r.add_counter_family("c", "h", {""}); }},
      {"duplicate label",
       [](registry& r) {
         r.add_counter_family("c", "h", {"a", "b", "a"});
       }},
      {"le on histogram", [](registry& r) { r.add_histogram_family("h", "h", {"le"}, {1}); }},
      {"bounds not increasing",
       [](registry& r) {
         r.add_histogram("h", "h", {1, 1});
       }},
      {"bounds decreasing",
       [](registry& r) {
         r.add_histogram("h", "h", {2, 1});
       }},
      {"NaN bound", [](registry& r) { r.add_histogram("h", "h", {NAN}); }},
      {"-Inf bound",
       [](registry& r) {
         r.add_histogram("h", "h", {-INFINITY, 1});
       }},
      {"histogram callback",
       [](registry& r) {
         r.add_callback_family(metric_type::histogram, "h", "h", {},
                               [] { return std::vector<sample>{}; });
       }},
      {"too few label values",
       [](registry& r) {
         r.add_counter_family("c", "h", {"a", "b"}).with({"x"});
       }},
      {"label values for none",
       [](registry& r) { r.add_counter_family("c", "h", {}).with({"x"}); }},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.label);
    registry r;
    r.add_gauge("taken", "h");
    EXPECT_THROW(row.add(r), std::invalid_argument);
  }
  registry ok;
  EXPECT_NO_THROW(ok.add_counter_family("mxguard:rules_total", "h", {"_private", "rule2"}));
  EXPECT_NO_THROW(ok.add_gauge("_underscore", "h"));
}

TEST(Metrics, ProcessMetricsFromProc) {
  registry r;
  add_process_metrics(r);
  const auto text = r.render();
  const double now = static_cast<double>(std::time(nullptr));
  const double start = sample_value(text, "process_start_time_seconds");
  EXPECT_GT(start, now - 600);  // this test process started moments ago
  EXPECT_LE(start, now + 1);
  EXPECT_GT(sample_value(text, "process_resident_memory_bytes"), 1 << 20);
  const double fds = sample_value(text, "process_open_fds");
  EXPECT_GE(fds, 1);
  EXPECT_GE(sample_value(text, "process_max_fds"), fds);
  EXPECT_GE(sample_value(text, "process_cpu_seconds_total"), 0);
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);

  const int extra = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(extra, 0);
  EXPECT_EQ(sample_value(r.render(), "process_open_fds"), fds + 1);
  ::close(extra);
}

TEST(Metrics, DefaultRegistryIsOneAndHasProcessMetrics) {
  EXPECT_EQ(&metrics(), &metrics());
  EXPECT_FALSE(std::isnan(sample_value(metrics().render(), "process_open_fds")));
}

}  // namespace
}  // namespace mxguard::ops
