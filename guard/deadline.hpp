// An awaitable operation with a deadline, for the relay's client side.
#pragma once

#include <chrono>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mxguard::guard {

// Runs `op` with a deadline; nullopt when the deadline passed first (the
// operation is cancelled by the `||`).
template <typename T>
boost::asio::awaitable<std::optional<T>> within(std::chrono::milliseconds limit,
                                                boost::asio::awaitable<T> op) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, limit);
  auto result = co_await (std::move(op) ||
                          timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
  if (result.index() == 0) co_return std::get<0>(std::move(result));
  co_return std::nullopt;
}

}  // namespace mxguard::guard
