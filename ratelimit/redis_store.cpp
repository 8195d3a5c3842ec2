#include "mxguard/ratelimit/redis_store.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <mutex>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mxguard/ops/log.hpp"

namespace mxguard::ratelimit {

namespace asio = boost::asio;

namespace {

using steady_time = std::chrono::steady_clock::time_point;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// --- scripts -----------------------------------------------------------------

// Rate check (GCRA) over one or more counters, all or nothing.
// KEYS: the counters (each holds its TAT, ms, with an expiry).
// ARGV[1]: now (ms since the epoch); ARGV[2]: "1" = count even when over the
// limit (harvest counting), "0" = consume only when every key allows;
// then for each key: count, period (ms), cost.
// Returns {allowed (1|0), index of the first refusing key (1-based; 0), retry after (ms)}.
constexpr const char* rates_script = R"lua(
local now = tonumber(ARGV[1])
local always = ARGV[2] == '1'
local tats = {}
local refused, retry = 0, 0
for i, key in ipairs(KEYS) do
  local base = 3 + (i - 1) * 3
  local count, period, cost = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local interval = period / count
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  if new_tat - period > now then
    if refused == 0 then
      refused = i
      retry = math.floor(new_tat - period - now) + 1
    end
    if always then new_tat = tat + interval else new_tat = false end
  end
  tats[i] = new_tat
end
if refused > 0 and not always then return {0, refused, retry} end
for i, key in ipairs(KEYS) do
  local t = tats[i]
  if t then redis.call('SET', key, string.format('%.0f', t), 'PX', math.floor(t - now) + 1000) end
end
if refused > 0 then return {0, refused, retry} end
return {1, 0, 0}
)lua";

// Greylisting step for one triplet.
// KEYS[1]: the triplet (hash first/passed/last); KEYS[2]: the client
// network's pass count. Both carry the network as hash tag (one slot).
// ARGV: now, delay, retry window, lifetime (ms), auto-allowlist pass count.
// Returns {state, wait ms}: state 0 defer, 1 pass, 2 client allowlisted,
// 3 passed now for the first time.
constexpr const char* greylist_script = R"lua(
local now, delay, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lifetime, auto = tonumber(ARGV[4]), tonumber(ARGV[5])
local passes = tonumber(redis.call('GET', KEYS[2]) or '0')
if auto > 0 and passes >= auto then return {2, 0} end
local rec = redis.call('HMGET', KEYS[1], 'first', 'passed', 'last')
local first, passed, last = tonumber(rec[1] or '0'), tonumber(rec[2] or '0'), tonumber(rec[3] or '0')
if passed > 0 and now - last <= lifetime then
  redis.call('HSET', KEYS[1], 'last', now)
  redis.call('PEXPIRE', KEYS[1], lifetime)
  return {1, 0}
end
if first == 0 or passed > 0 or now - first > delay + window then
  redis.call('HSET', KEYS[1], 'first', now, 'passed', 0, 'last', now)
  redis.call('PEXPIRE', KEYS[1], delay + window)
  return {0, delay}
end
redis.call('HSET', KEYS[1], 'last', now)
if now - first < delay then return {0, delay - (now - first)} end
redis.call('HSET', KEYS[1], 'passed', now)
redis.call('PEXPIRE', KEYS[1], lifetime)
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], lifetime)
return {3, 0}
)lua";

// Concurrency leases. KEYS[1]: the client's hash; field = instance id,
// value = "SESSIONS EXPIRES_MS": that instance's sessions of this client and
// until when they count. A live instance renews its fields (lease_renew)
// every ttl/3; a killed one stops, and once its time passes its sessions are
// dropped from the count. One key per script: Redis Cluster can host them.
//
// Acquire. ARGV: instance id, limit, ttl (ms), now (ms). Returns 1 when a
// lease was taken, 0 when the client is at its limit.
constexpr const char* lease_script = R"lua(
local instance, limit, ttl, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local fields = redis.call('HGETALL', KEYS[1])
local total, mine = 0, 0
for i = 1, #fields, 2 do
  local who = fields[i]
  local n, expires = string.match(fields[i + 1], '^(%d+) (%d+)$')
  n, expires = tonumber(n or '0'), tonumber(expires or '0')
  if expires < now then
    -- Our own field too: we renew live ones every ttl/3, so an expired one
    -- is a count Redis kept after we stopped holding it.
    redis.call('HDEL', KEYS[1], who)
  elseif who == instance then
    mine = n
  else
    total = total + n
  end
end
if total + mine >= limit then return 0 end
redis.call('HSET', KEYS[1], instance, string.format('%d %d', mine + 1, now + ttl))
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
)lua";

// Release. ARGV: instance id. Returns the instance's sessions left.
constexpr const char* release_script = R"lua(
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local n, expires = string.match(value, '^(%d+) (%d+)$')
n = tonumber(n or '1') - 1
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %s', n, expires or '0'))
return n
)lua";

// Renew. ARGV: instance id, the instance's own count of its sessions, ttl,
// now, mode. "refresh" moves the expiry and keeps the count Redis has (the
// acquire and release scripts keep it exact; a count taken before them and
// written after would undo one); "set" writes ours, for a key where Redis may
// disagree (a release or acquire whose answer was lost) and for a key Redis
// lost (restarted): the instance is the authority there.
constexpr const char* lease_renew_script = R"lua(
local n, ttl, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] ~= 'set' then
  local value = redis.call('HGET', KEYS[1], ARGV[1])
  if value then n = tonumber(string.match(value, '^(%d+) ') or n) end
end
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %d', n, now + ttl))
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
)lua";

// Redis Cluster's hash tag of a key: the text between the first '{' and the
// next '}' when that is not empty, else the whole key.
std::string_view hash_tag(std::string_view key) {
  auto open = key.find('{');
  if (open == std::string_view::npos) return key;
  auto close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

std::string sha1_hex(std::string_view text) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  std::string out;
  for (auto b : digest) out += fmt::format("{:02x}", b);
  return out;
}

// --- replies ---------------------------------------------------------------------

