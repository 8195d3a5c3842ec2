#include "session.hpp"

#include <ctime>
#include <functional>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mxguard/ops/log.hpp"
#include "mxguard/scan/content.hpp"
#include "mxguard/scan/scanner.hpp"
#include "relay_client.hpp"
#include "smtp_framing.hpp"
#include "smtp_stream.hpp"
#include "smtp_syntax.hpp"

namespace mxguard::guard {

namespace {

using clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Time allowed to deliver a last reply (421 on timeout) to a client that may
// not be reading any more.
constexpr std::chrono::seconds goodbye_time{10};

std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

// A temporary refusal in place of the greeting. RFC 5321 knows only 220,
// 554 and 421 there (§4.3.2, §3.8): a check's 451 (the state store away
// with redis.failure = "tempfail") goes out as 421 with its text, and the
// connection is closed as 421 says.
std::string greeting_tempfail(std::string reply) {
  if (!reply.starts_with("421") && reply.size() >= 3) reply.replace(0, 3, "421");
  return reply;
}

mailbox split_mailbox(const std::string& address) {
  auto at = address.rfind('@');
  if (at == std::string::npos) return {address, ""};
  return {address.substr(0, at), address.substr(at + 1)};
}

bool is_refusal(const verdict& v) {
  return v.what == action::reject || v.what == action::defer || v.what == action::drop;
}

std::string endpoint_text(const asio::ip::address& a, std::uint16_t port) {
  return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), port)
                   : fmt::format("{}:{}", a.to_string(), port);
}

class session final : public std::enable_shared_from_this<session>, public live_sessions::member {
 public:
  session(asio::ip::tcp::socket socket, asio::ip::tcp::endpoint client,
          std::shared_ptr<const runtime_snapshot> snapshot, daemon_state& state, session_slot slot,
          bool allowlisted, std::optional<verdict> preset_refusal, bool client_known)
      : snapshot_(std::move(snapshot)),
        cfg_(*snapshot_->cfg),
        limits_(cfg_.values.server),
        state_(state),
        slot_(std::move(slot)),
        stream_(std::move(socket)),
        in_(static_cast<std::size_t>(limits_.max_line_length)),
        watchdog_(stream_.socket().get_executor()),
        allowlisted_(allowlisted),
        preset_refusal_(preset_refusal ? std::make_unique<verdict>(std::move(*preset_refusal))
                                       : nullptr) {
    facts_.id = fmt::format("{:012x}", state.next_session_number());
    facts_.client = normalize(client.address());
    facts_.client_port = client.port();
    facts_.trusted = client_known && cfg_.is_trusted(facts_.client);
    client_text_ = endpoint_text(facts_.client, facts_.client_port);
  }
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session() {
    if (registered_) state_.sessions().remove(*this);
  }

  // The session's phases, each a coroutine run by drive(): run() (connect
  // stage and greeting), serve() (commands, as long as the client has more
  // to say) and close(). Between commands an idle plain-TCP session ends its
  // serve() coroutine and waits for the client with a callback: its frames
  // are freed, and an idle session costs its object, its socket and a wait.
  void start() {
    // Registered once shared: the drain reaches members through weak_from_this().
    state_.sessions().add(*this);
    registered_ = true;
    drive(run());
  }

  // live_sessions::member
  std::shared_ptr<live_sessions::member> share() override { return weak_from_this().lock(); }
  void wake_for_drain() override {
    asio::post(watchdog_.get_executor(), [self = shared_from_this()] {
      // Only a wait for the next command between transactions is cut short;
      // the loop's drain check then answers 421.
      if (self->waiting_for_command_ && !self->envelope_.open && !self->finished_) {
        self->drain_woken_ = true;
        self->stream_.cancel();
      }
    });
  }

 private:
  asio::awaitable<void> run();
  asio::awaitable<void> serve();
  asio::awaitable<void> close();
  void drive(asio::awaitable<void> phase);
  void wait_for_client();

  // --- deadlines ---------------------------------------------------------
  // A callback timer rather than a coroutine, for the same reason.
  void arm_watchdog();
  void set_deadline(clock::duration within) {
    deadline_ = std::min(clock::now() + within, session_deadline_);
    if (deadline_ < watchdog_.expiry()) watchdog_.cancel();  // wake it to re-arm earlier
  }

  // --- I/O ---------------------------------------------------------------
  void reply(std::string_view text) {
    out_.append(text);
    out_.append("\r\n");
  }
  asio::awaitable<bool> flush();
  // The next command line; nullopt when the client is gone or the time is
  // up, or (with `may_idle`, idle_ set) when serve() is to end and wait.
  asio::awaitable<std::optional<line_buffer::line>> next_command(bool may_idle = false);
  // Strings by value: a coroutine's reference parameters would outlive the
  // temporaries callers build their replies in.
  asio::awaitable<void> close_with(std::string text);
  asio::awaitable<void> refused_dialogue(std::string greeting);
  asio::awaitable<bool> talked_early();

  // --- protocol ----------------------------------------------------------
  asio::awaitable<void> dispatch(const line_buffer::line& line);
  asio::awaitable<void> refuse(std::string stage_name, std::string rule, std::string text);
  asio::awaitable<void> on_helo(const command& cmd, bool extended);
  asio::awaitable<void> on_mail(const command& cmd);
  asio::awaitable<void> on_rcpt(const command& cmd);
  asio::awaitable<void> on_data();
  asio::awaitable<void> on_starttls(const command& cmd);
  asio::awaitable<void> on_rset();
  asio::awaitable<void> receive_message(data_reader& reader, bool& budget_exceeded);
  asio::awaitable<void> deliver(data_reader& reader);
  asio::awaitable<void> relay_message(
      std::string prefix, std::shared_ptr<const std::string> message,
      const scan::content_decision& decision,
      std::function<void(std::string_view, std::string_view, std::string_view, std::string_view)>
          log_transaction);
  asio::awaitable<void> abandon_relay_transaction();
  relay_client& relay();
  bool relay_connected() const { return relay_ && relay_->connected(); }
  void reset_transaction();
  std::optional<verdict> bounce_rules(mailbox& rcpt);
  asio::awaitable<void> count_refused_recipient();
  std::string outbound_sender(const mailbox& first_rcpt) const;
  std::string received_header() const;
  bool apply_policy_refusal(const verdict& v, std::string_view stage_name);
  // The one REJECT line of a refusal: who, at which stage, by which rule, with
  // which reply (and, for a recipient, whom it was for).
  void log_reject(std::string_view stage_name, std::string_view rule, std::string_view text,
                  std::string_view rcpt = {}) const;
  check_input input(const mailbox* rcpt = nullptr, std::string_view message = {}) const {
    return {facts_, envelope_, rcpt, message, std::chrono::system_clock::now()};
  }

