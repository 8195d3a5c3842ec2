// mxguard::dnsbl: DNS list scoring of clients (DNSBL/DNSWL) and of domains
// (RHSBL), in postscreen's site syntax, with a cache shared by all threads.
//
//   zen.example=127.0.0.[2..11]*3      listed when an answer matches; weight 3
//   wl.example=127.0.[0..255].[1..3]*-2 negative weight: an allowlist
//   bl.example=127.0.0.2;127.0.0.4     several patterns
//   bl.example                          any answer in 127.0.0.0/8, weight 1
//
// Lifetime: held by std::shared_ptr; lookups still running after a caller's
// deadline keep the engine alive until they end.
// Who calls: the session's connect stage (clients) and MAIL stage (sender
// and HELO domains), from any I/O thread, on that thread's executor. Queries
// for the same name are merged across threads: 1,000 connections from one IP
// make one query per site; waiters are resumed by a posted completion.
//
// Clean answers: answers in 127.255.255.0/24 (operators' "you query through
// a public or blocked resolver" codes) and outside 127.0.0.0/8 are errors, not
// listings, logged once per change of a site's state. Sites failing the
// RFC 5782 health check (127.0.0.2 listed, 127.0.0.1 not) do not count.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>

#include "mxguard/dnsbl/dns.hpp"

namespace mxguard::dnsbl {

// One octet of a return-code pattern: a set of ranges.
struct octet_set {
  std::vector<std::pair<std::uint8_t, std::uint8_t>> ranges;
  bool contains(std::uint8_t v) const;
};

struct site {
  std::string domain;                              // the list's zone, lower case, no trailing dot
  std::vector<std::array<octet_set, 4>> patterns;  // empty: any valid code
  int weight = 1;
  std::string spec;  // as written, for logs
  std::string key;   // optional query key, placed before the zone

  bool matches(const boost::asio::ip::address_v4& code) const;
};

// Parses a site spec; nullopt with `error` set on a bad spec.
std::optional<site> parse_site(std::string_view spec, std::string& error);

// "4.3.2.1" for 1.2.3.4; 32 reversed nibbles for IPv6 (RFC 5782 §2.4).
std::string reversed_name(const boost::asio::ip::address& client);
// The name to query: reversed IP (or domain), the key if any, the zone.
std::string query_name(const site& s, std::string_view subject);

// An answer's meaning for one site.
enum class verdict_kind { listed, not_listed, error, timeout };
struct site_result {
  const site* which = nullptr;
  verdict_kind kind = verdict_kind::timeout;
  std::vector<boost::asio::ip::address_v4> codes;  // the answer, for `check`
  std::string error;
  std::string txt;  // the list's TXT explanation, when asked for
  bool cached = false;
  bool counted() const { return kind == verdict_kind::listed; }
};
site_result classify(const site& s, const dns_result& answer);

struct score {
  int total = 0;
  bool listed = false;       // total >= threshold
  bool allowlisted = false;  // total <= allowlist threshold (when enabled)
  std::vector<site_result> sites;
  const site_result* first_listed() const;
};

struct settings {
  resolver_settings resolvers;
  std::vector<site> sites;        // client lists
  std::vector<site> rhsbl_sites;  // domain lists
  int threshold = 1;
  int allowlist_threshold = 0;  // 0 = disabled; else negative
  std::chrono::milliseconds timeout{2000};
  std::chrono::seconds min_ttl{60};
  std::chrono::seconds max_ttl{3600};
  std::size_t cache_size = 100000;
  bool fetch_txt = false;
  std::chrono::milliseconds health_interval{300000};  // 0 = no health checks
};

class engine : public std::enable_shared_from_this<engine> {
 public:
  explicit engine(settings s);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  const settings& config() const { return settings_; }
  bool enabled_for_clients() const { return !settings_.sites.empty(); }
  bool enabled_for_domains() const { return !settings_.rhsbl_sites.empty(); }

  // Queries every client site in parallel and scores what answered within
  // the timeout; sites that did not answer count as not listed.
  boost::asio::awaitable<score> score_client(boost::asio::ip::address client);
  // The same for domains (sender, HELO) against the RHSBL sites.
  boost::asio::awaitable<score> score_domain(std::string domain);

  // The client's forward-confirmed reverse name (see client_name.hpp):
  // the first PTR name whose A/AAAA records include the client, through the
  // same resolvers, cache and timeout as the lists; nullopt when there is
  // none or DNS did not answer in time.
  boost::asio::awaitable<std::optional<std::string>> confirmed_name(
      boost::asio::ip::address client);
  // RFC 5782 test of every site, once; updates health. Called periodically
  // by `run_health_checks` and directly by tests.
  boost::asio::awaitable<void> check_health();
  bool healthy(const site& s) const;  // `s` must be one of this engine's sites
  // Every list (client and domain lists) by zone, and whether it is healthy.
  std::vector<std::pair<std::string, bool>> health_report() const;

  struct counters {
    std::atomic<std::uint64_t> queries{0}, cache_hits{0}, merged{0}, timeouts{0}, errors{0};
  };
  const counters& stats() const { return stats_; }

 private:
  struct impl;
  boost::asio::awaitable<site_result> lookup(const site& s, std::string name,
                                             std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<score> score_all(const std::vector<site>& sites, std::string subject);

  settings settings_;
  std::unique_ptr<impl> impl_;
  counters stats_;
};

}  // namespace mxguard::dnsbl
