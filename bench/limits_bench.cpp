// mxguard-limits-bench: rate-limit checks per second and the latency one
// check adds, embedded store vs Redis (bench/limits.sh starts the Redis).
//
// Each check is one GCRA decision on one of `--keys` client keys, made by
// `--inflight` coroutines on one io_context; with Redis, checks in flight on
// the connection are pipelined by hiredis. Bounded by --checks and --seconds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "mxguard/ratelimit/ratelimit.hpp"
#include "mxguard/ratelimit/redis_store.hpp"

namespace asio = boost::asio;
using namespace mxguard::ratelimit;
using clock_type = std::chrono::steady_clock;

int main(int argc, char** argv) {
  CLI::App app{"mxguard-limits-bench: rate-limit checks/s and latency, embedded vs Redis"};
  std::string redis_url;
  long checks = 200000, keys = 10000, inflight = 32;
  double seconds = 10;
  app.add_option("--redis", redis_url, "redis://host:port/db (absent: the embedded store)");
  app.add_option("--checks", checks, "checks to make (bounded)")->check(CLI::Range(1L, 10000000L));
  app.add_option("--seconds", seconds, "time cap")->check(CLI::Range(0.1, 600.0));
  app.add_option("--keys", keys, "distinct client keys")->check(CLI::Range(1L, 10000000L));
  app.add_option("--inflight", inflight, "checks in flight")->check(CLI::Range(1L, 10000L));
  CLI11_PARSE(app, argc, argv);

  auto embedded = make_embedded_store(1'000'000);
  std::shared_ptr<state_store> store = embedded;
  if (!redis_url.empty()) {
    std::string error;
    auto settings = parse_redis_url(redis_url, error);
    if (!settings) {
      std::fprintf(stderr, "bad --redis: %s\n", error.c_str());
      return 2;
    }
    settings->timeout = std::chrono::milliseconds(1000);
    settings->failure = redis_settings::on_failure::tempfail;
    store = make_redis_store(*settings, embedded);
  }
  asio::io_context io;
  std::vector<double> latencies;
  latencies.reserve(static_cast<std::size_t>(checks));
  long issued = 0, failed = 0, running = inflight;
  const auto start = clock_type::now();
  const auto stop_at = start + std::chrono::duration<double>(seconds);
  const rate limit{1000, 60'000};
  for (long w = 0; w < inflight; ++w)
    asio::co_spawn(
        io,
        [&, w]() -> asio::awaitable<void> {
          for (long i = w; issued < checks && clock_type::now() < stop_at; i += inflight) {
            ++issued;
            std::vector<rate_key> k;
            k.push_back({"bench:" + std::to_string(i % keys), limit, 1});
            auto t0 = clock_type::now();
            auto d = co_await store->check_rates(std::move(k), wall_clock_now());
            latencies.push_back(
                std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
            if (d.failed) ++failed;
          }
          // The Redis connection keeps a read armed: stop the loop explicitly.
          if (--running == 0) io.stop();
        },
        asio::detached);
  io.run();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0.0
                             : latencies[std::min(latencies.size() - 1,
                                                  static_cast<std::size_t>(p * latencies.size()))];
  };
  fmt::print(
      "{} store: {} checks in {:.2f} s = {:.0f} checks/s; latency us p50 {:.1f} p99 {:.1f}; "
      "failed {}\n",
      redis_url.empty() ? "embedded" : "redis", latencies.size(), elapsed,
      latencies.size() / elapsed, pct(0.50), pct(0.99), failed);
  fmt::print(
      "{{\"store\":\"{}\",\"checks\":{},\"seconds\":{:.3f},\"per_second\":{:.0f},"
      "\"p50_us\":{:.1f},\"p99_us\":{:.1f},\"failed\":{}}}\n",
      redis_url.empty() ? "embedded" : "redis", latencies.size(), elapsed,
      latencies.size() / elapsed, pct(0.50), pct(0.99), failed);
  return failed ? 1 : 0;
}
