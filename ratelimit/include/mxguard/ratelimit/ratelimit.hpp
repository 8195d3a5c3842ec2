// mxguard::ratelimit: rate limits, concurrency leases and greylisting over a
// state store that is either embedded (in this process, the default) or
// shared by a gateway pair (Redis).
//
// The deciding arithmetic is pure and takes `now` (milliseconds of wall-clock
// time, so that two gateways agree): tests inject it, the stores apply it
// atomically per key (a mutex here, one Lua script in Redis).
//
// Rate limits use GCRA (the generic cell rate algorithm, as in ATM networks
// and Redis-cell): one stored number per key, the "theoretical arrival time".
// It allows `count` events per `period` with bursts up to `count`, refills
// continuously (no window edges a client can game, unlike fixed windows), and
// needs one read-modify-write per check (unlike sliding logs).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>

namespace mxguard::ratelimit {

using millis = std::int64_t;  // milliseconds since the epoch, or a span

struct rate {
  std::int64_t count = 0;  // 0: no limit
  millis period = 0;
  bool enabled() const { return count > 0 && period > 0; }
  friend bool operator==(const rate&, const rate&) = default;
};

// "30/1m", "100/1h", "10/30s"; "" or "0" = no limit.
std::optional<rate> parse_rate(std::string_view text);
std::string to_string(const rate& r);

struct decision {
  bool allowed = true;
  millis retry_after = 0;  // when refused: wait this long for the next event to fit
};

// One GCRA step on the stored TAT (0 = new key). Consumes `cost` when allowed;
// leaves `tat` unchanged when refused. Returns the decision and the TTL the
// key needs (after it the key is as good as new).
decision gcra(millis& tat, millis now, const rate& r, std::int64_t cost = 1);
millis gcra_ttl(millis tat, millis now);

// --- greylisting ---------------------------------------------------------------

struct greylist_policy {
  millis delay = 25 * 60 * 1000;              // OpenBSD spamd: 25 min
  millis retry_window = 4 * 3600 * 1000;      // then a retry must come within 4 h
  millis lifetime = 36ll * 24 * 3600 * 1000;  // a passed triplet is remembered 36 days
  std::int64_t auto_allowlist_after = 5;      // passes after which the client skips it
};

struct triplet_record {
  millis first_seen = 0;
  millis passed_at = 0;  // 0: not passed yet
  millis last_seen = 0;
};

enum class grey_result { pass, defer };
struct grey_outcome {
  grey_result what = grey_result::pass;
  millis wait = 0;            // defer: time until a retry will pass
  bool newly_passed = false;  // this attempt passed the triplet for the first time
};

// One greylisting step on a triplet record (first_seen 0 = unknown).
grey_outcome greylist_step(triplet_record& record, millis now, const greylist_policy& policy);

// --- the store ---------------------------------------------------------------------

struct rate_key {
  std::string key;
  rate limit;
  std::int64_t cost = 1;
};

// When the store cannot answer (Redis down): `failed` set and the decision
// left to the caller's failure policy.
struct store_decision {
  decision result;
  bool failed = false;
  std::size_t refused_index = 0;  // which key refused, when refused
};

// One blocklist entry as the store keeps it (the pair shares the list).
struct block_record {
  std::string prefix;  // canonical CIDR text ("192.0.2.7/32")
  std::int64_t created_ms = 0;
  std::int64_t expires_ms = 0;  // wall clock; 0 = permanent
  std::string rule;             // what made it: "manual", "auto:limits:*", "import"
  std::string reason;           // printable ASCII, no newlines
  std::int64_t offences = 1;    // auto-block: how many times this prefix was blocked
};
struct block_listing {
  std::int64_t version = 0;  // changes with every add and remove
  bool changed = false;      // false: `entries` is empty, nothing new since `known`
  bool failed = false;       // the store could not be asked
  std::vector<block_record> entries;
};
// "expires created offences rule reason" and back; nullopt when malformed.
std::string encode_block(const block_record& r);
std::optional<block_record> decode_block(std::string prefix, std::string_view value);

// For the metrics: is the shared store reachable, and how fast it answers.
struct store_health {
  bool remote = false;  // Redis; false for the embedded store
  bool up = true;
  std::uint64_t calls = 0, answered = 0;
  double latency_seconds_total = 0;  // summed over the answered calls
};

class state_store {
 public:
  virtual ~state_store() = default;
  virtual std::string_view name() const = 0;
  virtual store_health health() const { return {}; }
  // Checks every key; allowed only when all allow, and then each consumes its
  // cost. Atomic for keys with one Redis Cluster hash tag (`{...}`, else the
  // whole key); with several tags, one group at a time in order of first
  // appearance, and a refusal leaves the groups before it consumed.
  virtual boost::asio::awaitable<store_decision> check_rates(std::vector<rate_key> keys,
                                                             millis now) = 0;
  // Counts one refused event for a key without deciding (harvest signal):
  // like check_rates with one key, but consumes even when over the limit.
  virtual boost::asio::awaitable<store_decision> count_event(rate_key key, millis now) = 0;
  // Greylisting: the triplet's step, and the client's pass count for the
  // auto-allowlist. `client_key` identifies the client network.
  struct grey_answer {
    grey_outcome outcome;
    bool client_allowlisted = false;
    bool failed = false;
  };
  virtual boost::asio::awaitable<grey_answer> greylist(std::string triplet_key,
                                                       std::string client_key,
                                                       greylist_policy policy, millis now) = 0;

  // Concurrent sessions of one client across every instance sharing the
  // store. Crash-safe: counts are kept per instance, and an instance that
  // stops sending heartbeats (killed) stops counting once `ttl` passes, so
  // no client stays locked out by a counter that leaked.
  struct lease_answer {
    bool allowed = true;
    bool failed = false;
  };
  virtual boost::asio::awaitable<lease_answer> acquire_lease(std::string key, std::string instance,
                                                             std::int64_t limit, millis ttl) = 0;
  virtual boost::asio::awaitable<void> release_lease(std::string key, std::string instance,
                                                     millis ttl) = 0;
  // Says this instance is alive for `ttl`; call every ttl/3.
  virtual boost::asio::awaitable<void> heartbeat(std::string instance, millis ttl) = 0;

  // The pass cache (postscreen's, but shared by the pair): a client that
  // passed the DNS lists and the early-talker test is marked for `ttl`, and
  // not tested again on any gateway while the mark lasts. False when unknown
  // or the store cannot answer (the tests then simply run).
  virtual boost::asio::awaitable<bool> passed(std::string key, millis now) = 0;
  virtual boost::asio::awaitable<void> mark_passed(std::string key, millis ttl, millis now) = 0;

  // The blocklist. Writes bump a version; readers poll `block_list(known)`,
  // which returns the entries only when the version moved, so polling every
  // few hundred ms costs one small round trip. Expired entries are dropped
  // by the store. False / failed when the store cannot be reached.
  virtual boost::asio::awaitable<bool> block_put(block_record record) = 0;
  virtual boost::asio::awaitable<bool> block_remove(std::string prefix) = 0;
  virtual boost::asio::awaitable<block_listing> block_list(std::int64_t known, millis now) = 0;
};

// The embedded store: sharded maps in this process, each entry with an
// expiry; at most `max_keys` keys (the least recently written go first).
std::shared_ptr<state_store> make_embedded_store(std::size_t max_keys);

millis wall_clock_now();

}  // namespace mxguard::ratelimit
