// The Redis store's connections and the io_contexts they belong to. No Redis
// is needed: a Unix socket that does not exist fails at once, and the store
// answers by its failure policy. The lifetime mistakes these tests guard
// against are silent without a sanitizer; tests/sanitize.sh runs them under
// AddressSanitizer, which reports a heap-use-after-free.
#include <gtest/gtest.h>

#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "mxguard/ratelimit/redis_store.hpp"

namespace mxguard::ratelimit {
namespace {

namespace asio = boost::asio;

std::shared_ptr<state_store> unreachable_store(std::shared_ptr<state_store> fallback) {
  redis_settings s;
  s.unix_socket = "/nonexistent/mxguard-test-redis.sock";
  s.failure = redis_settings::on_failure::open;
  return make_redis_store(s, std::move(fallback));
}

bool passed_on_a_fresh_io_context(state_store& store) {
  asio::io_context io;
  auto answer = asio::co_spawn(io, store.passed("client", 0), asio::use_future);
  io.run();
  return answer.get();
}

// A connection made on an io_context ends with it, not with the thread:
// the store is used on one thread from two io_contexts in turn, the first
// destroyed before the second exists, and then the thread ends (the daemon's
// main thread does the same with its control io_context at exit).
TEST(RedisStore, ConnectionEndsWithItsIoContextNotWithTheThread) {
  auto fallback = make_embedded_store(100);
  auto store = unreachable_store(fallback);
  std::thread thread([&] {
    EXPECT_FALSE(passed_on_a_fresh_io_context(*store)) << "failure = open: not passed";
    EXPECT_FALSE(passed_on_a_fresh_io_context(*store));
  });
  thread.join();
  // And after the thread: the store, then the fallback it holds, go last.
  store.reset();
}

// Two stores one after the other on one io_context: the second does not
// inherit the first one's connection (it could be given the same address).
TEST(RedisStore, EachStoreHasItsOwnConnection) {
  auto fallback = make_embedded_store(100);
  asio::io_context io;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    auto store = unreachable_store(fallback);
    auto answer = asio::co_spawn(io, store->passed("client", 0), asio::use_future);
    io.restart();
    io.run();
    EXPECT_FALSE(answer.get());
    EXPECT_FALSE(store->health().up) << "a failed connect marks Redis down";
  }
}

}  // namespace
}  // namespace mxguard::ratelimit