  std::shared_ptr<const runtime_snapshot> snapshot_;
  const config& cfg_;
  const server_settings& limits_;
  daemon_state& state_;
  session_slot slot_;
  smtp_stream stream_;
  line_buffer in_;
  std::string out_;
  asio::steady_timer watchdog_;
  // Made at the first accepted recipient: most sessions never relay.
  std::unique_ptr<relay_client> relay_;
  session_facts facts_;
  envelope envelope_;
  const route* route_ = nullptr;     // of the open transaction
  bool relay_mail_sent_ = false;     // the next hop has our MAIL FROM for this transaction
  std::int64_t reserved_bytes_ = 0;  // our share of daemon_state::buffered_bytes
  std::string client_text_;
  bool allowlisted_;
  // Verdicts held by pointer, as the relay client: an idle session is small.
  std::unique_ptr<verdict> preset_refusal_;        // decided at admission (access REJECT)
  bool lease_held_ = false;                        // limits.concurrent_per_ip
  std::unique_ptr<verdict> pending_refusal_;       // decided at connect, enforced at RCPT
  std::unique_ptr<verdict> pending_mail_refusal_;  // decided at MAIL, for this transaction

  clock::time_point started_ = clock::now();
  clock::time_point session_deadline_;
  clock::time_point deadline_ = clock::time_point::max();
  bool expired_ = false;              // the watchdog fired
  bool finished_ = false;             // the session is over; the watchdog stops
  bool closing_ = false;              // close() has been started
  bool idle_ = false;                 // serve() ended to wait for the client
  std::optional<error_code> woken_;   // the idle wait's outcome, for the next read
  bool waiting_for_command_ = false;  // blocked on the client in next_command or idle
  bool drain_woken_ = false;          // that wait was cut short by a drain
  bool registered_ = false;           // in daemon_state::sessions()
  bool quit_ = false;
  bool helo_seen_ = false;
  std::int64_t commands_ = 0;
  std::int64_t errors_ = 0;
  std::int64_t messages_ = 0;
  std::int64_t refused_ = 0;
};

// --- deadlines -------------------------------------------------------------

void session::arm_watchdog() {
  watchdog_.expires_at(deadline_);
  // Cancelled whenever an earlier deadline is set (set_deadline), and at the end.
  watchdog_.async_wait([self = shared_from_this()](error_code) {
    if (self->finished_) return;
    if (clock::now() >= self->deadline_) {
      // cancel() stops only an operation pending in the reactor; between
      // two (a phase ending, a read completing) there is none. expired_ is
      // checked before every wait, and the cancel is repeated until the
      // session has ended.
      self->expired_ = true;
      self->deadline_ = clock::now() + std::chrono::milliseconds(200);
      self->stream_.cancel();
    }
    self->arm_watchdog();
  });
}

// --- phases ----------------------------------------------------------------

void session::drive(asio::awaitable<void> phase) {
  asio::co_spawn(stream_.socket().get_executor(), std::move(phase),
                 [self = shared_from_this()](std::exception_ptr e) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       ops::log_message(ops::severity::error, "SESSION_ERROR", ex.what());
                     } catch (...) {
                       ops::log_message(ops::severity::error, "SESSION_ERROR", "unknown exception");
                     }
                     self->quit_ = true;
                     self->idle_ = false;
                   }
                   if (self->idle_ && !self->quit_)
                     self->wait_for_client();
                   else if (!self->closing_) {
                     self->closing_ = true;
                     self->drive(self->close());
                   } else if (!self->finished_) {  // close() itself failed
                     self->finished_ = true;
                     self->watchdog_.cancel();
                     self->stream_.close();
                   }
                 });
}

void session::wait_for_client() {
  idle_ = false;
  if (relay_) relay_->release_buffer();
  // A drain that began while serve() was ending: its wake found no wait to cut.
  if (!envelope_.open && state_.draining().load(std::memory_order_relaxed)) {
    drive(serve());
    return;
  }
  waiting_for_command_ = true;
  stream_.socket().async_wait(asio::ip::tcp::socket::wait_read,
                              [self = shared_from_this()](error_code ec) {
                                self->waiting_for_command_ = false;
                                self->woken_ = ec;
                                self->drive(self->serve());
                              });
}

// --- I/O -------------------------------------------------------------------

asio::awaitable<bool> session::flush() {
  if (out_.empty()) co_return true;
  auto ec = co_await stream_.write_all(out_);
  out_.clear();
  co_return !ec;
}

asio::awaitable<std::optional<line_buffer::line>> session::next_command(bool may_idle) {
  // The whole line within command_timeout: back from an idle wait, the
  // clock started by the call that began waiting runs on (else a client
  // trickling a byte at a time would restart it with every byte).
  if (!woken_) set_deadline(limits_.command_timeout);
  for (;;) {
    if (auto line = in_.next()) co_return line;
    if (expired_) co_return std::nullopt;
    if (!co_await flush()) co_return std::nullopt;
    // Hold no input buffer while the client is silent.
    in_.release_if_empty();
    if (woken_) {
      // Back from an idle wait: readable, or cancelled by the watchdog, or
      // the connection failed.
      auto ec = *woken_;
      woken_.reset();
      if (ec) co_return std::nullopt;
    } else if (may_idle && !stream_.is_tls()) {
      // With TLS the library may hold decrypted bytes the socket does not show.
      idle_ = true;
      co_return std::nullopt;
    } else {
      waiting_for_command_ = true;
      auto ec = co_await stream_.wait_readable();
      waiting_for_command_ = false;
      if (ec) co_return std::nullopt;
    }
    std::size_t room;
    char* area = in_.write_area(room);
    waiting_for_command_ = true;  // with TLS, the wait is the read
    auto [ec, n] = co_await stream_.read_some(asio::buffer(area, room));
    waiting_for_command_ = false;
    if (ec) co_return std::nullopt;
    in_.commit(n);
  }
}

asio::awaitable<void> session::close_with(std::string text) {
  if (!text.empty()) {
    expired_ = false;
    set_deadline(goodbye_time);
    reply(text);
    co_await flush();
  }
  quit_ = true;
}

void session::log_reject(std::string_view stage_name, std::string_view rule, std::string_view text,
                         std::string_view rcpt) const {
  ops::event e("REJECT");
  e.add("stage", stage_name).add("rule", rule).add("client", client_text_).add("sid", facts_.id);
  if (!facts_.helo.empty()) e.add("helo", facts_.helo);
  if (envelope_.open) e.add("from", envelope_.sender.text());
  if (!rcpt.empty()) e.add("to", rcpt);
  if (!text.empty()) e.add("reply", text);
  e.emit();
  state_.blocks().event(rule, facts_.client, facts_.allowlisted || facts_.trusted);
  state_.observe().refused(
      stage_name, rule, text, facts_.client.to_string(),
      envelope_.open && !envelope_.null_sender ? envelope_.sender.domain : std::string_view());
}

