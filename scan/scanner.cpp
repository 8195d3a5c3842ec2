#include "mxguard/scan/scanner.hpp"

#include <clamav.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mxguard/ops/log.hpp"

namespace mxguard::scan {

namespace asio = boost::asio;

struct scanner::job {
  job(asio::any_io_executor ex, std::string h, std::shared_ptr<const std::string> b)
      : head(std::move(h)), body(std::move(b)), done(std::move(ex)) {}
  std::string head;
  std::shared_ptr<const std::string> body;
  asio::steady_timer done;  // expires when the result is in (or the timeout passes)
  std::atomic<bool> abandoned{false};
  bool finished = false;  // touched only on the session's executor
  result outcome;
};

namespace {

// Writes head+body to an unlinked file in `dir`; -1 with `error` on failure.
int spill_to_file(const std::string& dir, std::string_view head, std::string_view body,
                  std::string& error) {
  std::string path = dir + "/mxguard-scan-XXXXXX";
  int fd = ::mkstemp(path.data());
  if (fd < 0) {
    error = fmt::format("mkstemp in {}: {}", dir, std::strerror(errno));
    return -1;
  }
  ::unlink(path.c_str());
  for (std::string_view part : {head, body}) {
    while (!part.empty()) {
      auto n = ::write(fd, part.data(), part.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error = fmt::format("write to temporary file in {}: {}", dir, std::strerror(errno));
        ::close(fd);
        return -1;
      }
      part.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

}  // namespace

scanner::scanner(pool_settings settings) : settings_(settings) {
  if (settings_.workers == 0) settings_.workers = 1;
  for (unsigned i = 0; i < settings_.workers; ++i) threads_.emplace_back([this] { work(); });
  reload_thread_ = std::thread([this] { reload_loop(); });
}

scanner::~scanner() {
  stop();
}

void scanner::stop() {
  std::deque<std::shared_ptr<job>> left;
  {
    std::lock_guard lock(queue_mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    left.swap(queue_);
  }
  queue_cv_.notify_all();
  {
    std::lock_guard lock(reload_mutex_);
    reload_stopping_ = true;
  }
  reload_cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  if (reload_thread_.joinable()) reload_thread_.join();
  for (auto& j : left) finish(j, {outcome::overloaded, "scanner stopping", {}, 0});
}

std::shared_ptr<const engine> scanner::current() const {
  std::lock_guard lock(engine_mutex_);
  return engine_;
}

std::size_t scanner::queued() const {
  std::lock_guard lock(queue_mutex_);
  return queue_.size();
}

pool_counters scanner::counters() const {
  auto get = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return {get(counters_.scans),          get(counters_.viruses),  get(counters_.errors),
          get(counters_.overloaded),     get(counters_.timeouts), get(counters_.reloads),
          get(counters_.reload_failures)};
}

bool scanner::load_now(const signature_source& source, std::string& error) {
  auto started = std::chrono::steady_clock::now();
  auto loaded = engine::load(source.directory, source.limits, error);
  if (!loaded) return false;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
  ops::event("SCAN_ENGINE_LOADED")
      .add("directory", source.directory)
      .add("signatures", static_cast<std::int64_t>(loaded->signatures()))
      .add("db_version", static_cast<std::int64_t>(loaded->database_version()))
      .add("engine", loaded->description())
      .add("ms", static_cast<std::int64_t>(ms.count()))
      .emit();
  {
    std::lock_guard lock(engine_mutex_);
    engine_ = std::move(loaded);
  }
  counters_.reloads.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void scanner::watch(const signature_source& source) {
  {
    std::lock_guard lock(reload_mutex_);
    auto engine_now = current();
    bool changed = !engine_now || !(source == source_);
    // The first watch after load_now() of the same source is no change.
    if (!watching_ && engine_now && engine_now->directory() == source.directory &&
        source_.directory.empty())
      changed = false;
    source_ = source;
    watching_ = true;
    ++watch_generation_;
    if (changed) reload_requested_ = true;
  }
  reload_cv_.notify_all();
}

void scanner::reload() {
  {
    std::lock_guard lock(reload_mutex_);
    reload_requested_ = true;
  }
  reload_cv_.notify_all();
}

void scanner::reload_loop() {
  std::unique_lock lock(reload_mutex_);
  cl_stat stat{};
  bool have_stat = false;
  std::string stat_directory;
  std::uint64_t seen_generation = watch_generation_;
  // A new watch() changes the interval to wait with: wake up for it too.
  auto wanted = [&] {
    return reload_stopping_ || reload_requested_ || seen_generation != watch_generation_;
  };
  while (!reload_stopping_) {
    seen_generation = watch_generation_;
    if (watching_ && source_.check_interval.count() > 0)
      reload_cv_.wait_for(lock, source_.check_interval, wanted);
    else
      reload_cv_.wait(lock, wanted);
    if (reload_stopping_) break;
    if (!watching_) {
      reload_requested_ = false;
      continue;
    }
    bool forced = reload_requested_;
    reload_requested_ = false;
    signature_source source = source_;
    lock.unlock();

    // libclamav's own change detection over the directory (freshclam
    // replaces files there): a new, removed or modified file.
    bool changed = forced;
    if (!changed && have_stat && stat_directory == source.directory)
      changed = cl_statchkdir(&stat) == 1;
    auto take_stat = [&] {
      if (have_stat) cl_statfree(&stat);
      stat = cl_stat{};
      have_stat = cl_statinidir(source.directory.c_str(), &stat) == CL_SUCCESS;
      stat_directory = source.directory;
    };
    if (changed) {
      // The directory's state is taken before the load, not after: a file
      // freshclam replaces while we load is a change for the next check.
      take_stat();
      std::string error;
      if (load_now(source, error)) {
        // Logged by load_now.
      } else {
        counters_.reload_failures.fetch_add(1, std::memory_order_relaxed);
        ops::event("SCAN_RELOAD_FAILED", ops::severity::error)
            .add("directory", source.directory)
            .add("error", error)
            .add("kept", current() ? current()->description() : std::string("none"))
            .emit();
      }
    } else if (!have_stat || stat_directory != source.directory) {
      take_stat();
    }
    lock.lock();
  }
  if (have_stat) cl_statfree(&stat);
}

asio::awaitable<result> scanner::scan(std::string head, std::shared_ptr<const std::string> body) {
  auto executor = co_await asio::this_coro::executor;
  auto j = std::make_shared<job>(executor, std::move(head), std::move(body));
  // Armed before the job is queued: a result posted back early moves the
  // expiry to the past, which the wait below then sees at once.
  j->done.expires_after(settings_.timeout);
  bool queued = false;
  {
    std::lock_guard lock(queue_mutex_);
    if (!stopping_ && queue_.size() < idle_ + settings_.queue_size) {
      queue_.push_back(j);
      queued = true;
    }
  }
  if (!queued) {
    counters_.overloaded.fetch_add(1, std::memory_order_relaxed);
    co_return result{outcome::overloaded, "scan queue full", {}, 0};
  }
  queue_cv_.notify_one();
  boost::system::error_code ec;
  co_await j->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (j->finished) co_return j->outcome;
  j->abandoned.store(true, std::memory_order_relaxed);
  counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
  co_return result{outcome::timeout, "scan timeout", {}, 0};
}

void scanner::work() {
  std::unique_lock lock(queue_mutex_);
  for (;;) {
    ++idle_;
    queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_) return;
    auto j = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    if (!j->abandoned.load(std::memory_order_relaxed)) {
      busy_.fetch_add(1, std::memory_order_relaxed);
      auto r = run(*j);
      busy_.fetch_sub(1, std::memory_order_relaxed);
      counters_.scans.fetch_add(1, std::memory_order_relaxed);
      if (r.what == outcome::virus) counters_.viruses.fetch_add(1, std::memory_order_relaxed);
      if (r.what == outcome::error) counters_.errors.fetch_add(1, std::memory_order_relaxed);
      finish(j, std::move(r));
    }
    lock.lock();
  }
}

result scanner::run(const job& j) const {
  auto e = current();
  if (!e) return {outcome::error, "no signatures loaded", {}, 0};
  std::string_view body = j.body ? std::string_view(*j.body) : std::string_view();
  if (j.head.size() + body.size() <= settings_.temp_file_above) return e->scan(j.head, body);
  std::string error;
  int fd = spill_to_file(settings_.temp_dir, j.head, body, error);
  if (fd < 0) return {outcome::error, error, {}, 0};
  auto r = e->scan_fd(fd);
  ::close(fd);
  return r;
}

void scanner::finish(const std::shared_ptr<job>& j, result r) {
  auto executor = j->done.get_executor();
  asio::post(executor, [j, r = std::move(r)]() mutable {
    j->outcome = std::move(r);
    j->finished = true;
    j->done.expires_at(std::chrono::steady_clock::time_point::min());
  });
}

}  // namespace mxguard::scan
