#include <algorithm>
#include <array>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mxguard/dnsbl/dnsbl.hpp"
#include "mxguard/ops/log.hpp"

namespace mxguard::dnsbl {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t shard_count = 16;

// A query another thread is already making; waiters register a wake-up.
struct pending {
  std::mutex mutex;
  bool done = false;
  dns_result result;
  std::vector<std::function<void()>> wakeups;
};

struct cache_entry {
  clock::time_point expires;
  dns_result result;
  std::list<std::string>::iterator lru;
};

struct cache_shard {
  std::mutex mutex;
  std::unordered_map<std::string, cache_entry> entries;
  std::list<std::string> lru;  // most recent first
  std::unordered_map<std::string, std::shared_ptr<pending>> in_flight;
};

}  // namespace

struct engine::impl {
  std::array<cache_shard, shard_count> shards;
  std::size_t per_shard_limit = 1;
  // Health per site (client sites first, then RHSBL sites), and the last
  // logged state of each, so a flapping site logs once per change.
  std::vector<std::unique_ptr<std::atomic<bool>>> health;
  std::vector<std::unique_ptr<std::atomic<int>>> logged_state;  // 0 ok, 1 error

  // One DNS client per thread that asks (I/O threads, the health-check
  // thread), owned by the engine. Fix: this was a thread_local replaced when
  // another engine generation asked on the same thread, so after a reload
  // that changed [dnsbl] the old engine's lookups still suspended inside
  // dns_client::query resumed on a freed client (heap-use-after-free, seen
  // as crashes; tests/integration/dnsbl_test.cpp DnsblReload). The engine
  // outlives its lookups (they hold it), so its clients do too.
  std::mutex clients_mutex;
  std::unordered_map<std::thread::id, std::unique_ptr<dns_client>> clients;

  dns_client& client_for_this_thread(const resolver_settings& r) {
    std::lock_guard lock(clients_mutex);
    auto& c = clients[std::this_thread::get_id()];
    if (!c) c = std::make_unique<dns_client>(r);
    return *c;
  }

  cache_shard& shard_for(const std::string& key) {
    return shards[std::hash<std::string>{}(key) % shard_count];
  }
  std::size_t index_of(const settings& s, const site& which) const {
    if (&which >= s.sites.data() && &which < s.sites.data() + s.sites.size())
      return static_cast<std::size_t>(&which - s.sites.data());
    return s.sites.size() + static_cast<std::size_t>(&which - s.rhsbl_sites.data());
  }
};

engine::engine(settings s) : settings_(std::move(s)), impl_(std::make_unique<impl>()) {
  impl_->per_shard_limit = std::max<std::size_t>(1, settings_.cache_size / shard_count);
  for (std::size_t i = 0; i < settings_.sites.size() + settings_.rhsbl_sites.size(); ++i) {
    impl_->health.push_back(std::make_unique<std::atomic<bool>>(true));
    impl_->logged_state.push_back(std::make_unique<std::atomic<int>>(0));
  }
}

engine::~engine() = default;

bool engine::healthy(const site& s) const {
  return impl_->health[impl_->index_of(settings_, s)]->load(std::memory_order_relaxed);
}

std::vector<std::pair<std::string, bool>> engine::health_report() const {
  std::vector<std::pair<std::string, bool>> out;
  for (const auto* list : {&settings_.sites, &settings_.rhsbl_sites})
    for (const auto& s : *list) out.emplace_back(s.domain, healthy(s));
  return out;
}

namespace {

// Caches and merges one (name, type) query.
asio::awaitable<std::pair<dns_result, bool>> cached_query(
    engine::counters& stats, cache_shard& shard, std::size_t shard_limit, dns_client& client,
    std::string name, rr_type type, const settings& cfg, clock::time_point deadline) {
  const std::string key = name + "/" + std::to_string(static_cast<int>(type));
  std::shared_ptr<pending> wait_for;
  std::shared_ptr<pending> mine;
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(key);
    if (it != shard.entries.end()) {
      if (it->second.expires > clock::now()) {
        shard.lru.splice(shard.lru.begin(), shard.lru, it->second.lru);
        stats.cache_hits.fetch_add(1, std::memory_order_relaxed);
        co_return std::pair{it->second.result, true};
      }
      shard.lru.erase(it->second.lru);
      shard.entries.erase(it);
    }
    auto flight = shard.in_flight.find(key);
    if (flight != shard.in_flight.end()) {
      wait_for = flight->second;
    } else {
      mine = std::make_shared<pending>();
      shard.in_flight.emplace(key, mine);
    }
  }

  if (wait_for) {
    // Another session (maybe on another thread) is asking already: wait for
    // its answer, woken by a completion posted to our own executor.
    stats.merged.fetch_add(1, std::memory_order_relaxed);
    auto executor = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(executor, deadline);
    {
      std::lock_guard lock(wait_for->mutex);
      if (wait_for->done) co_return std::pair{wait_for->result, true};
      wait_for->wakeups.push_back(
          [timer, executor] { asio::post(executor, [timer] { timer->cancel(); }); });
    }
    co_await timer->async_wait(use_tuple);
    std::lock_guard lock(wait_for->mutex);
    if (wait_for->done) co_return std::pair{wait_for->result, true};
    dns_result late;
    late.state = dns_result::status::timeout;
    late.error = "merged query still in flight";
    co_return std::pair{late, false};
  }

