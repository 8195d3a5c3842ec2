#include "mxguard/ratelimit/redis_stats.hpp"

#include <hiredis/hiredis.h>

#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace mxguard::ratelimit {

namespace {

struct reply_deleter {
  void operator()(redisReply* r) const {
    if (r) freeReplyObject(r);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

struct context_deleter {
  void operator()(redisContext* c) const {
    if (c) redisFree(c);
  }
};

class redis_stats_backend final : public ops::stats_backend {
 public:
  redis_stats_backend(redis_settings s, int retention_days, std::size_t max_names)
      : settings_(std::move(s)), retention_days_(retention_days), max_names_(max_names) {}

  void add(std::string_view day, const ops::stats_fields& deltas) override {
    auto c = connect();
    const std::string key = settings_.prefix + "stats:" + std::string(day);
    // The cap on distinct names per day holds against what is stored: names
    // past it count as "<kind>:other" (ops::merge_capped does the same for files).
    auto stored = fields_of(c.get(), key);
    ops::stats_fields capped = stored;
    ops::merge_capped(capped, deltas, max_names_);
    std::size_t pending = 0;
    for (const auto& [field, value] : capped) {
      auto before = stored.find(field);
      const std::int64_t delta = value - (before == stored.end() ? 0 : before->second);
      if (delta == 0) continue;
      std::vector<std::string> args{"HINCRBY", key, field, std::to_string(delta)};
      append(c.get(), args);
      ++pending;
    }
    const auto ttl = std::chrono::milliseconds(std::chrono::hours(24) * (retention_days_ + 1));
    std::vector<std::string> expire{"PEXPIRE", key, std::to_string(ttl.count())};
    append(c.get(), expire);
    ++pending;
    for (std::size_t i = 0; i < pending; ++i) {
      void* raw = nullptr;
      if (redisGetReply(c.get(), &raw) != REDIS_OK)
        throw ops::stats_error("redis: " + std::string(c->errstr));
      reply_ptr r(static_cast<redisReply*>(raw));
      if (r && r->type == REDIS_REPLY_ERROR)
        throw ops::stats_error("redis: " + std::string(r->str, r->len));
    }
  }

  ops::stats_days load(std::string_view first_day, std::string_view last_day) override {
    auto first = ops::parse_day(first_day), last = ops::parse_day(last_day);
    if (!first || !last) throw ops::stats_error("bad day range");
    auto c = connect();
    ops::stats_days out;
    for (auto d = *first; d <= *last; d += std::chrono::days(1)) {
      auto day = ops::format_day(d);
      auto fields = fields_of(c.get(), settings_.prefix + "stats:" + day);
      if (!fields.empty()) out[day] = std::move(fields);
    }
    return out;
  }

 private:
  // With Sentinel: the primary the first sentinel that answers names.
  redis_endpoint primary(const timeval& timeout) const {
    std::string errors;
    for (const auto& sentinel : settings_.sentinels) {
      try {
        std::unique_ptr<redisContext, context_deleter> c(
            redisConnectWithTimeout(sentinel.host.c_str(), sentinel.port, timeout));
        if (!c || c->err) throw ops::stats_error(c ? c->errstr : "cannot allocate context");
        redisSetTimeout(c.get(), timeout);
        if (!settings_.sentinel_password.empty()) {
          std::vector<std::string> auth{"AUTH", settings_.sentinel_password};
          command(c.get(), auth);
        }
        std::vector<std::string> ask{"SENTINEL", "get-master-addr-by-name",
                                     settings_.sentinel_master};
        auto r = command(c.get(), ask);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2)
          return {std::string(r->element[0]->str, r->element[0]->len),
                  std::atoi(r->element[1]->str)};
        throw ops::stats_error("does not know " + settings_.sentinel_master);
      } catch (const ops::stats_error& e) {
        errors += fmt::format("{}sentinel {}:{}: {}", errors.empty() ? "" : "; ", sentinel.host,
                              sentinel.port, e.what());
      }
    }
    throw ops::stats_error("redis: no primary from the sentinels (" + errors + ")");
  }

  std::unique_ptr<redisContext, context_deleter> connect() {
    const timeval timeout{1, 0};
    std::unique_ptr<redisContext, context_deleter> c;
    if (!settings_.sentinels.empty()) {
      auto p = primary(timeout);
      c.reset(redisConnectWithTimeout(p.host.c_str(), p.port, timeout));
    } else {
      c.reset(settings_.unix_socket.empty()
                  ? redisConnectWithTimeout(settings_.host.c_str(), settings_.port, timeout)
                  : redisConnectUnixWithTimeout(settings_.unix_socket.c_str(), timeout));
    }
    if (!c || c->err)
      throw ops::stats_error("redis: " + std::string(c ? c->errstr : "cannot allocate context"));
    redisSetTimeout(c.get(), timeout);
    if (!settings_.password.empty()) {
      std::vector<std::string> auth{"AUTH"};
      if (!settings_.user.empty()) auth.push_back(settings_.user);
      auth.push_back(settings_.password);
      command(c.get(), auth);
    }
    if (settings_.database != 0) {
      std::vector<std::string> select{"SELECT", std::to_string(settings_.database)};
      command(c.get(), select);
    }
    return c;
  }

  static void append(redisContext* c, const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data());
  }

  static reply_ptr command(redisContext* c, const std::vector<std::string>& args) {
    append(c, args);
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK)
      throw ops::stats_error("redis: " + std::string(c->errstr));
    reply_ptr r(static_cast<redisReply*>(raw));
    if (!r || r->type == REDIS_REPLY_ERROR)
      throw ops::stats_error("redis: " +
                             (r ? std::string(r->str, r->len) : std::string("no reply")));
    return r;
  }

  static ops::stats_fields fields_of(redisContext* c, const std::string& key) {
    std::vector<std::string> args{"HGETALL", key};
    auto r = command(c, args);
    ops::stats_fields out;
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
      std::string field(r->element[i]->str, r->element[i]->len);
      out[field] = std::strtoll(r->element[i + 1]->str, nullptr, 10);
    }
    return out;
  }

  redis_settings settings_;
  int retention_days_;
  std::size_t max_names_;
};

}  // namespace

std::shared_ptr<ops::stats_backend> make_redis_stats_backend(redis_settings settings,
                                                             int retention_days,
                                                             std::size_t max_names_per_day) {
  return std::make_shared<redis_stats_backend>(std::move(settings), retention_days,
                                               max_names_per_day);
}

}  // namespace mxguard::ratelimit
