// A TCP connection that may be upgraded to TLS mid-session (STARTTLS).
//
// Used by both sides: the client session (server role) and the relay client
// (client role). Owned by value by its one coroutine; `cancel()` is how a
// deadline watchdog stops a pending read or write. Operations report errors
// as values (no exceptions for EOF or cancellation).
#pragma once

#include <memory>
#include <string_view>
#include <tuple>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

namespace mxguard::guard {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

class smtp_stream {
 public:
  explicit smtp_stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  asio::ip::tcp::socket& socket() { return socket_; }
  bool is_tls() const { return tls_ != nullptr; }
  std::string tls_description() const;  // "TLSv1.3 TLS_AES_256_GCM_SHA384" or ""

  // Waits until bytes can be read without holding a buffer meanwhile (plain
  // TCP only; with TLS the library may hold decrypted bytes already).
  asio::awaitable<error_code> wait_readable();
  asio::awaitable<std::tuple<error_code, std::size_t>> read_some(asio::mutable_buffer buffer);
  asio::awaitable<error_code> write_all(std::string_view data);

  asio::awaitable<error_code> handshake_server(asio::ssl::context& context);
  asio::awaitable<error_code> handshake_client(asio::ssl::context& context,
                                               const std::string& server_name);

  void cancel() {
    error_code ignored;
    socket_.cancel(ignored);
  }
  void close();

 private:
  asio::ip::tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
};

}  // namespace mxguard::guard