  stats.queries.fetch_add(1, std::memory_order_relaxed);
  dns_result result = co_await client.query(name, type, deadline);
  {
    std::lock_guard lock(shard.mutex);
    shard.in_flight.erase(key);
    // Answers and NXDOMAIN are cached for their TTL within [min_ttl, max_ttl];
    // failures are not, so the next client asks again.
    if (result.state == dns_result::status::answer ||
        result.state == dns_result::status::nxdomain) {
      auto ttl = std::clamp<std::chrono::seconds>(std::chrono::seconds(result.ttl), cfg.min_ttl,
                                                  cfg.max_ttl);
      shard.lru.push_front(key);
      shard.entries[key] = cache_entry{clock::now() + ttl, result, shard.lru.begin()};
      while (shard.entries.size() > shard_limit) {
        shard.entries.erase(shard.lru.back());
        shard.lru.pop_back();
      }
    }
  }
  std::vector<std::function<void()>> wakeups;
  {
    std::lock_guard lock(mine->mutex);
    mine->done = true;
    mine->result = result;
    wakeups.swap(mine->wakeups);
  }
  for (auto& wake : wakeups) wake();
  co_return std::pair{result, false};
}

}  // namespace

asio::awaitable<std::optional<std::string>> engine::confirmed_name(asio::ip::address client) {
  if (client.is_v6() && client.to_v6().is_v4_mapped())
    client = asio::ip::make_address_v4(asio::ip::v4_mapped, client.to_v6());
  const auto deadline = clock::now() + settings_.timeout;
  auto& dns = impl_->client_for_this_thread(settings_.resolvers);
  std::string reverse = reversed_name(client) + (client.is_v4() ? ".in-addr.arpa" : ".ip6.arpa");
  auto ptr = co_await cached_query(stats_, impl_->shard_for(reverse), impl_->per_shard_limit, dns,
                                   reverse, rr_type::ptr, settings_, deadline);
  if (ptr.first.state != dns_result::status::answer) co_return std::nullopt;
  const auto type = client.is_v4() ? rr_type::a : rr_type::aaaa;
  // At most this many PTR names are followed (Postfix and RFC 8601 §3: 10),
  // so an address with a hundred PTRs costs no hundred queries.
  constexpr std::size_t max_names = 10;
  for (std::size_t i = 0; i < ptr.first.names.size() && i < max_names; ++i) {
    std::string name = ptr.first.names[i];
    auto forward = co_await cached_query(stats_, impl_->shard_for(name), impl_->per_shard_limit,
                                         dns, name, type, settings_, deadline);
    const auto& a = forward.first;
    if (a.state != dns_result::status::answer) continue;
    bool back =
        client.is_v4()
            ? std::find(a.addresses.begin(), a.addresses.end(), client.to_v4()) != a.addresses.end()
            : std::find(a.addresses6.begin(), a.addresses6.end(), client.to_v6()) !=
                  a.addresses6.end();
    if (back) co_return name;
  }
  co_return std::nullopt;
}

asio::awaitable<site_result> engine::lookup(const site& s, std::string name,
                                            clock::time_point deadline) {
  auto& client = impl_->client_for_this_thread(settings_.resolvers);
  auto& shard = impl_->shard_for(name);
  auto outcome = co_await cached_query(stats_, shard, impl_->per_shard_limit, client, name,
                                       rr_type::a, settings_, deadline);
  site_result r = classify(s, outcome.first);
  r.cached = outcome.second;
  if (r.kind == verdict_kind::timeout) stats_.timeouts.fetch_add(1, std::memory_order_relaxed);
  if (r.kind == verdict_kind::error) stats_.errors.fetch_add(1, std::memory_order_relaxed);
  // Log a site's errors once per change of state, not once per client.
  auto& state = *impl_->logged_state[impl_->index_of(settings_, s)];
  int now_state = r.kind == verdict_kind::error ? 1 : (r.kind == verdict_kind::timeout ? -1 : 0);
  if (now_state >= 0 && state.exchange(now_state) != now_state) {
    if (now_state == 1)
      ops::event("DNSBL", ops::severity::warning)
          .add("site", s.domain)
          .add("state", "error")
          .add("error", r.error)
          .emit();
    else
      ops::event("DNSBL").add("site", s.domain).add("state", "ok").emit();
  }
  if (r.kind == verdict_kind::listed && settings_.fetch_txt) {
    auto txt =
        co_await cached_query(stats_, impl_->shard_for(name + "/TXT"), impl_->per_shard_limit,
                              client, name, rr_type::txt, settings_, deadline);
    if (!txt.first.texts.empty()) r.txt = txt.first.texts.front();
  }
  co_return r;
}

