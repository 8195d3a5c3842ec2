// The before-queue relay: an SMTP client towards the next hop, driven by the
// client's session step by step while the client waits.
//
// The session opens it at the first accepted RCPT, passes each RCPT through
// and hands over the message after end-of-DATA; the client gets the next
// hop's own replies. Any failure (no next hop reachable, timeout, broken
// connection, garbage) comes back as a synthesized 4xx reply, never as a
// success, so no mail is lost: the client keeps it and retries.
//
// One instance belongs to one session coroutine (no locking); every
// operation has a deadline.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include "relay_pool.hpp"
#include "routes.hpp"
#include "smtp_framing.hpp"
#include "smtp_stream.hpp"

namespace mxguard::guard {

struct smtp_reply {
  int code = 0;
  std::vector<std::string> lines;  // text after the code and separator
  bool local = false;              // made up by us (connection trouble), not said by the next hop

  // 2xx: the only success for the commands we send (DATA's 354 is checked
  // by itself).
  bool positive() const { return code >= 200 && code < 300; }
  bool transient() const { return code >= 400 && code < 500; }
  // The reply for our client: same code, each line's text made printable ASCII.
  std::string to_client() const;
  std::string first_line() const;
  static smtp_reply local_reply(int code, std::string text) {
    return {code, {std::move(text)}, true};
  }
};

struct relay_timeouts {
  std::chrono::milliseconds connect;
  std::chrono::milliseconds command;
  std::chrono::milliseconds data;
  std::chrono::milliseconds tls_handshake;
};

class relay_client {
 public:
  relay_client(asio::any_io_executor executor, relay_timeouts timeouts,
               asio::ssl::context* tls_context, relay_cache_settings cache = {})
      : executor_(std::move(executor)),
        timeouts_(timeouts),
        tls_context_(tls_context),
        cache_(cache) {}
  ~relay_client();

  // A connection to `r`'s next hops: a parked one of this I/O thread when
  // caching is on and one is there (reused() tells), else the first next hop
  // that answers with a 2xx banner and EHLO/HELO, upgraded to TLS when
  // offered. On failure a 451 reply.
  asio::awaitable<smtp_reply> open(const route& r, std::string helo_name);
  // MAIL FROM and the first RCPT TO, in one round trip when the next hop
  // offers PIPELINING. On a reused connection that turns out dead at this
  // first command (the next hop closed it a moment ago), once more on a new
  // one. `rcpt` means nothing unless `mail` is positive.
  struct envelope_replies {
    smtp_reply mail;
    smtp_reply rcpt;
  };
  asio::awaitable<envelope_replies> begin(std::string sender, std::optional<std::uint64_t> size,
                                          bool body_8bit, std::string recipient);
  asio::awaitable<smtp_reply> rcpt(std::string recipient);
  // DATA, then `prefix` (our Received header) and the dot-stuffed message.
  asio::awaitable<smtp_reply> data(std::string_view prefix, std::string_view message);
  asio::awaitable<smtp_reply> rset();
  // Ends the next hop's transaction so the connection is in step for the
  // next one: RSET, or QUIT when the next hop will not reset.
  asio::awaitable<void> abandon();
  // Polite QUIT with a short deadline, then close.
  asio::awaitable<void> quit();
  // Done with the connection between transactions: parked for the next
  // session when caching is on, else QUIT.
  asio::awaitable<void> release();

  bool connected() const { return stream_ != nullptr; }
  // Frees the reply buffer while nothing is pending (an idle session).
  void release_buffer() { input_.release_if_empty(); }
  bool reused() const { return reused_; }
  const route* current_route() const { return route_; }
  const std::string& peer() const { return peer_; }  // "ip:port" of the next hop in use
  bool tls() const { return stream_ && stream_->is_tls(); }

 private:
  // `intermediate`: a 3xx reply is what the command may get (DATA); for
  // every other command one is garbage.
  asio::awaitable<smtp_reply> command(std::string line, std::chrono::milliseconds timeout,
                                      bool intermediate = false);
  // Writes `lines` (each ending in CRLF); on failure the reply to give.
  asio::awaitable<std::optional<smtp_reply>> write(std::string lines,
                                                   std::chrono::milliseconds timeout);
  asio::awaitable<envelope_replies> mail_and_rcpt(std::string mail, std::string rcpt);
  asio::awaitable<smtp_reply> read_reply(std::chrono::milliseconds timeout,
                                         bool intermediate = false);
  asio::awaitable<smtp_reply> try_hop(const host_port& hop, const std::string& helo_name);
  asio::awaitable<smtp_reply> connect(const route& r, const std::string& helo_name);
  asio::awaitable<smtp_reply> ehlo(const std::string& helo_name);
  void drop();

  asio::any_io_executor executor_;
  relay_timeouts timeouts_;
  asio::ssl::context* tls_context_;
  relay_cache_settings cache_;
  std::unique_ptr<smtp_stream> stream_;
  line_buffer input_{4096};
  const route* route_ = nullptr;
  std::string peer_;
  std::string pool_key_;  // next hops, EHLO name, TLS use: what a parked connection must match
  std::string helo_name_;
  std::chrono::steady_clock::time_point connected_at_;
  bool reused_ = false;    // taken from the pool
  bool unproven_ = false;  // reused, and no command has had a reply on it yet
  bool has_size_ = false;
  bool has_8bitmime_ = false;
  bool has_pipelining_ = false;
  bool has_starttls_ = false;
};

}  // namespace mxguard::guard