// Blocklist, add or replace. KEYS[1]: the entries hash, KEYS[2]: the version
// counter (one hash tag, so Cluster keeps them together). ARGV: prefix,
// encoded entry, key lifetime (ms). Returns the new version.
constexpr const char* block_put_script = R"lua(
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local v = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return v
)lua";

// Blocklist, remove. KEYS as above; ARGV: prefix. Returns the version.
constexpr const char* block_remove_script = R"lua(
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then return redis.call('INCR', KEYS[2]) end
return tonumber(redis.call('GET', KEYS[2]) or '0')
)lua";

// Blocklist, read. KEYS as above; ARGV: the version the caller has (-1 when
// an entry it holds has expired), now (ms). {version} when nothing changed;
// else {version, prefix, entry, ...} without expired entries, which are
// deleted on the way with a new version, so that every instance drops them.
constexpr const char* block_list_script = R"lua(
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if tostring(v) == ARGV[1] then return {v} end
local all = redis.call('HGETALL', KEYS[1])
local out = {v}
local now = tonumber(ARGV[2])
local removed = false
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '^(%d+)'))
  if expires ~= nil and expires ~= 0 and expires <= now then
    redis.call('HDEL', KEYS[1], all[i])
    removed = true
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
if removed then out[1] = redis.call('INCR', KEYS[2]) end
return out
)lua";

struct redis_value {
  int type = 0;  // REDIS_REPLY_*; 0 = no reply (timeout, disconnect)
  long long integer = 0;
  std::string text;
  std::vector<redis_value> elements;
  bool ok() const { return type != 0 && type != REDIS_REPLY_ERROR; }
};

redis_value convert(const redisReply* r) {
  redis_value v;
  if (!r) return v;
  v.type = r->type;
  v.integer = r->integer;
  if (r->str) v.text.assign(r->str, r->len);
  for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(convert(r->element[i]));
  return v;
}

// --- one connection per I/O thread: hiredis async on Asio ---------------------------

class connection : public std::enable_shared_from_this<connection> {
 public:
  using clock = std::chrono::steady_clock;

  explicit connection(asio::any_io_executor executor) : fd_(executor) {}
  ~connection() { close(); }

  // hiredis still holds a context (it frees it on a disconnect or error).
  bool open() const { return context_ != nullptr; }
  // When the server last said something (or the connect started), and how
  // many commands wait for their replies: silence while commands wait is
  // how a hung server shows.
  clock::time_point last_heard() const { return last_heard_; }
  std::size_t pending() const { return pending_; }

  // Starts a non-blocking connect (to `unix_socket` when not empty); true
  // when hiredis accepted to start. Commands may be sent at once: hiredis
  // queues them behind the connect.
  bool start(const std::string& host, int port, const std::string& unix_socket) {
    close();
    context_ = unix_socket.empty() ? redisAsyncConnect(host.c_str(), port)
                                   : redisAsyncConnectUnix(unix_socket.c_str());
    if (!context_ || context_->err) {
      if (context_) redisAsyncFree(context_);
      context_ = nullptr;
      return false;
    }
    pending_ = 0;
    last_heard_ = clock::now();
    context_->data = this;
    fd_.assign(context_->c.fd);
    context_->ev.data = this;
    context_->ev.addRead = [](void* p) { static_cast<connection*>(p)->want_read(true); };
    context_->ev.delRead = [](void* p) { static_cast<connection*>(p)->want_read(false); };
    context_->ev.addWrite = [](void* p) { static_cast<connection*>(p)->want_write(true); };
    context_->ev.delWrite = [](void* p) { static_cast<connection*>(p)->want_write(false); };
    context_->ev.cleanup = [](void* p) { static_cast<connection*>(p)->on_cleanup(); };
    redisAsyncSetConnectCallback(context_, [](const redisAsyncContext* c, int status) {
      auto* self = static_cast<connection*>(c->data);
      if (self && status == REDIS_OK) self->last_heard_ = clock::now();
    });
    return true;
  }

  // Sends a command; `done` is called exactly once with the reply (or an
  // empty value when the connection dies first).
  bool send(const std::vector<std::string>& args, std::function<void(redis_value)> done) {
    if (!context_) return false;
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    auto* holder = new std::function<void(redis_value)>(std::move(done));
    int rc = redisAsyncCommandArgv(
        context_,
        [](redisAsyncContext* c, void* reply, void* privdata) {
          std::unique_ptr<std::function<void(redis_value)>> fn(
              static_cast<std::function<void(redis_value)>*>(privdata));
          // c->data is cleared by close() before it frees the context.
          if (auto* self = static_cast<connection*>(c->data)) {
            if (self->pending_ > 0) --self->pending_;
            if (reply) self->last_heard_ = clock::now();
          }
          (*fn)(convert(static_cast<redisReply*>(reply)));
        },
        holder, static_cast<int>(args.size()), argv.data(), lengths.data());
    if (rc != REDIS_OK) {
      delete holder;
      return false;
    }
    ++pending_;
    return true;
  }

  void close() {
    if (context_) {
      auto* c = std::exchange(context_, nullptr);
      c->data = nullptr;
      // Frees the context; pending callbacks get a null reply; cleanup runs.
      redisAsyncFree(c);
    }
    release_fd();
    pending_ = 0;
  }

 private:
  void release_fd() {
    if (fd_.is_open()) {
      boost::system::error_code ec;
      fd_.cancel(ec);
      fd_.release();  // hiredis owns and closes the descriptor
    }
  }

  void want_read(bool on) {
    reading_ = on;
    if (on && !read_armed_) arm_read();
  }
  void want_write(bool on) {
    writing_ = on;
    if (on && !write_armed_) arm_write();
  }

