// The nft and ipset feeders against the real kernel, inside a network
// namespace the test creates (so the host's firewall is never touched) and
// deletes again, also when an assertion fails. Skips, saying why, when the
// kernel or the user may not create namespaces or nftables/ipset objects.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mxguard/ops/firewall_feeder.hpp"
#include "mxguard/ops/process.hpp"

namespace mxguard::ops {
namespace {

using namespace std::chrono_literals;

const std::string ip_tool = "/usr/sbin/ip";

class netns {
 public:
  netns() {
    static std::atomic<int> seq{0};
    name_ = "mxg-fw-" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
    auto r = run_program({ip_tool, "netns", "add", name_}, {}, 10s);
    if (!r.ok()) error_ = "ip netns add: " + r.describe();
  }
  ~netns() {
    if (error_.empty()) run_program({ip_tool, "netns", "del", name_}, {}, 10s);
  }
  netns(const netns&) = delete;
  netns& operator=(const netns&) = delete;

  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  std::vector<std::string> prefix() const { return {ip_tool, "netns", "exec", name_}; }
  process_result run(std::vector<std::string> argv) const {
    auto full = prefix();
    full.insert(full.end(), argv.begin(), argv.end());
    return run_program(full, {}, 10s);
  }

 private:
  std::string name_;
  std::string error_;
};

ip_prefix pfx(std::string_view text) {
  return *ip_prefix::parse(text);
}

block_entry ban(std::string_view prefix, std::chrono::seconds ttl, std::string reason = "test") {
  const auto now = sys_clock::now();
  return block_entry{pfx(prefix), std::move(reason), "netns-test", now,
                     ttl.count() == 0 ? sys_clock::time_point::max() : now + ttl};
}

// prefix → kernel timeout in seconds (0: none), from `nft -j list set`.
std::map<std::string, long> nft_elements(const netns& ns, const std::string& set) {
  auto r = ns.run({"/usr/sbin/nft", "-j", "list", "set", "inet", "mxguard", set});
  EXPECT_TRUE(r.ok()) << r.describe();
  std::map<std::string, long> out;
  if (!r.ok()) return out;
  auto doc = nlohmann::json::parse(r.out);
  for (const auto& item : doc.at("nftables")) {
    if (!item.contains("set")) continue;
    const auto& s = item.at("set");
    if (!s.contains("elem")) continue;
    for (const auto& el : s.at("elem")) {
      nlohmann::json val = el;
      long timeout = 0;
      if (el.is_object() && el.contains("elem")) {
        val = el.at("elem").at("val");
        timeout = el.at("elem").value("timeout", 0L);
      }
      std::string text;
      if (val.is_string())
        text = val.get<std::string>();
      else
        text = val.at("prefix").at("addr").get<std::string>() + "/" +
               std::to_string(val.at("prefix").at("len").get<int>());
      out[pfx(text).to_string()] = timeout;
    }
  }
  return out;
}

// prefix → timeout, from `ipset save SET`.
std::map<std::string, long> ipset_elements(const netns& ns, const std::string& set) {
  auto r = ns.run({"/usr/sbin/ipset", "save", set});
  EXPECT_TRUE(r.ok()) << r.describe();
  std::map<std::string, long> out;
  std::size_t start = 0;
  while (start < r.out.size()) {
    auto end = r.out.find('\n', start);
    if (end == std::string::npos) end = r.out.size();
    auto line = r.out.substr(start, end - start);
    start = end + 1;
    const std::string head = "add " + set + " ";
    if (!line.starts_with(head)) continue;
    auto rest = line.substr(head.size());
    auto space = rest.find(' ');
    long timeout = 0;
    if (auto t = rest.find(" timeout "); t != std::string::npos)
      timeout = std::stol(rest.substr(t + 9));
    out[pfx(rest.substr(0, space)).to_string()] = timeout;
  }
  return out;
}

std::vector<std::string> keys(const std::map<std::string, long>& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

#define REQUIRE_NETNS(ns)                                                                  \
  if (!(ns).error().empty())                                                               \
    GTEST_SKIP() << "network namespaces unavailable (needs root and a kernel that allows " \
                    "them): "                                                              \
                 << (ns).error();

TEST(firewall_netns, nft_feeder_against_the_kernel) {
  netns ns;
  REQUIRE_NETNS(ns);
  if (auto r = ns.run({"/usr/sbin/nft", "list", "tables"}); !r.ok())
    GTEST_SKIP() << "nftables unavailable in the namespace: " << r.describe();

  nft_feeder::options o;
  o.spec = nft_set_spec::parse("inet mxguard blocked", "", "input");
  o.command.prefix = ns.prefix();
  o.max_timeout = 1h;
  feeder_runner::options ro;
  ro.batch_interval = 10ms;
  ro.retry_min = 100ms;
  ro.resync_interval = 500ms;
  feeder_runner r(std::make_unique<nft_feeder>(o), ro);

  // Start-up reconcile: v4 and v6, a capped long ban, a permanent one, a cover
  // with an entry inside it (interval sets refuse the overlap), a hostile reason.
  r.reconcile({ban("192.0.2.7", 600s, "x\"; flush ruleset; $(reboot)\n"),
               ban("198.51.100.0/24", 240h), ban("198.51.100.9", 600s), ban("203.0.113.5", 0s),
               ban("2001:db8::/64", 600s), ban("::ffff:192.0.2.99", 300s)});
  ASSERT_TRUE(r.wait_idle(20s)) << "batch failed; see FIREWALL_FEEDER_FAILED above";

  auto v4 = nft_elements(ns, "blocked");
  EXPECT_EQ(keys(v4), (std::vector<std::string>{"192.0.2.7/32", "192.0.2.99/32", "198.51.100.0/24",
                                                "203.0.113.5/32"}));
  EXPECT_GT(v4["192.0.2.7/32"], 590);
  EXPECT_LE(v4["192.0.2.7/32"], 600);
  EXPECT_EQ(v4["198.51.100.0/24"], 3600) << "a 10-day ban is written with the 1 h cap";
  EXPECT_EQ(v4["203.0.113.5/32"], 0) << "permanent: no timeout";
  auto v6 = nft_elements(ns, "blocked6");
  EXPECT_EQ(keys(v6), (std::vector<std::string>{"2001:db8::/64"}));
  EXPECT_GT(v6["2001:db8::/64"], 0);

  auto chain = ns.run({"/usr/sbin/nft", "list", "chain", "inet", "mxguard", "input"});
  EXPECT_NE(chain.out.find("ip saddr @blocked drop"), std::string::npos) << chain.out;
  EXPECT_NE(chain.out.find("ip6 saddr @blocked6 drop"), std::string::npos) << chain.out;

  // Incremental: add, remove, and remove one the kernel no longer has (timed
  // out, or deleted by hand) without failing the transaction.
  ASSERT_TRUE(
      ns.run({"/usr/sbin/nft", "delete", "element", "inet", "mxguard", "blocked", "{ 192.0.2.99 }"})
          .ok());
  r.add(ban("192.0.2.200", 60s));
  r.add(ban("2001:db8:1::1", 60s));
  r.remove(pfx("192.0.2.7"));
  r.remove(pfx("192.0.2.99"));
  r.remove(pfx("2001:db8::/64"));
  ASSERT_TRUE(r.wait_idle(20s));
  EXPECT_EQ(keys(nft_elements(ns, "blocked")),
            (std::vector<std::string>{"192.0.2.200/32", "198.51.100.0/24", "203.0.113.5/32"}));
  EXPECT_EQ(keys(nft_elements(ns, "blocked6")), (std::vector<std::string>{"2001:db8:1::1/128"}));

  // The cover goes: what it covered comes in, in the same transaction.
  r.remove(pfx("198.51.100.0/24"));
  ASSERT_TRUE(r.wait_idle(20s));
  EXPECT_EQ(keys(nft_elements(ns, "blocked")),
            (std::vector<std::string>{"192.0.2.200/32", "198.51.100.9/32", "203.0.113.5/32"}));

  // Reconcile against a different list: the kernel equals it afterwards, also
  // with an element added behind the feeder's back.
  ASSERT_TRUE(
      ns.run({"/usr/sbin/nft", "add", "element", "inet", "mxguard", "blocked", "{ 10.9.9.9 }"})
          .ok());
  r.reconcile({ban("10.1.2.0/24", 60s), ban("2001:db8:2::/48", 60s)});
  ASSERT_TRUE(r.wait_idle(20s));
  EXPECT_EQ(keys(nft_elements(ns, "blocked")), (std::vector<std::string>{"10.1.2.0/24"}));
  EXPECT_EQ(keys(nft_elements(ns, "blocked6")), (std::vector<std::string>{"2001:db8:2::/48"}));

  // The table deleted by hand (a firewall reload): the next batch recreates
  // it, and the periodic resync puts the rest back.
  ASSERT_TRUE(ns.run({"/usr/sbin/nft", "delete", "table", "inet", "mxguard"}).ok());
  r.add(ban("10.3.3.3", 60s));
  EXPECT_TRUE(r.wait_idle(20s));
  const std::vector<std::string> want = {"10.1.2.0/24", "10.3.3.3/32"};
  for (int i = 0; i < 100 && keys(nft_elements(ns, "blocked")) != want; ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(keys(nft_elements(ns, "blocked")), want);
  EXPECT_EQ(keys(nft_elements(ns, "blocked6")), (std::vector<std::string>{"2001:db8:2::/48"}));
  EXPECT_TRUE(r.stats().healthy);

  auto s = r.stats();
  EXPECT_GE(s.batches, 5u);
  EXPECT_EQ(s.entries, 3u);
}

TEST(firewall_netns, ipset_feeder_against_the_kernel) {
  netns ns;
  REQUIRE_NETNS(ns);
  if (auto r = ns.run({"/usr/sbin/ipset", "list", "-n"}); !r.ok())
    GTEST_SKIP() << "ipset unavailable in the namespace: " << r.describe();

  ipset_feeder::options o;
  o.spec = ipset_spec::make("mxgt4", "mxgt6", 3);
  o.command.prefix = ns.prefix();
  feeder_runner::options ro;
  ro.batch_interval = 10ms;
  feeder_runner r(std::make_unique<ipset_feeder>(o), ro);

  // Five v4 bans into a set of three: the two closest to expiry stay out.
  r.reconcile({ban("192.0.2.1", 500s), ban("192.0.2.2", 100s), ban("192.0.2.3", 400s),
               ban("192.0.2.4", 200s), ban("192.0.2.0/24", 0s), ban("2001:db8::/64", 300s)});
  ASSERT_TRUE(r.wait_idle(20s));
  auto v4 = ipset_elements(ns, "mxgt4");
  EXPECT_EQ(keys(v4), (std::vector<std::string>{"192.0.2.0/24", "192.0.2.1/32", "192.0.2.3/32"}));
  EXPECT_EQ(v4["192.0.2.0/24"], 0);
  EXPECT_GT(v4["192.0.2.1/32"], 490);
  EXPECT_LE(v4["192.0.2.1/32"], 500);
  EXPECT_EQ(r.stats().evicted, 2u);
  auto v6 = ipset_elements(ns, "mxgt6");
  EXPECT_EQ(keys(v6), (std::vector<std::string>{"2001:db8::/64"}));
  EXPECT_GT(v6["2001:db8::/64"], 0);
  auto names = ns.run({"/usr/sbin/ipset", "list", "-n"});
  EXPECT_EQ(names.out.find(".new"), std::string::npos) << "swap set left behind: " << names.out;

  // Room made: the latest-expiring evicted entry comes back.
  r.remove(pfx("192.0.2.1"));
  ASSERT_TRUE(r.wait_idle(20s));
  EXPECT_EQ(keys(ipset_elements(ns, "mxgt4")),
            (std::vector<std::string>{"192.0.2.0/24", "192.0.2.3/32", "192.0.2.4/32"}));

  // A ban extended: the kernel timeout follows.
  r.add(ban("192.0.2.3", 1000s));
  ASSERT_TRUE(r.wait_idle(20s));
  EXPECT_GT(ipset_elements(ns, "mxgt4")["192.0.2.3/32"], 990);

  // Reconcile against a different list, over an element added by hand.
  ASSERT_TRUE(ns.run({"/usr/sbin/ipset", "add", "mxgt6", "2001:db8:9::9"}).ok());
  r.reconcile({ban("10.1.2.0/24", 60s), ban("2001:db8:2::/48", 60s)});
  ASSERT_TRUE(r.wait_idle(20s));
  EXPECT_EQ(keys(ipset_elements(ns, "mxgt4")), (std::vector<std::string>{"10.1.2.0/24"}));
  EXPECT_EQ(keys(ipset_elements(ns, "mxgt6")), (std::vector<std::string>{"2001:db8:2::/48"}));

  // Reconcile into a live set created with another maxelem (a changed
  // configuration): the swap replaces it instead of failing on `create`.
  ASSERT_TRUE(ns.run({"/usr/sbin/ipset", "destroy", "mxgt4"}).ok());
  ASSERT_TRUE(ns.run({"/usr/sbin/ipset", "create", "mxgt4", "hash:net", "family", "inet", "maxelem",
                      "9", "timeout", "0"})
                  .ok());
  r.reconcile({ban("10.5.5.5", 60s)});
  ASSERT_TRUE(r.wait_idle(20s));
  EXPECT_EQ(keys(ipset_elements(ns, "mxgt4")), (std::vector<std::string>{"10.5.5.5/32"}));
  EXPECT_TRUE(r.stats().healthy);
}

}  // namespace
}  // namespace mxguard::ops
