// Per-day statistics: field names, exact counts under concurrency, the cap on
// names, and the JSON file backend (restart, corruption, retention). Time is
// an injected clock; nothing sleeps.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "mxguard/ops/stats.hpp"

namespace mxguard::ops {
namespace {

using namespace std::chrono;

// A backend at the interface boundary, to count exactly what a recorder hands
// over and to make it fail on demand.
class memory_backend final : public stats_backend {
 public:
  void add(std::string_view day, const stats_fields& deltas) override {
    std::lock_guard lock(mutex_);
    if (fail_) throw stats_error("disk full");
    auto& fields = days_[std::string(day)];
    for (const auto& [field, n] : deltas) fields[field] += n;
    ++adds_;
  }
  stats_days load(std::string_view first, std::string_view last) override {
    std::lock_guard lock(mutex_);
    return stats_days(days_.lower_bound(first), days_.upper_bound(last));
  }
  void set_fail(bool fail) {
    std::lock_guard lock(mutex_);
    fail_ = fail;
  }
  stats_days all() { return load("0000-01-01", "9999-12-31"); }
  int adds() {
    std::lock_guard lock(mutex_);
    return adds_;
  }

 private:
  std::mutex mutex_;
  stats_days days_;
  bool fail_ = false;
  int adds_ = 0;
};

system_clock::time_point at(int y, unsigned m, unsigned d, int hour = 12) {
  return sys_days{year{y} / month{m} / day{d}} + hours{hour};
}

class temp_dir {
 public:
  temp_dir() {
    auto pattern = (std::filesystem::temp_directory_path() / "mxguard-stats-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::int64_t field(const stats_days& days, std::string_view day, std::string_view name) {
  auto d = days.find(day);
  if (d == days.end()) return 0;
  auto f = d->second.find(name);
  return f == d->second.end() ? 0 : f->second;
}

std::size_t count_prefix(const stats_fields& fields, std::string_view prefix) {
  std::size_t n = 0;
  for (const auto& [name, v] : fields)
    if (name.starts_with(prefix)) ++n;
  return n;
}

TEST(StatsDay, FormatAndParse) {
  EXPECT_EQ(format_day(sys_days{year{2024} / 2 / 29}), "2024-02-29");
  EXPECT_EQ(format_day(sys_days{year{1999} / 12 / 1}), "1999-12-01");
  struct row {
    const char* text;
    bool ok;
  } rows[] = {
      {"2024-02-29", true},   {"2023-02-29", false}, {"2024-13-01", false}, {"2024-1-01", false},
      {"2024-01-01x", false}, {"20a4-01-01", false}, {"", false},           {"2024-12-31", true},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.text);
    auto got = parse_day(r.text);
    ASSERT_EQ(got.has_value(), r.ok);
    if (got) {
      EXPECT_EQ(format_day(*got), r.text);
    }
  }
}

TEST(StatsField, NamesAreSanitised) {
  struct row {
    std::string got, want;
  } rows[] = {
      {stats_field::outcome(outcome::tempfailed), "outcome:tempfailed"},
      {stats_field::refused("rcpt", "relay"), "refused:rcpt:relay"},
      {stats_field::refused("", ""), "refused:unknown:unknown"},
      {stats_field::client("2001:db8::1"), "client:2001:db8::1"},
      {stats_field::sender_domain("Example.COM"), "sender_domain:example.com"},
      {stats_field::virus("Eicar\r\nX"), "virus:Eicar\\x0d\\x0aX"},
      {stats_field::virus("\xc3\xa9t\xc3\xa9"), "virus:\\xc3\\xa9t\\xc3\\xa9"},
  };
  for (const auto& r : rows) EXPECT_EQ(r.got, r.want);
  EXPECT_LE(stats_field::virus(std::string(10000, 'A')).size(), 220u);
}

TEST(StatsRecorder, ConcurrentRecordingIsExact) {
  auto backend = std::make_shared<memory_backend>();
  stats_recorder rec(backend, {}, [] { return at(2024, 3, 5); });
  constexpr int threads = 6, per_thread = 20000;
  std::atomic<bool> done{false};
  // Flushes race the recording threads, so deltas are swapped out mid-stream.
  std::thread flusher([&] {
    while (!done.load()) rec.flush();
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&rec, t] {
      for (int i = 0; i < per_thread; ++i) {
        switch (i % 4) {
          case 0:
            rec.record(outcome::accepted);
            break;
          case 1:
            rec.record(outcome::refused, "rcpt", "relay", "192.0.2." + std::to_string(t),
                       "spam.example");
            break;
          case 2:
            rec.record(outcome::virus, {}, {}, {}, {}, "Eicar-Test-Signature");
            break;
          case 3:
            rec.record(outcome::spam);
            break;
        }
      }
    });
  for (auto& w : workers) w.join();
  done = true;
  flusher.join();
  rec.flush();
  EXPECT_TRUE(rec.pending().empty());

  auto days = backend->all();
  ASSERT_EQ(days.size(), 1u);
  constexpr std::int64_t each = threads * per_thread / 4;
  const char* d = "2024-03-05";
  EXPECT_EQ(field(days, d, "outcome:accepted"), each);
  EXPECT_EQ(field(days, d, "outcome:refused"), each);
  EXPECT_EQ(field(days, d, "outcome:virus"), each);
  EXPECT_EQ(field(days, d, "outcome:spam"), each);
  EXPECT_EQ(field(days, d, "refused:rcpt:relay"), each);
  EXPECT_EQ(field(days, d, "sender_domain:spam.example"), each);
  EXPECT_EQ(field(days, d, "virus:Eicar-Test-Signature"), each);
  for (int t = 0; t < threads; ++t)
    EXPECT_EQ(field(days, d, "client:192.0.2." + std::to_string(t)), per_thread / 4);
  EXPECT_EQ(field(days, d, "outcome:tempfailed"), 0);
}

TEST(StatsRecorder, CapOverflowsIntoOther) {
  auto backend = std::make_shared<memory_backend>();
  stats_recorder rec(backend, {.max_names_per_day = 3}, [] { return at(2024, 3, 5); });
  for (int i = 0; i < 5; ++i)
    for (int k = 0; k <= i; ++k)  // client i is refused i+1 times
      rec.record(outcome::refused, "connect", "dnsbl", "198.51.100." + std::to_string(i),
                 "d" + std::to_string(i) + ".example");
  for (int i = 0; i < 4; ++i) rec.record(outcome::virus, {}, {}, {}, {}, "V" + std::to_string(i));
  rec.flush();
  // Later flushes keep the same admitted names: the first three stay named.
  rec.record(outcome::refused, "connect", "dnsbl", "198.51.100.0", "d9.example");
  rec.flush();

  auto days = backend->all();
  const auto& f = days.at("2024-03-05");
  const char* d = "2024-03-05";
  EXPECT_EQ(count_prefix(f, "client:"), 4u);  // three names + other
  EXPECT_EQ(field(days, d, "client:198.51.100.0"), 2);
  EXPECT_EQ(field(days, d, "client:198.51.100.1"), 2);
  EXPECT_EQ(field(days, d, "client:198.51.100.2"), 3);
  EXPECT_EQ(field(days, d, "client:other"), 4 + 5);
  EXPECT_EQ(field(days, d, "sender_domain:other"), 4 + 5 + 1);
  EXPECT_EQ(field(days, d, "virus:V2"), 1);
  EXPECT_EQ(field(days, d, "virus:other"), 1);
  EXPECT_EQ(field(days, d, "outcome:refused"), 16);
}

TEST(StatsRecorder, CapIsExactUnderConcurrency) {
  auto backend = std::make_shared<memory_backend>();
  stats_recorder rec(backend, {.max_names_per_day = 10}, [] { return at(2024, 3, 5); });
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t)
    workers.emplace_back([&rec, t] {
      for (int i = 0; i < 500; ++i)
        rec.record(outcome::refused, "mail", "rhsbl", "203.0.113." + std::to_string((i + t) % 100));
    });
  for (auto& w : workers) w.join();
  rec.flush();
  auto days = backend->all();
  const auto& f = days.at("2024-03-05");
  EXPECT_EQ(count_prefix(f, "client:"), 11u);
  std::int64_t sum = 0;
  for (const auto& [name, n] : f)
    if (name.starts_with("client:")) sum += n;
  EXPECT_EQ(sum, 2000);
}

TEST(StatsRecorder, EventsCountOnTheirUtcDay) {
  auto backend = std::make_shared<memory_backend>();
  system_clock::time_point now = at(2024, 2, 29, 23);
  stats_recorder rec(backend, {}, [&now] { return now; });
  rec.record(outcome::accepted);
  now += hours{1};
  rec.record(outcome::accepted);
  rec.record(outcome::tempfailed);
  rec.flush();
  auto days = backend->all();
  EXPECT_EQ(field(days, "2024-02-29", "outcome:accepted"), 1);
  EXPECT_EQ(field(days, "2024-03-01", "outcome:accepted"), 1);
  EXPECT_EQ(field(days, "2024-03-01", "outcome:tempfailed"), 1);
}

TEST(StatsRecorder, FailedFlushKeepsDeltasForTheNextOne) {
  auto backend = std::make_shared<memory_backend>();
  stats_recorder rec(backend, {}, [] { return at(2024, 3, 5); });
  rec.record(outcome::refused, "helo", "syntax", "192.0.2.1");
  backend->set_fail(true);
  EXPECT_THROW(rec.flush(), stats_error);
  EXPECT_EQ(field(rec.pending(), "2024-03-05", "outcome:refused"), 1);
  rec.record(outcome::refused, "helo", "syntax", "192.0.2.1");
  backend->set_fail(false);
  rec.flush();
  EXPECT_TRUE(rec.pending().empty());
  auto days = backend->all();
  EXPECT_EQ(field(days, "2024-03-05", "outcome:refused"), 2);
  EXPECT_EQ(field(days, "2024-03-05", "client:192.0.2.1"), 2);
}

TEST(StatsRecorder, DestructorFlushes) {
  auto backend = std::make_shared<memory_backend>();
  {
    stats_recorder rec(backend, {}, [] { return at(2024, 3, 5); });
    rec.start_flusher();
    rec.record(outcome::discarded);
  }
  EXPECT_EQ(field(backend->all(), "2024-03-05", "outcome:discarded"), 1);
}

TEST(StatsMergeCapped, HoldsAgainstStoredNames) {
  stats_fields stored = {{"client:a", 1}, {"client:b", 1}, {"virus:x", 1}};
  merge_capped(stored, {{"client:a", 2}, {"client:c", 5}, {"client:other", 1}, {"virus:y", 1}}, 2);
  stats_fields want = {
      {"client:a", 3}, {"client:b", 1}, {"client:other", 6}, {"virus:x", 1}, {"virus:y", 1}};
  EXPECT_EQ(stored, want);
}

TEST(StatsFile, SurvivesRestart) {
  temp_dir dir;
  auto path = dir.path() / "stats.json";
  auto clock = [] { return at(2024, 3, 5); };
  {
    auto backend = std::make_shared<file_stats_backend>(path);
    stats_recorder rec(backend, {}, clock);
    for (int i = 0; i < 7; ++i) rec.record(outcome::accepted);
    rec.record(outcome::refused, "rcpt", "relay", "192.0.2.9", "Spam.Example");
    rec.record(outcome::virus, {}, {}, {}, {}, "Eicar-Test-Signature");
    rec.flush();
  }
  // Nothing but the file itself is left in the directory: the temp file was renamed.
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"stats.json"});

