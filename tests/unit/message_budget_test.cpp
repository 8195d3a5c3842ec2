// server.max_buffered_bytes: a message's share of the budget goes with the
// message to its last holder (a scan the session stopped waiting for).
#include <gtest/gtest.h>

#include "runtime.hpp"

namespace mxguard::guard {
namespace {

TEST(message_budget, released_by_the_last_holder) {
  daemon_state state;
  state.buffered_bytes().fetch_add(4096);
  auto session_copy = state.budgeted(std::string(4096, 'x'), 4096);
  auto scan_copy = session_copy;  // queued for a scan
  EXPECT_EQ(*scan_copy, std::string(4096, 'x'));
  session_copy.reset();  // the session gave up waiting and ended
  EXPECT_EQ(state.buffered_bytes().load(), 4096);
  scan_copy.reset();  // the scan finished
  EXPECT_EQ(state.buffered_bytes().load(), 0);
}

TEST(message_budget, a_message_may_outlive_the_daemon_state) {
  std::shared_ptr<const std::string> kept;
  {
    daemon_state state;
    state.buffered_bytes().fetch_add(10);
    kept = state.budgeted("0123456789", 10);
  }
  EXPECT_EQ(*kept, "0123456789");
  kept.reset();  // no use of the gone state: the sanitizer run would say so
}

}  // namespace
}  // namespace mxguard::guard
