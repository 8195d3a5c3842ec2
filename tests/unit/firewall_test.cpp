// Unit tests for ops/firewall*.{hpp,cpp}: the planner, the batch builders
// (exact text), hostile values, the process runner and the feeder_runner with
// a recording feeder. The real kernel is in firewall_netns_test.cpp.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mxguard/ops/firewall.hpp"
#include "mxguard/ops/firewall_feeder.hpp"
#include "mxguard/ops/metrics.hpp"
#include "mxguard/ops/process.hpp"

namespace mxguard::ops {
namespace {

using namespace std::chrono_literals;

// 2023-11-14T22:13:20Z: a fixed `now`, no wall clock in the planner tests.
const auto t0 = sys_clock::from_time_t(1700000000);
constexpr auto forever = sys_clock::time_point::max();

ip_prefix pfx(std::string_view text) {
  auto p = ip_prefix::parse(text);
  if (!p) throw std::runtime_error("bad test prefix");
  return *p;
}

block_entry entry(std::string_view prefix, std::chrono::seconds ttl,
                  std::string reason = "too many rcpts", std::string rule = "flood") {
  return block_entry{pfx(prefix), std::move(reason), std::move(rule), t0,
                     ttl.count() == 0 ? forever : t0 + ttl};
}

const nft_set_spec inet_spec = nft_set_spec::parse("inet mxguard blocked");

// ---- names and text ----

TEST(firewall_names, valid_object_name) {
  struct row {
    std::string name;
    bool want;
  };
  const row rows[] = {
      {"blocked", true},
      {"_x", true},
      {"mxguard-blocked.v6_2", true},
      {std::string(32, 'a'), true},
      {std::string(33, 'a'), false},
      {"", false},
      {"1abc", false},
      {"-abc", false},
      {".abc", false},
      {"has space", false},
      {"semi;colon", false},
      {"quote\"d", false},
      {"single'q", false},
      {"new\nline", false},
      {"$(reboot)", false},
      {"br{ace}", false},
      {"back`tick`", false},
      {std::string("nul\0x", 5), false},
      {"caf\xc3\xa9", false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(valid_object_name(r.name), r.want);
  }
}

TEST(firewall_names, sanitize_text) {
  EXPECT_EQ(sanitize_text("plain reason 42"), "plain reason 42");
  EXPECT_EQ(sanitize_text("a\nb\rc\"d'e`f\\g"), "a_b_c_d_e_f_g");
  EXPECT_EQ(sanitize_text("caf\xc3\xa9"), "caf__");
  EXPECT_EQ(sanitize_text(std::string(500, 'x')).size(), 200u);
  EXPECT_EQ(sanitize_text("abcdef", 3), "abc");
}

TEST(firewall_nft, spec_parse) {
  struct row {
    const char* label;
    std::string spec, set6, chain;
    bool ok;
    std::string want_set4 = {}, want_set6 = {};
  };
  const std::string long_name(33, 's');
  const row rows[] = {
      {"inet default v6 name", "inet mxguard blocked", "", "", true, "blocked", "blocked6"},
      {"inet own v6 name", "inet mxguard blocked", "blocked_v6", "", true, "blocked", "blocked_v6"},
      {"extra spaces", "  inet   mxguard  blocked ", "", "", true, "blocked", "blocked6"},
      {"ip only v4", "ip mxguard blocked", "", "", true, "blocked", ""},
      {"ip6 only v6", "ip6 mxguard blocked", "", "", true, "", "blocked"},
      {"with drop chain", "inet mxguard blocked", "", "input", true, "blocked", "blocked6"},
      {"two words", "inet mxguard", "", "", false},
      {"four words", "inet mx guard blocked", "", "", false},
      {"unknown family", "bridge mxguard blocked", "", "", false},
      {"semicolon", "inet mxguard blocked;flush", "", "", false},
      {"semicolon word", "inet mxguard ;", "", "", false},
      {"quotes", "inet mxguard \"blocked\"", "", "", false},
      {"command substitution", "inet mxguard $(reboot)", "", "", false},
      {"braces", "inet mxguard {blocked}", "", "", false},
      {"newline", "inet mxguard blocked\nflush ruleset", "", "", false},
      {"tab", "inet\tmxguard\tblocked", "", "", false},
      {"too long", "inet mxguard " + long_name, "", "", false},
      {"v6 name 33 long", "inet mxguard " + std::string(32, 's'), "", "", false},
      {"hostile v6 name", "inet mxguard blocked", "b6; flush ruleset", "", false},
      {"same v4 and v6", "inet mxguard blocked", "blocked", "", false},
      {"v6 name with ip", "ip mxguard blocked", "blocked6", "", false},
      {"hostile chain", "inet mxguard blocked", "", "input }", false},
      {"empty", "", "", "", false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    if (!r.ok) {
      EXPECT_THROW(nft_set_spec::parse(r.spec, r.set6, r.chain), std::invalid_argument);
      continue;
    }
    auto s = nft_set_spec::parse(r.spec, r.set6, r.chain);
    EXPECT_EQ(s.set4, r.want_set4);
    EXPECT_EQ(s.set6, r.want_set6);
    EXPECT_EQ(s.table, "mxguard");
    EXPECT_EQ(s.drop_chain, r.chain);
  }
}

TEST(firewall_nft, feeder_rechecks_hand_made_spec) {
  auto bad = [](auto edit) {
    nft_feeder::options o;
    o.spec = inet_spec;
    edit(o);
    return o;
  };
  EXPECT_THROW(nft_feeder(bad([](auto& o) { o.spec.table = "t; flush ruleset"; })),
               std::invalid_argument);
  EXPECT_THROW(nft_feeder(bad([](auto& o) { o.spec.set6 = "x y"; })), std::invalid_argument);
  EXPECT_THROW(nft_feeder(bad([](auto& o) { o.spec.family = "netdev"; })), std::invalid_argument);
  EXPECT_THROW(nft_feeder(bad([](auto& o) { o.nft = "nft"; })), std::invalid_argument);
  EXPECT_THROW(nft_feeder(bad([](auto& o) {
                 o.command.prefix = {"ip", "netns"};
               })),
               std::invalid_argument);
  EXPECT_THROW(nft_feeder(bad([](auto& o) { o.max_timeout = -1s; })), std::invalid_argument);
  // The refresh margin shrinks with a small cap (a quarter of it) instead of refusing it.
  EXPECT_NO_THROW(nft_feeder(bad([](auto& o) { o.max_timeout = 30min; })));
}

// ---- planner + nft text ----

TEST(firewall_nft, reconcile_is_one_flush_and_fill_transaction) {
  feeder_state st(nft_limits(inet_spec, nft_default_max_timeout));
  st.reset({entry("192.0.2.7", 3600s), entry("2001:db8::/64", 600s), entry("198.51.100.0/24", 0s),
            entry("::ffff:203.0.113.9", 60s)});
  auto plan = st.plan(t0);
  ASSERT_TRUE(plan.full);
  EXPECT_EQ(build_nft_batch(inet_spec, plan),
            "add table inet mxguard\n"
            "add set inet mxguard blocked { type ipv4_addr; flags interval,timeout; }\n"
            "add set inet mxguard blocked6 { type ipv6_addr; flags interval,timeout; }\n"
            "flush set inet mxguard blocked\n"
            "flush set inet mxguard blocked6\n"
            "add element inet mxguard blocked { 192.0.2.7/32 timeout 3600s, 198.51.100.0/24, "
            "203.0.113.9/32 timeout 60s }\n"
            "add element inet mxguard blocked6 { 2001:db8::/64 timeout 600s }\n");
  EXPECT_EQ(plan.effective.size(), 4u);
  EXPECT_EQ(st.next_due(), t0 + 60s);
}

TEST(firewall_nft, drop_chain_is_rebuilt_on_full_batches_only) {
  auto spec = nft_set_spec::parse("inet mxguard blocked", "", "input");
  feeder_state st(nft_limits(spec, nft_default_max_timeout));
  st.reset({});
  auto plan = st.plan(t0);
  EXPECT_EQ(build_nft_batch(spec, plan),
            "add table inet mxguard\n"
            "add set inet mxguard blocked { type ipv4_addr; flags interval,timeout; }\n"
            "add set inet mxguard blocked6 { type ipv6_addr; flags interval,timeout; }\n"
            "flush set inet mxguard blocked\n"
            "flush set inet mxguard blocked6\n"
            "add chain inet mxguard input { type filter hook input priority -10; policy accept; }\n"
            "flush chain inet mxguard input\n"
            "add rule inet mxguard input ip saddr @blocked drop\n"
            "add rule inet mxguard input ip6 saddr @blocked6 drop\n");
  st.commit(plan);
  st.upsert(entry("192.0.2.1", 60s));
  EXPECT_EQ(build_nft_batch(spec, st.plan(t0)).find("chain"), std::string::npos);
}

TEST(firewall_nft, incremental_adds_removes_and_updates) {
  feeder_state st(nft_limits(inet_spec, nft_default_max_timeout));
  st.reset({entry("192.0.2.7", 3600s), entry("2001:db8::/64", 600s), entry("192.0.2.8", 100s)});
  st.commit(st.plan(t0));

  st.erase(pfx("192.0.2.7"));
  st.erase(pfx("2001:db8::/64"));
  st.upsert(entry("203.0.113.0/24", 7200s));
  st.upsert(entry("2001:db8:1::1", 30s));
  st.upsert(entry("192.0.2.8", 500s));  // ban extended
  auto plan = st.plan(t0 + 10s);
  EXPECT_FALSE(plan.full);
  EXPECT_EQ(build_nft_batch(inet_spec, plan),
            "add table inet mxguard\n"
            "add set inet mxguard blocked { type ipv4_addr; flags interval,timeout; }\n"
            "add set inet mxguard blocked6 { type ipv6_addr; flags interval,timeout; }\n"
            "add element inet mxguard blocked { 192.0.2.7/32 }\n"
            "add element inet mxguard blocked { 192.0.2.8/32 }\n"
            "add element inet mxguard blocked6 { 2001:db8::/64 }\n"
            "delete element inet mxguard blocked { 192.0.2.7/32 }\n"
            "delete element inet mxguard blocked { 192.0.2.8/32 }\n"
            "delete element inet mxguard blocked6 { 2001:db8::/64 }\n"
            "add element inet mxguard blocked { 192.0.2.8/32 timeout 490s }\n"
            "add element inet mxguard blocked { 203.0.113.0/24 timeout 7190s }\n"
            "add element inet mxguard blocked6 { 2001:db8:1::1/128 timeout 20s }\n");
  st.commit(plan);
  EXPECT_FALSE(st.plan(t0 + 11s).has_changes());
}

TEST(firewall_nft, expiry_removes_and_wakes_the_runner) {
  feeder_state st(nft_limits(inet_spec, nft_default_max_timeout));
  st.reset({entry("192.0.2.1", 60s), entry("192.0.2.2", 120s)});
  st.commit(st.plan(t0));
  EXPECT_EQ(st.next_due(), t0 + 60s);
  auto plan = st.plan(t0 + 60s);
  ASSERT_EQ(plan.removes.size(), 1u);
  EXPECT_EQ(plan.removes[0].prefix, pfx("192.0.2.1"));
  st.commit(plan);
  EXPECT_EQ(st.next_due(), t0 + 120s);
  EXPECT_EQ(st.desired_size(), 1u);
}

TEST(firewall_nft, timeout_cap_and_refresh_before_it_runs_out) {
  // A 10-day ban under a 1-day cap: written with 1 day, refreshed an hour
  // before that day runs out, with the cap again until the last stretch.
  auto limits = nft_limits(inet_spec, 24h);
  EXPECT_EQ(limits.refresh_margin, 1h);
  feeder_state st(limits);
  st.reset({entry("192.0.2.1", 240h), entry("192.0.2.2", 2h)});
  auto plan = st.plan(t0);
  ASSERT_EQ(plan.effective.size(), 2u);
  EXPECT_EQ(plan.effective[0].timeout, 24h);
  EXPECT_EQ(plan.effective[1].timeout, 2h);
  st.commit(plan);
  EXPECT_EQ(st.next_due(), t0 + 2h) << "the short ban's expiry comes first";

  st.commit(st.plan(t0 + 2h));  // removes 192.0.2.2
  EXPECT_EQ(st.next_due(), t0 + 23h);
  EXPECT_FALSE(st.plan(t0 + 23h - 1s).has_changes());
  plan = st.plan(t0 + 23h);
  ASSERT_EQ(plan.updates.size(), 1u);
  EXPECT_EQ(plan.updates[0].timeout, 24h);
  EXPECT_EQ(build_nft_batch(inet_spec, plan),
            "add table inet mxguard\n"
            "add set inet mxguard blocked { type ipv4_addr; flags interval,timeout; }\n"
            "add set inet mxguard blocked6 { type ipv6_addr; flags interval,timeout; }\n"
            "add element inet mxguard blocked { 192.0.2.1/32 }\n"
            "delete element inet mxguard blocked { 192.0.2.1/32 }\n"
            "add element inet mxguard blocked { 192.0.2.1/32 timeout 86400s }\n");
  st.commit(plan);
  EXPECT_EQ(st.next_due(), t0 + 46h);

  // Near the end the remaining time is below the cap: written exactly, and no
  // refresh is due any more, only the expiry.
  plan = st.plan(t0 + 230h);
  ASSERT_EQ(plan.updates.size(), 1u);
  EXPECT_EQ(plan.updates[0].timeout, 10h);
  st.commit(plan);
  EXPECT_EQ(st.next_due(), t0 + 240h);
}

TEST(firewall_nft, covered_entries_stay_out_until_their_cover_goes) {
  feeder_state st(nft_limits(inet_spec, nft_default_max_timeout));
  st.reset({entry("192.0.2.0/24", 100s), entry("192.0.2.5", 1000s), entry("192.0.3.1", 1000s),
            entry("2001:db8::/32", 100s), entry("2001:db8:1::1", 1000s)});
  auto plan = st.plan(t0);
  std::vector<std::string> got;
  for (const auto& t : plan.effective) got.push_back(t.entry.prefix.to_string());
  // Sorted by address bytes, so 2001:: comes before 192.; builders group by family.
  EXPECT_EQ(got, (std::vector<std::string>{"2001:db8::/32", "192.0.2.0/24", "192.0.3.1/32"}));
  st.commit(plan);

  // The covers go: what they covered comes in. nft 1.0.6 would refuse
  // "delete cover, add covered" as an overlap even in one transaction, so the
  // plan turns into a flush-and-fill, just as atomic.
  plan = st.plan(t0 + 100s);
  EXPECT_TRUE(plan.full);
  EXPECT_EQ(build_nft_batch(inet_spec, plan),
            "add table inet mxguard\n"
            "add set inet mxguard blocked { type ipv4_addr; flags interval,timeout; }\n"
            "add set inet mxguard blocked6 { type ipv6_addr; flags interval,timeout; }\n"
            "flush set inet mxguard blocked\n"
            "flush set inet mxguard blocked6\n"
            "add element inet mxguard blocked { 192.0.2.5/32 timeout 900s, 192.0.3.1/32 timeout "
            "900s }\n"
            "add element inet mxguard blocked6 { 2001:db8:1::1/128 timeout 900s }\n");

  // A new cover replaces what it covers, the same way.
  st.commit(plan);
  st.upsert(entry("192.0.0.0/16", 5000s));
  plan = st.plan(t0 + 200s);
  EXPECT_TRUE(plan.full);
  std::vector<std::string> now_in;
  for (const auto& t : plan.effective) now_in.push_back(t.entry.prefix.to_string());
  EXPECT_EQ(now_in, (std::vector<std::string>{"2001:db8:1::1/128", "192.0.0.0/16"}));

  // Unrelated removes and adds stay incremental.
  st.commit(plan);
  st.erase(pfx("2001:db8:1::1"));
  st.upsert(entry("198.51.100.1", 5000s));
  plan = st.plan(t0 + 300s);
  EXPECT_FALSE(plan.full);
  EXPECT_EQ(plan.removes.size(), 1u);
  EXPECT_EQ(plan.adds.size(), 1u);
}

TEST(firewall_nft, hostile_values_never_reach_the_batch) {
  const std::string hostile = "x\" } ; flush ruleset ; $(reboot) `id` \n add rule inet x y drop";
  feeder_state st(nft_limits(inet_spec, nft_default_max_timeout));
  st.reset({entry("192.0.2.1", 60s, hostile, hostile), entry("0.0.0.0/0", 60s), entry("::/0", 60s),
            entry("10.0.0.0/7", 60s), entry("2001::/15", 60s), entry("10.0.0.0/8", 60s),
            entry("2001::/16", 60s), entry("::ffff:192.0.2.99", 60s),
            entry("192.0.2.2", 60s, std::string(100000, 'A'), std::string(100000, 'B'))});
  auto plan = st.plan(t0);
  EXPECT_EQ(plan.refused, 4u) << "/0 and shorter than /8 (v4) or /16 (v6) are refused";
  auto text = build_nft_batch(inet_spec, plan);
  for (const char* needle : {"flush ruleset", "reboot", "id`", "drop", "AAAA", "BBBB", "0.0.0.0/0",
                             "::/0", "10.0.0.0/7", "2001::/15", "::ffff"})
    EXPECT_EQ(text.find(needle), std::string::npos) << needle;
  for (const char* needle : {"10.0.0.0/8", "2001::/16", "192.0.2.99/32", "192.0.2.1/32"})
    EXPECT_NE(text.find(needle), std::string::npos) << needle;
  // Every line is one of the statements the builder makes.
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    EXPECT_TRUE(line.starts_with("add table ") || line.starts_with("add set ") ||
                line.starts_with("flush set ") || line.starts_with("add element "))
        << line;
}

TEST(firewall_nft, family_ip_refuses_v6_entries) {
  auto spec = nft_set_spec::parse("ip filter bad_hosts");
  feeder_state st(nft_limits(spec, nft_default_max_timeout));
  st.reset({entry("192.0.2.1", 60s), entry("2001:db8::1", 60s)});
  auto plan = st.plan(t0);
  EXPECT_EQ(plan.refused, 1u);
  EXPECT_EQ(build_nft_batch(spec, plan),
            "add table ip filter\n"
            "add set ip filter bad_hosts { type ipv4_addr; flags interval,timeout; }\n"
            "flush set ip filter bad_hosts\n"
            "add element ip filter bad_hosts { 192.0.2.1/32 timeout 60s }\n");
}

TEST(firewall_nft, large_batches_are_chunked_in_one_transaction) {
  std::vector<block_entry> all;
  for (int i = 0; i < 600; ++i)
    all.push_back(
        entry("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".1", 60s));
  feeder_state st(nft_limits(inet_spec, nft_default_max_timeout));
  st.reset(all);
  auto text = build_nft_batch(inet_spec, st.plan(t0));
  std::size_t statements = 0;
  for (std::size_t at = 0; (at = text.find("add element", at)) != std::string::npos; ++at)
    ++statements;
  EXPECT_EQ(statements, 3u);  // 256 + 256 + 88
}

// ---- ipset ----

const ipset_spec small_ipset = ipset_spec::make("mxg4", "mxg6", 3);

TEST(firewall_ipset, spec_make) {
  EXPECT_NO_THROW(ipset_spec::make("mxguard-blocked", "mxguard-blocked6", 65536));
  EXPECT_NO_THROW(ipset_spec::make("only4", "", 10));
  EXPECT_THROW(ipset_spec::make("", "", 10), std::invalid_argument);
  EXPECT_THROW(ipset_spec::make("a b", "", 10), std::invalid_argument);
  EXPECT_THROW(ipset_spec::make("a\nflush", "", 10), std::invalid_argument);
  EXPECT_THROW(ipset_spec::make(std::string(28, 'a'), "", 10), std::invalid_argument)
      << "no room for the .new swap suffix";
  EXPECT_THROW(ipset_spec::make("same", "same", 10), std::invalid_argument);
  EXPECT_THROW(ipset_spec::make("x", "", 0), std::invalid_argument);
  ipset_feeder::options o;
  o.spec = ipset_spec::make("x", "", 10);
  o.spec.set6 = "-restore";
  EXPECT_THROW(ipset_feeder{o}, std::invalid_argument);
}

TEST(firewall_ipset, full_reconcile_swaps_a_filled_set_in) {
  feeder_state st(ipset_limits(small_ipset, 0s));
  st.reset({entry("192.0.2.1", 60s), entry("2001:db8::/48", 0s), entry("192.0.2.0/24", 3000000s)});
  auto plan = st.plan(t0);
  EXPECT_EQ(build_ipset_restore(small_ipset, plan, {}),
            "create mxg4 hash:net family inet hashsize 1024 maxelem 3 timeout 0 -exist\n"
            "create mxg4.new hash:net family inet hashsize 1024 maxelem 3 timeout 0 -exist\n"
            "add mxg4.new 192.0.2.0/24 timeout 2147483 -exist\n"
            "add mxg4.new 192.0.2.1/32 timeout 60 -exist\n"
            "swap mxg4.new mxg4\n"
            "destroy mxg4.new\n"
            "create mxg6 hash:net family inet6 hashsize 1024 maxelem 3 timeout 0 -exist\n"
            "create mxg6.new hash:net family inet6 hashsize 1024 maxelem 3 timeout 0 -exist\n"
            "add mxg6.new 2001:db8::/48 timeout 0 -exist\n"
            "swap mxg6.new mxg6\n"
            "destroy mxg6.new\n");
  // Live sets present (perhaps with another maxelem) are not created again; a
  // leftover .new is destroyed first.
  EXPECT_EQ(build_ipset_restore(small_ipset, plan, {"mxg4", "mxg4.new", "mxg6", "other"}),
            "destroy mxg4.new\n"
            "create mxg4.new hash:net family inet hashsize 1024 maxelem 3 timeout 0 -exist\n"
            "add mxg4.new 192.0.2.0/24 timeout 2147483 -exist\n"
            "add mxg4.new 192.0.2.1/32 timeout 60 -exist\n"
            "swap mxg4.new mxg4\n"
            "destroy mxg4.new\n"
            "create mxg6.new hash:net family inet6 hashsize 1024 maxelem 3 timeout 0 -exist\n"
            "add mxg6.new 2001:db8::/48 timeout 0 -exist\n"
            "swap mxg6.new mxg6\n"
            "destroy mxg6.new\n");
}

TEST(firewall_ipset, incremental_batch) {
  feeder_state st(ipset_limits(small_ipset, 0s));
  st.reset({entry("192.0.2.1", 60s), entry("2001:db8::/48", 600s)});
  st.commit(st.plan(t0));
  st.erase(pfx("2001:db8::/48"));
  st.upsert(entry("192.0.2.1", 120s));
  st.upsert(entry("198.51.100.0/24", 30s));
  EXPECT_EQ(build_ipset_restore(small_ipset, st.plan(t0), {}),
            "add mxg4 192.0.2.1/32 timeout 120 -exist\n"
            "add mxg4 198.51.100.0/24 timeout 30 -exist\n"
            "del mxg6 2001:db8::/48 -exist\n");
}

TEST(firewall_ipset, maxelem_evicts_those_closest_to_expiry) {
  struct row {
    const char* label;
    std::vector<block_entry> entries;
    std::vector<std::string> want;
  };
  const row rows[] = {
      {"under the limit",
       {entry("192.0.2.1", 10s), entry("192.0.2.2", 20s)},
       {"192.0.2.1/32", "192.0.2.2/32"}},
      {"two soonest evicted",
       {entry("192.0.2.1", 50s), entry("192.0.2.2", 10s), entry("192.0.2.3", 40s),
        entry("192.0.2.4", 20s), entry("192.0.2.5", 30s)},
       {"192.0.2.1/32", "192.0.2.3/32", "192.0.2.5/32"}},
      {"permanent kept last",
       {entry("192.0.2.1", 0s), entry("192.0.2.2", 10s), entry("192.0.2.3", 0s),
        entry("192.0.2.4", 20s)},
       {"192.0.2.1/32", "192.0.2.3/32", "192.0.2.4/32"}},
      {"per family",
       {entry("192.0.2.1", 10s), entry("192.0.2.2", 20s), entry("192.0.2.3", 30s),
        entry("2001:db8::1", 5s), entry("2001:db8::2", 6s)},
       {"2001:db8::1/128", "2001:db8::2/128", "192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"}},
      {"ties broken by prefix",
       {entry("192.0.2.4", 10s), entry("192.0.2.3", 10s), entry("192.0.2.2", 10s),
        entry("192.0.2.1", 10s)},
       {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    feeder_state st(ipset_limits(small_ipset, 0s));
    st.reset(r.entries);
    auto plan = st.plan(t0);
    std::vector<std::string> got;
    for (const auto& t : plan.effective) got.push_back(t.entry.prefix.to_string());
    EXPECT_EQ(got, r.want);
    EXPECT_EQ(plan.evicted, r.entries.size() - r.want.size());
  }
}

TEST(firewall_ipset, evicted_entry_returns_when_room_is_made) {
  feeder_state st(ipset_limits(small_ipset, 0s));
  st.reset({entry("192.0.2.1", 50s), entry("192.0.2.2", 10s), entry("192.0.2.3", 40s),
            entry("192.0.2.4", 30s)});
  st.commit(st.plan(t0));
  st.erase(pfx("192.0.2.1"));
  auto plan = st.plan(t0 + 1s);
  EXPECT_EQ(build_ipset_restore(small_ipset, plan, {}),
            "del mxg4 192.0.2.1/32 -exist\n"
            "add mxg4 192.0.2.2/32 timeout 9 -exist\n");
  EXPECT_EQ(plan.evicted, 0u);
}

TEST(firewall_ipset, reasons_never_reach_restore_text) {
  feeder_state st(ipset_limits(small_ipset, 0s));
  st.reset({entry("192.0.2.1", 60s, "evil\ncreate x hash:ip", "rule\nflush")});
  auto text = build_ipset_restore(small_ipset, st.plan(t0), {});
  EXPECT_EQ(text.find("evil"), std::string::npos);
  EXPECT_EQ(text.find("flush"), std::string::npos);
  EXPECT_EQ(text.find("hash:ip\n"), std::string::npos);
}

// ---- file ----

TEST(firewall_file, cidr_list_with_sanitised_comments) {
  auto spec = file_spec::make("/var/lib/mxguard/blocked.txt", file_format::cidr_list, true, true);
  std::vector<timed_entry> effective = {
      {entry("192.0.2.0/24", 3600s, "flood\n10.0.0.0/8 # injected \"x\" $(id)", "rate"), 3600s},
      {entry("2001:db8::1", 0s, "manual", "admin"), 0s},
  };
  EXPECT_EQ(build_file(spec, effective),
            "# mxguard blocklist: one CIDR per line; generated, do not edit\n"
            "192.0.2.0/24 # expires=2023-11-14T23:13:20Z rule=rate reason=flood_10.0.0.0/8 # "
            "injected _x_ $(id)\n"
            "2001:db8::1/128 # expires=never rule=admin reason=manual\n");
}

TEST(firewall_file, iptables_restore_fragment) {
  auto spec = file_spec::make("/etc/mxguard/blocked.rules", file_format::iptables_restore, true,
                              false, "mxguard-blocked", "DROP");
  std::vector<timed_entry> effective = {{entry("192.0.2.0/24", 60s), 60s},
                                        {entry("2001:db8::1", 60s), 60s}};
  EXPECT_EQ(build_file(spec, effective),
            "*filter\n"
            ":mxguard-blocked - [0:0]\n"
            "-F mxguard-blocked\n"
            "-A mxguard-blocked -s 192.0.2.0/24 -j DROP\n"
            "COMMIT\n");
  EXPECT_THROW(file_spec::make("/x", file_format::iptables_restore, true, true),
               std::invalid_argument);
  EXPECT_THROW(file_spec::make("/x", file_format::iptables_restore, true, false, "c", "ACCEPT"),
               std::invalid_argument);
  EXPECT_THROW(file_spec::make("/x", file_format::iptables_restore, true, false, "-j ACCEPT"),
               std::invalid_argument);
  EXPECT_THROW(file_spec::make("relative", file_format::cidr_list, true, true),
               std::invalid_argument);
}

// ---- exec ----

TEST(firewall_exec, argv) {
  auto e = entry("192.0.2.0/24", 3600s, "bad \"guy\"\n; rm -rf / $(id)", "rate\tlimit");
  EXPECT_EQ(build_exec_argv("/usr/local/bin/hook", exec_action::add, e),
            (std::vector<std::string>{"/usr/local/bin/hook", "add", "192.0.2.0/24", "1700003600",
                                      "bad _guy__; rm -rf / $(id)", "rate_limit"}));
  EXPECT_EQ(build_exec_argv("/h", exec_action::del, entry("2001:db8::1", 0s, "", "")),
            (std::vector<std::string>{"/h", "del", "2001:db8::1/128", "0", "", ""}));
}

// ---- process ----

TEST(firewall_process, stdin_stdout_and_arguments_are_not_interpreted) {
  auto r = run_program({"/bin/cat"}, "hello\n", 5s);
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out, "hello\n");
  r = run_program({"/bin/echo", "$(id)", "a;b", "`x`"}, {}, 5s);
  EXPECT_EQ(r.out, "$(id) a;b `x`\n");
}

TEST(firewall_process, exit_status_and_stderr) {
  auto r = run_program({"/bin/sh", "-c", "echo oops >&2; exit 3"}, {}, 5s);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "oops\n");
  EXPECT_EQ(r.describe(), "exit 3: oops");
}

TEST(firewall_process, timeout_kills_by_pid) {
  const auto start = std::chrono::steady_clock::now();
  auto r = run_program({"/bin/sleep", "30"}, {}, 200ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// An exec hook that sends its output elsewhere and hangs: the pipes end at
// once, the timeout must still hold for the exit.
TEST(firewall_process, timeout_holds_after_the_child_closed_its_output) {
  const auto start = std::chrono::steady_clock::now();
  auto r = run_program({"/bin/sh", "-c", "exec >/dev/null 2>&1; exec /bin/sleep 30"}, {}, 300ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // A quick child is not kept waiting by the polling.
  const auto quick = std::chrono::steady_clock::now();
  EXPECT_TRUE(run_program({"/bin/sh", "-c", "exec >/dev/null; exit 0"}, {}, 5s).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - quick, 1s);
}

// A hook script whose own child hangs: the timeout ends both, not only the
// shell (the child would otherwise live on, one per hook call).
TEST(firewall_process, timeout_kills_what_the_program_started) {
  char marker[] = "/tmp/mxguard-pgroup-XXXXXX";
  const int fd = ::mkstemp(marker);
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto r = run_program(
      {"/bin/sh", "-c", std::string("/bin/sleep 30 & echo $! > ") + marker + "; wait"}, {}, 300ms);
  EXPECT_TRUE(r.timed_out);
  std::ifstream in(marker);
  pid_t grandchild = 0;
  in >> grandchild;
  ::unlink(marker);
  ASSERT_GT(grandchild, 0);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    // Reaped by init once killed; until then a zombie is as good as gone.
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string pid, comm, state;
    gone = !(stat >> pid >> comm >> state) || state == "Z";
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone) << "sleep " << grandchild << " outlived the timeout";
  if (!gone) ::kill(grandchild, SIGKILL);
}

TEST(firewall_process, refuses_relative_paths_and_survives_a_closed_stdin) {
  EXPECT_FALSE(run_program({"sh", "-c", "true"}, {}, 1s).spawn_error.empty());
  EXPECT_FALSE(run_program({"/nonexistent/program"}, {}, 1s).ok());
  // The child exits without reading: the write side sees EPIPE, not SIGPIPE.
  auto r = run_program({"/bin/true"}, std::string(1 << 20, 'x'), 5s);
  EXPECT_TRUE(r.ok()) << r.describe();
}

// ---- the real file and exec feeders ----

class temp_dir {
 public:
  temp_dir() {
    char tmpl[] = "/tmp/mxguard-fw-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~temp_dir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(firewall_file, feeder_writes_atomically) {
  temp_dir dir;
  const auto path = dir.path() + "/blocked.txt";
  file_feeder f(file_spec::make(path, file_format::cidr_list, true, true));
  feeder_state st(f.limits());
  st.reset({entry("192.0.2.1", 60s)});
  auto plan = st.plan(t0);
  EXPECT_EQ(f.apply(plan), "");
  EXPECT_EQ(slurp(path),
            build_file(file_spec::make(path, file_format::cidr_list, true, true), plan.effective));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
  file_feeder nowhere(
      file_spec::make(dir.path() + "/missing/dir/x", file_format::cidr_list, true, true));
  EXPECT_NE(nowhere.apply(plan), "");
}

TEST(firewall_exec, hook_gets_each_value_as_one_argument) {
  temp_dir dir;
  const auto hook = dir.path() + "/hook";
  const auto log = dir.path() + "/calls";
  {
    std::ofstream out(hook);
    // One line per argument, a blank line per call.
    out << "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done >> " << log << "\necho >> "
        << log << "\n";
  }
  std::filesystem::permissions(hook, std::filesystem::perms::owner_all);
  exec_feeder f(exec_feeder::options{hook, 5s});
  feeder_state st(f.limits());
  st.reset({entry("192.0.2.1", 60s, "a b; $(touch /tmp/pwned) \"q\"", "r")});
  auto plan = st.plan(t0);
  EXPECT_EQ(f.apply(plan), "");
  st.commit(plan);
  st.erase(pfx("192.0.2.1"));
  EXPECT_EQ(f.apply(st.plan(t0)), "");
  EXPECT_EQ(slurp(log),
            "[add]\n[192.0.2.1/32]\n[1700000060]\n[a b; $(touch /tmp/pwned) _q_]\n[r]\n\n"
            "[del]\n[192.0.2.1/32]\n[1700000060]\n[a b; $(touch /tmp/pwned) _q_]\n[r]\n\n");
  EXPECT_THROW(exec_feeder(exec_feeder::options{"hook", 5s}), std::invalid_argument);
}

// ---- the runner, with a feeder that records what it is given ----

class recording_feeder : public feeder {
 public:
  struct shared {
    std::mutex mu;
    std::vector<batch_plan> plans;
    bool fail = false;
  };
  explicit recording_feeder(std::shared_ptr<shared> s) : s_(std::move(s)) {}
  const char* kind() const override { return "test"; }
  feeder_limits limits() const override { return {}; }
  std::string apply(const batch_plan& plan) override {
    std::lock_guard lock(s_->mu);
    s_->plans.push_back(plan);
    return s_->fail ? "refused by test" : "";
  }

 private:
  std::shared_ptr<shared> s_;
};

block_entry live_entry(std::string_view prefix) {
  auto e = entry(prefix, 0s);
  e.expires = sys_clock::now() + 1h;
  return e;
}

TEST(firewall_runner, batches_coalesce_and_counters_follow) {
  auto rec = std::make_shared<recording_feeder::shared>();
  feeder_runner::options o;
  o.batch_interval = 20ms;
  o.retry_min = 10ms;
  feeder_runner r(std::make_unique<recording_feeder>(rec), o);
  r.reconcile({live_entry("192.0.2.1"), live_entry("192.0.2.2")});
  ASSERT_TRUE(r.wait_idle(5s));
  for (int i = 0; i < 50; ++i) r.add(live_entry("198.51.100." + std::to_string(i)));
  r.remove(pfx("192.0.2.1"));
  r.remove(pfx("198.51.100.7"));  // added and removed before the batch: never applied
  ASSERT_TRUE(r.wait_idle(5s));
  {
    std::lock_guard lock(rec->mu);
    ASSERT_GE(rec->plans.size(), 2u);
    EXPECT_TRUE(rec->plans[0].full);
    EXPECT_EQ(rec->plans[0].effective.size(), 2u);
    std::size_t added = 0, removed = 0;
    for (std::size_t i = 1; i < rec->plans.size(); ++i) {
      EXPECT_FALSE(rec->plans[i].full);
      added += rec->plans[i].adds.size();
      removed += rec->plans[i].removes.size();
    }
    // 198.51.100.7 normally never reaches the feeder; if a batch fell between
    // its add and remove it is added and removed: the difference is the same.
    EXPECT_EQ(added - removed, 48u);
    EXPECT_LE(removed, 2u);
    EXPECT_LE(rec->plans.size(), 4u) << "51 changes within 20 ms coalesce into few batches";
  }
  auto s = r.stats();
  EXPECT_TRUE(s.healthy);
  EXPECT_EQ(s.entries, 50u);
  EXPECT_EQ(s.added - s.removed, 50u);
  EXPECT_EQ(s.failures, 0u);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_GT(s.last_lag_seconds, 0.0);
  EXPECT_LT(s.last_lag_seconds, 5.0);
}

TEST(firewall_runner, failure_is_counted_and_the_retry_is_full) {
  auto rec = std::make_shared<recording_feeder::shared>();
  feeder_runner::options o;
  o.batch_interval = 1ms;
  o.retry_min = 20ms;
  o.retry_max = 20ms;
  feeder_runner r(std::make_unique<recording_feeder>(rec), o);
  r.reconcile({live_entry("192.0.2.1")});
  ASSERT_TRUE(r.wait_idle(5s));
  rec->mu.lock();
  rec->fail = true;
  rec->mu.unlock();
  r.add(live_entry("192.0.2.2"));
  EXPECT_FALSE(r.wait_idle(5s));
  auto s = r.stats();
  EXPECT_FALSE(s.healthy);
  EXPECT_GE(s.failures, 1u);
  rec->mu.lock();
  rec->fail = false;
  rec->mu.unlock();
  // The retry comes by itself after the backoff, as a full batch.
  for (int i = 0; i < 500 && !r.stats().healthy; ++i) std::this_thread::sleep_for(10ms);
  s = r.stats();
  EXPECT_TRUE(s.healthy);
  EXPECT_EQ(s.entries, 2u);
  std::lock_guard lock(rec->mu);
  EXPECT_TRUE(rec->plans.back().full);
  EXPECT_EQ(rec->plans.back().effective.size(), 2u);
}

TEST(firewall_runner, metrics) {
  auto rec = std::make_shared<recording_feeder::shared>();
  feeder_runner::options o;
  o.batch_interval = 1ms;
  feeder_runner r(std::make_unique<recording_feeder>(rec), o);
  r.reconcile({live_entry("192.0.2.1"), live_entry("192.0.2.2")});
  ASSERT_TRUE(r.wait_idle(5s));
  registry reg;
  register_feeder_metrics(reg, {&r});
  const auto text = reg.render();
  for (const char* line : {"mxguard_firewall_batches_total{feeder=\"test\"} 1\n",
                           "mxguard_firewall_entries{feeder=\"test\"} 2\n",
                           "mxguard_firewall_healthy{feeder=\"test\"} 1\n",
                           "mxguard_firewall_elements_total{feeder=\"test\",op=\"add\"} 2\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
}

}  // namespace
}  // namespace mxguard::ops