  void arm_read() {
    read_armed_ = true;
    fd_.async_wait(asio::posix::descriptor_base::wait_read,
                   [weak = weak_from_this()](boost::system::error_code ec) {
                     auto self = weak.lock();
                     if (!self) return;
                     self->read_armed_ = false;
                     if (ec || !self->context_ || !self->reading_) return;
                     redisAsyncHandleRead(self->context_);
                     if (self->context_ && self->reading_ && !self->read_armed_) self->arm_read();
                   });
  }
  void arm_write() {
    write_armed_ = true;
    fd_.async_wait(asio::posix::descriptor_base::wait_write,
                   [weak = weak_from_this()](boost::system::error_code ec) {
                     auto self = weak.lock();
                     if (!self) return;
                     self->write_armed_ = false;
                     if (ec || !self->context_ || !self->writing_) return;
                     redisAsyncHandleWrite(self->context_);
                     if (self->context_ && self->writing_ && !self->write_armed_) self->arm_write();
                   });
  }

  // hiredis is about to free the context (disconnect or error).
  void on_cleanup() {
    reading_ = writing_ = false;
    release_fd();
    context_ = nullptr;
  }

  redisAsyncContext* context_ = nullptr;
  asio::posix::stream_descriptor fd_;
  clock::time_point last_heard_{};
  std::size_t pending_ = 0;
  bool reading_ = false, writing_ = false;
  bool read_armed_ = false, write_armed_ = false;
};

// --- the connections of one io_context ---------------------------------------------

// One store's connection on one io_context (mxguard runs each io_context on
// one thread, so this is also per thread) and its circuit breaker.
// `generation` counts connects: a failure reported for an older one (a late
// reply of a connection already given up) changes nothing, so one outage
// opens the circuit once, not once per session that was waiting.
struct thread_state {
  std::shared_ptr<connection> conn;
  std::uint64_t generation = 0;
  bool up = false;  // connected, set up, and (with Sentinel) the primary
  bool connecting = false;
  std::chrono::steady_clock::time_point retry_at{};
  std::chrono::milliseconds backoff{100};
  std::vector<std::shared_ptr<asio::steady_timer>> waiting;  // sessions awaiting a connect
  std::uint64_t ups_seen = 0;     // connects made by any thread when this one went down
  std::size_t next_sentinel = 0;  // the one that answered last is asked first
  std::string primary;            // "host:port" the sentinels named last
};

// The states of an io_context, closed when it shuts down: a connection's
// descriptor and timers belong to that io_context and must go before its
// services do. Fix: they were thread_local, destroyed at thread exit; the
// main thread's (the heartbeat and the blocklist sync call Redis from the
// control io_context) outlived that io_context, and at exit hiredis's
// cleanup touched the freed descriptor and timer services (heap-use-after-
// free, every run with Redis; found by tests/sanitize.sh). Asio calls every
// service's shutdown() before it destroys any. Keyed by a store id rather
// than its address, which a later store could reuse and so inherit a
// connection made with other settings.
class connection_registry final : public asio::execution_context::service {
 public:
  using key_type = connection_registry;
  static inline asio::execution_context::id id;

  explicit connection_registry(asio::execution_context& owner) : service(owner) {}

  thread_state& state_for(std::uint64_t store) { return states_[store]; }

 private:
  void shutdown() override {
    for (auto& [store, st] : states_)
      if (st.conn) st.conn->close();
    states_.clear();
  }

  std::unordered_map<std::uint64_t, thread_state> states_;
};

// --- the store -------------------------------------------------------------------

class redis_store final : public state_store, public std::enable_shared_from_this<redis_store> {
 public:
  redis_store(redis_settings s, std::shared_ptr<state_store> fallback)
      : settings_(std::move(s)),
        fallback_(std::move(fallback)),
        rates_sha_(sha1_hex(rates_script)),
        greylist_sha_(sha1_hex(greylist_script)),
        lease_sha_(sha1_hex(lease_script)),
        release_sha_(sha1_hex(release_script)),
        renew_sha_(sha1_hex(lease_renew_script)),
        block_put_sha_(sha1_hex(block_put_script)),
        block_remove_sha_(sha1_hex(block_remove_script)),
        block_list_sha_(sha1_hex(block_list_script)) {}

  asio::awaitable<bool> passed(std::string key, millis now) override {
    std::vector<std::string> args{"EXISTS", settings_.prefix + key};
    auto reply = co_await call(std::move(args), from_now());
    if (!reply) {
      if (settings_.failure == redis_settings::on_failure::local)
        co_return co_await fallback_->passed(std::move(key), now);
      co_return false;
    }
    co_return reply->integer == 1;
  }

  asio::awaitable<void> mark_passed(std::string key, millis ttl, millis now) override {
    std::vector<std::string> args{"SET", settings_.prefix + key, "1", "PX", std::to_string(ttl)};
    auto reply = co_await call(std::move(args), from_now());
    if (!reply && settings_.failure == redis_settings::on_failure::local)
      co_await fallback_->mark_passed(std::move(key), ttl, now);
  }

  // The blocklist is not mirrored in the fallback store: while Redis is
  // away, each instance keeps the list it last read.
  asio::awaitable<bool> block_put(block_record record) override {
    std::vector<std::string> args{"EVALSHA",
                                  block_put_sha_,
                                  "2",
                                  settings_.prefix + "{bl}:entries",
                                  settings_.prefix + "{bl}:version",
                                  record.prefix,
                                  encode_block(record),
                                  std::to_string(block_key_lifetime_ms)};
    auto reply = co_await script(std::move(args), block_put_script, from_now());
    co_return reply.has_value();
  }

  asio::awaitable<bool> block_remove(std::string prefix) override {
    std::vector<std::string> args{"EVALSHA",
                                  block_remove_sha_,
                                  "2",
                                  settings_.prefix + "{bl}:entries",
                                  settings_.prefix + "{bl}:version",
                                  std::move(prefix)};
    auto reply = co_await script(std::move(args), block_remove_script, from_now());
    co_return reply.has_value();
  }

