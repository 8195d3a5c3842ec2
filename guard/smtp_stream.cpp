#include "smtp_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace mxguard::guard {

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

std::string smtp_stream::tls_description() const {
  if (!tls_) return {};
  const SSL* ssl = tls_->native_handle();
  return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
}

asio::awaitable<error_code> smtp_stream::wait_readable() {
  if (tls_) co_return error_code{};
  auto [ec] = co_await socket_.async_wait(asio::ip::tcp::socket::wait_read, use_tuple);
  co_return ec;
}

asio::awaitable<std::tuple<error_code, std::size_t>> smtp_stream::read_some(
    asio::mutable_buffer buffer) {
  if (tls_) co_return co_await tls_->async_read_some(buffer, use_tuple);
  co_return co_await socket_.async_read_some(buffer, use_tuple);
}

asio::awaitable<error_code> smtp_stream::write_all(std::string_view data) {
  auto buffer = asio::buffer(data.data(), data.size());
  if (tls_) {
    auto [ec, n] = co_await asio::async_write(*tls_, buffer, use_tuple);
    co_return ec;
  }
  // Most replies fit the socket buffer: try a non-blocking write first and
  // only suspend for what is left.
  error_code ec;
  std::size_t done = 0;
  if (socket_.non_blocking() || (socket_.non_blocking(true, ec), !ec)) {
    done = socket_.write_some(buffer, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      done = 0;
    }
    if (ec) co_return ec;
  }
  if (done == data.size()) co_return error_code{};
  auto [wec, n] = co_await asio::async_write(socket_, buffer + done, use_tuple);
  co_return wec;
}

asio::awaitable<error_code> smtp_stream::handshake_server(asio::ssl::context& context) {
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, context);
  auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::server, use_tuple);
  co_return ec;
}

asio::awaitable<error_code> smtp_stream::handshake_client(asio::ssl::context& context,
                                                          const std::string& server_name) {
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, context);
  if (!server_name.empty())
    SSL_set_tlsext_host_name(tls_->native_handle(), const_cast<char*>(server_name.c_str()));
  auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, use_tuple);
  co_return ec;
}

void smtp_stream::close() {
  error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace mxguard::guard
