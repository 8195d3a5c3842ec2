// Unit tests for guard/common/mxguard/net.hpp: prefixes, client keys, host:port.
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "mxguard/net.hpp"

namespace mxguard {
namespace {

boost::asio::ip::address ip(const char* text) {
  return boost::asio::ip::make_address(text);
}

TEST(ip_prefix, parse) {
  struct row {
    const char* label;
    std::string_view input;
    std::optional<std::string> want;  // to_string() of the result, nullopt: refused
  };
  const row rows[] = {
      {"IPv4 network", "192.0.2.0/24", "192.0.2.0/24"},
      {"IPv4 host bits cleared", "192.0.2.77/24", "192.0.2.0/24"},
      {"IPv4 bare address", "203.0.113.7", "203.0.113.7/32"},
      {"IPv4 /0", "0.0.0.0/0", "0.0.0.0/0"},
      {"IPv4 odd length", "10.255.255.255/9", "10.128.0.0/9"},
      {"IPv6 network", "2001:db8::/32", "2001:db8::/32"},
      {"IPv6 host bits cleared", "2001:db8:1:2:3:4:5:6/64", "2001:db8:1:2::/64"},
      {"IPv6 bare address", "2001:db8::1", "2001:db8::1/128"},
      {"IPv6 odd length", "2001:db8:ffff::/33", "2001:db8:8000::/33"},
      {"v4-mapped becomes IPv4", "::ffff:192.0.2.1", "192.0.2.1/32"},
      {"IPv4 length too long", "192.0.2.0/33", std::nullopt},
      {"IPv6 length too long", "2001:db8::/129", std::nullopt},
      {"v4-mapped with a v6 length", "::ffff:192.0.2.0/120", std::nullopt},
      {"empty length", "192.0.2.0/", std::nullopt},
      {"negative length", "192.0.2.0/-1", std::nullopt},
      {"junk after length", "192.0.2.0/24x", std::nullopt},
      {"length with sign", "192.0.2.0/+24", std::nullopt},
      {"host name", "mail.example.org", std::nullopt},
      {"short IPv4", "192.0.2", std::nullopt},
      {"empty", "", std::nullopt},
      {"spaces", " 192.0.2.1", std::nullopt},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto got = ip_prefix::parse(r.input);
    EXPECT_EQ(got ? std::optional(got->to_string()) : std::nullopt, r.want);
  }
}

TEST(ip_prefix, contains) {
  struct row {
    const char* label;
    std::string_view prefix;
    const char* address;
    bool want;
  };
  const row rows[] = {
      {"inside /24", "192.0.2.0/24", "192.0.2.200", true},
      {"outside /24", "192.0.2.0/24", "192.0.3.1", false},
      {"/0 holds every IPv4", "0.0.0.0/0", "203.0.113.9", true},
      {"/0 IPv4 does not hold IPv6", "0.0.0.0/0", "2001:db8::1", false},
      {"/32 exact", "203.0.113.7", "203.0.113.7", true},
      {"/32 neighbour", "203.0.113.7", "203.0.113.8", false},
      {"odd length inside", "10.128.0.0/9", "10.200.1.1", true},
      {"odd length outside", "10.128.0.0/9", "10.127.1.1", false},
      {"v4-mapped client in IPv4 prefix", "192.0.2.0/24", "::ffff:192.0.2.5", true},
      {"v4-mapped client outside IPv4 prefix", "192.0.2.0/24", "::ffff:198.51.100.5", false},
      {"IPv6 inside /32", "2001:db8::/32", "2001:db8:abcd::1", true},
      {"IPv6 outside /32", "2001:db8::/32", "2001:db9::1", false},
      {"IPv6 /0 does not hold IPv4", "::/0", "192.0.2.1", false},
      {"IPv6 /0 does not hold v4-mapped", "::/0", "::ffff:192.0.2.1", false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto p = ip_prefix::parse(r.prefix);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->contains(ip(r.address)), r.want);
  }
}

TEST(ip_prefix, constructor_clamps_and_masks) {
  EXPECT_EQ(ip_prefix(ip("192.0.2.1"), 99).to_string(), "192.0.2.1/32");
  EXPECT_EQ(ip_prefix(ip("192.0.2.1"), 16).to_string(), "192.0.0.0/16");
  EXPECT_EQ(ip_prefix(ip("2001:db8::1"), 200).to_string(), "2001:db8::1/128");
  // Equal networks compare and hash equal whatever host bits they came from.
  ip_prefix a(ip("192.0.2.1"), 24), b(ip("192.0.2.99"), 24);
  EXPECT_EQ(a, b);
  EXPECT_EQ(ip_prefix_hash{}(a), ip_prefix_hash{}(b));
  EXPECT_NE(ip_prefix(ip("192.0.2.0"), 24), ip_prefix(ip("192.0.2.0"), 25));
}

TEST(normalize, unmaps_v4_mapped) {
  EXPECT_EQ(normalize(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
  EXPECT_EQ(normalize(ip("2001:db8::1")), ip("2001:db8::1"));
  EXPECT_EQ(normalize(ip("192.0.2.1")), ip("192.0.2.1"));
}

TEST(client_key, groups_ipv6_by_prefix) {
  struct row {
    const char* label;
    const char* address;
    unsigned v6_length;
    std::string want;
  };
  const row rows[] = {
      {"IPv4 is its /32", "192.0.2.1", 64, "192.0.2.1/32"},
      {"IPv4 ignores the v6 length", "192.0.2.1", 48, "192.0.2.1/32"},
      {"v4-mapped is the IPv4 /32", "::ffff:192.0.2.1", 64, "192.0.2.1/32"},
      {"IPv6 /64", "2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"},
      {"IPv6 /48", "2001:db8:1:2:aaaa::1", 48, "2001:db8:1::/48"},
      {"IPv6 /128", "2001:db8::5", 128, "2001:db8::5/128"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(client_key(ip(r.address), r.v6_length).to_string(), r.want);
  }
  EXPECT_EQ(client_key(ip("2001:db8::1"), 64), client_key(ip("2001:db8::ffff:1"), 64));
  EXPECT_NE(client_key(ip("2001:db8::1"), 64), client_key(ip("2001:db8:0:1::1"), 64));
}

TEST(parse_host_port, forms) {
  struct row {
    const char* label;
    std::string_view input;
    bool ok;
    std::string want_host;
    std::uint16_t want_port;
  };
  const row rows[] = {
      {"IPv4", "192.0.2.1:25", true, "192.0.2.1", 25},
      {"host name", "mx.example.org:2525", true, "mx.example.org", 2525},
      {"bracketed IPv6", "[2001:db8::1]:25", true, "2001:db8::1", 25},
      {"IPv6 loopback", "[::1]:10025", true, "::1", 10025},
      {"port 0 parses", "127.0.0.1:0", true, "127.0.0.1", 0},
      {"highest port", "h:65535", true, "h", 65535},
      {"port too big", "h:65536", false, "", 0},
      {"huge port", "h:99999999999", false, "", 0},
      {"no port", "192.0.2.1", false, "", 0},
      {"empty port", "192.0.2.1:", false, "", 0},
      {"empty host", ":25", false, "", 0},
      {"bare IPv6", "2001:db8::1:25", false, "", 0},
      {"IPv6 without port", "[2001:db8::1]", false, "", 0},
      {"IPv6 without colon", "[2001:db8::1]25", false, "", 0},
      {"unclosed bracket", "[2001:db8::1:25", false, "", 0},
      {"empty brackets", "[]:25", false, "", 0},
      {"port with letters", "h:25x", false, "", 0},
      {"port with sign", "h:+25", false, "", 0},
      {"port with space", "h: 25", false, "", 0},
      {"negative port", "h:-1", false, "", 0},
      {"empty", "", false, "", 0},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto got = parse_host_port(r.input);
    ASSERT_EQ(got.has_value(), r.ok);
    if (!got) continue;
    EXPECT_EQ(got->host, r.want_host);
    EXPECT_EQ(got->port, r.want_port);
  }
}

}  // namespace
}  // namespace mxguard
