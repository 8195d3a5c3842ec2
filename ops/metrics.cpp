#include "mxguard/ops/metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

#include "mxguard/ops/log.hpp"

namespace mxguard::ops {

namespace {

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool valid_metric_name(std::string_view n) {
  if (n.empty() || !(is_name_start(n[0]) || n[0] == ':')) return false;
  return std::all_of(n.begin(), n.end(),
                     [](char c) { return is_name_start(c) || is_digit(c) || c == ':'; });
}

bool valid_label_name(std::string_view n) {
  // Names starting with "__" are reserved for Prometheus' own use.
  if (n.empty() || !is_name_start(n[0]) || n.starts_with("__")) return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return is_name_start(c) || is_digit(c); });
}

const char* type_name(metric_type t) {
  switch (t) {
    case metric_type::counter:
      return "counter";
    case metric_type::gauge:
      return "gauge";
    case metric_type::histogram:
      return "histogram";
  }
  return "untyped";
}

void append_value(std::string& out, double v) {
  if (std::isnan(v))
    out.append("NaN");
  else if (std::isinf(v))
    out.append(v > 0 ? "+Inf" : "-Inf");
  else
    fmt::format_to(std::back_inserter(out), "{}", v);
}

void append_value(std::string& out, std::uint64_t v) {
  fmt::format_to(std::back_inserter(out), "{}", v);
}

void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out.append("\\\\");
        break;
      case '"':
        out.append("\\\"");
        break;
      case '\n':
        out.append("\\n");
        break;
      default:
        out.push_back(c);
    }
  }
}

// `{a="x",b="y"}`, with `le` last for histogram buckets; nothing when empty.
void append_labels(std::string& out, std::span<const std::string> names,
                   std::span<const std::string> values, std::string_view le = {}) {
  if (names.empty() && le.empty()) return;
  out.push_back('{');
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(names[i]);
    out.append("=\"");
    append_label_value(out, values[i]);
    out.push_back('"');
  }
  if (!le.empty()) {
    if (!names.empty()) out.push_back(',');
    out.append("le=\"");
    out.append(le);
    out.push_back('"');
  }
  out.push_back('}');
}

template <class Value>
void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   std::span<const std::string> names, std::span<const std::string> values, Value v,
                   std::string_view le = {}) {
  out.append(name);
  out.append(suffix);
  append_labels(out, names, values, le);
  out.push_back(' ');
  append_value(out, v);
  out.push_back('\n');
}

class callback_family final : public detail::family_base {
 public:
  callback_family(std::string name, std::string help, std::vector<std::string> label_names,
                  metric_type type, std::function<std::vector<sample>()> fn)
      : family_base(std::move(name), std::move(help), std::move(label_names), type),
        fn_(std::move(fn)) {}

  void render(std::string& out) const override {
    std::vector<sample> samples;
    try {
      samples = fn_();
    } catch (const std::exception& e) {
      // A scrape reports what it can; one broken source must not fail the rest.
      log_message(severity::warning, "METRICS_CALLBACK", name_ + ": " + e.what());
      return;
    }
    std::stable_sort(samples.begin(), samples.end(), [](const sample& a, const sample& b) {
      return detail::labels_less{}(a.label_values, b.label_values);
    });
    render_header(out);
    for (const auto& s : samples) {
      if (s.label_values.size() != label_names_.size()) {
        log_message(severity::warning, "METRICS_CALLBACK",
                    name_ + ": sample with the wrong number of label values skipped");
        continue;
      }
      append_sample(out, name_, "", label_names_, s.label_values, s.value);
    }
  }

 private:
  std::function<std::vector<sample>()> fn_;
};

std::function<std::vector<sample>()> single(std::function<double()> fn) {
  return [fn = std::move(fn)] { return std::vector<sample>{sample{{}, fn()}}; };
}

}  // namespace

histogram::histogram(std::span<const double> bounds)
    : bounds_(bounds),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {}