  asio::awaitable<block_listing> block_list(std::int64_t known, millis now) override {
    std::vector<std::string> args{"EVALSHA",
                                  block_list_sha_,
                                  "2",
                                  settings_.prefix + "{bl}:entries",
                                  settings_.prefix + "{bl}:version",
                                  std::to_string(known),
                                  std::to_string(now)};
    auto reply = co_await script(std::move(args), block_list_script, from_now());
    block_listing out;
    if (!reply || reply->elements.empty()) {
      out.failed = true;
      co_return out;
    }
    out.version = reply->elements[0].integer;
    if (reply->elements.size() == 1 && out.version == known) co_return out;
    out.changed = true;
    for (std::size_t i = 1; i + 1 < reply->elements.size(); i += 2)
      if (auto r = decode_block(reply->elements[i].text, reply->elements[i + 1].text))
        out.entries.push_back(std::move(*r));
    co_return out;
  }

  asio::awaitable<lease_answer> acquire_lease(std::string key, std::string instance,
                                              std::int64_t limit, millis ttl) override {
    std::vector<std::string> args{"EVALSHA",
                                  lease_sha_,
                                  "1",
                                  settings_.prefix + key,
                                  instance,
                                  std::to_string(limit),
                                  std::to_string(ttl),
                                  std::to_string(wall_clock_now())};
    auto reply = co_await script(std::move(args), lease_script, from_now());
    if (!reply) {
      // Redis may have taken the lease without our hearing: the next beat
      // writes our count.
      dispute(key);
      if (settings_.failure == redis_settings::on_failure::local) {
        co_return co_await fallback_->acquire_lease(std::move(key), std::move(instance), limit,
                                                    ttl);
      }
      lease_answer failed;
      failed.failed = settings_.failure == redis_settings::on_failure::tempfail;
      co_return failed;
    }
    lease_answer answer;
    answer.allowed = reply->integer == 1;
    if (answer.allowed) {
      std::lock_guard lock(leases_mutex_);
      ++leases_held_[key];
    }
    co_return answer;
  }

  asio::awaitable<void> release_lease(std::string key, std::string instance, millis ttl) override {
    bool held = false;
    {
      std::lock_guard lock(leases_mutex_);
      if (auto it = leases_held_.find(key); it != leases_held_.end()) {
        held = true;
        if (--it->second <= 0) leases_held_.erase(it);
      }
    }
    // A lease taken from the local fallback while Redis was away is given
    // back there; one Redis holds but did not answer for heals by the TTL.
    if (!held) {
      co_await fallback_->release_lease(std::move(key), std::move(instance), ttl);
      co_return;
    }
    std::vector<std::string> args{"EVALSHA", release_sha_, "1", settings_.prefix + key, instance};
    if (!co_await script(std::move(args), release_script, from_now())) dispute(key);
  }

  // A key whose count in Redis may differ from ours: the next beat writes
  // ours. Bounded for a long outage under many clients; a key past the bound
  // keeps Redis's count while we hold sessions of it, and loses it with
  // their end (the field expires).
  void dispute(const std::string& key) {
    std::lock_guard lock(leases_mutex_);
    if (disputed_.size() < 10000) disputed_.insert(key);
  }

  // Renews every lease this instance holds; writes its own count where
  // Redis may disagree.
  asio::awaitable<void> heartbeat(std::string instance, millis ttl) override {
    std::vector<std::string> keys;
    {
      std::lock_guard lock(leases_mutex_);
      for (const auto& [key, count] : leases_held_) keys.push_back(key);
      for (const auto& key : disputed_)
        if (!leases_held_.contains(key)) keys.push_back(key);
    }
    for (auto& key : keys) {
      std::int64_t count = 0;
      bool disputed = false;
      {
        std::lock_guard lock(leases_mutex_);
        if (auto it = leases_held_.find(key); it != leases_held_.end()) count = it->second;
        disputed = disputed_.erase(key) > 0;
      }
      std::vector<std::string> args{"EVALSHA",
                                    renew_sha_,
                                    "1",
                                    settings_.prefix + key,
                                    instance,
                                    std::to_string(count),
                                    std::to_string(ttl),
                                    std::to_string(wall_clock_now()),
                                    disputed ? "set" : "refresh"};
      if (!co_await script(std::move(args), lease_renew_script, from_now())) {
        // Redis is away; the next beat tries again.
        if (disputed) dispute(key);
        co_return;
      }
    }
  }

  std::string_view name() const override { return "redis"; }

  asio::awaitable<store_decision> check_rates(std::vector<rate_key> keys, millis now) override {
    co_return co_await rates(std::move(keys), now, false);
  }

  asio::awaitable<store_decision> count_event(rate_key key, millis now) override {
    std::vector<rate_key> keys;
    keys.push_back(std::move(key));
    co_return co_await rates(std::move(keys), now, true);
  }

  asio::awaitable<grey_answer> greylist(std::string triplet_key, std::string client_key,
                                        greylist_policy policy, millis now) override {
    // The client network is the hash tag: both keys live in one cluster slot.
    std::vector<std::string> args{"EVALSHA",
                                  greylist_sha_,
                                  "2",
                                  settings_.prefix + "{" + client_key + "}:" + triplet_key,
                                  settings_.prefix + "{" + client_key + "}:passes",
                                  std::to_string(now),
                                  std::to_string(policy.delay),
                                  std::to_string(policy.retry_window),
                                  std::to_string(policy.lifetime),
                                  std::to_string(policy.auto_allowlist_after)};
    auto reply = co_await script(std::move(args), greylist_script, from_now());
    if (!reply || reply->elements.size() != 2) {
      if (settings_.failure == redis_settings::on_failure::local)
        co_return co_await fallback_->greylist(std::move(triplet_key), std::move(client_key),
                                               policy, now);
      grey_answer failed;
      failed.failed = settings_.failure == redis_settings::on_failure::tempfail;
      co_return failed;  // open: pass
    }
    grey_answer answer;
    auto state = reply->elements[0].integer;
    answer.client_allowlisted = state == 2;
    answer.outcome.what = state == 0 ? grey_result::defer : grey_result::pass;
    answer.outcome.wait = reply->elements[1].integer;
    answer.outcome.newly_passed = state == 3;
    co_return answer;
  }

