// The guard's limit check over the embedded store: counters at several
// prefix sizes at once, and the key names they use (one Redis Cluster hash
// tag per client).
#include <gtest/gtest.h>

#include "run_awaitable.hpp"

#include "limit_check.hpp"

namespace mxguard::guard {
namespace {

using mxguard::test::run;

// The embedded store, remembering the keys of every rate check.
class recording_store final : public ratelimit::state_store {
 public:
  std::vector<std::vector<std::string>> checked;
  std::string_view name() const override { return "recording"; }
  boost::asio::awaitable<ratelimit::store_decision> check_rates(
      std::vector<ratelimit::rate_key> keys, ratelimit::millis now) override {
    std::vector<std::string> names;
    for (const auto& k : keys) names.push_back(k.key);
    checked.push_back(names);
    co_return co_await inner_->check_rates(std::move(keys), now);
  }
  boost::asio::awaitable<ratelimit::store_decision> count_event(ratelimit::rate_key key,
                                                                ratelimit::millis now) override {
    checked.push_back({key.key});
    co_return co_await inner_->count_event(std::move(key), now);
  }
  boost::asio::awaitable<grey_answer> greylist(std::string t, std::string c,
                                               ratelimit::greylist_policy p,
                                               ratelimit::millis now) override {
    co_return co_await inner_->greylist(std::move(t), std::move(c), p, now);
  }
  boost::asio::awaitable<lease_answer> acquire_lease(std::string k, std::string i, std::int64_t l,
                                                     ratelimit::millis ttl) override {
    co_return co_await inner_->acquire_lease(std::move(k), std::move(i), l, ttl);
  }
  boost::asio::awaitable<void> release_lease(std::string k, std::string i,
                                             ratelimit::millis ttl) override {
    co_await inner_->release_lease(std::move(k), std::move(i), ttl);
  }
  boost::asio::awaitable<void> heartbeat(std::string, ratelimit::millis) override { co_return; }
  boost::asio::awaitable<bool> passed(std::string k, ratelimit::millis now) override {
    co_return co_await inner_->passed(std::move(k), now);
  }
  boost::asio::awaitable<void> mark_passed(std::string k, ratelimit::millis ttl,
                                           ratelimit::millis now) override {
    co_await inner_->mark_passed(std::move(k), ttl, now);
  }
  boost::asio::awaitable<bool> block_put(ratelimit::block_record r) override {
    co_return co_await inner_->block_put(std::move(r));
  }
  boost::asio::awaitable<bool> block_remove(std::string p) override {
    co_return co_await inner_->block_remove(std::move(p));
  }
  boost::asio::awaitable<ratelimit::block_listing> block_list(std::int64_t known,
                                                              ratelimit::millis now) override {
    co_return co_await inner_->block_list(known, now);
  }

 private:
  std::shared_ptr<ratelimit::state_store> inner_ = ratelimit::make_embedded_store(10000);
};

struct fixture {
  std::shared_ptr<const config> cfg;
  std::shared_ptr<recording_store> store = std::make_shared<recording_store>();
  limit_check check;
  explicit fixture(const std::string& limits)
      : cfg(parse_config("[limits]\n" + limits, "test.toml")), check(store, cfg) {}

  verdict connect(const std::string& client) {
    session_facts session;
    session.client = boost::asio::ip::make_address(client);
    envelope none;
    check_input input{session, none, nullptr, {}, {}};
    return run(check.evaluate(stage::connect, input));
  }
};

TEST(LimitCheck, IPv6ClientsCountedAt128And64And48AtOnce) {
  fixture f(R"(ipv6_prefix = 128
connections_per_ip = "2/1m"
per_prefix = ["connections ipv6/64 3/1m", "connections ipv6/48 4/1m"]
)");
  // One address: its own limit (2) comes first.
  EXPECT_EQ(f.connect("2001:db8:1:1::1").what, action::cont);
  EXPECT_EQ(f.connect("2001:db8:1:1::1").what, action::cont);
  auto own = f.connect("2001:db8:1:1::1");
  EXPECT_EQ(own.what, action::drop);
  EXPECT_EQ(own.rule, "limits:connections_per_ip");
  EXPECT_TRUE(own.reply.starts_with("421 4.7.0")) << own.reply;
  // Its /64 has room for one more (the refused attempt consumed nothing).
  EXPECT_EQ(f.connect("2001:db8:1:1::2").what, action::cont);
  auto lan = f.connect("2001:db8:1:1::3");
  EXPECT_EQ(lan.rule, "limits:connections ipv6/64");
  // Another /64 of the same /48: one more fits the /48 (4), then it is full.
  EXPECT_EQ(f.connect("2001:db8:1:2::1").what, action::cont);
  auto site = f.connect("2001:db8:1:3::1");
  EXPECT_EQ(site.what, action::drop);
  EXPECT_EQ(site.rule, "limits:connections ipv6/48");
  // Another /48 is somebody else.
  EXPECT_EQ(f.connect("2001:db8:2::1").what, action::cont);
}

TEST(LimitCheck, IPv4ClientsCountedAt32And24) {
  fixture f(R"(connections_per_ip = "10/1m"
per_prefix = ["connections ipv4/24 3/1m"]
)");
  EXPECT_EQ(f.connect("198.51.100.1").what, action::cont);
  EXPECT_EQ(f.connect("198.51.100.2").what, action::cont);
  EXPECT_EQ(f.connect("198.51.100.3").what, action::cont);
  EXPECT_EQ(f.connect("198.51.100.4").rule, "limits:connections ipv4/24");
  EXPECT_EQ(f.connect("198.51.101.4").what, action::cont);
  // An IPv6 client is not counted by an ipv4 entry.
  EXPECT_EQ(f.connect("2001:db8::1").what, action::cont);
}

TEST(LimitCheck, EveryKeyOfOneClientCarriesTheSameHashTag) {
  fixture f(R"(connections_per_ip = "10/1m"
per_prefix = ["connections ipv4/24 30/1m", "connections ipv4/16 100/1m"]
)");
  f.connect("198.51.100.7");
  ASSERT_EQ(f.store->checked.size(), 1u);
  EXPECT_EQ(f.store->checked[0], (std::vector<std::string>{"c:{198.51.0.0/16}198.51.100.7/32",
                                                           "c:{198.51.0.0/16}198.51.100.0/24",
                                                           "c:{198.51.0.0/16}198.51.0.0/16"}));
}

TEST(LimitCheck, TrustedClientsAreNotCounted) {
  fixture f("connections_per_ip = \"1/1m\"\n");
  session_facts session;
  session.client = boost::asio::ip::make_address("198.51.100.9");
  session.trusted = true;
  envelope none;
  check_input input{session, none, nullptr, {}, {}};
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(run(f.check.evaluate(stage::connect, input)).what, action::cont);
  EXPECT_TRUE(f.store->checked.empty());
}

}  // namespace
}  // namespace mxguard::guard