// The early-talker test (postscreen's pregreet): a `220-` teaser line, then
// silence for server.greet_pause. An SMTP client must wait for the final
// `220 ` line; spam engines that fire their commands blind talk into the
// pause. True when the client sent bytes before the greeting.
asio::awaitable<bool> session::talked_early() {
  using namespace asio::experimental::awaitable_operators;
  reply(fmt::format("220-{} {}", limits_.hostname, limits_.banner));
  if (!co_await flush()) co_return false;
  asio::steady_timer pause(stream_.socket().get_executor(), limits_.greet_pause);
  auto first = co_await (stream_.wait_readable() || pause.async_wait(use_tuple));
  if (first.index() != 0 || std::get<0>(first)) co_return false;
  // Readable: bytes, or just the client hanging up (not a protocol error).
  char probe;
  error_code ec;
  auto n = stream_.socket().receive(asio::buffer(&probe, 1), asio::socket_base::message_peek, ec);
  co_return !ec && n > 0;
}

// RFC 5321 §3.1: a server that greets with 554 must not close at once but
// wait for QUIT, answering 503 to anything else. Kept short and cheap: a few
// commands within server.refused_session_time, then the connection is closed
// anyway.
asio::awaitable<void> session::refused_dialogue(std::string greeting) {
  reply(greeting);
  // The whole dialogue, farewell included, within refused_session_time: as
  // the session's own end, since each command would otherwise get the full
  // command_timeout (a silent refused client held its slot for minutes).
  session_deadline_ = std::min(session_deadline_, clock::now() + limits_.refused_session_time);
  for (int commands = 0; commands < 5 && !quit_ && clock::now() < session_deadline_; ++commands) {
    auto line = co_await next_command();
    if (!line) break;
    if (line->state == line_buffer::status::ok && parse_command(line->text).what == verb::quit) {
      reply(fmt::format("221 2.0.0 {} closing connection", limits_.hostname));
      break;
    }
    reply("503 5.5.1 Error: no service for you here, send QUIT");
  }
  if (!expired_) co_await flush();
  quit_ = true;
}

// --- protocol ----------------------------------------------------------------

asio::awaitable<void> session::run() {
  session_deadline_ = started_ + limits_.session_timeout;
  arm_watchdog();

  error_code ignored;
  stream_.socket().set_option(asio::ip::tcp::no_delay(true), ignored);
  ops::event("CONNECT")
      .add("sid", facts_.id)
      .add("client", client_text_)
      .add("trusted", facts_.trusted ? "yes" : "no")
      .add("allowlisted", allowlisted_ ? "yes" : "no")
      .emit();

  bool refused_at_connect = false;
  facts_.allowlisted = allowlisted_;
  // The shared pass cache: a client that passed the tests lately (on this
  // gateway or its pair) is not tested again.
  const auto pass_ttl = cfg_.values.limits.pass_cache_ttl;
  const bool pass_tests = pass_ttl.count() > 0 && !preset_refusal_ && !allowlisted_ &&
                          state_.store && (cfg_.dnsbl_enabled || limits_.greet_pause.count() > 0);
  std::string pass_key;
  if (pass_tests) {
    pass_key = "pass:" + client_key(facts_.client, cfg_.values.server.ipv6_prefix).to_string();
    facts_.passed_before = co_await state_.store->passed(pass_key, ratelimit::wall_clock_now());
  }
  if (preset_refusal_ || (!allowlisted_ && !snapshot_->policy->empty_for(stage::connect))) {
    // An access-list REJECT was decided at admission; other checks run now.
    // (if/else, not ?: — GCC 12 miscompiles a conditional holding co_await.)
    verdict v;
    if (preset_refusal_)
      v = *preset_refusal_;
    else {
      const auto started = clock::now();
      v = co_await snapshot_->policy->run(stage::connect, input());
      if (cfg_.dnsbl_enabled) state_.observe().dnsbl_scored(clock::now() - started);
    }
    facts_.dnsbl_score = static_cast<int>(v.score);
    if (v.what == action::accept) facts_.allowlisted = true;
    if (is_refusal(v) && v.at_rcpt) {
      pending_refusal_ = std::make_unique<verdict>(v);
    } else if (is_refusal(v)) {
      ++refused_;
      if (!v.reply.starts_with("5")) v.reply = greeting_tempfail(std::move(v.reply));
      log_reject("connect", v.rule, v.reply);
      if (v.reply.starts_with("5"))
        co_await refused_dialogue(v.reply);
      else
        co_await close_with(v.reply);  // 421: closing is what it says
      refused_at_connect = true;
    }
  }

  if (!refused_at_connect && snapshot_->limits) {
    auto v = co_await snapshot_->limits->acquire_lease(facts_, lease_held_);
    if (is_refusal(v)) {
      ++refused_;
      v.reply = greeting_tempfail(std::move(v.reply));
      log_reject("connect", v.rule, v.reply);
      co_await close_with(v.reply);
      refused_at_connect = true;
    }
  }

  if (!refused_at_connect && limits_.greet_pause.count() > 0 && !facts_.allowlisted &&
      !facts_.trusted && !facts_.passed_before && co_await talked_early()) {
    const std::string text = "554 5.5.1 Error: you talked before the greeting";
    ++refused_;
    log_reject("connect", "pregreet", text);
    co_await refused_dialogue(text);
    refused_at_connect = true;
  }

  if (refused_at_connect)
    state_.observe().connection_refused();
  else
    state_.observe().connection_accepted();
  // Passed (not merely let in at RCPT with a pending refusal): remember it.
  if (pass_tests && !refused_at_connect && !facts_.passed_before && !pending_refusal_)
    co_await state_.store->mark_passed(pass_key, pass_ttl.count(), ratelimit::wall_clock_now());
  if (refused_at_connect) {
    quit_ = true;
    co_return;
  }
  set_deadline(limits_.command_timeout);
  reply(fmt::format("220 {} {}", limits_.hostname, limits_.banner));
  co_await serve();
}

asio::awaitable<void> session::serve() {
  while (!quit_) {
    // Draining: between transactions a session ends at its next command
    // (RFC 5321 3.8), so that the drain does not wait for it to time out.
    if (!envelope_.open && state_.draining().load(std::memory_order_relaxed)) {
      co_await close_with(
          fmt::format("421 4.3.2 {} Service shutting down, closing", limits_.hostname));
      break;
    }
    auto line = co_await next_command(true);
    if (!line) {
      if (idle_) co_return;
      if (drain_woken_ && !expired_) {
        drain_woken_ = false;
        continue;  // to the drain check above
      }
      if (expired_) {
        ops::event("TIMEOUT")
            .add("sid", facts_.id)
            .add("client", client_text_)
            .add("stage", envelope_.open ? "transaction" : "command")
            .emit();
        co_await close_with(fmt::format("421 4.4.2 {} Error: timeout exceeded", limits_.hostname));
      }
      break;
    }
    co_await dispatch(*line);
    if (!quit_ && !expired_ && commands_ >= limits_.max_commands) {
      log_reject("session", "max_commands", "421 4.7.0 Error: too many commands");
      co_await close_with("421 4.7.0 Error: too many commands");
    }
  }
  quit_ = true;
  co_await flush();
}