 private:
  // The keys are checked one hash tag (cluster slot) at a time, in order,
  // each group atomically; a refusal stops at its group, so groups before it
  // have consumed (a message refused by messages_per_sender has still counted
  // against messages_per_ip). The guard's per-client keys share one tag.
  asio::awaitable<store_decision> rates(std::vector<rate_key> keys, millis now, bool always) {
    const auto deadline = from_now();  // for all the slots' calls together
    std::vector<std::vector<std::size_t>> groups;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto tag = hash_tag(keys[i].key);
      auto same = std::find_if(groups.begin(), groups.end(),
                               [&](const auto& g) { return hash_tag(keys[g.front()].key) == tag; });
      if (same == groups.end())
        groups.push_back({i});
      else
        same->push_back(i);
    }
    for (const auto& group : groups) {
      auto d = co_await rates_in_one_slot(keys, group, now, always, deadline);
      if (!d) {
        if (settings_.failure == redis_settings::on_failure::local) {
          // (if/else, not ?: — GCC 12 miscompiles a conditional holding co_await.)
          if (always) co_return co_await fallback_->count_event(keys.front(), now);
          co_return co_await fallback_->check_rates(std::move(keys), now);
        }
        store_decision failed;
        failed.failed = settings_.failure == redis_settings::on_failure::tempfail;
        co_return failed;  // open: allowed
      }
      if (!d->result.allowed) co_return *d;
    }
    co_return store_decision{};
  }

  // One EVALSHA of the rates script over keys[group]; nullopt when Redis
  // did not answer. refused_index is an index into `keys`.
  asio::awaitable<std::optional<store_decision>> rates_in_one_slot(
      const std::vector<rate_key>& keys, const std::vector<std::size_t>& group, millis now,
      bool always, steady_time deadline) {
    std::vector<std::string> args{"EVALSHA", rates_sha_, std::to_string(group.size())};
    for (auto i : group) args.push_back(settings_.prefix + keys[i].key);
    args.push_back(std::to_string(now));
    args.push_back(always ? "1" : "0");
    for (auto i : group) {
      args.push_back(std::to_string(keys[i].limit.count));
      args.push_back(std::to_string(keys[i].limit.period));
      args.push_back(std::to_string(keys[i].cost));
    }
    auto reply = co_await script(std::move(args), rates_script, deadline);
    if (!reply || reply->elements.size() != 3) co_return std::nullopt;
    store_decision d;
    d.result.allowed = reply->elements[0].integer == 1;
    if (!d.result.allowed) {
      auto in_group = static_cast<std::size_t>(std::max(1ll, reply->elements[1].integer) - 1);
      d.refused_index = group[std::min(in_group, group.size() - 1)];
      d.result.retry_after = reply->elements[2].integer;
    }
    co_return d;
  }

  // The time one store operation may take, whatever number of Redis calls
  // it makes: what the session waits at most.
  steady_time from_now() const { return std::chrono::steady_clock::now() + settings_.timeout; }

  // EVALSHA, loading the script on NOSCRIPT, all by `deadline`; nullopt on
  // any failure.
  asio::awaitable<std::optional<redis_value>> script(std::vector<std::string> args,
                                                     const char* source, steady_time deadline) {
    auto reply = co_await call(args, deadline);
    if (reply && reply->type == REDIS_REPLY_ERROR && reply->text.starts_with("NOSCRIPT")) {
      std::vector<std::string> load{"SCRIPT", "LOAD", source};  // named: see limit_check.cpp
      auto loaded = co_await call(std::move(load), deadline);
      if (!loaded || !loaded->ok()) co_return std::nullopt;
      reply = co_await call(args, deadline);
    }
    if (!reply || !reply->ok()) {
      if (reply) ops::event("REDIS", ops::severity::warning).add("error", reply->text).emit();
      co_return std::nullopt;
    }
    co_return reply;
  }

  // One command, answered by `deadline` (connecting included); nullopt when Redis is down, slow, no
  // longer the primary, or the circuit is open.
  asio::awaitable<std::optional<redis_value>> call(std::vector<std::string> args,
                                                   steady_time deadline) {
    auto executor = co_await asio::this_coro::executor;
    auto& st = thread_connection(executor);
    if (!co_await ensure_connected(st, executor, deadline)) co_return std::nullopt;
    const auto generation = st.generation;
    struct waiter {
      explicit waiter(asio::any_io_executor e) : timer(e) {}
      asio::steady_timer timer;
      std::optional<redis_value> value;
      bool done = false;
    };
    auto w = std::make_shared<waiter>(executor);
    const auto started = std::chrono::steady_clock::now();
    calls_.fetch_add(1, std::memory_order_relaxed);
    w->timer.expires_at(deadline);
    bool sent = st.conn->send(args, [w](redis_value v) {
      w->value = std::move(v);
      w->done = true;
      w->timer.cancel();
    });
    if (!sent) {
      mark_down(st, generation, "send failed");
      co_return std::nullopt;
    }
    co_await w->timer.async_wait(use_tuple);
    if (!w->done) {
      // Too slow for this session. The connection is given up (its late
      // replies go nowhere) only when it has said nothing for a whole
      // `timeout` while commands waited: a session that spent its time
      // waiting for a connect does not condemn a connection just made.
      if (generation == st.generation && st.conn->pending() > 0 &&
          std::chrono::steady_clock::now() - st.conn->last_heard() >= settings_.timeout)
        mark_down(st, generation, "timeout");
      co_return std::nullopt;
    }
    if (w->value->type == 0) {
      mark_down(st, generation, "connection lost");
      co_return std::nullopt;
    }
    if (w->value->type == REDIS_REPLY_ERROR && demoted(w->value->text)) {
      // A primary turned replica under us (Sentinel failover): a failure,
      // and the reconnect asks the sentinels for the new primary.
      mark_down(st, generation, "not the primary: " + w->value->text.substr(0, 60));
      co_return std::nullopt;
    }
    latency_us_.fetch_add(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::steady_clock::now() - started)
                                       .count()),
        std::memory_order_relaxed);
    answered_.fetch_add(1, std::memory_order_relaxed);
    co_return std::move(w->value);
  }

  // READONLY: a write reached a replica (also from inside a script);
  // MASTERDOWN: a replica that lost its primary and serves nothing.
  static bool demoted(std::string_view error) {
    return error.starts_with("READONLY") || error.starts_with("MASTERDOWN") ||
           error.find("READONLY You can't write") != std::string_view::npos;
  }

  store_health health() const override {
    store_health h;
    h.remote = true;
    h.up = !down_.load(std::memory_order_relaxed);
    h.calls = calls_.load(std::memory_order_relaxed);
    h.answered = answered_.load(std::memory_order_relaxed);
    h.latency_seconds_total =
        static_cast<double>(latency_us_.load(std::memory_order_relaxed)) / 1e6;
    return h;
  }

  thread_state& thread_connection(const asio::any_io_executor& executor) {
    auto& registry =
        asio::use_service<connection_registry>(asio::query(executor, asio::execution::context));
    auto& st = registry.state_for(id_);
    if (!st.conn) st.conn = std::make_shared<connection>(executor);
    return st;
  }

  void mark_down(thread_state& st, std::uint64_t generation, std::string_view why) {
    if (generation != st.generation) return;  // that connection was given up already
    ++st.generation;
    st.conn->close();
    st.up = false;
    st.ups_seen = ups_.load(std::memory_order_relaxed);
    // Exponential backoff with jitter, so that the threads (and the gateways
    // of a pair) do not all knock on a recovering Redis at once.
    static thread_local std::mt19937 rng{std::random_device{}()};
    auto jitter =
        std::uniform_int_distribution<int>(0, static_cast<int>(st.backoff.count() / 2))(rng);
    st.retry_at = std::chrono::steady_clock::now() + st.backoff + std::chrono::milliseconds(jitter);
    st.backoff = std::min(st.backoff * 2, std::chrono::milliseconds(10'000));
    if (!down_.exchange(true))
      ops::event("REDIS", ops::severity::warning)
          .add("state", "down")
          .add("error", why)
          .add("failure_policy", policy_name())
          .emit();
  }

  const char* policy_name() const {
    switch (settings_.failure) {
      case redis_settings::on_failure::local:
        return "local";
      case redis_settings::on_failure::open:
        return "open";
      case redis_settings::on_failure::tempfail:
        return "tempfail";
    }
    return "?";
  }

  // True when the thread's connection is up by `deadline`. The connect runs
  // as its own coroutine, so it goes on (asking sentinels, AUTH, SELECT)
  // after a session stopped waiting for it, and the next session finds it
  // made; every session waits at most until its deadline.
  asio::awaitable<bool> ensure_connected(thread_state& st, asio::any_io_executor executor,
                                         std::chrono::steady_clock::time_point deadline) {
    if (st.up && !st.conn->open()) st.up = false;  // hiredis saw it close: reconnect now
    if (st.up && !settings_.sentinels.empty()) {
      if (primary_moved(st)) {
        // The sentinels name another primary (a graceful failover: the old
        // one still takes writes until they reconfigure it, which can take
        // seconds). Leave it now, without opening the circuit; commands in
        // flight on it fall to the failure policy.
        ++st.generation;
        st.conn->close();
        st.up = false;
        st.retry_at = {};
      } else {
        check_primary(executor);
      }
    }
    if (st.up) co_return true;
    if (!st.connecting) {
      // The circuit is open until the backoff has passed, or until another
      // thread has connected since this one failed (Redis is back, or the
      // sentinels name a new primary): then every thread follows at once.
      // With Sentinel, also once the sentinels name another primary than
      // the one that failed: a promotion is followed without waiting out
      // the backoff, however long the outage before it was.
      bool circuit_open = std::chrono::steady_clock::now() < st.retry_at &&
                          ups_.load(std::memory_order_relaxed) == st.ups_seen;
      if (circuit_open && !settings_.sentinels.empty()) {
        if (primary_moved(st))
          circuit_open = false;
        else
          check_primary(executor);
      }
      if (circuit_open) co_return false;
      st.connecting = true;
      auto self = shared_from_this();
      auto* state = &st;
      asio::co_spawn(
          executor, [self, state]() { return self->connect(*state); },
          [state](std::exception_ptr e) {
            if (!e) return;
            state->connecting = false;  // or no call would ever connect again
            try {
              std::rethrow_exception(e);
            } catch (const std::exception& ex) {
              ops::event("REDIS", ops::severity::error).add("error", ex.what()).emit();
            }
          });
    }
    auto timer = std::make_shared<asio::steady_timer>(executor, deadline);
    st.waiting.push_back(timer);
    co_await timer->async_wait(use_tuple);
    co_return st.up;
  }

  // True when the sentinels last named another primary than `st`'s.
  bool primary_moved(const thread_state& st) {
    std::lock_guard lock(primary_mutex_);
    return !named_primary_.empty() && named_primary_ != st.primary;
  }

  // While Redis is used (or the circuit is open), one sentinel is asked
  // every `primary_check_interval` (for the whole store, not per thread)
  // which primary is current; threads compare it with theirs on their next
  // call.
  // (Sentinel's +switch-master announcement would need a subscribed
  // connection per store; one short question a second does the same job.)
  void check_primary(asio::any_io_executor executor) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (now < next_primary_check_.load(std::memory_order_relaxed) ||
        checking_primary_.exchange(true))
      return;
    auto self = shared_from_this();
    asio::co_spawn(
        executor, [self, executor]() { return self->ask_for_primary(executor); },
        [self](std::exception_ptr e) {
          if (!e) return;
          self->checking_primary_ = false;  // or the sentinels are never asked again
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            ops::event("REDIS", ops::severity::error).add("error", ex.what()).emit();
          }
        });
  }

  asio::awaitable<void> ask_for_primary(asio::any_io_executor executor) {
    auto answer = co_await ask_sentinels(thread_connection(executor), executor);
    if (answer.primary) {
      std::lock_guard lock(primary_mutex_);
      named_primary_ = fmt::format("{}:{}", answer.primary->host, answer.primary->port);
    }
    next_primary_check_.store(
        (std::chrono::steady_clock::now() + primary_check_interval).time_since_epoch().count(),
        std::memory_order_relaxed);
    checking_primary_.store(false);
  }

  // One command on `c` with the deadline `timeout`; nullopt when no reply
  // came in time (an empty value when the connection died).
  asio::awaitable<std::optional<redis_value>> exchange(connection& c, std::vector<std::string> cmd,
                                                       asio::any_io_executor executor) {
    struct waiter {
      explicit waiter(asio::any_io_executor e) : timer(e) {}
      asio::steady_timer timer;
      std::optional<redis_value> value;
    };
    auto w = std::make_shared<waiter>(executor);
    w->timer.expires_after(settings_.timeout);
    if (!c.send(cmd, [w](redis_value v) {
          w->value = std::move(v);
          w->timer.cancel();
        }))
      co_return redis_value{};
    co_await w->timer.async_wait(use_tuple);
    co_return std::move(w->value);
  }

  static std::string describe_failure(const std::optional<redis_value>& reply) {
    if (!reply) return "timeout";
    if (reply->type == 0) return "connection refused or closed";
    if (reply->type == REDIS_REPLY_ERROR) return "refused: " + reply->text;
    return "unexpected reply";
  }

  struct sentinel_answer {
    std::optional<redis_endpoint> primary;
    std::string error;  // each sentinel's failure, when none answered
  };

  // Asks the sentinels in turn for the primary of `sentinel_master`.
  asio::awaitable<sentinel_answer> ask_sentinels(thread_state& st, asio::any_io_executor executor) {
    sentinel_answer answer;
    const auto& sentinels = settings_.sentinels;
    for (std::size_t i = 0; i < sentinels.size(); ++i) {
      const auto index = (st.next_sentinel + i) % sentinels.size();
      const auto& sentinel = sentinels[index];
      auto probe = std::make_shared<connection>(executor);
      std::optional<redis_value> reply;
      if (probe->start(sentinel.host, sentinel.port, "")) {
        if (!settings_.sentinel_password.empty()) {
          std::vector<std::string> auth{"AUTH", settings_.sentinel_password};
          reply = co_await exchange(*probe, std::move(auth), executor);
        }
        if (settings_.sentinel_password.empty() || (reply && reply->ok())) {
          std::vector<std::string> ask{"SENTINEL", "get-master-addr-by-name",
                                       settings_.sentinel_master};
          reply = co_await exchange(*probe, std::move(ask), executor);
        }
      }
      probe->close();
      std::string why;
      if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements.size() == 2) {
        int port = 0;
        const auto& p = reply->elements[1].text;
        auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
        if (ec == std::errc{} && end == p.data() + p.size() && port > 0 && port < 65536 &&
            !reply->elements[0].text.empty()) {
          st.next_sentinel = index;
          answer.primary = redis_endpoint{reply->elements[0].text, port};
          co_return answer;
        }
        why = "bad answer";
      } else if (reply && reply->type == REDIS_REPLY_NIL) {
        why = "does not know " + settings_.sentinel_master;
      } else {
        why = reply ? describe_failure(reply) : "timeout";
      }
      if (!answer.error.empty()) answer.error += "; ";
      answer.error += fmt::format("sentinel {}:{}: {}", sentinel.host, sentinel.port, why);
    }
    co_return answer;
  }

  // Connects this thread's connection: the sentinels' primary (or the
  // configured server), then AUTH, SELECT, ROLE (with Sentinel) and PING,
  // each of whose replies must come within `timeout`. Wakes the sessions
  // waiting for it when done, either way.
  asio::awaitable<void> connect(thread_state& st) {
    auto executor = co_await asio::this_coro::executor;
    const auto generation = ++st.generation;
    st.up = false;
    const bool ok = co_await connect_steps(st, generation, executor);
    if (ok && generation == st.generation) {
      st.up = true;
      st.backoff = std::chrono::milliseconds(100);
      ups_.fetch_add(1, std::memory_order_relaxed);
      // A new primary is logged once, by the first thread that uses it
      // (a graceful failover can be followed without any failure).
      std::string previous;  // stays empty unless the primary changed
      if (!settings_.sentinels.empty()) {
        std::lock_guard lock(primary_mutex_);
        if (primary_ != st.primary) previous = std::exchange(primary_, st.primary);
      }
      if (down_.exchange(false)) {
        ops::event e("REDIS");
        e.add("state", "up");
        if (!settings_.sentinels.empty()) e.add("primary", st.primary);
        e.emit();
      } else if (!previous.empty()) {
        ops::event("REDIS").add("primary", st.primary).add("previous", previous).emit();
      }
    }
    st.connecting = false;
    for (auto& t : st.waiting) t->cancel();
    st.waiting.clear();
  }

  asio::awaitable<bool> connect_steps(thread_state& st, std::uint64_t generation,
                                      asio::any_io_executor executor) {
    std::string host = settings_.host;
    int port = settings_.port;
    if (!settings_.sentinels.empty()) {
      auto answer = co_await ask_sentinels(st, executor);
      if (generation != st.generation) co_return false;
      if (!answer.primary) {
        mark_down(st, generation, "no primary from the sentinels (" + answer.error + ")");
        co_return false;
      }
      host = answer.primary->host;
      port = answer.primary->port;
      st.primary = fmt::format("{}:{}", host, port);
      std::lock_guard lock(primary_mutex_);
      named_primary_ = st.primary;
    }
    if (!st.conn->start(host, port, settings_.sentinels.empty() ? settings_.unix_socket : "")) {
      mark_down(st, generation, "connect failed");
      co_return false;
    }
    // Queued behind the connect; their replies tell whether the connection works.
    std::vector<std::vector<std::string>> setup;
    if (!settings_.password.empty()) {
      if (settings_.user.empty())
        setup.push_back({"AUTH", settings_.password});
      else
        setup.push_back({"AUTH", settings_.user, settings_.password});
    }
    if (settings_.database != 0) setup.push_back({"SELECT", std::to_string(settings_.database)});
    if (!settings_.sentinels.empty()) setup.push_back({"ROLE"});
    setup.push_back({"PING"});
    for (auto& cmd : setup) {
      const bool role = cmd.front() == "ROLE";
      auto reply = co_await exchange(*st.conn, std::move(cmd), executor);
      if (generation != st.generation) co_return false;
      if (!reply || !reply->ok()) {
        mark_down(st, generation,
                  reply && reply->type == REDIS_REPLY_ERROR ? "setup refused: " + reply->text
                  : reply                                   ? describe_failure(reply)
                                                            : "connect timeout");
        co_return false;
      }
      if (role && (reply->type != REDIS_REPLY_ARRAY || reply->elements.empty() ||
                   reply->elements[0].text != "master")) {
        // The sentinels' answer is stale (a failover in progress): ask again later.
        mark_down(st, generation,
                  fmt::format("{} is not the primary (role {})", st.primary,
                              reply->elements.empty() ? "?" : reply->elements[0].text));
        co_return false;
      }
    }
    co_return true;
  }

  redis_settings settings_;
  std::shared_ptr<state_store> fallback_;
  std::string rates_sha_, greylist_sha_, lease_sha_, release_sha_, renew_sha_;
  // This instance's sessions per lease key, renewed by heartbeat().
  std::mutex leases_mutex_;
  std::unordered_map<std::string, std::int64_t> leases_held_;
  // Keys whose count in Redis may differ from ours (an answer was lost).
  std::unordered_set<std::string> disputed_;
  std::string block_put_sha_, block_remove_sha_, block_list_sha_;
  // The blocklist keys outlive their longest entry (bans are capped below it).
  static constexpr std::int64_t block_key_lifetime_ms = 400ll * 24 * 3600 * 1000;
  std::atomic<bool> down_{false};
  std::atomic<std::uint64_t> ups_{0};  // successful connects, all threads
  // With Sentinel: the primary last connected to (for the log), the one the
  // sentinels named last, and when to ask them again.
  static constexpr std::chrono::seconds primary_check_interval{1};
  std::mutex primary_mutex_;
  std::string primary_;
  std::string named_primary_;
  std::atomic<std::chrono::steady_clock::rep> next_primary_check_{0};
  std::atomic<bool> checking_primary_{false};
  std::atomic<std::uint64_t> calls_{0}, answered_{0}, latency_us_{0};
  static inline std::atomic<std::uint64_t> next_id_{1};
  const std::uint64_t id_ = next_id_.fetch_add(1, std::memory_order_relaxed);
};

}  // namespace

