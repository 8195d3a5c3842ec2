// The Redis state store: rate limits and greylisting shared by every
// gateway of a pair (or fleet) through one Redis.
//
// hiredis's async API runs on the caller's Asio executor through a small
// adapter (one connection per io_context — mxguard runs each on one thread —
// created on first use and closed when that io_context shuts down); each
// deciding operation is one Lua script, loaded once and called by EVALSHA
// (see the scripts in redis_store.cpp for KEYS/ARGV/return). Every key carries
// `prefix` and an expiry.
//
// Failure policy (`failure`): while Redis does not answer within `timeout`,
//   local    — decide with an embedded store in this process (the default;
//              nothing is resynchronised when Redis comes back),
//   open     — allow,
//   tempfail — report `failed`, and the caller answers 451.
// A circuit breaker stops waiting on a dead Redis: after a failure, calls go
// straight to the failure policy until a reconnect, tried with exponential
// backoff and jitter, succeeds. One log line per change of state.
//
// Sentinel: with `sentinels` set, every (re)connect asks them in turn
// (`SENTINEL get-master-addr-by-name`, each within `timeout`, asynchronously
// on the I/O thread) for the current primary of `sentinel_master`, connects
// to it and checks with `ROLE` that it is the primary. A server that answers
// a write with READONLY (it was demoted) counts as a failure like a dead one:
// the circuit opens and the reconnect asks the sentinels again.
//
// hiredis 0.14 (Debian 12) has no TLS: reach a TLS-only Redis through a local
// tunnel (stunnel, spiped) or use a Unix socket.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxguard/ratelimit/ratelimit.hpp"

namespace mxguard::ratelimit {

struct redis_endpoint {
  std::string host;
  int port = 0;
  friend bool operator==(const redis_endpoint&, const redis_endpoint&) = default;
};

struct redis_settings {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_socket;  // instead of host/port when set
  std::string user;         // ACL user (Redis 6+); empty = default
  std::string password;
  int database = 0;
  std::string prefix = "mxg:";
  std::chrono::milliseconds timeout{200};
  enum class on_failure { local, open, tempfail } failure = on_failure::local;
  // Sentinel: when not empty, the primary of `sentinel_master` is asked for
  // on every connect and host/port/unix_socket are not used.
  std::vector<redis_endpoint> sentinels;
  std::string sentinel_master;
  std::string sentinel_password;  // AUTH towards the sentinels; empty = none
};

constexpr int default_sentinel_port = 26379;

// "redis://[[user]:password@]host[:port][/db]" or "unix:///path[?db=N]".
std::optional<redis_settings> parse_redis_url(std::string_view url, std::string& error);

// A sentinel: "host:port", "[v6]:port", or "host" (port 26379).
std::optional<redis_endpoint> parse_sentinel_address(std::string_view text, std::string& error);

// `fallback` serves the `local` failure policy (and must outlive the store).
std::shared_ptr<state_store> make_redis_store(redis_settings settings,
                                              std::shared_ptr<state_store> fallback);

}  // namespace mxguard::ratelimit