asio::awaitable<void> session::close() {
  // Between transactions the connection can serve the next session.
  if (relay_ && relay_mail_sent_)
    co_await relay_->quit();
  else if (relay_)
    co_await relay_->release();
  reset_transaction();
  if (lease_held_) co_await snapshot_->limits->release_lease(facts_);
  finished_ = true;
  watchdog_.cancel();
  stream_.close();
  ops::event("DISCONNECT")
      .add("sid", facts_.id)
      .add("client", client_text_)
      .add("helo", facts_.helo)
      .add("commands", commands_)
      .add("errors", errors_)
      .add("messages", messages_)
      .add("refused", refused_)
      .add("duration_ms",
           std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started_).count())
      .emit();
}

asio::awaitable<void> session::refuse(std::string stage_name, std::string rule, std::string text) {
  ++errors_;
  log_reject(stage_name, rule, text);
  if (errors_ >= limits_.max_errors) {
    reply(text);
    co_await close_with("421 4.7.0 Error: too many errors");
    co_return;
  }
  if (errors_ > limits_.soft_error_delay_after && limits_.error_delay.count() > 0) {
    // Tarpit: a client that keeps failing gets slower answers (Postfix's
    // smtpd_error_sleep_time); a real MTA rarely gets here.
    co_await flush();
    asio::steady_timer delay(stream_.socket().get_executor(), limits_.error_delay);
    co_await delay.async_wait(use_tuple);
  }
  reply(text);
}

asio::awaitable<void> session::dispatch(const line_buffer::line& line) {
  ++commands_;
  switch (line.state) {
    case line_buffer::status::too_long:
      co_return co_await refuse("command", "max_line_length", "500 5.5.2 Error: line too long");
    case line_buffer::status::bare_lf:
      co_return co_await refuse("command", "bare_lf", "500 5.5.2 Error: bare <LF> received");
    case line_buffer::status::ok:
      break;
  }
  switch (inspect_command_line(line.text)) {
    case line_problem::none:
      break;
    case line_problem::bare_cr:
      co_return co_await refuse("command", "bare_cr", "500 5.5.2 Error: bare <CR> received");
    case line_problem::nul:
      co_return co_await refuse("command", "nul", "500 5.5.2 Error: NUL character in command");
    case line_problem::eight_bit:
      co_return co_await refuse("command", "8bit",
                                "500 5.5.2 Error: 8-bit characters in command (no SMTPUTF8)");
    case line_problem::control:
      co_return co_await refuse("command", "control",
                                "500 5.5.2 Error: control character in command");
  }
  auto cmd = parse_command(line.text);
  switch (cmd.what) {
    case verb::helo:
      co_return co_await on_helo(cmd, false);
    case verb::ehlo:
      co_return co_await on_helo(cmd, true);
    case verb::mail:
      co_return co_await on_mail(cmd);
    case verb::rcpt:
      co_return co_await on_rcpt(cmd);
    case verb::data:
      if (!cmd.argument.empty())
        co_return co_await refuse("data", "syntax", "501 5.5.4 Syntax: DATA");
      co_return co_await on_data();
    case verb::rset:
      if (!cmd.argument.empty())
        co_return co_await refuse("rset", "syntax", "501 5.5.4 Syntax: RSET");
      co_return co_await on_rset();
    case verb::noop:
      reply("250 2.0.0 Ok");
      co_return;
    case verb::quit:
      reply(fmt::format("221 2.0.0 {} closing connection", limits_.hostname));
      quit_ = true;
      co_return;
    case verb::help:
      reply("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY STARTTLS");
      co_return;
    case verb::vrfy:
      if (cmd.argument.empty())
        co_return co_await refuse("vrfy", "syntax", "501 5.5.4 Syntax: VRFY address");
      // Never reveal which users exist (directory harvesting); 252 is the
      // RFC 5321 §3.5.3 answer for "cannot verify, but will try".
      reply("252 2.0.0 Cannot VRFY user; try RCPT to attempt delivery");
      co_return;
    case verb::expn:
      co_return co_await refuse("expn", "expn", "502 5.5.1 Error: EXPN not available");
    case verb::starttls:
      co_return co_await on_starttls(cmd);
    case verb::auth:
      co_return co_await refuse("auth", "auth", "503 5.5.1 Error: authentication not enabled");
    case verb::bdat:
      co_return co_await refuse("bdat", "bdat", "502 5.5.1 Error: CHUNKING not offered");
    case verb::unknown:
      break;
  }
  // HTTP and proxy requests sent to port 25 are attacks or misdirected
  // scanners: stop at once (Postfix smtpd_forbidden_commands).
  static constexpr std::string_view forbidden[] = {"GET", "POST", "HEAD", "CONNECT", "PUT"};
  for (auto f : forbidden)
    if (cmd.name == f) {
      ++errors_;
      log_reject("command", "forbidden_command:" + std::string(cmd.name),
                 "421 4.7.0 Error: non-SMTP command, closing");
      co_return co_await close_with("421 4.7.0 Error: non-SMTP command, closing");
    }
  co_await refuse("command", "unknown_command", "500 5.5.2 Error: command not recognized");
}

