#include "mxguard/ops/stats.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mxguard/ops/log.hpp"

namespace mxguard::ops {

namespace {

using namespace std::chrono;

// Long enough for any IPv6 text, domain or scanner name; the bound keeps a
// hostile name from bloating the statistics file.
constexpr std::size_t max_name_length = 200;

// Kinds of field whose names come from outside and so must be capped.
constexpr std::array<std::string_view, 3> capped_prefixes = {"client:", "sender_domain:", "virus:"};

std::optional<std::size_t> capped_kind(std::string_view field) {
  for (std::size_t i = 0; i < capped_prefixes.size(); ++i)
    if (field.starts_with(capped_prefixes[i])) return i;
  return std::nullopt;
}

std::string other_field(std::size_t kind) {
  return std::string(capped_prefixes[kind]) + "other";
}

std::string clean_name(std::string_view text) {
  if (text.empty()) return "unknown";
  return escape_client_text(text, max_name_length);
}

void add_all(stats_days& into, stats_days&& from) {
  if (into.empty()) {
    into = std::move(from);
    return;
  }
  for (auto& [day, fields] : from) {
    auto& target = into[day];
    for (auto& [field, n] : fields) target[field] += n;
  }
}

std::string system_error_text(std::string_view what, const std::filesystem::path& path) {
  return fmt::format("{} {}: {}", what, path.string(), std::strerror(errno));
}

// Temp file in the same directory, fsync, rename, fsync the directory: a
// crash leaves either the old file or the new one, never a torn one.
void write_atomically(const std::filesystem::path& path, std::string_view text) {
  auto tmp = path;
  tmp += fmt::format(".tmp.{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) throw stats_error(system_error_text("cannot create", tmp));
  auto fail = [&](std::string_view what) {
    auto message = system_error_text(what, tmp);
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw stats_error(message);
  };
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    auto n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot fsync");
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) fail("cannot close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename into place");
  auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    // The data is in place already; a failed directory fsync only weakens
    // durability across a power loss, so it is not worth failing the add.
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string utc_stamp() {
  auto now = floor<seconds>(system_clock::now());
  auto day = floor<days>(now);
  year_month_day ymd{day};
  hh_mm_ss hms{now - day};
  return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count());
}

// The file format: {"version":1,"days":{"YYYY-MM-DD":{"field":n,...},...}},
// one day per line so that a postmaster can read and grep it.
constexpr int file_version = 1;

std::string serialize(const stats_days& days) {
  std::string out = fmt::format("{{\"version\":{},\"days\":{{", file_version);
  bool first = true;
  for (const auto& [day, fields] : days) {
    nlohmann::json object = nlohmann::json::object();
    for (const auto& [field, n] : fields) object[field] = n;
    out.append(first ? "\n" : ",\n");
    first = false;
    out.append(nlohmann::json(day).dump());
    out.push_back(':');
    out.append(object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  out.append("\n}}\n");
  return out;
}

// Throws std::runtime_error describing what is wrong.
stats_days parse_file(const std::string& text) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(e.what());
  }
  if (!doc.is_object()) throw std::runtime_error("top level is not an object");
  auto version = doc.find("version");
  if (version == doc.end() || *version != file_version)
    throw std::runtime_error(fmt::format("\"version\" is not {}", file_version));
  auto days_it = doc.find("days");
  if (days_it == doc.end() || !days_it->is_object())
    throw std::runtime_error("\"days\" is missing or not an object");
  stats_days days;
  for (const auto& [day, fields] : days_it->items()) {
    if (!parse_day(day)) throw std::runtime_error(fmt::format("bad day \"{}\"", day));
    if (!fields.is_object()) throw std::runtime_error(fmt::format("day {} is not an object", day));
    auto& out = days[day];
    for (const auto& [field, n] : fields.items()) {
      bool fits = n.is_number_integer() &&
                  (!n.is_number_unsigned() ||
                   n.get<std::uint64_t>() <= std::numeric_limits<std::int64_t>::max());
      if (!fits)
        throw std::runtime_error(fmt::format("day {} field \"{}\" is not a count", day, field));
      out[field] = n.get<std::int64_t>();
    }
  }
  return days;
}

}  // namespace

const char* to_string(outcome o) {
  switch (o) {
    case outcome::accepted:
      return "accepted";
    case outcome::refused:
      return "refused";
    case outcome::tempfailed:
      return "tempfailed";
    case outcome::discarded:
      return "discarded";
    case outcome::spam:
      return "spam";
    case outcome::virus:
      return "virus";
  }
  return "accepted";
}

std::string format_day(sys_days day) {
  year_month_day ymd{day};
  return fmt::format("{:04}-{:02}-{:02}", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
}

std::optional<sys_days> parse_day(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  auto number = [&](std::size_t pos, std::size_t len) -> std::optional<int> {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  auto y = number(0, 4), m = number(5, 2), d = number(8, 2);
  if (!y || !m || !d) return std::nullopt;
  year_month_day ymd{year{*y}, month{static_cast<unsigned>(*m)}, day{static_cast<unsigned>(*d)}};
  if (!ymd.ok()) return std::nullopt;
  return sys_days{ymd};
}

namespace stats_field {
std::string outcome(ops::outcome o) {
  return std::string("outcome:") + to_string(o);
}
std::string refused(std::string_view stage, std::string_view rule) {
  return "refused:" + clean_name(stage) + ":" + clean_name(rule);
}
std::string virus(std::string_view name) {
  return "virus:" + clean_name(name);
}
std::string client(std::string_view ip) {
  return "client:" + clean_name(ip);
}
std::string sender_domain(std::string_view domain) {
  auto name = clean_name(domain);
  for (auto& c : name)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return "sender_domain:" + name;
}
}  // namespace stats_field

void merge_capped(stats_fields& into, const stats_fields& deltas, std::size_t max_names) {
  std::array<std::size_t, capped_prefixes.size()> names{};
  for (const auto& [field, n] : into)
    if (auto kind = capped_kind(field); kind && field != other_field(*kind)) ++names[*kind];
  for (const auto& [field, n] : deltas) {
    auto it = into.find(field);
    if (it != into.end()) {
      it->second += n;
      continue;
    }
    auto kind = capped_kind(field);
    if (kind && field != other_field(*kind)) {
      if (names[*kind] >= max_names) {
        into[other_field(*kind)] += n;
        continue;
      }
      ++names[*kind];
    }
    into.emplace(field, n);
  }
}

// ---- file backend ----

struct file_stats_backend::state {
  std::filesystem::path path;
  options opts;
  std::mutex mutex;
  bool loaded = false;
  stats_days days;

  void ensure_loaded() {
    if (loaded) return;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec) && !ec) {
      loaded = true;
      return;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw stats_error(system_error_text("cannot open statistics file", path));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw stats_error(system_error_text("cannot read statistics file", path));
    in.close();
    try {
      days = parse_file(text.str());
      loaded = true;
      return;
    } catch (const std::runtime_error& e) {
      // Moved aside rather than overwritten: it may be a hand edit gone wrong
      // with months of history that a postmaster can repair.
      auto aside = path;
      aside += ".corrupt-" + utc_stamp();
      for (int i = 1; std::filesystem::exists(aside); ++i) {
        aside = path;
        aside += fmt::format(".corrupt-{}.{}", utc_stamp(), i);
      }
      if (::rename(path.c_str(), aside.c_str()) != 0)
        throw stats_error(fmt::format(
            "statistics file {} is corrupt ({}) and cannot be moved aside: {}; not writing to it",
            path.string(), e.what(), std::strerror(errno)));
      days.clear();
      loaded = true;
      throw stats_error(fmt::format(
          "statistics file {} is corrupt ({}); moved aside to {}; starting with empty statistics",
          path.string(), e.what(), aside.string()));
    }
  }
};

file_stats_backend::file_stats_backend(std::filesystem::path path, options opts)
    : state_(std::make_unique<state>()) {
  state_->path = std::move(path);
  state_->opts = opts;
}

file_stats_backend::~file_stats_backend() = default;

void file_stats_backend::add(std::string_view day, const stats_fields& deltas) {
  auto parsed = parse_day(day);
  if (!parsed) throw stats_error(fmt::format("bad statistics day \"{}\"", escape_client_text(day)));
  std::lock_guard lock(state_->mutex);
  state_->ensure_loaded();
  auto& days = state_->days;

  // Undo information instead of a copy of every day: the file may hold a year.
  std::optional<stats_fields> before;
  auto it = days.find(day);
  if (it != days.end()) before = it->second;
  merge_capped(days[std::string(day)], deltas, state_->opts.max_names_per_day);
  stats_days pruned;
  if (state_->opts.retention_days > 0) {
    // Counted back from the day being added, not from the newest stored: a
    // day from a clock that once ran years ahead would otherwise prune every
    // real day as it is added, for good. Such a day (more than one ahead of
    // this one) goes when the clock is right again.
    auto cutoff = format_day(*parsed - std::chrono::days{state_->opts.retention_days - 1});
    auto ahead = format_day(*parsed + std::chrono::days{1});
    while (!days.empty() && days.begin()->first < cutoff) pruned.insert(days.extract(days.begin()));
    while (!days.empty() && days.rbegin()->first > ahead)
      pruned.insert(days.extract(std::prev(days.end())));
  }
  try {
    write_atomically(state_->path, serialize(days));
  } catch (...) {
    days.merge(pruned);
    if (before)
      days[std::string(day)] = std::move(*before);
    else
      days.erase(days.find(day));
    throw;
  }
}

stats_days file_stats_backend::load(std::string_view first_day, std::string_view last_day) {
  std::lock_guard lock(state_->mutex);
  state_->ensure_loaded();
  auto& days = state_->days;
  return stats_days(days.lower_bound(first_day), days.upper_bound(last_day));
}

// ---- recorder ----

namespace {

// Enough that I/O threads rarely share one; a thread keeps its shard for life.
constexpr std::size_t shard_count = 16;

std::size_t this_thread_shard() {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t index = next.fetch_add(1, std::memory_order_relaxed) % shard_count;
  return index;
}

}  // namespace

struct stats_recorder::impl {
  std::shared_ptr<stats_backend> backend;
  stats_recorder_options opts;
  clock_fn clock;

  struct shard {
    std::mutex mutex;
    stats_days pending;
  };
  std::array<shard, shard_count> shards;

  // One place decides which name is the cap+1st of a day, so the cap is exact
  // across threads; only refusals and viruses come here, not accepted mail.
  std::mutex names_mutex;
  std::map<std::string, std::array<std::unordered_set<std::string>, capped_prefixes.size()>,
           std::less<>>
      admitted;

  std::mutex flush_mutex;  // one flush at a time, so the backend sees days in order

  std::mutex thread_mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread flusher;
  bool failing = false;  // flusher thread only

  std::string admit(const std::string& day, std::string field) {
    auto kind = *capped_kind(field);
    if (field == other_field(kind)) return field;
    std::lock_guard lock(names_mutex);
    auto& names = admitted[day][kind];
    if (names.contains(field)) return field;
    if (names.size() >= opts.max_names_per_day) return other_field(kind);
    names.insert(field);
    return field;
  }

  // Yesterday's names stay admitted for events that straddle midnight.
  void forget_old_names() {
    std::lock_guard lock(names_mutex);
    if (admitted.empty()) return;
    auto newest = parse_day(admitted.rbegin()->first);
    if (!newest) return;
    auto keep_from = format_day(*newest - std::chrono::days{1});
    admitted.erase(admitted.begin(), admitted.lower_bound(keep_from));
  }

  void flush_and_log() {
    try {
      std::lock_guard lock(flush_mutex);
      flush_locked();
      if (failing) event("STATS").add("msg", "flushing statistics works again").emit();
      failing = false;
    } catch (const std::exception& e) {
      if (!failing) event("STATS", severity::warning).add("error", e.what()).emit();
      failing = true;
    }
  }

  void flush_locked() {
    stats_days all;
    for (auto& s : shards) {
      stats_days taken;
      {
        std::lock_guard lock(s.mutex);
        taken.swap(s.pending);
      }
      add_all(all, std::move(taken));
    }
    forget_old_names();
    stats_days failed;
    std::string error;
    for (auto& [day, fields] : all) {
      try {
        backend->add(day, fields);
      } catch (const std::exception& e) {
        if (error.empty()) error = e.what();
        failed.emplace(day, std::move(fields));
      }
    }
    if (failed.empty()) return;
    {
      std::lock_guard lock(shards[0].mutex);
      add_all(shards[0].pending, std::move(failed));
    }
    throw stats_error(error);
  }
};

stats_recorder::stats_recorder(std::shared_ptr<stats_backend> backend, stats_recorder_options opts,
                               clock_fn clock)
    : impl_(std::make_unique<impl>()) {
  impl_->backend = std::move(backend);
  impl_->opts = opts;
  impl_->clock = clock ? std::move(clock) : clock_fn([] { return system_clock::now(); });
}

stats_recorder::~stats_recorder() {
  stop_flusher();
  impl_->flush_and_log();
}

void stats_recorder::record(outcome result, std::string_view stage, std::string_view rule,
                            std::string_view client, std::string_view sender_domain,
                            std::string_view virus_name) {
  auto day = format_day(floor<days>(impl_->clock()));
  std::array<std::string, 4> fields;
  std::size_t n = 0;
  fields[n++] = stats_field::outcome(result);
  if (result == outcome::refused) {
    // Always counted, "unknown" if not given: refused:* then adds up to outcome:refused.
    fields[n++] = stats_field::refused(stage, rule);
    if (!client.empty()) fields[n++] = impl_->admit(day, stats_field::client(client));
    if (!sender_domain.empty())
      fields[n++] = impl_->admit(day, stats_field::sender_domain(sender_domain));
  } else if (result == outcome::virus) {
    fields[n++] = impl_->admit(day, stats_field::virus(virus_name));
  }
  auto& s = impl_->shards[this_thread_shard()];
  std::lock_guard lock(s.mutex);
  auto& counts = s.pending[day];
  for (std::size_t i = 0; i < n; ++i) {
    auto it = counts.find(fields[i]);
    if (it != counts.end())
      ++it->second;
    else
      counts.emplace(std::move(fields[i]), 1);
  }
}

void stats_recorder::flush() {
  std::lock_guard lock(impl_->flush_mutex);
  impl_->flush_locked();
}

void stats_recorder::start_flusher() {
  std::lock_guard lock(impl_->thread_mutex);
  if (impl_->flusher.joinable()) return;
  impl_->stopping = false;
  impl_->flusher = std::thread([this] {
    std::unique_lock lock(impl_->thread_mutex);
    while (!impl_->stopping) {
      impl_->wake.wait_for(lock, impl_->opts.flush_interval, [this] { return impl_->stopping; });
      if (impl_->stopping) break;
      lock.unlock();
      impl_->flush_and_log();
      lock.lock();
    }
  });
}

void stats_recorder::stop_flusher() {
  std::thread t;
  {
    std::lock_guard lock(impl_->thread_mutex);
    impl_->stopping = true;
    t = std::move(impl_->flusher);
  }
  impl_->wake.notify_all();
  if (t.joinable()) t.join();
}

stats_days stats_recorder::pending() const {
  stats_days all;
  for (auto& s : impl_->shards) {
    std::lock_guard lock(s.mutex);
    for (const auto& [day, fields] : s.pending) {
      auto& target = all[day];
      for (const auto& [field, n] : fields) target[field] += n;
    }
  }
  return all;
}

}  // namespace mxguard::ops
