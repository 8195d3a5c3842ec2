// mxguard-dnsbl-bench: the cost of one DNSBL score in mxguard::dnsbl, cached and uncached.
//
// Two measurements of engine::score_client(), each on a fresh engine held by std::shared_ptr as
// the daemon holds it, with one io_context per thread as the daemon runs them:
//
//   cached    --cached-addresses distinct clients are scored once (filling the cache from the
//             resolver), then scored again and again by --window coroutines per thread, for each
//             thread count of --threads-list, until --cached-lookups scores or --duration s. Every
//             score is then a cache hit (min_ttl is an hour): this is the CPU cost of the cache,
//             the merge table and the coroutine plumbing, and whether two threads scale.
//   uncached  --uncached distinct clients, --uncached-base upward, each scored once with at most
//             --uncached-window scores in flight: every score is a real UDP query to the resolver
//             (rbldnsd on loopback in bench/dnsbl.sh), so this is the cost of the DNS client and
//             the round trip, and what one thread sustains.
//
// Every phase is bounded by a count and by --duration; a score that does not complete within
// dnsbl.timeout is counted as a timeout by the engine itself, so the tool cannot hang.
// Output: one human line per phase (stdout, or stderr with --json) and, with --json, one JSON
// line on stdout. See bench/README.md.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mxguard/dnsbl/dnsbl.hpp"

namespace {

namespace asio = boost::asio;
namespace dnsbl = mxguard::dnsbl;
using clock_type = std::chrono::steady_clock;

constexpr double max_duration_s = 600;

struct options {
  std::string resolver;
  std::vector<std::string> sites = {"bl.bench=127.0.0.2"};
  std::string cached_base = "198.18.0.0";
  unsigned cached_addresses = 256;
  std::uint64_t cached_lookups = 2'000'000;  // per thread count
  unsigned window = 16;                      // per thread, cached phase
  std::vector<unsigned> threads_list = {1, 2};
  std::string uncached_base = "198.18.0.0";
  unsigned uncached = 20'000;
  unsigned uncached_window = 100;
  double duration_s = 10;  // cap per phase
  unsigned timeout_ms = 2000;
  bool json = false;
};

// The process's CPU time and context switches so far. Voluntary switches during a cached run
// mean threads slept (a contended mutex parks on a futex); involuntary ones mean other work on
// the machine took the core.
struct usage {
  double cpu_s = 0;
  long voluntary = 0, involuntary = 0;
  static usage now() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    const auto tv = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
    return {tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_nvcsw, ru.ru_nivcsw};
  }
  usage operator-(const usage& o) const {
    return {cpu_s - o.cpu_s, voluntary - o.voluntary, involuntary - o.involuntary};
  }
};

asio::ip::address nth_address(const asio::ip::address_v4& base, std::uint32_t n) {
  return asio::ip::address_v4(base.to_uint() + n);
}

// What a phase saw, merged over its threads.
struct tally {
  std::uint64_t scores = 0;
  std::uint64_t listed = 0;
  std::uint64_t timeouts = 0;  // sites that did not answer in time, summed over scores
  std::uint64_t errors = 0;
  std::vector<std::uint32_t> latency_us;

  void add(const dnsbl::score& sc, clock_type::duration took) {
    ++scores;
    listed += sc.listed;
    for (const auto& r : sc.sites) {
      timeouts += r.kind == dnsbl::verdict_kind::timeout;
      errors += r.kind == dnsbl::verdict_kind::error;
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
    latency_us.push_back(static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, UINT32_MAX)));
  }
  void merge(const tally& o) {
    scores += o.scores;
    listed += o.listed;
    timeouts += o.timeouts;
    errors += o.errors;
    latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
  }
  // Nearest-rank percentile in microseconds.
  double pct(double p) {
    if (latency_us.empty()) return 0;
    std::sort(latency_us.begin(), latency_us.end());
    const auto rank = static_cast<std::size_t>(std::ceil(p * double(latency_us.size())));
    return latency_us[std::clamp<std::size_t>(rank, 1, latency_us.size()) - 1];
  }
};