asio::awaitable<void> session::on_helo(const command& cmd, bool extended) {
  if (!valid_helo(cmd.argument))
    co_return co_await refuse(
        "helo", "syntax",
        extended ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
  co_await abandon_relay_transaction();
  reset_transaction();
  facts_.helo = std::string(cmd.argument);
  facts_.esmtp = extended;
  auto v = co_await snapshot_->policy->run(stage::helo, input());
  if (apply_policy_refusal(v, "helo")) co_return;
  helo_seen_ = true;
  if (!extended) {
    reply(fmt::format("250 {}", limits_.hostname));
    co_return;
  }
  reply(fmt::format("250-{}", limits_.hostname));
  reply("250-PIPELINING");
  reply(fmt::format("250-SIZE {}", limits_.max_message_size));
  if (snapshot_->server_tls && !stream_.is_tls()) reply("250-STARTTLS");
  reply("250-8BITMIME");
  reply("250 ENHANCEDSTATUSCODES");
}

relay_client& session::relay() {
  if (!relay_)
    relay_ = std::make_unique<relay_client>(
        stream_.socket().get_executor(),
        relay_timeouts{cfg_.values.relay.connect_timeout, cfg_.values.relay.command_timeout,
                       cfg_.values.relay.data_timeout, cfg_.values.tls.handshake_timeout},
        cfg_.values.tls.relay_starttls ? &state_.relay_tls() : nullptr,
        relay_cache_settings{cfg_.values.relay.connection_cache_time,
                             cfg_.values.relay.connection_reuse_time,
                             static_cast<std::size_t>(cfg_.values.relay.connection_cache_size)});
  return *relay_;
}

asio::awaitable<void> session::abandon_relay_transaction() {
  if (relay_mail_sent_ && relay_connected()) co_await relay_->abandon();
  relay_mail_sent_ = false;
}

void session::reset_transaction() {
  envelope_ = envelope{};
  pending_mail_refusal_.reset();
  route_ = nullptr;
  if (reserved_bytes_) {
    state_.buffered_bytes().fetch_sub(reserved_bytes_, std::memory_order_relaxed);
    reserved_bytes_ = 0;
  }
}

bool session::apply_policy_refusal(const verdict& v, std::string_view stage_name) {
  if (!is_refusal(v)) return false;
  if (v.at_rcpt && stage_name != "rcpt") {
    // Enforced at the first RCPT (dnsbl.action = "rcpt"); a MAIL-stage
    // decision is about this transaction's sender only.
    auto& pending = stage_name == "mail" ? pending_mail_refusal_ : pending_refusal_;
    if (!pending) pending = std::make_unique<verdict>(v);
    return false;
  }
  ++errors_;
  ++refused_;
  log_reject(stage_name, v.rule, v.reply);
  reply(v.reply);
  if (v.what == action::drop) quit_ = true;
  return true;
}

asio::awaitable<void> session::on_mail(const command& cmd) {
  if (!helo_seen_)
    co_return co_await refuse("mail", "sequence", "503 5.5.1 Error: send HELO/EHLO first");
  if (envelope_.open)
    co_return co_await refuse("mail", "sequence", "503 5.5.1 Error: nested MAIL command");
  auto path = parse_path_argument(cmd.argument, "FROM");
  if (path.error != path_error::none)
    co_return co_await refuse("mail", "syntax",
                              path.error == path_error::too_long
                                  ? "501 5.1.7 Sender address too long"
                                  : "501 5.1.7 Bad sender address syntax");
  envelope next;
  next.null_sender = path.null_sender;
  next.sender = path.address;
  for (const auto& [key, value] : path.parameters) {
    if (key == "SIZE") {
      auto size = parse_size_parameter(value);
      if (!size) co_return co_await refuse("mail", "syntax", "501 5.5.4 Bad SIZE parameter");
      if (*size > static_cast<std::uint64_t>(limits_.max_message_size))
        co_return co_await refuse("mail", "max_message_size",
                                  "552 5.3.4 Message size exceeds fixed limit");
      next.declared_size = *size;
    } else if (key == "BODY") {
      std::string body = lower_ascii(value);
      if (body != "7bit" && body != "8bitmime")
        co_return co_await refuse("mail", "syntax", "501 5.5.4 Bad BODY parameter");
      next.body_8bit = body == "8bitmime";
    } else {
      co_return co_await refuse("mail", "parameter",
                                "555 5.5.4 Unsupported option: " + key.substr(0, 40));
    }
  }
  next.open = true;
  envelope_ = std::move(next);
  auto v = co_await snapshot_->policy->run(stage::mail, input());
  if (apply_policy_refusal(v, "mail")) {
    envelope_ = envelope{};
    co_return;
  }
  reply("250 2.1.0 Ok");
}

asio::awaitable<void> session::on_rcpt(const command& cmd) {
  if (!envelope_.open)
    co_return co_await refuse("rcpt", "sequence", "503 5.5.1 Error: need MAIL command");
  auto path = parse_path_argument(cmd.argument, "TO");
  if (path.error != path_error::none || path.null_sender)
    co_return co_await refuse("rcpt", "syntax",
                              path.error == path_error::too_long
                                  ? "501 5.1.3 Recipient address too long"
                                  : "501 5.1.3 Bad recipient address syntax");
  if (!path.parameters.empty())
    co_return co_await refuse(
        "rcpt", "parameter",
        "555 5.5.4 Unsupported option: " + path.parameters[0].first.substr(0, 40));
  if (pending_refusal_ || pending_mail_refusal_) {
    auto v = pending_refusal_ ? *pending_refusal_ : *pending_mail_refusal_;
    v.at_rcpt = false;
    // Log whom the refused client wanted to reach: the point of waiting.
    log_reject("rcpt", v.rule, v.reply, path.address.text());
    ++errors_;
    ++refused_;
    reply(v.reply);
    co_return;
  }
  if (static_cast<std::int64_t>(envelope_.recipients.size()) >= limits_.max_recipients)
    co_return co_await refuse("rcpt", "max_recipients", "452 4.5.3 Error: too many recipients");

  mailbox rcpt = path.address;
  if (rcpt.domain.empty()) {
    // <postmaster> without a domain (RFC 5321 §4.5.1) goes to the first
    // exact relay domain's postmaster.
    for (const auto& d : cfg_.relay_domains.patterns())
      if (!d.starts_with('.')) {
        rcpt.domain = d;
        break;
      }
    if (rcpt.domain.empty())
      co_return co_await refuse("rcpt", "relay", "554 5.7.1 Relay access denied");
  }
  // Relay tricks are refused for everyone, trusted clients included: no
  // legitimate MTA needs them, and an inner server might honour them.
  if (path.trick != path_error::none)
    co_return co_await refuse("rcpt", std::string("relay_trick:") + to_string(path.trick),
                              "554 5.7.1 Relay access denied");
  const bool local = cfg_.relay_domains.matches(rcpt.domain);
  const route* r = cfg_.routes.find(rcpt.domain);
  if ((!local && !facts_.trusted) || !r)
    co_return co_await refuse("rcpt", "relay", "554 5.7.1 Relay access denied");
  // Routes with the same next hops are one destination; only a different
  // destination needs a transaction of its own. Until the next hop has
  // accepted a recipient, its transaction (a MAIL, maybe refused recipients)
  // can start over, elsewhere or on a new connection, unseen by the client.
  if (relay_mail_sent_ && envelope_.recipients.empty() &&
      (!relay_connected() || !route_ || r->next_hops != route_->next_hops)) {
    co_await abandon_relay_transaction();
    route_ = nullptr;
  }
  if (route_ && r != route_ && r->next_hops != route_->next_hops)
    co_return co_await refuse(
        "rcpt", "route_split",
        "452 4.5.3 Error: recipients for another route, send them in a new transaction");
  if (!envelope_.recipients.empty() && !relay_connected())
    co_return co_await refuse("rcpt", "next_hop",
                              "451 4.4.2 Next hop connection lost, try again later");

  if (auto refusal = bounce_rules(rcpt))
    co_return co_await refuse("rcpt", refusal->rule, refusal->reply);
  if (envelope_.discard) {
    // A double bounce to be dropped: nothing to relay, nobody to ask.
    envelope_.recipients.push_back(std::move(rcpt));
    reply("250 2.1.5 Ok");
    co_return;
  }
  if (const auto* users = cfg_.recipients_of(rcpt.domain);
      users && !users->contains(lower_ascii(rcpt.local))) {
    ++refused_;
    co_await refuse("rcpt", "recipient_list",
                    "550 5.1.1 <" + rcpt.text() + ">: Recipient address rejected: User unknown");
    co_return co_await count_refused_recipient();
  }

  auto v = co_await snapshot_->policy->run(stage::rcpt, input(&rcpt));
  if (apply_policy_refusal(v, "rcpt")) co_return;

  // The before-queue relay: the next hop decides on the recipient while the
  // client waits, so unknown users are refused here, never bounced later.
  if (!relay_mail_sent_) {
    if (relay_connected() && relay_->current_route()->next_hops != r->next_hops)
      co_await relay_->quit();
    if (!relay_connected()) {
      const auto& helo =
          cfg_.values.relay.helo_name.empty() ? limits_.hostname : cfg_.values.relay.helo_name;
      auto opened = co_await relay().open(*r, helo);
      state_.next_hop_reachable().store(relay_connected(), std::memory_order_relaxed);
      if (relay_connected()) state_.observe().next_hop_connection(relay_->reused());
      if (!relay_connected()) {
        ops::event("NEXTHOP")
            .add("sid", facts_.id)
            .add("route", r->domain)
            .add("result", opened.first_line())
            .emit();
        co_return co_await refuse("rcpt", "next_hop", opened.to_client());
      }
    }
  }
  // The first recipient goes with MAIL FROM (pipelined when the next hop
  // allows), the others on their own.
  smtp_reply answer;
  if (!relay_mail_sent_) {
    auto replies = co_await relay_->begin(outbound_sender(rcpt), envelope_.declared_size,
                                          envelope_.body_8bit, rcpt.text());
    if (!replies.mail.positive())
      co_return co_await refuse("rcpt", "next_hop_mail", replies.mail.to_client());
    relay_mail_sent_ = true;
    route_ = r;  // the next hop's transaction is this route's, whatever it says to the RCPT
    answer = std::move(replies.rcpt);
  } else {
    answer = co_await relay().rcpt(rcpt.text());
  }
  if (!answer.positive()) {
    ++refused_;
    co_await refuse("rcpt", answer.local ? "next_hop" : "next_hop_rcpt", answer.to_client());
    if (answer.code >= 500) co_await count_refused_recipient();
    co_return;
  }
  envelope_.recipients.push_back(std::move(rcpt));
  reply(answer.to_client());
}

// A client refusing too many unknown recipients is harvesting addresses.
asio::awaitable<void> session::count_refused_recipient() {
  if (!snapshot_->limits || quit_) co_return;
  auto v = co_await snapshot_->limits->count_refused_recipient(facts_);
  if (!is_refusal(v)) co_return;
  log_reject("rcpt", v.rule, v.reply);
  co_await close_with(v.reply);
}

// Bounce and double-bounce suppression for one recipient; may rewrite it
// (a valid BATV tag is stripped) or mark the transaction for discarding.
std::optional<verdict> session::bounce_rules(mailbox& rcpt) {
  auto refusal = [](std::string rule, std::string reply) {
    verdict v;
    v.what = action::reject;
    v.rule = std::move(rule);
    v.reply = std::move(reply);
    return v;
  };
  const bool batv_domain = cfg_.batv_domains.matches(rcpt.domain);
  if (!envelope_.null_sender) {
    // Replies to a tagged address (auto-responders): strip a valid tag.
    if (batv_domain) {
      auto check = batv_verify(cfg_.batv, rcpt.text(), days_since_epoch());
      if (check.status == batv_status::valid) rcpt = split_mailbox(check.original);
    }
    return std::nullopt;
  }
  // A DSN goes to exactly one address, the return path (RFC 3464): a bounce
  // with two recipients is not a bounce. Permanent, so it is not retried.
  if (!envelope_.recipients.empty())
    return refusal("null_sender_recipients",
                   "550 5.5.3 Error: a bounce (null sender) has only one recipient");
  // A valid tag goes first: the inner server knows the plain address, and a
  // double bounce to a tagged double-bounce@ is a double bounce all the same.
  batv_check check;
  if (batv_domain) {
    check = batv_verify(cfg_.batv, rcpt.text(), days_since_epoch());
    if (check.status == batv_status::valid) rcpt = split_mailbox(check.original);
  }
  if (cfg_.is_double_bounce_address(rcpt)) {
    if (!cfg_.discard_double_bounces)
      return refusal("double_bounce", "550 5.7.1 Error: double bounce not accepted");
    envelope_.discard = true;
    return std::nullopt;
  }
  if (!batv_domain || check.status == batv_status::valid) return std::nullopt;
  // Clients exempt (list servers) are not checked for tags at all: a
  // well-formed tag, expired or not, is taken off for the inner server.
  for (const auto& n : cfg_.batv_exempt_clients)
    if (n.contains(facts_.client)) {
      if (check.status != batv_status::untagged && check.status != batv_status::malformed)
        rcpt = split_mailbox(check.original);
      return std::nullopt;
    }
  const auto address = lower_ascii(rcpt.text());
  const bool exempt = lower_ascii(rcpt.local) == "postmaster" ||
                      cfg_.batv_exempt_recipients.contains(address) ||
                      cfg_.batv_exempt_recipients.contains("@" + lower_ascii(rcpt.domain));
  if (exempt && check.status == batv_status::untagged) return std::nullopt;
  // A bounce for mail we never sent: the backscatter of a forgery.
  return refusal(std::string("batv_") + to_string(check.status),
                 "550 5.7.1 <" + rcpt.text() +
                     ">: bounce refused: it answers mail that was not sent from here");
}

// The envelope sender towards the next hop: BATV-signed for outbound mail
// from our own domains (from trusted clients to other domains).
std::string session::outbound_sender(const mailbox& first_rcpt) const {
  const auto& sender = envelope_.sender;
  // Never a tag on the senders of bounces (double-bounce@, MAILER-DAEMON@):
  // what answers them is a double bounce, known by the plain address.
  if (envelope_.null_sender || !facts_.trusted || cfg_.batv_domains.patterns().empty() ||
      cfg_.is_double_bounce_address(sender) || !cfg_.batv_domains.matches(sender.domain) ||
      cfg_.relay_domains.matches(first_rcpt.domain) ||
      lower_ascii(sender.local).starts_with("prvs="))
    return sender.text();
  return batv_sign(cfg_.batv, sender.text(), days_since_epoch());
}

asio::awaitable<void> session::on_rset() {
  co_await abandon_relay_transaction();
  reset_transaction();
  reply("250 2.0.0 Ok");
}

asio::awaitable<void> session::on_starttls(const command& cmd) {
  if (!snapshot_->server_tls || stream_.is_tls())
    co_return co_await refuse("starttls", "starttls", "502 5.5.1 Error: STARTTLS not offered");
  if (!cmd.argument.empty())
    co_return co_await refuse("starttls", "syntax", "501 5.5.4 Syntax: STARTTLS");
  reply("220 2.0.0 Ready to start TLS");
  if (!co_await flush()) {
    quit_ = true;
    co_return;
  }
  // Plaintext pipelined after STARTTLS would be taken as if it came over
  // TLS (CVE-2011-0411): drop it and count it as an attack.
  if (in_.buffered() > 0) {
    log_reject("starttls", "starttls_injection", "");
    in_.clear();
  }
  set_deadline(cfg_.values.tls.handshake_timeout);
  auto ec = co_await stream_.handshake_server(*snapshot_->server_tls);
  if (ec) {
    ops::event("TLS", ops::severity::warning)
        .add("sid", facts_.id)
        .add("client", client_text_)
        .add("error", ec.message())
        .emit();
    quit_ = true;
    co_return;
  }
  // RFC 3207 §4.2: forget everything learned before the handshake.
  co_await abandon_relay_transaction();
  reset_transaction();
  helo_seen_ = false;
  facts_.helo.clear();
  facts_.tls = true;
  ops::event("TLS")
      .add("sid", facts_.id)
      .add("client", client_text_)
      .add("cipher", stream_.tls_description())
      .emit();
}

asio::awaitable<void> session::receive_message(data_reader& reader, bool& budget_exceeded) {
  // Bytes the client pipelined right after DATA are already buffered.
  auto feed = [&](std::string_view bytes) {
    std::size_t before = reader.size();
    std::size_t used = reader.feed(bytes);
    auto grown = static_cast<std::int64_t>(reader.size() - before);
    if (!reader.too_big() && !budget_exceeded && grown > 0) {
      auto total = state_.buffered_bytes().fetch_add(grown, std::memory_order_relaxed) + grown;
      reserved_bytes_ += grown;
      if (total > limits_.max_buffered_bytes) budget_exceeded = true;
    }
    return used;
  };
  in_.consume(feed(in_.pending()));
  while (!reader.done() && !expired_) {
    std::size_t room;
    char* area = in_.write_area(room);
    auto [ec, n] = co_await stream_.read_some(asio::buffer(area, room));
    if (ec) co_return;
    in_.commit(n);
    in_.consume(feed(in_.pending()));
  }
}

std::string session::received_header() const {
  std::string proto = stream_.is_tls() ? "ESMTPS" : (facts_.esmtp ? "ESMTP" : "SMTP");
  std::string helo = ops::escape_client_text(facts_.helo, 100);
  for (auto& c : helo)
    if (c == '(' || c == ')' || c == '\\') c = '_';
  std::string tls = stream_.is_tls() ? fmt::format(" ({})", stream_.tls_description()) : "";
  return fmt::format(
      "Received: from {} ([{}])\r\n\tby {} (mxguard) with {}{} id {}-{};\r\n\t{}\r\n", helo,
      facts_.client.to_string(), limits_.hostname, proto, tls, facts_.id, messages_,
      rfc5322_date(std::chrono::system_clock::now()));
}

asio::awaitable<void> session::on_data() {
  if (!envelope_.open)
    co_return co_await refuse("data", "sequence", "503 5.5.1 Error: need MAIL command");
  if (envelope_.recipients.empty())
    co_return co_await refuse("data", "sequence", "554 5.5.1 Error: no valid recipients");
  if (!relay_connected() && !envelope_.discard) {
    co_await refuse("data", "next_hop", "451 4.4.2 Next hop connection lost, try again later");
    reset_transaction();
    relay_mail_sent_ = false;
    co_return;
  }
  if (state_.buffered_bytes().load(std::memory_order_relaxed) >= limits_.max_buffered_bytes)
    co_return co_await refuse("data", "max_buffered_bytes",
                              "452 4.3.1 Insufficient system storage, try again later");
  auto v = co_await snapshot_->policy->run(stage::data, input());
  if (apply_policy_refusal(v, "data")) co_return;

  reply("354 End data with <CR><LF>.<CR><LF>");
  if (!co_await flush()) {
    quit_ = true;
    co_return;
  }
  set_deadline(limits_.data_timeout);
  data_reader reader(static_cast<std::size_t>(limits_.max_message_size));
  bool budget_exceeded = false;
  co_await receive_message(reader, budget_exceeded);
  if (!reader.done()) {
    // Disconnected or timed out mid-DATA: nothing was relayed, the client
    // still has the message. The next hop's transaction is abandoned with
    // the connection.
    if (expired_) {
      ops::event("TIMEOUT")
          .add("sid", facts_.id)
          .add("client", client_text_)
          .add("stage", "data")
          .emit();
      co_await close_with(fmt::format("421 4.4.2 {} Error: timeout exceeded", limits_.hostname));
    } else {
      quit_ = true;
    }
    relay_mail_sent_ = false;
    if (relay_connected()) co_await relay_->quit();
    reset_transaction();
    co_return;
  }
  if (budget_exceeded) {
    // Read whole (so the dialogue stays in step) but not kept: too many
    // sessions hold messages at once.
    co_await refuse("end_of_data", "max_buffered_bytes",
                    "452 4.3.1 Insufficient system storage, try again later");
  } else {
    co_await deliver(reader);
  }
  co_await abandon_relay_transaction();
  relay_mail_sent_ = false;
  reset_transaction();
}

asio::awaitable<void> session::deliver(data_reader& reader) {
  // What the content stage found, for the transaction's log line.
  std::optional<scan::result> scanned;
  double score = 0;
  // A named std::function, not a lambda temporary, crosses into
  // relay_message: GCC 12 mishandles temporaries in co_await arguments.
  std::function<void(std::string_view, std::string_view, std::string_view, std::string_view)>
      log_transaction = [&](std::string_view word, std::string_view rule,
                            std::string_view reply_text, std::string_view next_hop_reply) {
        std::string rcpts;
        for (const auto& r : envelope_.recipients) rcpts += (rcpts.empty() ? "" : ",") + r.text();
        ops::event e(word);
        e.add("stage", "end_of_data")
            .add("rule", rule)
            .add("client", client_text_)
            .add("sid", facts_.id)
            .add("helo", facts_.helo)
            .add("from", envelope_.sender.text())
            .add("to", rcpts)
            .add("size", static_cast<std::int64_t>(reader.size()));
        if (scanned) {
          e.add("scan", scan::to_string(scanned->what));
          if (!scanned->name.empty()) e.add("scan_name", scanned->name);
          e.add("scan_ms", static_cast<double>(scanned->took.count()) / 1000.0);
        }
        if (snapshot_->cfg->content.scoring) e.add("score", score);
        e.add("reply", reply_text)
            .add("next_hop", relay_ ? std::string_view(relay_->peer()) : std::string_view())
            .add("next_hop_reply", next_hop_reply)
            .emit();
        // The same decision, counted (a virus counts as a virus, not also as
        // a refusal, in the statistics).
        const bool virus = scanned && scanned->what == scan::outcome::virus;
        if (word == "REJECT") {
          state_.blocks().event(rule, facts_.client, facts_.allowlisted || facts_.trusted);
          state_.observe().refused("end_of_data", rule, reply_text, facts_.client.to_string(),
                                   envelope_.null_sender
                                       ? std::string_view()
                                       : std::string_view(envelope_.sender.domain),
                                   !virus);
          if (!virus)
            state_.observe().transaction(reply_text.starts_with('4') ? transaction_end::tempfailed
                                                                     : transaction_end::refused);
        }
        if (virus && rule == "virus")
          state_.observe().transaction(transaction_end::virus, scanned->name);
        else if (word == "DISCARD")
          state_.observe().transaction(transaction_end::discarded);
      };
  if (reader.too_big()) {
    ++refused_;
    // refuse() logs and counts it.
    co_return co_await refuse("end_of_data", "max_message_size",
                              "552 5.3.4 Error: message too large");
  }
  // A first line that is folded (begins with a space or tab) has no header
  // to continue but ours, at the next hop: "Received: ...\r\n x\r\nSubject:
  // forged" would pass our header rules as body and arrive as headers. An
  // empty line before it makes it the body everywhere.
  if (auto& m = reader.message(); !m.empty() && (m.front() == ' ' || m.front() == '\t'))
    m.insert(0, "\r\n");
  if (reader.bare_lf() || reader.bare_cr())
    ops::event("NORMALIZE")
        .add("sid", facts_.id)
        .add("bare_lf", static_cast<std::int64_t>(reader.bare_lf()))
        .add("bare_cr", static_cast<std::int64_t>(reader.bare_cr()))
        .emit();
  if (envelope_.discard) {
    ++messages_;
    log_transaction("DISCARD", "double_bounce", "250 2.0.0 Ok", "");
    reply("250 2.0.0 Ok");
    co_return;
  }
  auto v = co_await snapshot_->policy->run(stage::end_of_data, input(nullptr, reader.message()));
  if (!v.decided()) {
    // The content stage: scan, score, and the headers that say so.
    score = facts_.dnsbl_score + v.score;
    std::string prefix = limits_.add_received_header ? received_header() : std::string();
    const auto& content = snapshot_->cfg->content;
    // The message takes our share of the buffered-bytes budget with it: a
    // scan we stop waiting for goes on holding both.
    auto message = state_.budgeted(std::move(reader.message()), std::exchange(reserved_bytes_, 0));
    std::string engine_text;
    if (content.scanning && state_.scanner) {
      // Scanned with our Received line on top: libclamav recognises a mail
      // by its first header, whatever the client's message starts with.
      const auto started = clock::now();
      scanned = co_await state_.scanner->scan(prefix, message);
      state_.observe().scanned(*scanned, clock::now() - started);
      if (auto e = state_.scanner->current()) engine_text = e->description();
    }
    auto decision = scan::decide(content, scanned ? &*scanned : nullptr, engine_text, score);
    if (decision.decision.decided()) {
      v = std::move(decision.decision);
    } else {
      co_return co_await relay_message(prefix, std::move(message), decision, log_transaction);
    }
  }
  if (v.what == action::discard) {
    ++messages_;
    log_transaction("DISCARD", v.rule, v.reply, "");
    reply(v.reply.empty() ? "250 2.0.0 Ok" : v.reply);
    co_return;
  }
  ++refused_;
  log_transaction("REJECT", v.rule, v.reply, "");
  reply(v.reply);
  if (v.what == action::drop) quit_ = true;
}

asio::awaitable<void> session::relay_message(
    std::string prefix, std::shared_ptr<const std::string> message,
    const scan::content_decision& decision,
    std::function<void(std::string_view, std::string_view, std::string_view, std::string_view)>
        log_transaction) {
  // Headers we vouch for: the client's copies go. A scan speaks for both
  // virus headers, whichever of them we add.
  std::vector<std::string_view> ours;
  for (const auto& h : decision.add_headers) {
    prefix += h;
    prefix += "\r\n";
    if (h.starts_with("X-Virus-"))
      ours.insert(ours.end(), {"X-Virus-Scanned", "X-Virus-Status"});
    else if (h.starts_with("X-Spam-Status:"))
      ours.push_back("X-Spam-Status");
  }
  std::string_view body = *message;
  std::optional<std::string> rewritten;
  if (!ours.empty() || decision.tag_subject)
    rewritten = scan::rewrite_headers(body, ours,
                                      decision.tag_subject
                                          ? std::string_view(snapshot_->cfg->content.subject_tag)
                                          : std::string_view());
  if (rewritten) body = *rewritten;
  const auto started = clock::now();
  auto answer = co_await relay().data(prefix, body);
  relay_mail_sent_ = false;  // the next hop's transaction is over, whatever it said
  std::string text = answer.to_client();
  state_.observe().next_hop_data(clock::now() - started,
                                 answer.local ? std::string_view() : std::string_view(text));
  if (answer.positive()) {
    ++messages_;
    log_transaction("RELAY", "next_hop", text, answer.first_line());
    state_.observe().transaction(decision.spam ? transaction_end::spam : transaction_end::relayed);
    state_.blocks().event("message", facts_.client, facts_.allowlisted || facts_.trusted);
  } else {
    ++refused_;
    log_transaction("REJECT", answer.local ? "next_hop" : "next_hop_data", text,
                    answer.first_line());
  }
  reply(text);
}

}  // namespace

void start_session(asio::ip::tcp::socket socket, asio::ip::tcp::endpoint client,
                   std::shared_ptr<const runtime_snapshot> snapshot, daemon_state& state,
                   session_slot slot, bool allowlisted, std::optional<verdict> preset_refusal,
                   bool client_known) {
  std::make_shared<session>(std::move(socket), client, std::move(snapshot), state, std::move(slot),
                            allowlisted, std::move(preset_refusal), client_known)
      ->start();
}

}  // namespace mxguard::guard
