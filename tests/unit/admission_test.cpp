// Unit tests for guard/admission.hpp: session caps and the RAII slot.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "admission.hpp"

namespace mxguard::guard {
namespace {

boost::asio::ip::address ip(const char* text) {
  return boost::asio::ip::make_address(text);
}

constexpr admission_limits small{.max_sessions = 5, .max_sessions_per_ip = 2, .ipv6_prefix = 64};

TEST(admission, caps) {
  struct row {
    const char* label;
    std::vector<const char*> clients;  // connect in this order, all held open
    std::vector<std::string> want;     // "" = admitted, else the refusing rule
  };
  const row rows[] = {
      {"under both caps", {"192.0.2.1", "192.0.2.2"}, {"", ""}},
      {"per-IP cap", {"192.0.2.1", "192.0.2.1", "192.0.2.1"}, {"", "", "max_sessions_per_ip"}},
      {"per-IP cap counts each address",
       {"192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"},
       {"", "", "", ""}},
      {"v4-mapped counts as the IPv4 address",
       {"192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1"},
       {"", "", "max_sessions_per_ip"}},
      {"IPv6 grouped by /64",
       {"2001:db8::1", "2001:db8::ffff:2", "2001:db8::3"},
       {"", "", "max_sessions_per_ip"}},
      {"other /64 is another client",
       {"2001:db8::1", "2001:db8::2", "2001:db8:0:1::1"},
       {"", "", ""}},
      {"global cap",
       {"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"},
       {"", "", "", "", "", "max_sessions"}},
      {"global cap checked first",
       {"192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.1"},
       {"", "", "", "", "", "max_sessions"}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    admission gate;
    std::vector<session_slot> held;
    std::vector<std::string> got;
    for (const char* client : r.clients) {
      verdict refusal;
      auto slot = gate.try_acquire(ip(client), small, refusal);
      if (slot) {
        EXPECT_FALSE(refusal.decided());
        got.emplace_back();
        held.push_back(std::move(slot));
      } else {
        EXPECT_EQ(refusal.what, action::drop);
        EXPECT_TRUE(refusal.reply.starts_with("421 4.7.0 ")) << refusal.reply;
        got.push_back(refusal.rule);
      }
    }
    EXPECT_EQ(got, r.want);
    EXPECT_EQ(gate.sessions(), static_cast<std::int64_t>(held.size()));
    held.clear();
    EXPECT_EQ(gate.sessions(), 0);
    for (const char* client : r.clients) EXPECT_EQ(gate.sessions_of(ip(client), 64), 0);
  }
}

TEST(admission, slot_gives_back_once) {
  admission gate;
  verdict refusal;
  const auto client = ip("2001:db8::7");
  {
    auto a = gate.try_acquire(client, small, refusal);
    ASSERT_TRUE(a);
    EXPECT_EQ(gate.sessions(), 1);
    EXPECT_EQ(gate.sessions_of(client, 64), 1);
    EXPECT_EQ(gate.sessions_of(ip("2001:db8::8"), 64), 1);  // same /64

    // A moved slot is released once, by its new owner.
    session_slot b(std::move(a));
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
    EXPECT_TRUE(b);
    EXPECT_EQ(gate.sessions(), 1);
    session_slot c;
    c = std::move(b);
    EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(gate.sessions(), 1);
    EXPECT_EQ(gate.sessions_of(client, 64), 1);

    // Assigning over a live slot releases the old one.
    auto d = gate.try_acquire(ip("192.0.2.1"), small, refusal);
    ASSERT_TRUE(d);
    EXPECT_EQ(gate.sessions(), 2);
    c = std::move(d);
    EXPECT_EQ(gate.sessions(), 1);
    EXPECT_EQ(gate.sessions_of(client, 64), 0);
    EXPECT_EQ(gate.sessions_of(ip("192.0.2.1"), 64), 1);

    // An explicit release, then the destructor: still once.
    c.release();
    EXPECT_FALSE(c);
    EXPECT_EQ(gate.sessions(), 0);
    c.release();
    EXPECT_EQ(gate.sessions(), 0);
  }
  EXPECT_EQ(gate.sessions(), 0);
  EXPECT_EQ(gate.sessions_of(client, 64), 0);
}

TEST(admission, released_slot_admits_again) {
  admission gate;
  verdict refusal;
  const admission_limits one{.max_sessions = 10, .max_sessions_per_ip = 1, .ipv6_prefix = 64};
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    auto first = gate.try_acquire(ip("192.0.2.9"), one, refusal);
    ASSERT_TRUE(first);
    auto second = gate.try_acquire(ip("192.0.2.9"), one, refusal);
    EXPECT_FALSE(second);
    EXPECT_EQ(refusal.rule, "max_sessions_per_ip");
    EXPECT_EQ(gate.sessions(), 1);
  }
  EXPECT_EQ(gate.sessions(), 0);
  EXPECT_EQ(gate.sessions_of(ip("192.0.2.9"), 64), 0);
}

}  // namespace
}  // namespace mxguard::guard