  auto backend = std::make_shared<file_stats_backend>(path);
  auto days = backend->load("2024-03-01", "2024-03-31");
  EXPECT_EQ(field(days, "2024-03-05", "outcome:accepted"), 7);
  EXPECT_EQ(field(days, "2024-03-05", "refused:rcpt:relay"), 1);
  EXPECT_EQ(field(days, "2024-03-05", "client:192.0.2.9"), 1);
  EXPECT_EQ(field(days, "2024-03-05", "sender_domain:spam.example"), 1);
  EXPECT_EQ(field(days, "2024-03-05", "virus:Eicar-Test-Signature"), 1);

  {
    stats_recorder rec(backend, {}, clock);
    rec.record(outcome::accepted);
    rec.flush();
  }
  auto reopened = file_stats_backend(path).load("2024-03-05", "2024-03-05");
  EXPECT_EQ(field(reopened, "2024-03-05", "outcome:accepted"), 8);
  EXPECT_TRUE(file_stats_backend(path).load("2024-03-06", "2024-03-31").empty());
}

TEST(StatsFile, CorruptFileIsMovedAsideAndReported) {
  temp_dir dir;
  auto path = dir.path() / "stats.json";
  const std::string garbage = "{\"version\":1,\"days\":{\"2024-03-05\":{\"outcome:acc";
  std::ofstream(path) << garbage;

  auto backend = std::make_shared<file_stats_backend>(path);
  stats_recorder rec(backend, {}, [] { return at(2024, 3, 5); });
  rec.record(outcome::accepted);
  try {
    rec.flush();
    FAIL() << "a corrupt file must be reported";
  } catch (const stats_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("is corrupt"), std::string::npos) << what;
    EXPECT_NE(what.find("moved aside to"), std::string::npos) << what;
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
  }
  std::vector<std::filesystem::path> aside;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().filename().string().starts_with("stats.json.corrupt-")) aside.push_back(e.path());
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(read_all(aside[0]), garbage);

  // The failed flush kept its deltas; the retry writes a fresh file with them.
  rec.flush();
  auto days = file_stats_backend(path).load("2024-03-05", "2024-03-05");
  EXPECT_EQ(field(days, "2024-03-05", "outcome:accepted"), 1);
}

