#include "mxguard/ratelimit/redis_store.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <atomic>
#include <charconv>
#include <random>
#include <unordered_map>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
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

// Concurrency lease, acquire.
// KEYS[1]: the client's hash, field = instance id, value = its sessions.
// ARGV: instance id, limit, ttl (ms), key prefix. Instances whose heartbeat
// key (PREFIX .. "inst:" .. id) has expired are dropped from the count first.
// (The heartbeat keys are not in KEYS: fine on one Redis or Sentinel, not on
// Cluster.) Returns 1 when a lease was taken, 0 when the client is at its limit.
constexpr const char* lease_script = R"lua(
local instance, limit, ttl, prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local who, n = fields[i], tonumber(fields[i + 1])
  if who ~= instance and redis.call('EXISTS', prefix .. 'inst:' .. who) == 0 then
    redis.call('HDEL', KEYS[1], who)
  else
    total = total + n
  end
end
if total >= limit then return 0 end
redis.call('HINCRBY', KEYS[1], instance, 1)
redis.call('PEXPIRE', KEYS[1], ttl * 10)
return 1
)lua";

// Concurrency lease, release. KEYS[1]: the client's hash; ARGV: instance id.
constexpr const char* release_script = R"lua(
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
)lua";

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

// Blocklist, read. KEYS as above; ARGV: the version the caller has, now (ms).
// {version} when nothing changed; else {version, prefix, entry, ...} without
// expired entries (which are deleted on the way).
constexpr const char* block_list_script = R"lua(
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if tostring(v) == ARGV[1] then return {v} end
local all = redis.call('HGETALL', KEYS[1])
local out = {v}
local now = tonumber(ARGV[2])
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '^(%d+)'))
  if expires ~= nil and expires ~= 0 and expires <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
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
  explicit connection(asio::any_io_executor executor) : fd_(executor) {}
  ~connection() { close(); }

  bool connected() const { return context_ != nullptr && ready_; }

  // Starts a non-blocking connect; true when hiredis accepted to start.
  bool start(const redis_settings& s) {
    close();
    context_ = s.unix_socket.empty() ? redisAsyncConnect(s.host.c_str(), s.port)
                                     : redisAsyncConnectUnix(s.unix_socket.c_str());
    if (!context_ || context_->err) {
      if (context_) redisAsyncFree(context_);
      context_ = nullptr;
      return false;
    }
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
      if (self) self->ready_ = status == REDIS_OK;
    });
    redisAsyncSetDisconnectCallback(context_, [](const redisAsyncContext* c, int) {
      auto* self = static_cast<connection*>(c->data);
      if (self) self->ready_ = false;
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
        [](redisAsyncContext*, void* reply, void* privdata) {
          auto* fn = static_cast<std::function<void(redis_value)>*>(privdata);
          (*fn)(convert(static_cast<redisReply*>(reply)));
          delete fn;
        },
        holder, static_cast<int>(args.size()), argv.data(), lengths.data());
    if (rc != REDIS_OK) {
      delete holder;
      return false;
    }
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
    ready_ = false;
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
    ready_ = false;
  }

  redisAsyncContext* context_ = nullptr;
  asio::posix::stream_descriptor fd_;
  bool ready_ = false;
  bool reading_ = false, writing_ = false;
  bool read_armed_ = false, write_armed_ = false;
};

// --- the connections of one io_context ---------------------------------------------

// One store's connection on one io_context (mxguard runs each io_context on
// one thread, so this is also per thread), with its reconnect state.
struct thread_state {
  std::shared_ptr<connection> conn;
  std::chrono::steady_clock::time_point retry_at{};
  std::chrono::milliseconds backoff{100};
  bool authenticated = false;
  bool connecting = false;
  std::vector<std::shared_ptr<asio::steady_timer>> waiting;
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

class redis_store final : public state_store {
 public:
  redis_store(redis_settings s, std::shared_ptr<state_store> fallback)
      : settings_(std::move(s)),
        fallback_(std::move(fallback)),
        rates_sha_(sha1_hex(rates_script)),
        greylist_sha_(sha1_hex(greylist_script)),
        lease_sha_(sha1_hex(lease_script)),
        release_sha_(sha1_hex(release_script)),
        block_put_sha_(sha1_hex(block_put_script)),
        block_remove_sha_(sha1_hex(block_remove_script)),
        block_list_sha_(sha1_hex(block_list_script)) {}

  asio::awaitable<bool> passed(std::string key, millis now) override {
    std::vector<std::string> args{"EXISTS", settings_.prefix + key};
    auto reply = co_await call(std::move(args));
    if (!reply) {
      if (settings_.failure == redis_settings::on_failure::local)
        co_return co_await fallback_->passed(std::move(key), now);
      co_return false;
    }
    co_return reply->integer == 1;
  }

