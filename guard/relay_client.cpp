#include "relay_client.hpp"

#include "deadline.hpp"
#include "relay_pool.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mxguard::guard {

namespace {

using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_reply_lines = 100;
constexpr std::size_t data_chunk = 64 * 1024;

smtp_reply unreachable() {
  return smtp_reply::local_reply(451, "4.4.1 Next hop not reachable, try again later");
}
smtp_reply timed_out() {
  return smtp_reply::local_reply(451, "4.4.2 Next hop timed out, try again later");
}
smtp_reply lost() {
  return smtp_reply::local_reply(451, "4.4.2 Next hop connection lost, try again later");
}
smtp_reply garbled() {
  return smtp_reply::local_reply(451, "4.5.0 Next hop protocol error, try again later");
}

bool ieq_prefix(std::string_view text, std::string_view word) {
  if (text.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(text[i])) != word[i]) return false;
  return text.size() == word.size() || text[word.size()] == ' ';
}

}  // namespace

std::string smtp_reply::to_client() const {
  std::string out;
  auto code_text = std::to_string(code);
  for (std::size_t i = 0; i < lines.size() || i == 0; ++i) {
    if (i) out.append("\r\n");
    out.append(code_text);
    out.push_back(i + 1 < lines.size() ? '-' : ' ');
    if (i < lines.size())
      for (char c : lines[i]) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  return out;
}

std::string smtp_reply::first_line() const {
  return std::to_string(code) + " " + (lines.empty() ? std::string() : lines.front());
}

relay_client::~relay_client() = default;

void relay_client::drop() {
  if (stream_) stream_->close();
  stream_.reset();
  input_.clear();
  route_ = nullptr;
}

asio::awaitable<smtp_reply> relay_client::read_reply(std::chrono::milliseconds timeout,
                                                     bool intermediate) {
  smtp_reply reply;
  auto read_all = [this, &reply, intermediate]() -> asio::awaitable<smtp_reply> {
    for (;;) {
      while (auto line = input_.next()) {
        auto text = line->text;
        if (line->state == line_buffer::status::too_long || text.size() < 3 ||
            !std::isdigit(static_cast<unsigned char>(text[0])) ||
            !std::isdigit(static_cast<unsigned char>(text[1])) ||
            !std::isdigit(static_cast<unsigned char>(text[2])) ||
            (text.size() > 3 && text[3] != ' ' && text[3] != '-'))
          co_return garbled();
        int code = (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
        if (reply.code != 0 && code != reply.code) co_return garbled();
        reply.code = code;
        reply.lines.emplace_back(text.size() > 4 ? text.substr(4) : std::string_view());
        if (text.size() == 3 || text[3] == ' ') {
          if (code < 200 || code > 599 || (code < 400 && code >= 300 && !intermediate))
            co_return garbled();
          co_return reply;
        }
        if (reply.lines.size() > max_reply_lines) co_return garbled();
      }
      std::size_t room;
      char* area = input_.write_area(room);
      auto [ec, n] = co_await stream_->read_some(asio::buffer(area, room));
      if (ec) co_return lost();
      input_.commit(n);
    }
  };
  auto result = co_await within(timeout, read_all());
  if (!result) {
    drop();
    co_return timed_out();
  }
  // After a made-up reply the connection is in an unknown state: never reuse it.
  if (result->local) drop();
  // 421 closes the next hop's channel (RFC 5321 §3.8), not our client's:
  // passed on as it is, it would tell the client to end a session that can
  // go on. The client's command fails with 451 and the next hop's text; the
  // connection is not used again.
  if (result->code == 421) {
    drop();
    result->code = 451;
  }
  co_return std::move(*result);
}

asio::awaitable<std::optional<smtp_reply>> relay_client::write(std::string lines,
                                                               std::chrono::milliseconds timeout) {
  if (!stream_) co_return lost();
  auto written = co_await within(timeout, stream_->write_all(lines));
  if (!written) {
    drop();
    co_return timed_out();
  }
  if (*written) {
    drop();
    co_return lost();
  }
  co_return std::nullopt;
}

asio::awaitable<smtp_reply> relay_client::command(std::string line,
                                                  std::chrono::milliseconds timeout,
                                                  bool intermediate) {
  line.append("\r\n");
  if (auto failed = co_await write(std::move(line), timeout)) co_return std::move(*failed);
  co_return co_await read_reply(timeout, intermediate);
}

asio::awaitable<smtp_reply> relay_client::ehlo(const std::string& helo_name) {
  auto reply = co_await command("EHLO " + helo_name, timeouts_.command);
  if (!stream_) co_return reply;
  if (reply.code >= 500) {
    reply = co_await command("HELO " + helo_name, timeouts_.command);
    has_size_ = has_8bitmime_ = has_pipelining_ = has_starttls_ = false;
    co_return reply;
  }
  has_size_ = has_8bitmime_ = has_pipelining_ = has_starttls_ = false;
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {
    const auto& l = reply.lines[i];
    if (ieq_prefix(l, "SIZE")) has_size_ = true;
    if (ieq_prefix(l, "8BITMIME")) has_8bitmime_ = true;
    if (ieq_prefix(l, "PIPELINING")) has_pipelining_ = true;
    if (ieq_prefix(l, "STARTTLS")) has_starttls_ = true;
  }
  co_return reply;
}

asio::awaitable<smtp_reply> relay_client::try_hop(const host_port& hop,
                                                  const std::string& helo_name) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(executor);
  // A/AAAA only (numeric hosts need no lookup); never MX: the MX of a domain
  // we accept points back at us.
  auto resolved =
      co_await within(timeouts_.connect,
                      resolver.async_resolve(hop.host, std::to_string(hop.port),
                                             asio::ip::resolver_base::numeric_service, use_tuple));
  if (!resolved || std::get<0>(*resolved)) co_return unreachable();
  asio::ip::tcp::socket socket(executor);
  auto connected = co_await within(timeouts_.connect,
                                   asio::async_connect(socket, std::get<1>(*resolved), use_tuple));
  if (!connected || std::get<0>(*connected)) co_return unreachable();
  error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  auto endpoint = socket.remote_endpoint(ignored);
  peer_ = endpoint.address().is_v6()
              ? "[" + endpoint.address().to_string() + "]:" + std::to_string(endpoint.port())
              : endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  stream_ = std::make_unique<smtp_stream>(std::move(socket));
  input_.clear();
  auto banner = co_await read_reply(timeouts_.connect);
  if (banner.code != 220) {
    drop();
    co_return banner.code >= 400 ? banner : unreachable();
  }
  auto hello = co_await ehlo(helo_name);
  if (!hello.positive()) {
    drop();
    co_return hello.code ? hello : unreachable();
  }
  if (has_starttls_ && tls_context_) {
    auto start = co_await command("STARTTLS", timeouts_.command);
    if (start.code == 220 && !input_.empty()) {
      // Bytes after the 220 would be read as a reply inside TLS (the
      // STARTTLS injection of CVE-2011-0411, from the server's side).
      drop();
      co_return unreachable();
    }
    if (start.code == 220) {
      auto handshake = co_await within(timeouts_.tls_handshake,
                                       stream_->handshake_client(*tls_context_, hop.host));
      if (!handshake || *handshake) {
        drop();
        co_return unreachable();
      }
      hello = co_await ehlo(helo_name);
      if (!hello.positive()) {
        drop();
        co_return unreachable();
      }
    } else if (!stream_) {
      co_return unreachable();
    }
  }
  co_return hello;
}

namespace {

std::string pool_key(const route& r, const std::string& helo_name, bool starttls) {
  std::string key = helo_name;
  key += starttls ? "|tls|" : "|plain|";
  for (const auto& hop : r.next_hops) {
    key += hop.host;
    key += ':';
    key += std::to_string(hop.port);
    key += ' ';
  }
  return key;
}

}  // namespace

asio::awaitable<smtp_reply> relay_client::open(const route& r, std::string helo_name) {
  drop();
  reused_ = unproven_ = false;
  pool_key_ = pool_key(r, helo_name, tls_context_ != nullptr);
  helo_name_ = std::move(helo_name);
  if (cache_.enabled()) {
    if (auto parked = relay_pool::of(executor_).take(pool_key_)) {
      stream_ = std::move(parked->stream);
      peer_ = std::move(parked->peer);
      has_size_ = parked->has_size;
      has_8bitmime_ = parked->has_8bitmime;
      has_pipelining_ = parked->has_pipelining;
      connected_at_ = parked->connected_at;
      route_ = &r;
      reused_ = unproven_ = true;
      co_return smtp_reply::local_reply(250, "reusing the connection to " + peer_);
    }
  }
  co_return co_await connect(r, helo_name_);
}

asio::awaitable<smtp_reply> relay_client::connect(const route& r, const std::string& helo_name) {
  drop();
  smtp_reply last = unreachable();
  for (const auto& hop : r.next_hops) {
    last = co_await try_hop(hop, helo_name);
    if (stream_) {
      route_ = &r;
      connected_at_ = std::chrono::steady_clock::now();
      co_return last;
    }
  }
  // Every next hop failed: a transient reply whatever they said, since
  // another hop or a later try may well take the mail.
  if (!last.transient()) last = unreachable();
  co_return last;
}

asio::awaitable<relay_client::envelope_replies> relay_client::begin(
    std::string sender, std::optional<std::uint64_t> size, bool body_8bit, std::string recipient) {
  // Built from the connection's capabilities, which a new one may not share.
  auto mail_line = [&] {
    std::string line = "MAIL FROM:<" + sender + ">";
    if (size && has_size_) line += " SIZE=" + std::to_string(*size);
    if (body_8bit && has_8bitmime_) line += " BODY=8BITMIME";
    return line;
  };
  const route* r = route_;
  auto replies = co_await mail_and_rcpt(mail_line(), "RCPT TO:<" + recipient + ">");
  if (unproven_ && !stream_ && r) {
    // The parked connection died in between (closed, reset, or a 421 as
    // the next hop timed it out just now): that says nothing about the
    // next hop, so a new connection gets the commands.
    unproven_ = reused_ = false;
    auto opened = co_await connect(*r, helo_name_);
    if (!stream_) co_return envelope_replies{opened, opened};
    replies = co_await mail_and_rcpt(mail_line(), "RCPT TO:<" + recipient + ">");
  }
  unproven_ = false;
  co_return replies;
}

asio::awaitable<relay_client::envelope_replies> relay_client::mail_and_rcpt(std::string mail,
                                                                            std::string rcpt) {
  envelope_replies out;
  if (!has_pipelining_) {
    out.mail = co_await command(std::move(mail), timeouts_.command);
    out.rcpt = out.mail;
    if (out.mail.positive()) out.rcpt = co_await command(std::move(rcpt), timeouts_.command);
    co_return out;
  }
  // RFC 2920: one write, one round trip; the replies come in order. After
  // a refused MAIL the RCPT's reply (a 503) is read all the same, to stay in
  // step with the next hop.
  mail += "\r\n";
  mail += rcpt;
  mail += "\r\n";
  if (auto failed = co_await write(std::move(mail), timeouts_.command)) {
    out.mail = out.rcpt = std::move(*failed);
    co_return out;
  }
  out.mail = co_await read_reply(timeouts_.command);
  if (!stream_) {
    out.rcpt = out.mail;
    co_return out;
  }
  out.rcpt = co_await read_reply(timeouts_.command);
  co_return out;
}

asio::awaitable<smtp_reply> relay_client::rcpt(std::string recipient) {
  co_return co_await command("RCPT TO:<" + recipient + ">", timeouts_.command);
}

asio::awaitable<smtp_reply> relay_client::data(std::string_view prefix, std::string_view message) {
  auto go = co_await command("DATA", timeouts_.command, true);
  if (go.code != 354) {
    // Only 354 lets the body follow: any other success would tell our
    // client a message was taken that was never sent.
    if (go.code < 400) {
      drop();
      co_return garbled();
    }
    // A refused DATA leaves the next hop's transaction open (RFC 5321
    // 4.1.1.4 ends it only with the message): closed here, or the
    // connection's next MAIL is a nested one.
    co_await abandon();
    co_return go;
  }
  auto send_all = [&]() -> asio::awaitable<error_code> {
    if (auto ec = co_await stream_->write_all(prefix)) co_return ec;
    dot_stuffer stuffer(message);
    std::string chunk;
    while (stuffer.next(chunk, data_chunk))
      if (auto ec = co_await stream_->write_all(chunk)) co_return ec;
    co_return error_code{};
  };
  auto sent = co_await within(timeouts_.data, send_all());
  if (!sent) {
    drop();
    co_return timed_out();
  }
  if (*sent) {
    drop();
    co_return lost();
  }
  co_return co_await read_reply(timeouts_.data);
}

asio::awaitable<smtp_reply> relay_client::rset() {
  co_return co_await command("RSET", timeouts_.command);
}

asio::awaitable<void> relay_client::abandon() {
  if (!stream_) co_return;
  auto reset = co_await rset();
  if (!reset.positive() && stream_) co_await quit();
}

asio::awaitable<void> relay_client::quit() {
  if (!stream_) co_return;
  co_await command("QUIT", std::min(timeouts_.command, std::chrono::milliseconds(2000)));
  drop();
}

asio::awaitable<void> relay_client::release() {
  if (!stream_) co_return;
  // Left-over bytes would be taken for the next command's reply.
  if (!cache_.enabled() || !input_.empty()) co_return co_await quit();
  relay_pool::of(executor_).park(
      pool_key_,
      {std::move(stream_), peer_, has_size_, has_8bitmime_, has_pipelining_, connected_at_}, cache_,
      executor_);
  drop();
}

}  // namespace mxguard::guard