void histogram::observe(double v) noexcept {
  if (std::isnan(v)) return;
  auto i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[static_cast<std::size_t>(i)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

histogram::snapshot histogram::read() const {
  snapshot s;
  s.cumulative.reserve(bounds_.size() + 1);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

namespace detail {

family_base::family_base(std::string name, std::string help, std::vector<std::string> label_names,
                         metric_type type)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      type_(type) {
  if (!valid_metric_name(name_)) throw std::invalid_argument("bad metric name: " + name_);
  for (std::size_t i = 0; i < label_names_.size(); ++i) {
    const auto& l = label_names_[i];
    if (!valid_label_name(l))
      throw std::invalid_argument("metric " + name_ + ": bad label name: " + l);
    if (type_ == metric_type::histogram && l == "le")
      throw std::invalid_argument("metric " + name_ + ": label name le is the histogram's own");
    if (std::find(label_names_.begin(), label_names_.begin() + static_cast<std::ptrdiff_t>(i), l) !=
        label_names_.begin() + static_cast<std::ptrdiff_t>(i))
      throw std::invalid_argument("metric " + name_ + ": duplicate label name: " + l);
  }
}

void family_base::render_header(std::string& out) const {
  if (!help_.empty()) {
    out.append("# HELP ");
    out.append(name_);
    out.push_back(' ');
    for (char c : help_) {
      if (c == '\\')
        out.append("\\\\");
      else if (c == '\n')
        out.append("\\n");
      else
        out.push_back(c);
    }
    out.push_back('\n');
  }
  out.append("# TYPE ");
  out.append(name_);
  out.push_back(' ');
  out.append(type_name(type_));
  out.push_back('\n');
}

void family_base::check_arity(std::size_t n) const {
  if (n != label_names_.size())
    throw std::invalid_argument(fmt::format("metric {}: {} label values for {} label names", name_,
                                            n, label_names_.size()));
}

}  // namespace detail

template <class Metric>
family<Metric>::family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds)
    : family_base(std::move(name), std::move(help), std::move(label_names),
                  std::is_same_v<Metric, counter> ? metric_type::counter
                  : std::is_same_v<Metric, gauge> ? metric_type::gauge
                                                  : metric_type::histogram),
      bounds_(std::move(bounds)) {
  if constexpr (std::is_same_v<Metric, histogram>) {
    if (!bounds_.empty() && bounds_.back() == INFINITY) bounds_.pop_back();
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
      if (!std::isfinite(bounds_[i]) || (i > 0 && !(bounds_[i - 1] < bounds_[i])))
        throw std::invalid_argument("histogram " + name_ +
                                    ": bucket bounds must be finite and strictly increasing");
    }
  }
}

template <class Metric>
template <class Values>
Metric& family<Metric>::find_or_create(const Values& values) {
  check_arity(values.size());
  std::lock_guard lock(mutex_);
  auto it = series_.find(values);
  if (it == series_.end()) {
    std::vector<std::string> key(values.begin(), values.end());
    if constexpr (std::is_same_v<Metric, histogram>)
      it = series_
               .emplace(std::piecewise_construct, std::forward_as_tuple(std::move(key)),
                        std::forward_as_tuple(std::span<const double>(bounds_)))
               .first;
    else
      it = series_.try_emplace(std::move(key)).first;
  }
  return it->second;
}

template <class Metric>
Metric& family<Metric>::with(std::span<const std::string_view> values) {
  return find_or_create(values);
}

template <class Metric>
Metric& family<Metric>::with(std::span<const std::string> values) {
  return find_or_create(values);
}

template <class Metric>
void family<Metric>::render(std::string& out) const {
  render_header(out);
  std::lock_guard lock(mutex_);
  for (const auto& [labels, m] : series_) {
    if constexpr (std::is_same_v<Metric, histogram>) {
      auto snap = m.read();
      for (std::size_t i = 0; i < bounds_.size(); ++i) {
        std::string le;
        append_value(le, bounds_[i]);
        append_sample(out, name_, "_bucket", label_names_, labels, snap.cumulative[i], le);
      }
      append_sample(out, name_, "_bucket", label_names_, labels, snap.cumulative.back(), "+Inf");
      append_sample(out, name_, "_sum", label_names_, labels, snap.sum);
      append_sample(out, name_, "_count", label_names_, labels, snap.cumulative.back());
    } else {
      append_sample(out, name_, "", label_names_, labels, m.value());
    }
  }
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

registry::registry() = default;
registry::~registry() = default;

detail::family_base& registry::add(std::unique_ptr<detail::family_base> f) {
  std::lock_guard lock(mutex_);
  for (const auto& existing : families_)
    if (existing->name() == f->name())
      throw std::invalid_argument("metric registered twice: " + f->name());
  families_.push_back(std::move(f));
  return *families_.back();
}

family<counter>& registry::add_counter_family(std::string name, std::string help,
                                              std::vector<std::string> label_names) {
  return static_cast<family<counter>&>(add(std::unique_ptr<family<counter>>(
      new family<counter>(std::move(name), std::move(help), std::move(label_names), {}))));
}

family<gauge>& registry::add_gauge_family(std::string name, std::string help,
                                          std::vector<std::string> label_names) {
  return static_cast<family<gauge>&>(add(std::unique_ptr<family<gauge>>(
      new family<gauge>(std::move(name), std::move(help), std::move(label_names), {}))));
}

family<histogram>& registry::add_histogram_family(std::string name, std::string help,
                                                  std::vector<std::string> label_names,
                                                  std::vector<double> bounds) {
  return static_cast<family<histogram>&>(
      add(std::unique_ptr<family<histogram>>(new family<histogram>(
          std::move(name), std::move(help), std::move(label_names), std::move(bounds)))));
}

counter& registry::add_counter(std::string name, std::string help) {
  return add_counter_family(std::move(name), std::move(help), {}).with({});
}

gauge& registry::add_gauge(std::string name, std::string help) {
  return add_gauge_family(std::move(name), std::move(help), {}).with({});
}

histogram& registry::add_histogram(std::string name, std::string help, std::vector<double> bounds) {
  return add_histogram_family(std::move(name), std::move(help), {}, std::move(bounds)).with({});
}

void registry::add_counter_callback(std::string name, std::string help,
                                    std::function<double()> fn) {
  add_callback_family(metric_type::counter, std::move(name), std::move(help), {},
                      single(std::move(fn)));
}

void registry::add_gauge_callback(std::string name, std::string help, std::function<double()> fn) {
  add_callback_family(metric_type::gauge, std::move(name), std::move(help), {},
                      single(std::move(fn)));
}

void registry::add_callback_family(metric_type type, std::string name, std::string help,
                                   std::vector<std::string> label_names,
                                   std::function<std::vector<sample>()> fn) {
  if (type == metric_type::histogram)
    throw std::invalid_argument("metric " + name + ": a callback cannot be a histogram");
  add(std::make_unique<callback_family>(std::move(name), std::move(help), std::move(label_names),
                                        type, std::move(fn)));
}

std::string registry::render() const {
  std::vector<const detail::family_base*> families;
  {
    std::lock_guard lock(mutex_);
    families.reserve(families_.size());
    for (const auto& f : families_) families.push_back(f.get());
  }
  std::string out;
  out.reserve(4096);
  for (const auto* f : families) f->render(out);
  return out;
}

registry& metrics() {
  // Leaked on purpose: hot code caches references into it, and a thread still
  // counting during static destruction must not touch a destroyed registry.
  static registry* const r = [] {
    auto* p = new registry;
    add_process_metrics(*p);
    return p;
  }();
  return *r;
}

// ---- process metrics, read from /proc/self ----

namespace {

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Fields of /proc/self/stat by their 1-based number in proc(5); the command
// name (field 2) may hold spaces and parentheses, so counting starts after
// its last ')'.
std::vector<std::string> stat_fields() {
  auto text = read_file("/proc/self/stat");
  auto close = text.rfind(')');
  if (close == std::string::npos) return {};
  std::vector<std::string> fields{"", "pid", "comm"};  // numbered from 1, as in proc(5)
  std::istringstream in(text.substr(close + 1));
  for (std::string f; in >> f;) fields.push_back(std::move(f));
  return fields;
}

double stat_field(const std::vector<std::string>& fields, std::size_t n) {
  if (fields.size() <= n) return NAN;
  return std::strtod(fields[n].c_str(), nullptr);
}

double clock_ticks() {
  return static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double boot_time_seconds() {
  std::istringstream in(read_file("/proc/stat"));
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("btime ")) return std::strtod(line.c_str() + 6, nullptr);
  return NAN;
}

double open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return NAN;
  double n = 0;
  const int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    if (std::atoi(e->d_name) == own) continue;  // the listing's own descriptor
    ++n;
  }
  ::closedir(dir);
  return n;
}

}  // namespace