asio::awaitable<score> engine::score_all(const std::vector<site>& sites, std::string subject) {
  auto executor = co_await asio::this_coro::executor;
  const auto deadline = clock::now() + settings_.timeout;
  // The lookups run as their own coroutines so that a slow list cannot hold
  // the others. Each stops at the same deadline: a list that answers later
  // is a timeout, not cached, and asked again by the next client.
  struct gather {
    explicit gather(asio::any_io_executor e, std::size_t n)
        : results(n), done(n, false), remaining(n), timer(std::move(e)) {}
    std::vector<site_result> results;
    std::vector<bool> done;
    std::size_t remaining;
    asio::steady_timer timer;
  };
  auto g = std::make_shared<gather>(executor, sites.size());
  for (std::size_t i = 0; i < sites.size(); ++i) {
    if (!healthy(sites[i])) {
      g->results[i].which = &sites[i];
      g->results[i].kind = verdict_kind::error;
      g->results[i].error = "site failed its health check";
      g->done[i] = true;
      --g->remaining;
      continue;
    }
    asio::co_spawn(executor, lookup(sites[i], query_name(sites[i], subject), deadline),
                   [g, i, self = shared_from_this()](std::exception_ptr e, site_result r) {
                     if (e) {
                       // (`which` is set below; it used to point at sites[0] here,
                       // out of bounds when only rhsbl_sites are configured.)
                       r = site_result{};
                       r.kind = verdict_kind::error;
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         r.error = ex.what();
                       }
                     }
                     g->results[i] = std::move(r);
                     g->done[i] = true;
                     if (--g->remaining == 0) g->timer.cancel();
                   });
  }
  if (g->remaining > 0) {
    g->timer.expires_at(deadline);
    co_await g->timer.async_wait(use_tuple);
  }
  score total;
  for (std::size_t i = 0; i < sites.size(); ++i) {
    site_result r = g->results[i];
    r.which = &sites[i];
    if (!g->done[i]) {
      r.which = &sites[i];
      r.kind = verdict_kind::timeout;
      r.error = "no answer within dnsbl.timeout";
    }
    if (r.counted()) total.total += sites[i].weight;
    total.sites.push_back(std::move(r));
  }
  total.listed = total.total >= settings_.threshold;
  total.allowlisted =
      settings_.allowlist_threshold < 0 && total.total <= settings_.allowlist_threshold;
  co_return total;
}

asio::awaitable<score> engine::score_client(asio::ip::address client) {
  co_return co_await score_all(settings_.sites, reversed_name(client));
}

asio::awaitable<score> engine::score_domain(std::string domain) {
  for (auto& c : domain)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  // Fix: an absolute name ("spam.example.", as a HELO may be written) is the
  // same domain. It used to make the query "spam.example..zone", refused as
  // a bad name, so a listed HELO with a trailing dot was never refused.
  while (!domain.empty() && domain.back() == '.') domain.pop_back();
  co_return co_await score_all(settings_.rhsbl_sites, domain);
}

asio::awaitable<void> engine::check_health() {
  auto& client = impl_->client_for_this_thread(settings_.resolvers);
  auto test = [&](const site& s, bool domain_list) -> asio::awaitable<void> {
    // RFC 5782 §5: 127.0.0.2 (or TEST) must be listed, 127.0.0.1 (or INVALID) must not.
    const auto deadline = clock::now() + settings_.timeout;
    auto positive = co_await client.query(query_name(s, domain_list ? "test" : "2.0.0.127"),
                                          rr_type::a, deadline);
    auto negative = co_await client.query(query_name(s, domain_list ? "invalid" : "1.0.0.127"),
                                          rr_type::a, deadline);
    // Only answers and NXDOMAIN say something about the list. A timeout,
    // SERVFAIL, REFUSED or an unreachable resolver (one restarting) is no
    // news: marking the list failed would let its listed clients pass until
    // the next check, health_interval later.
    auto conclusive = [](const dns_result& r) {
      return r.state == dns_result::status::answer || r.state == dns_result::status::nxdomain;
    };
    if (!conclusive(positive) || !conclusive(negative)) co_return;
    // The test entry must be listed with a clean 127/8 code, whichever: the
    // site's own filter (=127.0.0.4, say) is for clients, and the test entry
    // need not carry that code.
    site unfiltered = s;
    unfiltered.patterns.clear();
    auto listed = classify(unfiltered, positive);
    const bool unlisted = negative.state == dns_result::status::nxdomain ||
                          (negative.addresses.empty() && negative.addresses6.empty());
    bool ok = listed.kind == verdict_kind::listed && unlisted;
    auto& health = *impl_->health[impl_->index_of(settings_, s)];
    if (health.exchange(ok) != ok)
      ops::event("DNSBL", ok ? ops::severity::info : ops::severity::warning)
          .add("site", s.domain)
          .add("health", ok ? "ok" : "failed")
          .add("test_listed", std::string(to_string(positive.state)) +
                                  (listed.error.empty() ? "" : " " + listed.error))
          .add("test_unlisted", to_string(negative.state))
          .emit();
  };
  for (const auto& s : settings_.sites) co_await test(s, false);
  for (const auto& s : settings_.rhsbl_sites) co_await test(s, true);
}

}  // namespace mxguard::dnsbl
