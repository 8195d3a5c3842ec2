// Unit tests for guard/access_list.hpp: rule syntax, longest-prefix matching
// and the connect-stage verdict.
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "access_list.hpp"

namespace mxguard::guard {
namespace {

boost::asio::ip::address ip(const char* text) {
  return boost::asio::ip::make_address(text);
}

TEST(access_list, parse_line) {
  struct row {
    const char* label;
    std::string_view line;
    std::string want_error;  // empty: valid
    std::string want_network{};
    access_action want_action = access_action::ok;
    std::string want_text{};
  };
  const row rows[] = {
      {"reject a host", "61.49.138.219 REJECT", "", "61.49.138.219/32", access_action::reject, ""},
      {"ok a host", "150.59.112.17 OK", "", "150.59.112.17/32", access_action::ok, ""},
      {"defer a network", "192.0.2.0/24 DEFER", "", "192.0.2.0/24", access_action::defer, ""},
      {"PERMIT is OK", "192.0.2.1 permit", "", "192.0.2.1/32", access_action::ok, ""},
      {"action any case", "192.0.2.1 reject", "", "192.0.2.1/32", access_action::reject, ""},
      {"text kept", "192.0.2.0/24 REJECT Spam from your network; see https://example.org/", "",
       "192.0.2.0/24", access_action::reject, "Spam from your network; see https://example.org/"},
      {"tabs and spaces", "\t2001:db8::/32\t DEFER \t busy  ", "", "2001:db8::/32",
       access_action::defer, "busy"},
      {"host bits cleared", "192.0.2.99/24 OK", "", "192.0.2.0/24", access_action::ok, ""},
      {"no action", "192.0.2.1", "expected 'ADDRESS[/LEN] OK|REJECT|DEFER [text]'"},
      {"empty", "", "expected 'ADDRESS[/LEN] OK|REJECT|DEFER [text]'"},
      {"bad address", "192.0.2.300 REJECT", "bad address or prefix '192.0.2.300'"},
      {"host name", "mail.example.org REJECT", "bad address or prefix 'mail.example.org'"},
      {"bad length", "192.0.2.0/40 REJECT", "bad address or prefix '192.0.2.0/40'"},
      {"unknown action", "192.0.2.1 DROP", "unknown action 'DROP' (OK, REJECT, DEFER)"},
      {"control character in text", "192.0.2.1 REJECT a\x01z",
       "reply text must be printable ASCII"},
      {"8-bit text", "192.0.2.1 REJECT caf\xc3\xa9", "reply text must be printable ASCII"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::string error;
    auto entry = access_list::parse_line(r.line, error);
    if (!r.want_error.empty()) {
      EXPECT_FALSE(entry);
      EXPECT_EQ(error, r.want_error);
      continue;
    }
    ASSERT_TRUE(entry) << error;
    EXPECT_EQ(entry->network.to_string(), r.want_network);
    EXPECT_EQ(entry->what, r.want_action);
    EXPECT_EQ(entry->text, r.want_text);
  }
}

access_list build(std::vector<std::string> lines) {
  access_list list;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string error;
    auto entry = access_list::parse_line(lines[i], error);
    EXPECT_TRUE(entry) << lines[i] << ": " << error;
    if (!entry) continue;
    entry->origin = "rules[" + std::to_string(i) + "]";
    list.add(std::move(*entry));
  }
  return list;
}

const std::vector<std::string> rules = {
    "0.0.0.0/0 DEFER everyone waits",
    "192.0.2.0/24 REJECT",
    "192.0.2.128/25 OK",
    "192.0.2.200 REJECT this host is blocked",
    "198.51.100.0/24 DEFER",
    "2001:db8::/32 REJECT v6 blocked",
    "2001:db8:1::/48 OK",
    "2001:db8:1:2::5 DEFER",
};

TEST(access_list, longest_prefix_wins_in_any_order) {
  struct row {
    const char* label;
    const char* client;
    std::string want_network;  // empty: no entry
  };
  const row rows[] = {
      {"host entry beats /25 and /24", "192.0.2.200", "192.0.2.200/32"},
      {"/25 beats /24", "192.0.2.129", "192.0.2.128/25"},
      {"/24", "192.0.2.1", "192.0.2.0/24"},
      {"/0 catches the rest of IPv4", "203.0.113.1", "0.0.0.0/0"},
      {"v4-mapped client matched against IPv4 rules", "::ffff:192.0.2.200", "192.0.2.200/32"},
      {"v4-mapped client, /25", "::ffff:192.0.2.130", "192.0.2.128/25"},
      {"IPv6 host", "2001:db8:1:2::5", "2001:db8:1:2::5/128"},
      {"IPv6 /48", "2001:db8:1:2::6", "2001:db8:1::/48"},
      {"IPv6 /32", "2001:db8:2::1", "2001:db8::/32"},
      {"IPv6 outside every rule (IPv4 /0 does not apply)", "2001:db9::1", ""},
  };
  auto sorted = rules;
  std::sort(sorted.begin(), sorted.end());
  auto reversed = rules;
  std::reverse(reversed.begin(), reversed.end());
  const std::vector<std::string>* orders[] = {&rules, &sorted, &reversed};
  for (const auto* order : orders) {
    const auto list = build(*order);
    EXPECT_EQ(list.size(), rules.size());
    for (const auto& r : rows) {
      SCOPED_TRACE(r.label);
      const auto* entry = list.find(ip(r.client));
      if (r.want_network.empty()) {
        EXPECT_EQ(entry, nullptr);
        continue;
      }
      ASSERT_NE(entry, nullptr);
      EXPECT_EQ(entry->network.to_string(), r.want_network);
    }
  }
}

TEST(access_list, check_verdicts) {
  const auto list = build(rules);
  struct row {
    const char* label;
    const char* client;
    action want_action;
    std::string want_reply;
    std::string want_rule;
  };
  const row rows[] = {
      {"OK accepts without a reply", "192.0.2.129", action::accept, "", "access:192.0.2.128/25"},
      {"REJECT default text", "192.0.2.1", action::reject, "554 5.7.1 Access denied",
       "access:192.0.2.0/24"},
      {"REJECT admin text", "192.0.2.200", action::reject, "554 5.7.1 this host is blocked",
       "access:192.0.2.200/32"},
      {"DEFER default text", "198.51.100.7", action::defer,
       "421 4.7.0 Access temporarily denied, try again later", "access:198.51.100.0/24"},
      {"DEFER admin text", "203.0.113.1", action::defer, "421 4.7.0 everyone waits",
       "access:0.0.0.0/0"},
      {"IPv6 reject", "2001:db8:ffff::1", action::reject, "554 5.7.1 v6 blocked",
       "access:2001:db8::/32"},
      {"no entry: no opinion", "2001:db9::1", action::cont, "", ""},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto v = list.check(ip(r.client));
    EXPECT_EQ(v.what, r.want_action);
    EXPECT_EQ(v.reply, r.want_reply);
    EXPECT_EQ(v.rule, r.want_rule);
  }
}

TEST(access_list, same_network_twice_keeps_the_last) {
  const auto list = build({"192.0.2.0/24 REJECT", "192.0.2.77/24 OK"});
  EXPECT_EQ(list.size(), 1u);
  EXPECT_EQ(list.check(ip("192.0.2.1")).what, action::accept);
}

TEST(access_list, empty_list_has_no_opinion) {
  access_list list;
  EXPECT_EQ(list.find(ip("192.0.2.1")), nullptr);
  EXPECT_FALSE(list.check(ip("2001:db8::1")).decided());
}

}  // namespace
}  // namespace mxguard::guard