TEST(StatsFile, WrongShapeIsCorruptToo) {
  const char* bodies[] = {
      "[]",
      "{\"version\":2,\"days\":{}}",
      "{\"version\":1,\"days\":{\"2024-02-30\":{}}}",
      "{\"version\":1,\"days\":{\"2024-03-05\":{\"outcome:accepted\":\"many\"}}}",
      "{\"version\":1,\"days\":{\"2024-03-05\":{\"outcome:accepted\":18446744073709551615}}}",
  };
  for (const char* body : bodies) {
    SCOPED_TRACE(body);
    temp_dir dir;
    auto path = dir.path() / "stats.json";
    std::ofstream(path) << body;
    file_stats_backend backend(path);
    EXPECT_THROW(backend.load("2024-01-01", "2024-12-31"), stats_error);
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_TRUE(backend.load("2024-01-01", "2024-12-31").empty());
  }
}

TEST(StatsFile, RetentionPrunesOldDays) {
  temp_dir dir;
  auto path = dir.path() / "stats.json";
  file_stats_backend backend(path, {.retention_days = 3});
  for (int d = 1; d <= 5; ++d)
    backend.add(format_day(sys_days{year{2024} / 2 / 27} + days{d}), {{"outcome:accepted", d}});
  // 2024-02-28, 02-29, 03-01, 03-02, 03-03: the last three stay.
  auto days = file_stats_backend(path).load("2024-01-01", "2024-12-31");
  std::vector<std::string> kept;
  for (const auto& [day, f] : days) kept.push_back(day);
  EXPECT_EQ(kept, (std::vector<std::string>{"2024-03-01", "2024-03-02", "2024-03-03"}));
  EXPECT_EQ(field(days, "2024-03-03", "outcome:accepted"), 5);
}

