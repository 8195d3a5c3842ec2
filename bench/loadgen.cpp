// mxguard-loadgen: a bounded SMTP load generator for the benchmarks in bench/.
//
// It keeps --concurrency client coroutines busy against one SMTP server and reports throughput,
// latency percentiles, failures by reply class and stage, and its own CPU time, so that a run
// against smtp-sink and a run through mxguard can be compared as ratios (see bench/relay.sh).
//
// Model: --threads I/O threads, each with its own io_context; the clients are spread round robin
// over them and each client is one coroutine that loops "claim a unit of work, do it". A unit is
// one message in relay mode and one session in the other modes. Every claimed unit ends as
// exactly one ok or one failure, so ok + failed = units attempted. The run ends when --messages
// units were claimed, --duration passed, or SIGINT/SIGTERM arrived; units in flight then finish,
// each step bounded by --timeout, so the tool cannot hang.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <ctime>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using clock_type = std::chrono::steady_clock;

// Expected outcomes (EOF, refused connection, cancellation by the watchdog) come back as error
// codes; exceptions are left for real bugs.
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

constexpr std::uint64_t default_messages = 10'000;
constexpr double max_duration_s = 600;  // hard cap on every run, whatever the other flags say
constexpr std::size_t max_reply_bytes = 64 * 1024;  // a server that never ends a line is an error
constexpr std::size_t line_chars = 76;              // body line length without CRLF
constexpr std::size_t line_bytes = line_chars + 2;
// After a failed connect the client waits this long before the next attempt, so a dead target
// costs a few failures per second per client instead of a busy loop for the whole --duration.
constexpr auto connect_backoff = std::chrono::milliseconds(100);

enum class run_mode { relay, greet, refused, connect_refused, idle };
// Where an idle session stops and holds the connection (--idle-after).
enum class idle_point { connect, banner, rcpt };

std::string_view mode_name(run_mode m) {
  switch (m) {
    case run_mode::relay:
      return "relay";
    case run_mode::greet:
      return "greet";
    case run_mode::refused:
      return "refused";
    case run_mode::connect_refused:
      return "connect-refused";
    case run_mode::idle:
      return "idle";
  }
  return "?";
}

struct options {
  std::string target;
  run_mode mode = run_mode::relay;
  unsigned concurrency = 10;
  unsigned threads = 1;
  std::uint64_t messages = default_messages;
  double duration_s = max_duration_s;
  unsigned messages_per_session = 1;
  std::size_t size = 4096;
  std::string from = "loadgen@example.com";
  std::string rcpt = "user@example.org";
  std::string helo = "loadgen.example.com";
  std::vector<std::string> source_ips;
  std::string source_range;
  double timeout_s = 10;
  bool json = false;
  idle_point idle_after = idle_point::banner;
  std::string ready_file;
  double ramp_s = 0;
  bool latency_from_connect = false;
};

// Set from the signal handler: the one piece of mutable global state, because a handler can
// reach nothing else. Clients stop claiming work when it is set.
std::atomic<bool> interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void on_signal(int) {
  interrupted.store(true, std::memory_order_relaxed);
}

// Where a unit of work went wrong and how. Both are fixed strings so the report can count them.
struct failure {
  std::string_view stage;  // connect, banner, ehlo, rset, mail, rcpt, data, dot, quit
  std::string_view kind;   // 1xx..5xx (unexpected reply class), timeout, closed, refused, io, ...
};
using step = std::optional<failure>;  // empty: the step went as expected

std::string_view error_kind(const boost::system::error_code& ec) {
  // Cancellation comes only from the watchdog winning the || in client::run().
  if (ec == asio::error::operation_aborted) return "timeout";
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe)
    return "closed";
  if (ec == asio::error::connection_refused) return "refused";
  if (ec == asio::error::not_found) return "overlong";  // reply line beyond max_reply_bytes
  return "io";
}

std::string_view reply_class(int code) {
  static constexpr std::array<std::string_view, 6> names = {"?", "1xx", "2xx", "3xx", "4xx", "5xx"};
  return names[code / 100];
}