  asio::awaitable<void> mark_passed(std::string key, millis ttl, millis now) override {
    std::vector<std::string> args{"SET", settings_.prefix + key, "1", "PX", std::to_string(ttl)};
    auto reply = co_await call(std::move(args));
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
    auto reply = co_await script(std::move(args), block_put_script);
    co_return reply.has_value();
  }

  asio::awaitable<bool> block_remove(std::string prefix) override {
    std::vector<std::string> args{"EVALSHA",
                                  block_remove_sha_,
                                  "2",
                                  settings_.prefix + "{bl}:entries",
                                  settings_.prefix + "{bl}:version",
                                  std::move(prefix)};
    auto reply = co_await script(std::move(args), block_remove_script);
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
    auto reply = co_await script(std::move(args), block_list_script);
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
                                  settings_.prefix};
    auto reply = co_await script(std::move(args), lease_script);
    if (!reply) {
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
    co_return answer;
  }

  asio::awaitable<void> release_lease(std::string key, std::string instance, millis ttl) override {
    std::vector<std::string> args{"EVALSHA", release_sha_, "1", settings_.prefix + key, instance};
    auto reply = co_await script(std::move(args), release_script);
    // A lease taken from the local fallback while Redis was away, or one
    // Redis lost: the local count is given back; Redis heals by the TTL.
    if (!reply) co_await fallback_->release_lease(std::move(key), std::move(instance), ttl);
  }

