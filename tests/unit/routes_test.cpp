// Unit tests for guard/routes.hpp: relay domains and route lookup.
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "routes.hpp"

namespace mxguard::guard {
namespace {

route make_route(std::string domain, std::string hop) {
  route r;
  r.domain = std::move(domain);
  r.next_hops.push_back(*parse_host_port(hop));
  return r;
}

TEST(route_table, find_exact_then_nearest_parent_then_default) {
  const std::vector<route> routes = {
      make_route("*", "192.0.2.1:25"),
      make_route(".example.org", "192.0.2.2:25"),
      make_route("Example.ORG", "192.0.2.3:25"),
      make_route(".b.example.org", "192.0.2.4:25"),
      make_route("c.b.example.org", "192.0.2.5:25"),
  };
  struct row {
    const char* label;
    std::string_view domain;
    std::string want_hop;  // host of the route found
  };
  const row rows[] = {
      {"exact", "example.org", "192.0.2.3"},
      {"exact, any case", "EXAMPLE.org", "192.0.2.3"},
      {"subdomain takes .parent", "a.example.org", "192.0.2.2"},
      {"nearest parent wins", "x.b.example.org", "192.0.2.4"},
      {"deep subdomain, nearest parent", "y.x.b.example.org", "192.0.2.4"},
      {".parent does not match the parent itself", "b.example.org", "192.0.2.2"},
      {"exact beats a parent", "c.b.example.org", "192.0.2.5"},
      {"below an exact route: its parent pattern", "d.c.b.example.org", "192.0.2.4"},
      {"anything else takes *", "example.net", "192.0.2.1"},
      {"suffix is not a parent", "badexample.org", "192.0.2.1"},
  };
  // The result does not depend on the order routes were written in.
  auto reversed = routes;
  std::reverse(reversed.begin(), reversed.end());
  const std::vector<route>* orders[] = {&routes, &reversed};
  for (const auto* order : orders) {
    route_table table;
    for (const auto& r : *order) table.add(r);
    for (const auto& r : rows) {
      SCOPED_TRACE(r.label);
      const route* found = table.find(r.domain);
      ASSERT_NE(found, nullptr);
      EXPECT_EQ(found->next_hops.front().host, r.want_hop);
    }
  }
}

TEST(route_table, no_default_route) {
  route_table table;
  table.add(make_route("example.org", "192.0.2.3:25"));
  table.add(make_route(".example.org", "192.0.2.2:25"));
  EXPECT_EQ(table.find("example.net"), nullptr);
  EXPECT_EQ(table.find("org"), nullptr);
  EXPECT_EQ(table.find(""), nullptr);
  ASSERT_NE(table.find("a.example.org"), nullptr);
  EXPECT_EQ(table.routes()[0].domain, "example.org");  // stored in lower case
}

TEST(relay_domain_set, matches) {
  relay_domain_set set;
  set.add("Example.ORG");
  set.add(".sub.example.net");
  struct row {
    const char* label;
    std::string_view domain;
    bool want;
  };
  const row rows[] = {
      {"exact", "example.org", true},
      {"exact, any case", "EXAMPLE.Org", true},
      {"subdomain of an exact domain", "a.example.org", false},
      {"subdomain pattern", "x.sub.example.net", true},
      {"deep subdomain", "y.x.sub.example.net", true},
      {"subdomain pattern excludes the parent", "sub.example.net", false},
      {"suffix is not a subdomain", "xsub.example.net", false},
      {"other", "example.com", false},
      {"empty", "", false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(set.matches(r.domain), r.want);
  }
  EXPECT_EQ(set.patterns(), (std::vector<std::string>{"example.org", ".sub.example.net"}));
}

TEST(lower_ascii, only_ascii) {
  EXPECT_EQ(lower_ascii("MiXeD.Example-1.ORG"), "mixed.example-1.org");
  EXPECT_EQ(lower_ascii("\xc3\x84"), "\xc3\x84");
}

}  // namespace
}  // namespace mxguard::guard