// The code of one reply line ("250-..." or "250 ..." or "250"), or 0 if the line is not one.
int reply_code(std::string_view line) {
  if (line.size() < 3 || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) return 0;
  if (line[0] < '1' || line[0] > '5') return 0;
  if (line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9') return 0;
  return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

// Per-thread results, merged after the run; clients of one thread share one without locks.
struct stats {
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
  std::uint64_t connections = 0;
  std::map<std::string, std::uint64_t> failure_kinds;
  std::map<std::string, std::uint64_t> failure_stages;
  // Exact samples rather than a histogram: at most --duration x rate entries of 4 bytes
  // (600 s x 20k/s = 48 MB), and exact percentiles need no bucket-width caveat.
  std::vector<std::uint32_t> latency_us;

  void add_failure(const failure& f) {
    ++failed;
    ++failure_kinds[std::string(f.kind)];
    ++failure_stages[std::string(f.stage)];
  }
  void merge(const stats& o) {
    ok += o.ok;
    failed += o.failed;
    connections += o.connections;
    for (const auto& [k, n] : o.failure_kinds) failure_kinds[k] += n;
    for (const auto& [k, n] : o.failure_stages) failure_stages[k] += n;
    latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
  }
};

// The message body is made of full wire lines (CRLF included, already dot-stuffed), shared by
// every client; each message sends a prefix of it. Every 16th line starts with a dot so that
// the server's dot-unstuffing is exercised on every message of more than a few hundred bytes.
std::string make_body(std::size_t size) {
  static constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string body;
  const std::size_t lines = size / line_bytes + 1;
  body.reserve(lines * line_bytes);
  std::uint32_t x = 2463534242u;  // xorshift32: varied but reproducible text
  for (std::size_t i = 0; i < lines; ++i) {
    std::size_t n = 0;
    if (i % 16 == 15) {
      body += "..";  // the line ".<text>" after dot-stuffing
      n = 2;
    }
    for (; n < line_chars; ++n) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      body += alphabet[x % alphabet.size()];
    }
    body += "\r\n";
  }
  return body;
}

std::string rfc5322_date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::array<char, 64> buf{};
  const auto n = std::strftime(buf.data(), buf.size(), "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return std::string(buf.data(), n);
}

// State shared by all clients of all threads: the immutable setup and the work counter.
class run_state {
 public:
  run_state(const options& run_options, tcp::endpoint target_endpoint,
            std::vector<asio::ip::address> source_addresses)
      : opt(run_options),
        target(target_endpoint),
        sources(std::move(source_addresses)),
        timeout(std::chrono::duration_cast<clock_type::duration>(
            std::chrono::duration<double>(opt.timeout_s))),
        ehlo_cmd(fmt::format("EHLO {}\r\n", opt.helo)),
        mail_cmd(fmt::format("MAIL FROM:<{}>\r\n", opt.from)),
        rcpt_cmd(fmt::format("RCPT TO:<{}>\r\n", opt.rcpt)),
        body(make_body(opt.size)),
        date(rfc5322_date()) {}

  void start() {
    end_ = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                   std::chrono::duration<double>(opt.duration_s));
  }

  // Claims one unit of work; false once the run is over. Claims past --messages overshoot the
  // counter harmlessly.
  bool claim() {
    if (interrupted.load(std::memory_order_relaxed) || clock_type::now() >= end_) return false;
    return claimed_.fetch_add(1, std::memory_order_relaxed) < opt.messages;
  }

  // True once the run is over (time up or a signal); clients holding idle sessions poll it.
  bool over() const {
    return interrupted.load(std::memory_order_relaxed) || clock_type::now() >= end_;
  }
  clock_type::time_point end() const { return end_; }

  // Idle mode: a client reached its hold point (held) or failed before it; once every client
  // has done one or the other, --ready-file is written with the number held.
  void settle(bool held) {
    if (held) held_.fetch_add(1, std::memory_order_relaxed);
    if (settled_.fetch_add(1, std::memory_order_acq_rel) + 1 != opt.concurrency) return;
    const auto h = held_.load(std::memory_order_relaxed);
    max_held_ = h;
    if (opt.ready_file.empty()) return;
    const std::string tmp = opt.ready_file + ".tmp";
    {
      std::ofstream f(tmp);
      f << "held " << h << " failed " << (opt.concurrency - h) << "\n";
    }
    std::rename(tmp.c_str(), opt.ready_file.c_str());  // the reader never sees half a file
  }
  std::uint64_t max_held() const { return max_held_; }

  const asio::ip::address& next_source() {
    return sources[next_source_.fetch_add(1, std::memory_order_relaxed) % sources.size()];
  }

  const options& opt;
  const tcp::endpoint target;
  const std::vector<asio::ip::address> sources;
  const clock_type::duration timeout;
  const std::string ehlo_cmd, mail_cmd, rcpt_cmd;
  const std::string body;
  const std::string date;

 private:
  clock_type::time_point end_ = clock_type::time_point::max();
  std::atomic<std::uint64_t> claimed_{0};
  std::atomic<std::uint64_t> next_source_{0};
  std::atomic<std::uint64_t> held_{0};
  std::atomic<std::uint64_t> settled_{0};
  std::atomic<std::uint64_t> max_held_{0};
};