  asio::awaitable<void> heartbeat(std::string instance, millis ttl) override {
    std::vector<std::string> args{"SET", settings_.prefix + "inst:" + instance, "1", "PX",
                                  std::to_string(ttl)};
    co_await call(std::move(args));
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
    auto reply = co_await script(std::move(args), greylist_script);
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
  asio::awaitable<store_decision> rates(std::vector<rate_key> keys, millis now, bool always) {
    std::vector<std::string> args{"EVALSHA", rates_sha_, std::to_string(keys.size())};
    for (const auto& k : keys) args.push_back(settings_.prefix + k.key);
    args.push_back(std::to_string(now));
    args.push_back(always ? "1" : "0");
    for (const auto& k : keys) {
      args.push_back(std::to_string(k.limit.count));
      args.push_back(std::to_string(k.limit.period));
      args.push_back(std::to_string(k.cost));
    }
    auto reply = co_await script(std::move(args), rates_script);
    if (!reply || reply->elements.size() != 3) {
      if (settings_.failure == redis_settings::on_failure::local) {
        // (if/else, not ?: — GCC 12 miscompiles a conditional holding co_await.)
        if (always) co_return co_await fallback_->count_event(keys.front(), now);
        co_return co_await fallback_->check_rates(std::move(keys), now);
      }
      store_decision failed;
      failed.failed = settings_.failure == redis_settings::on_failure::tempfail;
      co_return failed;  // open: allowed
    }
    store_decision d;
    d.result.allowed = reply->elements[0].integer == 1;
    if (!d.result.allowed) {
      d.refused_index = static_cast<std::size_t>(std::max(1ll, reply->elements[1].integer) - 1);
      d.result.retry_after = reply->elements[2].integer;
    }
    co_return d;
  }

  // EVALSHA, loading the script on NOSCRIPT; nullopt on any failure.
  asio::awaitable<std::optional<redis_value>> script(std::vector<std::string> args,
                                                     const char* source) {
    auto reply = co_await call(args);
    if (reply && reply->type == REDIS_REPLY_ERROR && reply->text.starts_with("NOSCRIPT")) {
      std::vector<std::string> load{"SCRIPT", "LOAD", source};  // named: see limit_check.cpp
      auto loaded = co_await call(std::move(load));
      if (!loaded || !loaded->ok()) co_return std::nullopt;
      reply = co_await call(args);
    }
    if (!reply || !reply->ok()) {
      if (reply) ops::event("REDIS", ops::severity::warning).add("error", reply->text).emit();
      co_return std::nullopt;
    }
    co_return reply;
  }

  // One command with the deadline `timeout`; nullopt when Redis is down,
  // slow or the circuit is open.
  asio::awaitable<std::optional<redis_value>> call(std::vector<std::string> args) {
    auto executor = co_await asio::this_coro::executor;
    auto& conn = thread_connection(executor);
    if (!co_await ensure_connected(conn, executor)) co_return std::nullopt;
    struct waiter {
      explicit waiter(asio::any_io_executor e) : timer(e) {}
      asio::steady_timer timer;
      std::optional<redis_value> value;
      bool done = false;
    };
    auto w = std::make_shared<waiter>(executor);
    const auto started = std::chrono::steady_clock::now();
    calls_.fetch_add(1, std::memory_order_relaxed);
    w->timer.expires_after(settings_.timeout);
    bool sent = conn.conn->send(args, [w](redis_value v) {
      w->value = std::move(v);
      w->done = true;
      w->timer.cancel();
    });
    if (!sent) {
      mark_down(conn, "send failed");
      co_return std::nullopt;
    }
    co_await w->timer.async_wait(use_tuple);
    if (!w->done) {
      // Too slow: give up on this connection (its late replies go nowhere)
      // and on Redis for a while.
      mark_down(conn, "timeout");
      co_return std::nullopt;
    }
    if (w->value->type == 0) {
      mark_down(conn, "connection lost");
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

  void mark_down(thread_state& st, std::string_view why) {
    st.conn->close();
    st.authenticated = false;
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

  asio::awaitable<bool> ensure_connected(thread_state& st, asio::any_io_executor executor) {
    if (st.conn->connected() && st.authenticated) co_return true;
    if (st.connecting) {
      // Another session of this thread is connecting: wait for its outcome
      // rather than start a second connect that would tear the first down.
      auto timer = std::make_shared<asio::steady_timer>(executor, settings_.timeout);
      st.waiting.push_back(timer);
      co_await timer->async_wait(use_tuple);
      co_return st.conn->connected() && st.authenticated;
    }
    if (std::chrono::steady_clock::now() < st.retry_at) co_return false;  // circuit open
    st.connecting = true;
    bool ok = co_await connect(st, executor);
    st.connecting = false;
    for (auto& t : st.waiting) t->cancel();
    st.waiting.clear();
    co_return ok;
  }

  asio::awaitable<bool> connect(thread_state& st, asio::any_io_executor executor) {
    st.authenticated = false;
    if (!st.conn->start(settings_)) {
      mark_down(st, "connect failed");
      co_return false;
    }
    // AUTH and SELECT are queued behind the connect; their replies tell
    // whether the connection works.
    std::vector<std::vector<std::string>> setup;
    if (!settings_.password.empty()) {
      if (settings_.user.empty())
        setup.push_back({"AUTH", settings_.password});
      else
        setup.push_back({"AUTH", settings_.user, settings_.password});
    }
    if (settings_.database != 0) setup.push_back({"SELECT", std::to_string(settings_.database)});
    setup.push_back({"PING"});
    for (const auto& cmd : setup) {
      auto w = std::make_shared<std::pair<asio::steady_timer, std::optional<redis_value>>>(
          asio::steady_timer(executor), std::nullopt);
      w->first.expires_after(settings_.timeout);
      if (!st.conn->send(cmd, [w](redis_value v) {
            w->second = std::move(v);
            w->first.cancel();
          })) {
        mark_down(st, "send failed");
        co_return false;
      }
      co_await w->first.async_wait(use_tuple);
      if (!w->second || !w->second->ok()) {
        mark_down(st, !w->second             ? "connect timeout"
                      : w->second->type == 0 ? "connection refused or closed"
                                             : "setup refused: " + w->second->text);
        co_return false;
      }
    }
    st.authenticated = true;
    st.backoff = std::chrono::milliseconds(100);
    if (down_.exchange(false)) ops::event("REDIS").add("state", "up").emit();
    co_return true;
  }

  redis_settings settings_;
  std::shared_ptr<state_store> fallback_;
  std::string rates_sha_, greylist_sha_, lease_sha_, release_sha_;
  std::string block_put_sha_, block_remove_sha_, block_list_sha_;
  // The blocklist keys outlive their longest entry (bans are capped below it).
  static constexpr std::int64_t block_key_lifetime_ms = 400ll * 24 * 3600 * 1000;
  std::atomic<bool> down_{false};
  std::atomic<std::uint64_t> calls_{0}, answered_{0}, latency_us_{0};
  static inline std::atomic<std::uint64_t> next_id_{1};
  const std::uint64_t id_ = next_id_.fetch_add(1, std::memory_order_relaxed);
};

}  // namespace

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
  // "[v6]:port", "host:port", "host"
  auto colon = hostport.starts_with('[') ? hostport.find("]:") : hostport.rfind(':');
  if (colon != std::string_view::npos && hostport.starts_with('[')) ++colon;
  if (colon != std::string_view::npos) {
    auto port = hostport.substr(colon + 1);
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), s.port);
    if (ec != std::errc{} || p != port.data() + port.size() || s.port <= 0 || s.port > 65535) {
      error = "bad port";
      return std::nullopt;
    }
    hostport = hostport.substr(0, colon);
  }
  if (hostport.starts_with('[') && hostport.ends_with(']'))
    hostport = hostport.substr(1, hostport.size() - 2);
  if (hostport.empty()) {
    error = "missing host";
    return std::nullopt;
  }
  s.host = std::string(hostport);
  return s;
}

std::shared_ptr<state_store> make_redis_store(redis_settings settings,
                                              std::shared_ptr<state_store> fallback) {
  return std::make_shared<redis_store>(std::move(settings), std::move(fallback));
}

}  // namespace mxguard::ratelimit