// One reading of a clock years ahead (a bad RTC at boot): the days before
// it go with that reading (retention counts from the day added), but the
// days after it are kept, and the stray day goes once the clock is right.
TEST(StatsFile, RetentionSurvivesAClockThatRanAhead) {
  temp_dir dir;
  auto path = dir.path() / "stats.json";
  file_stats_backend backend(path, {.retention_days = 3});
  backend.add("2025-01-01", {{"outcome:accepted", 1}});
  backend.add("2037-06-01", {{"outcome:accepted", 1}});
  backend.add("2025-01-02", {{"outcome:accepted", 2}});
  backend.add("2025-01-02", {{"outcome:accepted", 3}});
  auto days = file_stats_backend(path).load("2020-01-01", "2040-12-31");
  std::vector<std::string> kept;
  for (const auto& [day, f] : days) kept.push_back(day);
  EXPECT_EQ(kept, (std::vector<std::string>{"2025-01-02"}));
  EXPECT_EQ(field(days, "2025-01-02", "outcome:accepted"), 5);
}

TEST(StatsFile, BackendCapHoldsAcrossRestarts) {
  temp_dir dir;
  auto path = dir.path() / "stats.json";
  file_stats_backend::options opts{.max_names_per_day = 2};
  file_stats_backend(path, opts).add("2024-03-05", {{"client:a", 1}, {"client:b", 1}});
  file_stats_backend(path, opts).add("2024-03-05", {{"client:b", 1}, {"client:c", 4}});
  auto days = file_stats_backend(path).load("2024-03-05", "2024-03-05");
  EXPECT_EQ(field(days, "2024-03-05", "client:b"), 2);
  EXPECT_EQ(field(days, "2024-03-05", "client:c"), 0);
  EXPECT_EQ(field(days, "2024-03-05", "client:other"), 4);
}

TEST(StatsFile, RejectsBadDay) {
  temp_dir dir;
  file_stats_backend backend(dir.path() / "stats.json");
  EXPECT_THROW(backend.add("2024-3-5", {{"outcome:accepted", 1}}), stats_error);
}

}  // namespace
}  // namespace mxguard::ops