struct phase_result {
  std::string name;
  unsigned threads = 1;
  unsigned window = 1;
  tally t;
  double elapsed_s = 0;
  usage used;
  std::uint64_t dns_queries = 0, cache_hits = 0, merged = 0;

  double rate() const { return elapsed_s > 0 ? double(t.scores) / elapsed_s : 0; }
  double cpu_us_per_score() const { return t.scores ? 1e6 * used.cpu_s / double(t.scores) : 0; }
};

std::shared_ptr<dnsbl::engine> make_engine(const options& opt,
                                           const asio::ip::udp::endpoint& resolver,
                                           std::chrono::seconds ttl) {
  dnsbl::settings s;
  s.resolvers.servers = {resolver};
  for (const auto& spec : opt.sites) {
    std::string error;
    auto site = dnsbl::parse_site(spec, error);
    if (!site) throw std::runtime_error(fmt::format("--site '{}': {}", spec, error));
    s.sites.push_back(std::move(*site));
  }
  s.threshold = 1;
  s.timeout = std::chrono::milliseconds(opt.timeout_ms);
  s.min_ttl = ttl;
  s.max_ttl = ttl;
  s.cache_size = 1'000'000;
  s.health_interval = std::chrono::milliseconds(0);
  return std::make_shared<dnsbl::engine>(std::move(s));
}

// Runs `threads` io_contexts (one per thread, like the daemon's workers) until their work ends.
template <typename Spawn>
void run_threads(unsigned threads, Spawn&& spawn) {
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (unsigned i = 0; i < threads; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    spawn(*contexts.back(), i);
  }
  std::vector<std::jthread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&c = *contexts[i]] { c.run(); });
  contexts[0]->run();
}

void take_counters(phase_result& r, const dnsbl::engine& e, const phase_result* before) {
  r.dns_queries = e.stats().queries.load() - (before ? before->dns_queries : 0);
  r.cache_hits = e.stats().cache_hits.load() - (before ? before->cache_hits : 0);
  r.merged = e.stats().merged.load() - (before ? before->merged : 0);
}

// The cached phase for one thread count: prime, then hammer the cache.
phase_result run_cached(const options& opt, const asio::ip::udp::endpoint& resolver,
                        unsigned threads) {
  auto engine = make_engine(opt, resolver, std::chrono::hours(1));
  const auto base = asio::ip::make_address_v4(opt.cached_base);

  // Prime: every address once, through the resolver, a window at a time.
  {
    tally prime;
    std::atomic<unsigned> next{0};
    const auto deadline = clock_type::now() + std::chrono::duration<double>(opt.duration_s);
    run_threads(1, [&](asio::io_context& ctx, unsigned) {
      for (unsigned w = 0; w < std::min(opt.cached_addresses, 64u); ++w)
        asio::co_spawn(
            ctx,
            [&]() -> asio::awaitable<void> {
              for (unsigned i;
                   (i = next++) < opt.cached_addresses && clock_type::now() < deadline;) {
                const auto t0 = clock_type::now();
                prime.add(co_await engine->score_client(nth_address(base, i)),
                          clock_type::now() - t0);
              }
            },
            asio::detached);
    });
    if (prime.timeouts || prime.errors || prime.scores != opt.cached_addresses)
      throw std::runtime_error(fmt::format(
          "priming the cache: {} of {} scored, {} timeouts, {} errors (is the resolver up?)",
          prime.scores, opt.cached_addresses, prime.timeouts, prime.errors));
  }

  phase_result before;
  take_counters(before, *engine, nullptr);
  phase_result r;
  r.name = "cached";
  r.threads = threads;
  r.window = opt.window;
  std::atomic<std::uint64_t> claimed{0};
  std::vector<tally> per_thread(threads);
  const usage u0 = usage::now();
  const auto t0 = clock_type::now();
  const auto deadline = t0 + std::chrono::duration<double>(opt.duration_s);
  run_threads(threads, [&](asio::io_context& ctx, unsigned t) {
    for (unsigned w = 0; w < opt.window; ++w)
      asio::co_spawn(
          ctx,
          [&, t, w]() -> asio::awaitable<void> {
            // Each coroutine walks the primed addresses from its own offset.
            std::uint32_t i = (t * opt.window + w) * 7919u;
            while (claimed.fetch_add(1, std::memory_order_relaxed) < opt.cached_lookups) {
              // The clock is read per score for the latency anyway; the deadline check is free.
              const auto s0 = clock_type::now();
              if (s0 >= deadline) break;
              auto sc =
                  co_await engine->score_client(nth_address(base, i++ % opt.cached_addresses));
              per_thread[t].add(sc, clock_type::now() - s0);
            }
          },
          asio::detached);
  });
  r.elapsed_s = std::chrono::duration<double>(clock_type::now() - t0).count();
  r.used = usage::now() - u0;
  for (const auto& t : per_thread) r.t.merge(t);
  take_counters(r, *engine, &before);
  return r;
}

