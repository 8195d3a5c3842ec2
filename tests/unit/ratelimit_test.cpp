// Limiter arithmetic with an injected clock: GCRA, greylisting, the
// embedded store. Nothing here sleeps.
#include <gtest/gtest.h>

#include "run_awaitable.hpp"

#include "mxguard/ratelimit/ratelimit.hpp"

namespace mxguard::ratelimit {
namespace {

TEST(ParseRate, Table) {
  struct row {
    const char* text;
    std::optional<rate> want;
  } rows[] = {
      {"30/1m", rate{30, 60'000}},
      {"100/1h", rate{100, 3'600'000}},
      {"10/30s", rate{10, 30'000}},
      {"5/m", rate{5, 60'000}},
      {"0", rate{}},
      {"", rate{}},
      {"30", std::nullopt},
      {"30/1y", std::nullopt},
      {"-1/1m", std::nullopt},
      {"x/1m", std::nullopt},
      {"30/0m", std::nullopt},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.text);
    auto got = parse_rate(r.text);
    ASSERT_EQ(got.has_value(), r.want.has_value());
    if (got) {
      EXPECT_EQ(*got, *r.want);
    }
  }
  EXPECT_EQ(to_string(rate{30, 60'000}), "30/1m");
}

TEST(Gcra, BurstThenSteadyRefill) {
  const rate r{10, 60'000};  // 10 a minute: one every 6 s, bursts of 10
  millis tat = 0;
  const millis t0 = 1'000'000;
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(gcra(tat, t0, r).allowed);
  }
  auto refused = gcra(tat, t0, r);
  EXPECT_FALSE(refused.allowed);
  EXPECT_NEAR(refused.retry_after, 6'000, 2);
  const millis tat_after_refusal = tat;
  EXPECT_FALSE(gcra(tat, t0 + 5'999, r).allowed);
  EXPECT_EQ(tat, tat_after_refusal);  // a refusal consumes nothing
  EXPECT_TRUE(gcra(tat, t0 + 6'001, r).allowed);
  EXPECT_FALSE(gcra(tat, t0 + 6'002, r).allowed);
  // After a full idle period the whole burst is back.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(gcra(tat, t0 + 200'000, r).allowed);
  EXPECT_FALSE(gcra(tat, t0 + 200'000, r).allowed);
}

TEST(Gcra, TheAttackFromTheDesignIsStoppedWithinAMinute) {
  // One infected host: 457 messages a minute. Limit 100/1m.
  const rate r{100, 60'000};
  millis tat = 0;
  int allowed = 0;
  for (int i = 0; i < 457; ++i) allowed += gcra(tat, i * 60'000 / 457, r).allowed;
  EXPECT_GE(allowed, 100);
  EXPECT_LE(allowed, 200);  // the burst plus what refilled during the minute
}

TEST(Gcra, DisabledRateAlwaysAllows) {
  millis tat = 0;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(gcra(tat, 0, rate{}).allowed);
}

TEST(Greylist, DelayRetryWindowAndLifetime) {
  greylist_policy p;
  p.delay = 25 * 60'000;
  p.retry_window = 4 * 3'600'000;
  p.lifetime = 36ll * 86'400'000;
  triplet_record rec;
  const millis t0 = 10'000'000;
  auto first = greylist_step(rec, t0, p);
  EXPECT_EQ(first.what, grey_result::defer);
  EXPECT_EQ(first.wait, p.delay);
  auto early = greylist_step(rec, t0 + 10 * 60'000, p);
  EXPECT_EQ(early.what, grey_result::defer);
  EXPECT_EQ(early.wait, 15 * 60'000);
  auto retry = greylist_step(rec, t0 + 26 * 60'000, p);
  EXPECT_EQ(retry.what, grey_result::pass);
  EXPECT_TRUE(retry.newly_passed);
  auto later = greylist_step(rec, t0 + 30ll * 86'400'000, p);
  EXPECT_EQ(later.what, grey_result::pass);
  EXPECT_FALSE(later.newly_passed);
  // Unused for longer than the lifetime: forgotten, greylisted again.
  auto forgotten = greylist_step(rec, t0 + 30ll * 86'400'000 + p.lifetime + 1, p);
  EXPECT_EQ(forgotten.what, grey_result::defer);

  // A retry after the window: starts over.
  triplet_record late;
  greylist_step(late, t0, p);
  auto too_late = greylist_step(late, t0 + p.delay + p.retry_window + 1, p);
  EXPECT_EQ(too_late.what, grey_result::defer);
  EXPECT_EQ(too_late.wait, p.delay);
}

using mxguard::test::run;

TEST(EmbeddedStore, AllKeysMustAllowAndRefusalConsumesNothing) {
  auto store = make_embedded_store(1000);
  const rate two{2, 60'000}, ten{10, 60'000};
  const millis now = 5'000'000;
  std::vector<rate_key> keys{{"a", ten, 1}, {"b", two, 1}};
  EXPECT_TRUE(run(store->check_rates(keys, now)).result.allowed);
  EXPECT_TRUE(run(store->check_rates(keys, now)).result.allowed);
  auto third = run(store->check_rates(keys, now));
  EXPECT_FALSE(third.result.allowed);
  EXPECT_EQ(third.refused_index, 1u);
  // "a" was not consumed by the refused check: 8 more fit.
  for (int i = 0; i < 8; ++i)
    EXPECT_TRUE(run(store->check_rates({{"a", ten, 1}}, now)).result.allowed);
  EXPECT_FALSE(run(store->check_rates({{"a", ten, 1}}, now)).result.allowed);
}

// Two sessions read the clock, then take the store's lock in the other
// order: the burst of exactly `count` still fits.
TEST(EmbeddedStore, ChecksArrivingWithTimesOutOfOrderStillFitTheBurst) {
  auto store = make_embedded_store(1000);
  const rate two{2, 3'600'000};
  EXPECT_TRUE(run(store->check_rates({{"c:192.0.2.1", two, 1}}, 5'000'001)).result.allowed);
  EXPECT_TRUE(run(store->check_rates({{"c:192.0.2.1", two, 1}}, 5'000'000)).result.allowed);
  auto third = run(store->check_rates({{"c:192.0.2.1", two, 1}}, 5'000'002));
  EXPECT_FALSE(third.result.allowed);
  EXPECT_GT(third.result.retry_after, 1'790'000) << "the next fits half a period on";
  // An expired key starts from its caller's time again.
  EXPECT_TRUE(run(store->check_rates({{"c:192.0.2.1", two, 1}}, 20'000'000)).result.allowed);
}

TEST(EmbeddedStore, CountEventConsumesEvenWhenOver) {
  auto store = make_embedded_store(1000);
  const rate three{3, 60'000};
  const millis now = 1'000'000;
  int refused = 0;
  for (int i = 0; i < 6; ++i)
    refused += !run(store->count_event({"u", three, 1}, now)).result.allowed;
  EXPECT_EQ(refused, 3);
}

TEST(EmbeddedStore, GreylistAutoAllowlistsAClientAfterPasses) {
  auto store = make_embedded_store(1000);
  greylist_policy p;
  p.delay = 1'000;
  p.auto_allowlist_after = 2;
  millis now = 1'000'000;
  for (int i = 0; i < 2; ++i) {
    auto key = "g:net:s:" + std::to_string(i);
    EXPECT_EQ(run(store->greylist(key, "gc:net", p, now)).outcome.what, grey_result::defer);
    EXPECT_EQ(run(store->greylist(key, "gc:net", p, now + 1'500)).outcome.what, grey_result::pass);
  }
  auto fresh = run(store->greylist("g:net:s:new", "gc:net", p, now + 2'000));
  EXPECT_TRUE(fresh.client_allowlisted);
}

// An address sprayer's rate keys push out rate keys, not the greylist state
// a sender earned by waiting: its next message is not delayed again.
TEST(EmbeddedStore, SprayedRateKeysDoNotEvictEarnedGreylistState) {
  auto store = make_embedded_store(16 * 16);
  greylist_policy p;
  p.delay = 1'000;
  const millis now = 1'000'000;
  ASSERT_EQ(run(store->greylist("g:good:s:r", "gc:good", p, now)).outcome.what, grey_result::defer);
  ASSERT_EQ(run(store->greylist("g:good:s:r", "gc:good", p, now + 1'500)).outcome.what,
            grey_result::pass);
  const rate one{1, 3'600'000};
  for (int i = 0; i < 10'000; ++i)
    run(store->check_rates({{"c:spray" + std::to_string(i), one, 1}}, now + 2'000));
  EXPECT_EQ(run(store->greylist("g:good:s:r", "gc:good", p, now + 3'000)).outcome.what,
            grey_result::pass);
  // And rate keys still work beside a shard full of greylist state.
  for (int i = 0; i < 10'000; ++i)
    run(store->greylist("g:spray" + std::to_string(i) + ":s:r", "gc:spray" + std::to_string(i), p,
                        now + 4'000));
  EXPECT_TRUE(run(store->check_rates({{"c:late", one, 1}}, now + 5'000)).result.allowed);
  EXPECT_FALSE(run(store->check_rates({{"c:late", one, 1}}, now + 5'001)).result.allowed);
}

TEST(EmbeddedStore, BoundedNumberOfKeys) {
  auto store = make_embedded_store(16 * 16);  // 16 per shard at least
  const rate one{1, 3'600'000};
  for (int i = 0; i < 10'000; ++i)
    run(store->check_rates({{"k" + std::to_string(i), one, 1}}, 1'000));
  // The oldest keys were evicted: "k0" is new again and allowed once more.
  EXPECT_TRUE(run(store->check_rates({{"k0", one, 1}}, 1'000)).result.allowed);
}

}  // namespace
}  // namespace mxguard::ratelimit
