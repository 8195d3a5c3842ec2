// Runs one coroutine to its end on a fresh io_context, for unit tests of
// code that is awaitable but needs no network.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

namespace mxguard::test {

template <typename T>
T run(boost::asio::awaitable<T> op) {
  boost::asio::io_context io;
  auto result = boost::asio::co_spawn(io, std::move(op), boost::asio::use_future);
  io.run();
  return result.get();
}

}  // namespace mxguard::test