// One simulated SMTP client: connects, runs the dialogue of --mode, reconnects after any
// failure, until run_state::claim() says the run is over. Lives on one io_context.
class client {
 public:
  client(run_state& run, stats& results, unsigned id) : run_(run), stats_(results), id_(id) {}

  awaitable<void> run() {
    const auto executor = co_await asio::this_coro::executor;
    if (run_.opt.ramp_s > 0) {  // --ramp: start times spread evenly, not all connects at once
      asio::steady_timer pause(
          executor, std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(
                        run_.opt.ramp_s * id_ / run_.opt.concurrency)));
      co_await pause.async_wait(use_nothrow);
    }
    const bool idle = run_.opt.mode == run_mode::idle;
    while (claim()) {
      tcp::socket socket(executor);
      session_start_ = clock_type::now();
      deadline_ = session_start_ + run_.timeout;
      stage_ = "connect";
      // One watchdog per connection, re-armed lazily from deadline_, instead of racing a timer
      // against every single read and write (the rejected alternative, which costs a parallel
      // group and two coroutine frames per step).
      const auto outcome = co_await (session(socket) || watchdog());
      const step result =
          outcome.index() == 0 ? std::get<0>(outcome) : step(failure{stage_, "timeout"});
      if (result && unit_open_) {
        stats_.add_failure(*result);
        unit_open_ = false;
      }
      if (idle) {
        if (!held_) run_.settle(false);  // failed before its hold point
        break;                           // one session per client, no reconnect
      }
      if (result && result->stage == "connect") {
        asio::steady_timer pause(executor, connect_backoff);
        co_await pause.async_wait(use_nothrow);
      }
    }
  }

 private:
  bool claim() {
    unit_open_ = run_.claim();
    return unit_open_;
  }

  void succeed(clock_type::time_point since) {
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - since).count();
    stats_.latency_us.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(us, UINT32_MAX)));
    ++stats_.ok;
    unit_open_ = false;
  }

  // Completes when the current step's deadline has passed; the || in run() then cancels the
  // session. Deadlines only move forward, so waking at a stale one just re-arms the timer.
  awaitable<void> watchdog() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (deadline_ > clock_type::now()) {
      timer.expires_at(deadline_);
      const auto [ec] = co_await timer.async_wait(use_nothrow);
      if (ec == asio::error::operation_aborted) co_return;  // the session finished first
    }
  }

  awaitable<step> session(tcp::socket& socket) {
    if (auto f = co_await connect(socket)) co_return f;
    switch (run_.opt.mode) {
      case run_mode::relay:
        co_return co_await relay(socket);
      case run_mode::greet:
        co_return co_await greet(socket);
      case run_mode::refused:
        co_return co_await refused(socket);
      case run_mode::connect_refused:
        co_return co_await connect_refused(socket);
      case run_mode::idle:
        co_return co_await idle(socket);
    }
    co_return std::nullopt;
  }

  awaitable<step> connect(tcp::socket& socket) {
    boost::system::error_code ec;
    socket.open(run_.target.protocol(), ec);
    if (!ec && !run_.sources.empty()) {
      // Let connect() choose the port per destination: bind() alone would reserve a port per
      // source address and exhaust the ephemeral range after ~28k short connections.
      const int one = 1;
      ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      socket.bind(tcp::endpoint(run_.next_source(), 0), ec);
    }
    if (ec) co_return failure{"connect", "bind"};
    const auto [cec] = co_await socket.async_connect(run_.target, use_nothrow);
    if (cec) co_return failure{"connect", error_kind(cec)};
    socket.set_option(tcp::no_delay(true), ec);  // lockstep dialogue: never wait for Nagle
    ++stats_.connections;
    rbuf_.clear();
    co_return std::nullopt;
  }

  // The full transaction, --messages-per-session times per connection. Latency counts from
  // MAIL to the reply after "."; banner, EHLO, RSET and QUIT are connection overhead.
  awaitable<step> relay(tcp::socket& socket) {
    if (auto f = co_await expect(socket, "banner", 2)) co_return f;
    if (auto f = co_await command(socket, run_.ehlo_cmd, "ehlo", 2)) co_return f;
    for (unsigned sent = 0;;) {
      if (sent > 0) {
        if (auto f = co_await command(socket, "RSET\r\n", "rset", 2)) co_return f;
      }
      // --latency-from-connect: the first message's latency includes connect, banner and EHLO
      // (one message end to end as a client sees it).
      const auto start =
          sent == 0 && run_.opt.latency_from_connect ? session_start_ : clock_type::now();
      if (auto f = co_await command(socket, run_.mail_cmd, "mail", 2)) co_return f;
      if (auto f = co_await command(socket, run_.rcpt_cmd, "rcpt", 2)) co_return f;
      if (auto f = co_await command(socket, "DATA\r\n", "data", 3)) co_return f;
      if (auto f = co_await send_and_expect(socket, message(), "dot", 2)) co_return f;
      succeed(start);
      if (++sent == run_.opt.messages_per_session || !claim()) break;
    }
    // The messages are counted already; a server that drops the line at QUIT costs nothing.
    co_await command(socket, "QUIT\r\n", "quit", 2);
    co_return std::nullopt;
  }

  // Connect, banner, QUIT: the cost of admission alone. Latency is the whole session.
  awaitable<step> greet(tcp::socket& socket) {
    if (auto f = co_await expect(socket, "banner", 2)) co_return f;
    if (auto f = co_await command(socket, "QUIT\r\n", "quit", 2)) co_return f;
    succeed(session_start_);
    co_return std::nullopt;
  }

  // A client that must be refused at RCPT (e.g. listed in a DNSBL): the 5xx is the success.
  awaitable<step> refused(tcp::socket& socket) {
    if (auto f = co_await expect(socket, "banner", 2)) co_return f;
    if (auto f = co_await command(socket, run_.ehlo_cmd, "ehlo", 2)) co_return f;
    if (auto f = co_await command(socket, run_.mail_cmd, "mail", 2)) co_return f;
    if (auto f = co_await command(socket, run_.rcpt_cmd, "rcpt", 5)) co_return f;
    if (auto f = co_await command(socket, "QUIT\r\n", "quit", 2)) co_return f;
    succeed(session_start_);
    co_return std::nullopt;
  }

  // A client refused at connect (a DNSBL listing with mxguard's dnsbl.action = "connect", or
  // postscreen's "drop"): the 5xx banner is the success. The server may close at once or wait
  // for QUIT (RFC 5321 3.1); a 221 to QUIT and a closed connection both end the unit well.
  awaitable<step> connect_refused(tcp::socket& socket) {
    if (auto f = co_await expect(socket, "banner", 5)) co_return f;
    if (auto f = co_await command(socket, "QUIT\r\n", "quit", 2); f && f->kind != "closed")
      co_return f;
    succeed(session_start_);
    co_return std::nullopt;
  }

  // An idle session: connect, then (--idle-after) read the banner, or go on to EHLO, MAIL and
  // RCPT, and hold the connection without a word until the run is over, as a slow or idle
  // client does; then QUIT. Latency is connect to the hold point. What the server sends while
  // the session is held is read and ignored (postscreen's "220-" teaser); the server closing
  // the connection fails the unit at stage "hold".
  awaitable<step> idle(tcp::socket& socket) {
    const auto point = run_.opt.idle_after;
    if (point != idle_point::connect) {
      if (auto f = co_await expect(socket, "banner", 2)) co_return f;
    }
    if (point == idle_point::rcpt) {
      if (auto f = co_await command(socket, run_.ehlo_cmd, "ehlo", 2)) co_return f;
      if (auto f = co_await command(socket, run_.mail_cmd, "mail", 2)) co_return f;
      if (auto f = co_await command(socket, run_.rcpt_cmd, "rcpt", 2)) co_return f;
    }
    const auto reached = clock_type::now();
    held_ = true;
    run_.settle(true);
    stage_ = "hold";
    deadline_ = run_.end() + run_.timeout;  // no step timeout while holding
    const auto outcome = co_await (drain(socket) || wait_for_end());
    if (outcome.index() == 0) co_return failure{"hold", "closed"};
    if (point != idle_point::connect) {  // a pre-greet client just goes away
      rbuf_.clear();
      if (auto f = co_await command(socket, "QUIT\r\n", "quit", 2); f && f->kind != "closed")
        co_return f;
    }
    // Latency of an idle unit: connect until the hold point.
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(reached - session_start_);
    stats_.latency_us.push_back(static_cast<std::uint32_t>(us.count()));
    ++stats_.ok;
    unit_open_ = false;
    co_return std::nullopt;
  }

  // Reads and drops whatever the server sends; returns when the connection ends.
  awaitable<void> drain(tcp::socket& socket) {
    std::array<char, 512> sink{};
    for (;;) {
      const auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), use_nothrow);
      if (ec) co_return;
    }
  }

  // Returns once the run is over: the end of --duration, or a signal (polled once a second).
  awaitable<void> wait_for_end() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!run_.over()) {
      timer.expires_at(std::min(run_.end(), clock_type::now() + std::chrono::seconds(1)));
      co_await timer.async_wait(use_nothrow);
    }
  }

  // A step is one write and one reply; its deadline covers both, so a server that stops reading
  // or stops answering ends the connection within --timeout.
  template <typename Buffers>
  awaitable<step> send_and_expect(tcp::socket& socket, const Buffers& data, std::string_view stage,
                                  int want_class) {
    begin_step(stage);
    const auto [ec, n] = co_await asio::async_write(socket, data, use_nothrow);
    if (ec) co_return failure{stage, error_kind(ec)};
    co_return co_await read_reply(socket, stage, want_class);
  }

  awaitable<step> command(tcp::socket& socket, std::string_view line, std::string_view stage,
                          int want_class) {
    co_return co_await send_and_expect(socket, asio::buffer(line), stage, want_class);
  }

  awaitable<step> expect(tcp::socket& socket, std::string_view stage, int want_class) {
    begin_step(stage);
    co_return co_await read_reply(socket, stage, want_class);
  }

  void begin_step(std::string_view stage) {
    stage_ = stage;
    deadline_ = clock_type::now() + run_.timeout;
  }

  // Reads one reply, multi-line or not, and checks the class of its code.
  awaitable<step> read_reply(tcp::socket& socket, std::string_view stage, int want_class) {
    int first_code = 0;
    for (;;) {
      const auto [ec, n] = co_await asio::async_read_until(
          socket, asio::dynamic_buffer(rbuf_, max_reply_bytes), "\r\n", use_nothrow);
      if (ec) co_return failure{stage, error_kind(ec)};
      const std::string_view line(rbuf_.data(), n - 2);
      const int code = reply_code(line);
      const bool last = line.size() == 3 || line[3] == ' ';
      rbuf_.erase(0, n);
      if (code == 0 || (first_code != 0 && code != first_code))
        co_return failure{stage, "malformed"};
      first_code = code;
      if (!last) continue;
      if (code / 100 != want_class) co_return failure{stage, reply_class(code)};
      co_return std::nullopt;
    }
  }

  // The DATA payload: per-message headers, a prefix of the shared body, a last line cut to make
  // the total exactly --size bytes on the wire (when --size exceeds the headers), and ".".
  std::array<asio::const_buffer, 4> message() {
    ++sent_;
    headers_.clear();
    fmt::format_to(std::back_inserter(headers_),
                   "From: Load Generator <{}>\r\n"
                   "To: <{}>\r\n"
                   "Subject: mxguard-loadgen message {}\r\n"
                   "Date: {}\r\n"
                   "Message-ID: <{}.{}.{}@{}>\r\n"
                   "MIME-Version: 1.0\r\n"
                   "Content-Type: text/plain; charset=us-ascii\r\n"
                   "X-Mailer: mxguard-loadgen\r\n"
                   "\r\n",
                   run_.opt.from, run_.opt.rcpt, sent_, run_.date, sent_, id_, ::getpid(),
                   run_.opt.helo);
    std::size_t rest = run_.opt.size > headers_.size() ? run_.opt.size - headers_.size() : 0;
    if (rest == 1) {
      // No CRLF-terminated body is 1 byte long; widen the last header value by a space instead.
      headers_.insert(headers_.size() - 4, " ");
      rest = 0;
    }
    std::size_t full_lines = rest / line_bytes;
    std::size_t tail_bytes = rest % line_bytes;
    if (tail_bytes == 1) {  // same problem at the end: make the last line one byte longer
      --full_lines;
      tail_bytes += line_bytes;
    }
    tail_.assign(tail_bytes == 0 ? 0 : tail_bytes - 2, 'x');
    if (tail_bytes != 0) tail_ += "\r\n";
    return {asio::buffer(headers_), asio::buffer(run_.body.data(), full_lines * line_bytes),
            asio::buffer(tail_), asio::buffer(std::string_view(".\r\n"))};
  }

  run_state& run_;
  stats& stats_;
  const unsigned id_;
  std::uint64_t sent_ = 0;
  bool unit_open_ = false;  // a claimed unit is in flight and not yet counted
  bool held_ = false;       // idle mode: the hold point was reached
  std::string_view stage_ = "connect";
  clock_type::time_point session_start_;
  clock_type::time_point deadline_;
  std::string rbuf_;
  std::string headers_;
  std::string tail_;
};