phase_result run_uncached(const options& opt, const asio::ip::udp::endpoint& resolver) {
  // A TTL of 0 keeps nothing: every score is a query (the addresses are distinct anyway).
  auto engine = make_engine(opt, resolver, std::chrono::seconds(0));
  const auto base = asio::ip::make_address_v4(opt.uncached_base);
  phase_result r;
  r.name = "uncached";
  r.threads = 1;
  r.window = opt.uncached_window;
  std::atomic<unsigned> next{0};
  const usage u0 = usage::now();
  const auto t0 = clock_type::now();
  const auto deadline = t0 + std::chrono::duration<double>(opt.duration_s);
  run_threads(1, [&](asio::io_context& ctx, unsigned) {
    for (unsigned w = 0; w < std::min(opt.uncached_window, opt.uncached); ++w)
      asio::co_spawn(
          ctx,
          [&]() -> asio::awaitable<void> {
            for (unsigned i; (i = next++) < opt.uncached;) {
              const auto s0 = clock_type::now();
              if (s0 >= deadline) break;
              auto sc = co_await engine->score_client(nth_address(base, i));
              r.t.add(sc, clock_type::now() - s0);
            }
          },
          asio::detached);
  });
  r.elapsed_s = std::chrono::duration<double>(clock_type::now() - t0).count();
  r.used = usage::now() - u0;
  take_counters(r, *engine, nullptr);
  return r;
}

std::string human(phase_result& r) {
  return fmt::format(
      "{} threads {} window {}: {} scores in {:.3f} s = {:.0f} scores/s; listed {}, timeouts {}, "
      "errors {}; latency us p50 {:.0f} p99 {:.0f} max {:.0f}; dns queries {}, cache hits {}, "
      "merged {}; cpu {:.2f} s = {:.2f} us/score ({:.0f}% of one core); context switches "
      "voluntary {} involuntary {}",
      r.name, r.threads, r.window, r.t.scores, r.elapsed_s, r.rate(), r.t.listed, r.t.timeouts,
      r.t.errors, r.t.pct(0.5), r.t.pct(0.99), r.t.pct(1.0), r.dns_queries, r.cache_hits, r.merged,
      r.used.cpu_s, r.cpu_us_per_score(), r.elapsed_s > 0 ? 100 * r.used.cpu_s / r.elapsed_s : 0,
      r.used.voluntary, r.used.involuntary);
}

