// mxguard::ops statistics: per-day counters of what the guard decided.
//
// Data model. One UTC day ("YYYY-MM-DD") maps to a flat table field -> int64,
// so a Redis backend is one hash per day: `HINCRBY mxguard:stats:<day> <field> <n>`.
// Fields:
//   outcome:<o>                 every decision, o = accepted|refused|tempfailed|
//                               discarded|spam|virus (exactly one per decision)
//   refused:<stage>:<rule>      refusals by SMTP stage and deciding rule
//   virus:<name>                virus verdicts by the scanner's name
//   client:<ip>                 refused clients
//   sender_domain:<domain>      refused transactions by MAIL FROM domain
//   client:other, sender_domain:other, virus:other
//                               names past the per-day cap (`max_names_per_day`)
// A decision is one refused connection or one transaction (MAIL .. end of DATA).
// A virus is counted as outcome:virus only, not also as a refusal, so that the
// outcomes add up to what was received. Names from mail are made printable
// ASCII (escape_client_text), truncated, and domains lower-cased; the literal
// name "other" merges with the overflow bucket.
//
// Threads. Sessions on any I/O thread call `stats_recorder::record`; it takes a
// per-thread-shard lock and never does I/O. Deltas reach the backend on the
// recorder's own flusher thread (or an explicit `flush()`), because a file
// backend blocks on fsync and the I/O threads must not.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mxguard::ops {

enum class outcome { accepted, refused, tempfailed, discarded, spam, virus };
inline constexpr outcome all_outcomes[] = {outcome::accepted,   outcome::refused,
                                           outcome::tempfailed, outcome::discarded,
                                           outcome::spam,       outcome::virus};
const char* to_string(outcome o);

using stats_fields = std::map<std::string, std::int64_t, std::less<>>;  // field -> count
using stats_days = std::map<std::string, stats_fields, std::less<>>;    // "YYYY-MM-DD" -> fields

std::string format_day(std::chrono::sys_days day);
// Only the canonical "YYYY-MM-DD" of a valid date.
std::optional<std::chrono::sys_days> parse_day(std::string_view text);

// Field names; values are sanitised as described above.
namespace stats_field {
std::string outcome(ops::outcome o);
std::string refused(std::string_view stage, std::string_view rule);
std::string virus(std::string_view name);
std::string client(std::string_view ip);
std::string sender_domain(std::string_view domain);
}  // namespace stats_field

class stats_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where the counters live. Implementations are called from one flusher thread
// and, concurrently, from whoever renders a report: they must be thread-safe.
class stats_backend {
 public:
  virtual ~stats_backend() = default;
  // Adds `deltas` to the day's counters, all or nothing; throws stats_error.
  virtual void add(std::string_view day, const stats_fields& deltas) = 0;
  // The stored days in [first_day, last_day] (inclusive, "YYYY-MM-DD").
  virtual stats_days load(std::string_view first_day, std::string_view last_day) = 0;
};

inline constexpr std::size_t default_max_names_per_day = 2000;
inline constexpr int default_retention_days = 400;
inline constexpr std::chrono::seconds default_flush_interval{60};

// Adds `deltas` into `into`, folding client/sender_domain/virus names that
// would exceed `max_names` distinct names of their kind into `<kind>:other`.
// Backends use it so the cap also holds across restarts and gateway pairs.
void merge_capped(stats_fields& into, const stats_fields& deltas, std::size_t max_names);

// All days in one JSON file, rewritten atomically (temp file, fsync, rename) on
// every add. One process owns the file. The whole file is kept in memory.
// A file that does not parse is renamed to `<path>.corrupt-<UTC time>` and the
// call that found it throws stats_error naming both files; the next call
// starts from an empty file, so a recorder's retried deltas are not lost.
class file_stats_backend final : public stats_backend {
 public:
  struct options {
    int retention_days = default_retention_days;  // relative to the newest stored day
    std::size_t max_names_per_day = default_max_names_per_day;
  };
  explicit file_stats_backend(std::filesystem::path path, options opts);
  explicit file_stats_backend(std::filesystem::path path)
      : file_stats_backend(std::move(path), options{}) {}
  ~file_stats_backend() override;

  void add(std::string_view day, const stats_fields& deltas) override;
  stats_days load(std::string_view first_day, std::string_view last_day) override;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

struct stats_recorder_options {
  std::size_t max_names_per_day = default_max_names_per_day;
  std::chrono::milliseconds flush_interval = default_flush_interval;
};

class stats_recorder {
 public:
  using clock_fn = std::function<std::chrono::system_clock::time_point()>;
  // `clock` decides which day an event counts on (default: system_clock::now).
  explicit stats_recorder(std::shared_ptr<stats_backend> backend, stats_recorder_options opts = {},
                          clock_fn clock = {});
  // Stops the flusher and flushes what is pending; a failure is logged.
  ~stats_recorder();
  stats_recorder(const stats_recorder&) = delete;
  stats_recorder& operator=(const stats_recorder&) = delete;

  // One decision. `stage` and `rule` count for refusals, `client` and
  // `sender_domain` for refusals, `virus_name` for viruses; empty ones are skipped.
  void record(outcome result, std::string_view stage = {}, std::string_view rule = {},
              std::string_view client = {}, std::string_view sender_domain = {},
              std::string_view virus_name = {});

  // Hands the pending deltas to the backend. On failure they stay pending
  // (retried next time) and stats_error is thrown.
  void flush();
  // A thread that flushes every `flush_interval`, logging failures once per
  // change of state. Idempotent; the destructor stops it.
  void start_flusher();
  void stop_flusher();

  // Deltas not yet flushed (for `mxguardctl stats` and tests).
  stats_days pending() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mxguard::ops