// host:port or [v6]:port.
std::optional<std::pair<std::string, std::string>> split_host_port(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return std::nullopt;
  std::string host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return std::pair{host, s.substr(colon + 1)};
}

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  const auto tv = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\')
      out += fmt::format("\\{}", c);
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\u{:04x}", c);
    else
      out += c;
  }
  return out + "\"";
}

std::string json_counts(const std::map<std::string, std::uint64_t>& m) {
  std::string out = "{";
  for (const auto& [k, n] : m)
    out += fmt::format("{}{}:{}", out.size() > 1 ? "," : "", json_string(k), n);
  return out + "}";
}

std::string text_counts(const std::map<std::string, std::uint64_t>& m) {
  std::string out;
  for (const auto& [k, n] : m) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", k, n);
  return out;
}

void report(const options& opt, stats& total, double elapsed_s, double cpu_s, std::uint64_t held) {
  auto& lat = total.latency_us;
  std::sort(lat.begin(), lat.end());
  // Nearest-rank percentile, in milliseconds.
  const auto pct = [&lat](double p) {
    if (lat.empty()) return 0.0;
    const auto rank = static_cast<std::size_t>(std::ceil(p * double(lat.size())));
    return lat[std::clamp<std::size_t>(rank, 1, lat.size()) - 1] / 1000.0;
  };
  const double rate = elapsed_s > 0 ? double(total.ok) / elapsed_s : 0;
  const std::string human = fmt::format(
      "{} {}: ok {} failed {}{} in {:.3f} s = {:.1f} {}/s; latency ms p50 {:.3f} p90 {:.3f} "
      "p99 {:.3f} max {:.3f}; {} connections; loadgen cpu {:.2f} s ({:.0f}% of one core)",
      mode_name(opt.mode), opt.target, total.ok, total.failed,
      total.failed ? fmt::format(" [{}; at {}]", text_counts(total.failure_kinds),
                                 text_counts(total.failure_stages))
                   : "",
      elapsed_s, rate, opt.mode == run_mode::relay ? "msg" : "sessions", pct(0.50), pct(0.90),
      pct(0.99), pct(1.0), total.connections, cpu_s, elapsed_s > 0 ? 100 * cpu_s / elapsed_s : 0);
  if (!opt.json) {
    fmt::print("{}\n", human);
    return;
  }
  // With --json the machine-readable line alone goes to stdout, so `> run.json` just works.
  fmt::print(stderr, "{}\n", human);
  fmt::print(
      "{{\"mode\":\"{}\",\"target\":{},\"concurrency\":{},\"threads\":{},\"size\":{},"
      "\"messages_per_session\":{},\"ok\":{},\"failed\":{},\"failures\":{},"
      "\"failure_stages\":{},\"connections\":{},\"elapsed_s\":{:.6f},\"messages_per_s\":{:.3f},"
      "\"latency_ms\":{{\"p50\":{:.3f},\"p90\":{:.3f},\"p99\":{:.3f},\"max\":{:.3f}}},"
      "\"cpu_s\":{:.3f},\"held\":{}}}\n",
      mode_name(opt.mode), json_string(opt.target), opt.concurrency, opt.threads, opt.size,
      opt.messages_per_session, total.ok, total.failed, json_counts(total.failure_kinds),
      json_counts(total.failure_stages), total.connections, elapsed_s, rate, pct(0.50), pct(0.90),
      pct(0.99), pct(1.0), cpu_s, held);
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{"mxguard-loadgen: bounded SMTP load generator (see bench/README.md)"};
  app.add_option("--target", opt.target, "SMTP server as host:port")->required();
  const std::map<std::string, run_mode> modes = {{"relay", run_mode::relay},
                                                 {"greet", run_mode::greet},
                                                 {"refused", run_mode::refused},
                                                 {"connect-refused", run_mode::connect_refused},
                                                 {"idle", run_mode::idle}};
  app.add_option("--mode", opt.mode,
                 "relay: full transactions; greet: banner then QUIT; refused: RCPT must get 5xx; "
                 "connect-refused: the banner must be 5xx; idle: hold one session per client "
                 "until the run ends (--idle-after)")
      ->transform(CLI::CheckedTransformer(modes, CLI::ignore_case));
  app.add_option("--concurrency", opt.concurrency, "concurrent sessions")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--threads", opt.threads, "I/O threads, one io_context each")
      ->check(CLI::Range(1u, 256u));
  auto* messages = app.add_option(
      "--messages", opt.messages,
      fmt::format("units to attempt: messages (relay) or sessions; default {} unless only "
                  "--duration is given",
                  default_messages));
  messages->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
  auto* duration =
      app.add_option("--duration", opt.duration_s, "seconds to run; at most 600 (also the cap)");
  duration->check(CLI::Range(0.001, max_duration_s));
  app.add_option("--messages-per-session", opt.messages_per_session,
                 "relay mode: messages per connection, RSET between them")
      ->check(CLI::Range(1u, 1'000'000u));
  app.add_option("--size", opt.size, "bytes of DATA on the wire (headers included, '.' not)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{64} << 20));
  app.add_option("--from", opt.from, "MAIL FROM address");
  app.add_option("--rcpt", opt.rcpt, "RCPT TO address");
  app.add_option("--helo", opt.helo, "EHLO name");
  app.add_option("--source-ips", opt.source_ips,
                 "comma-separated local addresses to bind, round robin per connection")
      ->delimiter(',');
  app.add_option("--source-range", opt.source_range,
                 "IPv4 CIDR (at most /14) whose every address is a source, added to --source-ips "
                 "(e.g. 198.18.16.0/20 on lo)");
  app.add_option("--timeout", opt.timeout_s, "seconds allowed for each command and its reply")
      ->check(CLI::Range(0.001, max_duration_s));
  app.add_flag("--json", opt.json, "print the summary as one JSON line on stdout");
  const std::map<std::string, idle_point> idle_points = {
      {"connect", idle_point::connect}, {"banner", idle_point::banner}, {"rcpt", idle_point::rcpt}};
  app.add_option("--idle-after", opt.idle_after,
                 "idle mode: hold each session after connect, the banner (default), or "
                 "EHLO+MAIL+RCPT")
      ->transform(CLI::CheckedTransformer(idle_points, CLI::ignore_case));
  app.add_option("--ready-file", opt.ready_file,
                 "idle mode: written ('held N failed M') once every session is held or failed");
  app.add_option("--ramp", opt.ramp_s, "seconds over which the clients' first connects are spread")
      ->check(CLI::Range(0.0, 60.0));
  app.add_flag("--latency-from-connect", opt.latency_from_connect,
               "relay mode: a session's first message is timed from connect, not from MAIL");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is success; any bad option is a usage error
  }

  // Only --duration given: run for that long. Otherwise --messages (default 10000) bounds the
  // run and --duration stays at its 600 s cap.
  if (duration->count() > 0 && messages->count() == 0) opt.messages = UINT64_MAX;
  // Idle mode: one session per client, held until --duration ends (or a signal).
  if (opt.mode == run_mode::idle) opt.messages = opt.concurrency;

  // Many held sessions need many descriptors: take the hard limit.
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }

  std::vector<asio::ip::address> sources;
  for (const auto& s : opt.source_ips) {
    boost::system::error_code ec;
    sources.push_back(asio::ip::make_address(s, ec));
    if (ec) {
      fmt::print(stderr, "mxguard-loadgen: --source-ips: bad address '{}'\n", s);
      return 2;
    }
  }
  if (!opt.source_range.empty()) {
    // Every address of the prefix, network and broadcast included: on a loopback device (the
    // benchmarks' network namespaces) each of them can be bound.
    boost::system::error_code ec;
    const auto net = asio::ip::make_network_v4(opt.source_range, ec);
    if (ec || net.prefix_length() < 14) {
      fmt::print(stderr,
                 "mxguard-loadgen: --source-range: want an IPv4 CIDR of /14 or longer, got '{}'\n",
                 opt.source_range);
      return 2;
    }
    const auto first = net.network().to_uint();
    const std::uint64_t count = std::uint64_t{1} << (32 - net.prefix_length());
    for (std::uint64_t i = 0; i < count; ++i)
      sources.push_back(asio::ip::address_v4(static_cast<std::uint32_t>(first + i)));
  }
  const auto host_port = split_host_port(opt.target);
  if (!host_port) {
    fmt::print(stderr, "mxguard-loadgen: --target must be host:port, got '{}'\n", opt.target);
    return 2;
  }
  tcp::endpoint target;
  {
    asio::io_context resolver_context;
    tcp::resolver resolver(resolver_context);
    boost::system::error_code ec;
    const auto results = resolver.resolve(host_port->first, host_port->second, ec);
    // With source addresses, the target must be of their family; otherwise take the first.
    const auto match = std::find_if(results.begin(), results.end(), [&](const auto& r) {
      return sources.empty() || r.endpoint().address().is_v4() == sources.front().is_v4();
    });
    if (ec || match == results.end()) {
      fmt::print(stderr, "mxguard-loadgen: cannot resolve '{}'{}\n", opt.target,
                 ec ? ": " + ec.message() : " to the family of --source-ips");
      return 2;
    }
    target = match->endpoint();
  }
  if (std::any_of(sources.begin(), sources.end(),
                  [&](const auto& a) { return a.is_v4() != target.address().is_v4(); })) {
    fmt::print(stderr, "mxguard-loadgen: --source-ips mixes address families\n");
    return 2;
  }

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  run_state run(opt, target, std::move(sources));
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<stats> thread_stats(opt.threads);
  for (unsigned t = 0; t < opt.threads; ++t)
    contexts.push_back(std::make_unique<asio::io_context>(1));
  std::vector<std::unique_ptr<client>> clients;
  for (unsigned i = 0; i < opt.concurrency; ++i) {
    const unsigned t = i % opt.threads;
    clients.push_back(std::make_unique<client>(run, thread_stats[t], i));
    asio::co_spawn(*contexts[t], clients.back()->run(), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        fmt::print(stderr, "mxguard-loadgen: client stopped: {}\n", x.what());
      }
    });
  }

  const double cpu_before = cpu_seconds();
  const auto started = clock_type::now();
  run.start();
  {
    std::vector<std::jthread> workers;
    for (unsigned t = 1; t < opt.threads; ++t)
      workers.emplace_back([&ctx = *contexts[t]] { ctx.run(); });
    contexts[0]->run();
  }
  const double elapsed_s = std::chrono::duration<double>(clock_type::now() - started).count();
  const double cpu_s = cpu_seconds() - cpu_before;

  stats total;
  for (const auto& s : thread_stats) total.merge(s);
  report(opt, total, elapsed_s, cpu_s, run.max_held());
  return total.ok > 0 ? 0 : 1;
}