void add_process_metrics(registry& r) {
  // Start time cannot change: computed once rather than at every scrape.
  r.add_gauge("process_start_time_seconds",
              "Start time of the process since unix epoch in seconds.")
      .set(boot_time_seconds() + stat_field(stat_fields(), 22) / clock_ticks());
  r.add_counter_callback("process_cpu_seconds_total",
                         "Total user and system CPU time spent in seconds.", [] {
                           auto f = stat_fields();
                           return (stat_field(f, 14) + stat_field(f, 15)) / clock_ticks();
                         });
  r.add_gauge_callback("process_resident_memory_bytes", "Resident memory size in bytes.", [] {
    std::istringstream in(read_file("/proc/self/statm"));
    double size = NAN, resident = NAN;
    if (!(in >> size >> resident)) return static_cast<double>(NAN);
    return resident * static_cast<double>(::sysconf(_SC_PAGESIZE));
  });
  r.add_gauge_callback("process_open_fds", "Number of open file descriptors.", open_fds);
  r.add_gauge_callback("process_max_fds", "Maximum number of open file descriptors.", [] {
    rlimit l{};
    if (::getrlimit(RLIMIT_NOFILE, &l) != 0) return static_cast<double>(NAN);
    return l.rlim_cur == RLIM_INFINITY ? static_cast<double>(INFINITY)
                                       : static_cast<double>(l.rlim_cur);
  });
}

}  // namespace mxguard::ops