namespace {

// "[v6]:port", "host:port", "host" (port left as it is).
bool parse_host_port(std::string_view hostport, std::string& host, int& port, std::string& error) {
  auto colon = hostport.starts_with('[') ? hostport.find("]:") : hostport.rfind(':');
  if (colon != std::string_view::npos && hostport.starts_with('[')) ++colon;
  if (colon != std::string_view::npos) {
    auto digits = hostport.substr(colon + 1);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc{} || p != digits.data() + digits.size() || port <= 0 || port > 65535) {
      error = "bad port";
      return false;
    }
    hostport = hostport.substr(0, colon);
  }
  if (hostport.starts_with('[') && hostport.ends_with(']'))
    hostport = hostport.substr(1, hostport.size() - 2);
  if (hostport.empty()) {
    error = "missing host";
    return false;
  }
  if (hostport.find_first_of("[]/@ \t") != std::string_view::npos) {
    error = "bad host";
    return false;
  }
  host = std::string(hostport);
  return true;
}

}  // namespace

std::optional<redis_endpoint> parse_sentinel_address(std::string_view text, std::string& error) {
  redis_endpoint e;
  e.port = default_sentinel_port;
  if (!parse_host_port(text, e.host, e.port, error)) return std::nullopt;
  return e;
}

std::optional<redis_settings> parse_redis_url(std::string_view url, std::string& error) {
  redis_settings s;
  if (url.starts_with("unix://")) {
    auto rest = url.substr(7);
    auto q = rest.find("?db=");
    s.unix_socket = std::string(rest.substr(0, q));
    if (q != std::string_view::npos) {
      auto db = rest.substr(q + 4);
      auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), s.database);
      if (ec != std::errc{} || p != db.data() + db.size()) {
        error = "bad database number";
        return std::nullopt;
      }
    }
    if (s.unix_socket.empty()) {
      error = "missing socket path";
      return std::nullopt;
    }
    return s;
  }
  if (url.starts_with("rediss://")) {
    error =
        "rediss:// (TLS) is not supported by hiredis 0.14: reach the server through a local "
        "TLS tunnel (stunnel) with redis://127.0.0.1:PORT, or use unix://";
    return std::nullopt;
  }
  if (!url.starts_with("redis://")) {
    error = "must start with redis:// or unix://";
    return std::nullopt;
  }
  auto rest = url.substr(8);
  auto at = rest.rfind('@');
  if (at != std::string_view::npos) {
    auto auth = rest.substr(0, at);
    auto colon = auth.find(':');
    if (colon == std::string_view::npos) {
      s.password = std::string(auth);
    } else {
      s.user = std::string(auth.substr(0, colon));
      s.password = std::string(auth.substr(colon + 1));
    }
    rest = rest.substr(at + 1);
  }
  auto slash = rest.find('/');
  auto hostport = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    auto db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), s.database);
      if (ec != std::errc{} || p != db.data() + db.size() || s.database < 0) {
        error = "bad database number";
        return std::nullopt;
      }
    }
  }
  if (!parse_host_port(hostport, s.host, s.port, error)) return std::nullopt;
  return s;
}

std::shared_ptr<state_store> make_redis_store(redis_settings settings,
                                              std::shared_ptr<state_store> fallback) {
  return std::make_shared<redis_store>(std::move(settings), std::move(fallback));
}

}  // namespace mxguard::ratelimit