std::string json(phase_result& r) {
  return fmt::format(
      "{{\"phase\":\"{}\",\"threads\":{},\"window\":{},\"scores\":{},\"listed\":{},"
      "\"timeouts\":{},\"errors\":{},\"elapsed_s\":{:.6f},\"scores_per_s\":{:.1f},"
      "\"latency_us\":{{\"p50\":{:.0f},\"p99\":{:.0f},\"max\":{:.0f}}},\"dns_queries\":{},"
      "\"cache_hits\":{},\"merged\":{},\"cpu_s\":{:.3f},\"cpu_us_per_score\":{:.3f},"
      "\"voluntary_switches\":{},\"involuntary_switches\":{}}}",
      r.name, r.threads, r.window, r.t.scores, r.t.listed, r.t.timeouts, r.t.errors, r.elapsed_s,
      r.rate(), r.t.pct(0.5), r.t.pct(0.99), r.t.pct(1.0), r.dns_queries, r.cache_hits, r.merged,
      r.used.cpu_s, r.cpu_us_per_score(), r.used.voluntary, r.used.involuntary);
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{
      "mxguard-dnsbl-bench: cached and uncached DNSBL scores per second (bench/README.md)"};
  app.add_option("--resolver", opt.resolver, "DNS server as ipv4:port (rbldnsd)")->required();
  app.add_option("--site", opt.sites, "site spec, postscreen syntax (repeatable)");
  app.add_option("--cached-base", opt.cached_base, "first address of the cached set");
  app.add_option("--cached-addresses", opt.cached_addresses, "distinct addresses kept in cache")
      ->check(CLI::Range(1u, 1'000'000u));
  app.add_option("--cached-lookups", opt.cached_lookups, "scores per cached run (a cap)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
  app.add_option("--window", opt.window, "cached: scores in flight per thread")
      ->check(CLI::Range(1u, 10'000u));
  app.add_option("--threads-list", opt.threads_list, "cached: thread counts to run, e.g. 1,2")
      ->delimiter(',')
      ->check(CLI::Range(1u, 64u));
  app.add_option("--uncached-base", opt.uncached_base, "first address of the uncached set");
  app.add_option("--uncached", opt.uncached, "uncached: distinct addresses (0 skips the phase)")
      ->check(CLI::Range(0u, 10'000'000u));
  app.add_option("--uncached-window", opt.uncached_window, "uncached: scores in flight")
      ->check(CLI::Range(1u, 10'000u));
  app.add_option("--duration", opt.duration_s, "seconds, cap per phase (at most 600)")
      ->check(CLI::Range(0.1, max_duration_s));
  app.add_option("--timeout-ms", opt.timeout_ms, "dnsbl.timeout for every score")
      ->check(CLI::Range(10u, 60'000u));
  app.add_flag("--json", opt.json, "also print one JSON line on stdout (human lines on stderr)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  asio::ip::udp::endpoint resolver;
  try {
    const auto colon = opt.resolver.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("no port");
    resolver = {asio::ip::make_address_v4(opt.resolver.substr(0, colon)),
                static_cast<unsigned short>(std::stoul(opt.resolver.substr(colon + 1)))};
    (void)asio::ip::make_address_v4(opt.cached_base);
    (void)asio::ip::make_address_v4(opt.uncached_base);
  } catch (const std::exception& e) {
    fmt::print(stderr, "mxguard-dnsbl-bench: bad --resolver or base address: {}\n", e.what());
    return 2;
  }

  std::vector<phase_result> results;
  try {
    for (unsigned threads : opt.threads_list) results.push_back(run_cached(opt, resolver, threads));
    if (opt.uncached > 0) results.push_back(run_uncached(opt, resolver));
  } catch (const std::exception& e) {
    fmt::print(stderr, "mxguard-dnsbl-bench: {}\n", e.what());
    return 1;
  }

  std::string lines, phases;
  for (auto& r : results) {
    lines += human(r) + "\n";
    phases += (phases.empty() ? "" : ",") + json(r);
  }
  fmt::print(opt.json ? stderr : stdout, "{}", lines);
  if (opt.json)
    fmt::print("{{\"resolver\":\"{}\",\"sites\":{},\"phases\":[{}]}}\n", opt.resolver,
               opt.sites.size(), phases);
  // A phase with timeouts or errors measured something else than the engine: say so by status.
  for (const auto& r : results)
    if (r.t.timeouts || r.t.errors || r.t.scores == 0) return 1;
  return 0;
}
