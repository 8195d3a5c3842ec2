// Unit tests for the [redis] settings: the URL and sentinel address parsers
// (ratelimit/redis_store.hpp) and the Sentinel keys of the configuration.
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "config.hpp"
#include "mxguard/ratelimit/redis_store.hpp"

namespace mxguard::ratelimit {
namespace {

TEST(RedisUrl, Table) {
  struct row {
    const char* label;
    std::string url;
    bool ok;
    std::string host;  // or the socket path, or the error
    int port = 6379;
    std::string user = "", password = "";
    int database = 0;
  };
  const row rows[] = {
      {"host only", "redis://127.0.0.1", true, "127.0.0.1"},
      {"host and port", "redis://cache.example:6380", true, "cache.example", 6380},
      {"database", "redis://127.0.0.1:6379/3", true, "127.0.0.1", 6379, "", "", 3},
      {"empty database", "redis://127.0.0.1:6379/", true, "127.0.0.1"},
      {"password", "redis://:s3cret@127.0.0.1/1", true, "127.0.0.1", 6379, "", "s3cret", 1},
      {"password without colon", "redis://s3cret@127.0.0.1", true, "127.0.0.1", 6379, "", "s3cret"},
      {"ACL user", "redis://mx:pw@127.0.0.1:7000", true, "127.0.0.1", 7000, "mx", "pw"},
      {"@ in the password", "redis://:p@ss@127.0.0.1", true, "127.0.0.1", 6379, "", "p@ss"},
      {"IPv6", "redis://[::1]:6380/2", true, "::1", 6380, "", "", 2},
      {"IPv6 without port", "redis://[2001:db8::7]", true, "2001:db8::7"},
      {"unix socket", "unix:///run/redis/redis.sock", true, "/run/redis/redis.sock"},
      {"unix socket and db", "unix:///run/redis.sock?db=4", true, "/run/redis.sock", 6379, "", "",
       4},
      {"other scheme", "http://127.0.0.1", false, "must start with redis:// or unix://"},
      {"no scheme", "127.0.0.1:6379", false, "must start with redis:// or unix://"},
      {"TLS", "rediss://127.0.0.1:6379", false,
       "rediss:// (TLS) is not supported by hiredis 0.14: reach the server through a local TLS "
       "tunnel (stunnel) with redis://127.0.0.1:PORT, or use unix://"},
      {"port zero", "redis://127.0.0.1:0", false, "bad port"},
      {"port too big", "redis://127.0.0.1:65536", false, "bad port"},
      {"port not a number", "redis://127.0.0.1:six", false, "bad port"},
      {"no host", "redis://:6379", false, "missing host"},
      {"no host at all", "redis://", false, "missing host"},
      {"space in host", "redis://a b:6379", false, "bad host"},
      {"bad database", "redis://127.0.0.1/x", false, "bad database number"},
      {"negative database", "redis://127.0.0.1/-1", false, "bad database number"},
      {"unix without path", "unix://", false, "missing socket path"},
      {"unix bad db", "unix:///s.sock?db=x", false, "bad database number"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::string error;
    auto s = parse_redis_url(r.url, error);
    ASSERT_EQ(s.has_value(), r.ok) << error;
    if (!r.ok) {
      EXPECT_EQ(error, r.host);
      continue;
    }
    if (r.url.starts_with("unix://"))
      EXPECT_EQ(s->unix_socket, r.host);
    else
      EXPECT_EQ(s->host, r.host);
    EXPECT_EQ(s->port, r.port);
    EXPECT_EQ(s->user, r.user);
    EXPECT_EQ(s->password, r.password);
    EXPECT_EQ(s->database, r.database);
    EXPECT_TRUE(s->sentinels.empty());
  }
}

TEST(SentinelAddress, Table) {
  struct row {
    const char* label;
    std::string text;
    std::optional<redis_endpoint> want;
    std::string error = "";
  };
  const row rows[] = {
      {"address and port", "127.0.0.1:26380", redis_endpoint{"127.0.0.1", 26380}},
      {"default port", "10.0.0.7", redis_endpoint{"10.0.0.7", 26379}},
      {"name", "sentinel-a.example:26379", redis_endpoint{"sentinel-a.example", 26379}},
      {"IPv6", "[2001:db8::1]:5000", redis_endpoint{"2001:db8::1", 5000}},
      {"IPv6 default port", "[::1]", redis_endpoint{"::1", 26379}},
      {"empty", "", std::nullopt, "missing host"},
      {"port only", ":26379", std::nullopt, "missing host"},
      {"bad port", "127.0.0.1:0", std::nullopt, "bad port"},
      {"port with text", "127.0.0.1:26379x", std::nullopt, "bad port"},
      {"a URL", "redis://127.0.0.1:26379", std::nullopt, "bad host"},
      {"user part", "me@127.0.0.1:26379", std::nullopt, "bad host"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::string error;
    auto e = parse_sentinel_address(r.text, error);
    EXPECT_EQ(e, r.want);
    if (!r.want) {
      EXPECT_EQ(error, r.error);
    }
  }
}

}  // namespace
}  // namespace mxguard::ratelimit

namespace mxguard::guard {
namespace {

std::shared_ptr<const config> parse(std::string_view text) {
  return parse_config(text, "test.toml");
}

TEST(RedisConfig, SentinelKeys) {
  auto cfg = parse(R"([redis]
url = "redis://:data-pw@ignored/2"
sentinels = ["127.0.0.1:26379", "[::1]:26380", "10.0.0.9"]
sentinel_master = "mymaster"
sentinel_password = "sentinel-pw"
failure = "tempfail"
timeout = "300ms"
)");
  ASSERT_TRUE(cfg->redis);
  const auto& r = *cfg->redis;
  const std::vector<ratelimit::redis_endpoint> want{
      {"127.0.0.1", 26379}, {"::1", 26380}, {"10.0.0.9", 26379}};
  EXPECT_EQ(r.sentinels, want);
  EXPECT_EQ(r.sentinel_master, "mymaster");
  EXPECT_EQ(r.sentinel_password, "sentinel-pw");
  EXPECT_EQ(r.password, "data-pw");
  EXPECT_EQ(r.database, 2);
  EXPECT_EQ(r.failure, ratelimit::redis_settings::on_failure::tempfail);
  EXPECT_EQ(r.timeout, std::chrono::milliseconds(300));
  // Both passwords are masked in --check-config output.
  auto text = describe(*cfg);
  EXPECT_EQ(text.find("sentinel-pw"), std::string::npos) << text;
  EXPECT_EQ(text.find("data-pw"), std::string::npos) << text;
  EXPECT_NE(text.find("sentinel_password = '********'"), std::string::npos) << text;
  EXPECT_NE(text.find("sentinel_master = 'mymaster'"), std::string::npos) << text;
}

TEST(RedisConfig, SentinelsWithoutUrl) {
  auto cfg = parse("[redis]\nsentinels = [\"127.0.0.1\"]\nsentinel_master = \"m\"\n");
  ASSERT_TRUE(cfg->redis);
  EXPECT_EQ(cfg->redis->sentinels.size(), 1u);
  EXPECT_TRUE(cfg->redis->password.empty());
  EXPECT_EQ(cfg->redis->database, 0);
  // stats.store = "redis" is satisfied by sentinels too.
  auto stats = parse(
      "[redis]\nsentinels = [\"127.0.0.1\"]\nsentinel_master = \"m\"\n[stats]\nstore = "
      "\"redis\"\n");
  EXPECT_TRUE(stats->redis);
}

TEST(RedisConfig, NoRedisByDefault) {
  auto cfg = parse("");
  EXPECT_FALSE(cfg->redis);
  EXPECT_TRUE(cfg->values.redis.sentinels.empty());
  EXPECT_EQ(cfg->values.redis.sentinel_master, "");
}

TEST(RedisConfig, SentinelErrorsNameTheKey) {
  struct row {
    const char* label;
    std::string text;
    std::string want;
  };
  const row rows[] = {
      {"master without sentinels", "[redis]\nsentinel_master = \"m\"\n",
       "test.toml:2: redis.sentinel_master: needs redis.sentinels"},
      {"sentinels without master", "[redis]\nsentinels = [\"127.0.0.1\"]\n",
       "test.toml:2: redis.sentinels: needs redis.sentinel_master (the name the sentinels "
       "monitor)"},
      {"bad sentinel", "[redis]\nsentinel_master = \"m\"\nsentinels = [\"127.0.0.1:x\"]\n",
       "test.toml:3: redis.sentinels: '127.0.0.1:x': bad port"},
      {"unix url",
       "[redis]\nurl = \"unix:///r.sock\"\nsentinels = [\"127.0.0.1\"]\n"
       "sentinel_master = \"m\"\n",
       "test.toml:2: redis.url: a unix:// url cannot be combined with redis.sentinels"},
      {"not a list", "[redis]\nsentinels = \"127.0.0.1\"\n",
       "test.toml:2: redis.sentinels: must be a list of strings"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    try {
      parse(r.text);
      ADD_FAILURE() << "accepted";
    } catch (const config_error& e) {
      EXPECT_EQ(std::string(e.what()), r.want);
    }
  }
}

}  // namespace
}  // namespace mxguard::guard
