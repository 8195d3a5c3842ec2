#include "control_server.hpp"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "mxguard/ops/log.hpp"
#include "mxguard/ops/report.hpp"

namespace mxguard::guard {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using json = nlohmann::json;

namespace {

constexpr std::size_t max_request = 4096;
constexpr auto request_timeout = std::chrono::seconds(5);
const auto started_at = std::chrono::steady_clock::now();

std::vector<std::string> words_of(std::string_view line) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
    auto end = line.find_first_of(" \t", pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) out.emplace_back(line.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

json error(std::string text) {
  return json{{"ok", false}, {"error", std::move(text)}};
}

const char* kind_text(dnsbl::verdict_kind k) {
  switch (k) {
    case dnsbl::verdict_kind::listed:
      return "listed";
    case dnsbl::verdict_kind::not_listed:
      return "not_listed";
    case dnsbl::verdict_kind::timeout:
      return "timeout";
    case dnsbl::verdict_kind::error:
      return "error";
  }
  return "?";
}

std::string today() {
  return ops::format_day(std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now()));
}

std::string days_ago(int n) {
  return ops::format_day(std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now()) -
                         std::chrono::days(n));
}

}  // namespace

struct control_server::impl : std::enable_shared_from_this<impl> {
  impl(asio::io_context& io, daemon_state& s, control_actions a)
      : acceptor(io), state(s), actions(std::move(a)) {}

  local::acceptor acceptor;
  daemon_state& state;
  control_actions actions;
  std::string path;
  // Statistics are read with blocking I/O (files, hiredis with its timeouts,
  // thousands of calls for a long report): here, not on the control thread,
  // which also renews leases, syncs the blocklist and answers the DNS zone
  // and /metrics.
  asio::thread_pool blocking{1};

  // Run on `blocking` by co_spawn, each a coroutine of its own: a closure
  // carrying a string into a coroutine frame is freed twice by GCC 12.
  asio::awaitable<json> stats_job(int days) { co_return stats(days); }
  asio::awaitable<json> report_job(int days, std::string format) { co_return report(days, format); }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        continue;
      }
      asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> serve(local::socket socket) {
    using namespace asio::experimental::awaitable_operators;
    auto self = shared_from_this();
    asio::streambuf buffer(max_request);
    asio::steady_timer deadline(socket.get_executor(), request_timeout);
    auto first = co_await (
        asio::async_read_until(socket, buffer, '\n', asio::as_tuple(asio::use_awaitable)) ||
        deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
    json answer;
    if (first.index() != 0 || std::get<0>(std::get<0>(first))) {
      answer = error("no complete request line (at most 4096 bytes, within 5 s)");
    } else {
      std::string line(asio::buffers_begin(buffer.data()), asio::buffers_end(buffer.data()));
      line = line.substr(0, line.find('\n'));
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auto words = words_of(line);
      std::optional<std::string> failure;
      if (words.empty()) {
        answer = error("empty request");
      } else {
        // A command that throws (a corrupt statistics file, Redis gone) is
        // answered with why, not with a closed socket ("cannot reach").
        try {
          answer = co_await handle(std::move(words));
        } catch (const std::exception& e) {
          failure = e.what();
        }
      }
      if (failure) answer = error("the command failed: " + *failure);
    }
    std::string out = answer.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    deadline.expires_after(request_timeout);
    co_await (asio::async_write(socket, asio::buffer(out), asio::as_tuple(asio::use_awaitable)) ||
              deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
    boost::system::error_code ignored;
    socket.close(ignored);
  }

  asio::awaitable<json> handle(std::vector<std::string> words) {
    const std::string& command = words[0];
    ops::event("CONTROL").add("command", command).emit();
    if (command == "status") co_return status();
    if (command == "config") {
      co_return json{{"ok", true}, {"config", describe(*state.current()->cfg)}};
    }
    if (command == "reload") {
      auto problem = actions.reload();
      if (!problem.empty())
        co_return error("reload refused, previous configuration stays: " + problem);
      co_return json{{"ok", true}, {"reloaded", actions.config_file}};
    }
    if (command == "drain") {
      // Counted first: the drain closes idle sessions at once, on other threads.
      const auto open = state.slots().sessions();
      actions.drain();
      co_return json{{"ok", true}, {"draining", true}, {"sessions", open}};
    }
    if (command == "check") {
      if (words.size() != 2) co_return error("usage: check IP|DOMAIN");
      co_return co_await check(words[1]);
    }
    if (command == "block") {
      // block PREFIX [DURATION|permanent] [REASON...]
      if (words.size() < 2) co_return error("usage: block IP|CIDR [DURATION|permanent] [REASON]");
      ratelimit::block_record r;
      r.prefix = words[1];
      r.rule = "manual";
      r.created_ms = ratelimit::wall_clock_now();
      std::size_t reason_from = 2;
      if (words.size() > 2) {
        if (words[2] == "permanent") {
          reason_from = 3;
        } else if (auto d = parse_duration(words[2]); d && d->count() > 0) {
          r.expires_ms = r.created_ms + d->count();
          reason_from = 3;
        } else if (words[2].front() >= '0' && words[2].front() <= '9') {
          // "1w" or "7days" read as the reason's first word would block for good.
          co_return error("'" + ops::escape_client_text(words[2], 40) +
                          "' is not a duration (a positive number with ms, s, m, h or d: 30m, "
                          "12h, 7d) or permanent");
        }
      }
      for (std::size_t i = reason_from; i < words.size(); ++i)
        r.reason += (r.reason.empty() ? "" : " ") + words[i];
      if (r.reason.empty()) r.reason = "blocked by the postmaster";
      r.reason = ops::escape_client_text(r.reason, 200);
      if (!ip_prefix::parse(r.prefix))
        co_return error("'" + ops::escape_client_text(r.prefix, 60) +
                        "' is not an address or CIDR prefix");
      const auto shown = ip_prefix::parse(r.prefix)->to_string();
      if (!co_await state.blocks().block(*state.store, std::move(r)))
        co_return error("the state store did not take the entry");
      co_return json{{"ok", true}, {"blocked", shown}};
    }
    if (command == "unblock") {
      if (words.size() != 2) co_return error("usage: unblock IP|CIDR");
      auto parsed = ip_prefix::parse(words[1]);
      if (!parsed) co_return error("not an address or CIDR prefix");
      const auto entries = state.blocks().entries();
      const auto shown = parsed->to_string();
      if (std::none_of(entries.begin(), entries.end(),
                       [&](const ratelimit::block_record& r) { return r.prefix == shown; })) {
        // An address inside a blocked range (an IPv6 client's /64, a manual
        // /24): say which entry to lift rather than report a removal.
        boost::system::error_code ec;
        const auto address = asio::ip::make_address(words[1], ec);
        if (auto hit = ec ? std::nullopt : state.blocks().find(address))
          co_return error(shown + " is not an entry; it is blocked by " + hit->prefix +
                          " (unblock that)");
        co_return error(shown + " is not in the blocklist");
      }
      if (!co_await state.blocks().unblock(*state.store, words[1]))
        co_return error("the state store did not answer");
      co_return json{{"ok", true}, {"unblocked", parsed->to_string()}};
    }
    if (command == "blocked") {
      json list = json::array();
      for (const auto& r : state.blocks().entries())
        list.push_back({{"prefix", r.prefix},
                        {"rule", r.rule},
                        {"reason", r.reason},
                        {"created_ms", r.created_ms},
                        {"expires_ms", r.expires_ms},
                        {"offences", r.offences}});
      co_return json{{"ok", true}, {"entries", list}};
    }
    if (command == "stats") {
      int days = 1;
      if (words.size() > 1) days = std::atoi(words[1].c_str());
      if (days < 1 || days > 3660) co_return error("usage: stats [DAYS]  (1..3660)");
      co_return co_await asio::co_spawn(blocking, stats_job(days), asio::use_awaitable);
    }
    if (command == "report") {
      int days = words.size() > 1 ? std::atoi(words[1].c_str()) : 30;
      std::string format = words.size() > 2 ? words[2] : "text";
      if (days < 1 || days > 3660 || (format != "text" && format != "html"))
        co_return error("usage: report [DAYS] [text|html]");
      co_return co_await asio::co_spawn(blocking, report_job(days, format), asio::use_awaitable);
    }
    co_return error(
        "unknown command '" + ops::escape_client_text(command, 40) +
        "' (status, config, reload, check, block, unblock, blocked, stats, report, drain)");
  }

  json status() {
    auto snap = state.current();
    json j{{"ok", true},
           {"version", "0.1.0"},
           {"pid", ::getpid()},
           {"config", actions.config_file},
           {"uptime_seconds", std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::steady_clock::now() - started_at)
                                  .count()},
           {"sessions", state.slots().sessions()},
           {"draining", actions.draining ? actions.draining() : false},
           {"next_hop_reachable", state.next_hop_reachable().load()},
           {"store", state.store ? std::string(state.store->name()) : std::string("none")}};
    if (state.store) {
      auto h = state.store->health();
      if (h.remote) j["redis_up"] = h.up;
    }
    if (state.scanner) {
      auto e = state.scanner->current();
      j["scanner"] = {{"engine", e ? e->description() : std::string("none")},
                      {"signatures", e ? e->signatures() : 0},
                      {"queued", state.scanner->queued()},
                      {"busy", state.scanner->busy()},
                      {"workers", state.scanner->workers()}};
    }
    if (snap->dnsbl) {
      json sites = json::object();
      for (const auto& [domain, healthy] : snap->dnsbl->health_report()) sites[domain] = healthy;
      j["dnsbl_healthy"] = sites;
    }
    return j;
  }

  asio::awaitable<json> check(std::string subject) {
    auto snap = state.current();
    if (!snap->cfg->dnsbl_enabled) co_return error("no DNS lists configured ([dnsbl] sites)");
    boost::system::error_code ec;
    auto address = asio::ip::make_address(subject, ec);
    dnsbl::score result;
    if (!ec)
      result = co_await snap->dnsbl->score_client(address);
    else
      result = co_await snap->dnsbl->score_domain(subject);
    json sites = json::array();
    for (const auto& r : result.sites) {
      json codes = json::array();
      for (const auto& c : r.codes) codes.push_back(c.to_string());
      sites.push_back({{"site", r.which->spec},
                       {"result", kind_text(r.kind)},
                       {"answer", codes},
                       {"weight", r.counted() ? r.which->weight : 0},
                       {"txt", r.txt},
                       {"error", r.error},
                       {"cached", r.cached}});
    }
    co_return json{{"ok", true},
                   {"subject", subject},
                   {"score", result.total},
                   {"listed", result.listed},
                   {"allowlisted", result.allowlisted},
                   {"sites", sites}};
  }

  ops::stats_days load(int days) {
    ops::stats_days loaded;
    if (auto* recorder = state.observe().stats()) {
      try {
        recorder->flush();  // what this process counted so far, too
      } catch (const std::exception& e) {
        ops::log_message(ops::severity::warning, "STATS", e.what());
      }
    }
    if (actions.load_stats) loaded = actions.load_stats(days_ago(days - 1), today());
    return loaded;
  }

  json stats(int days) {
    if (!state.observe().stats()) return error("statistics are off (set [stats] file)");
    json out = json::object();
    for (const auto& [day, fields] : load(days)) {
      json f = json::object();
      for (const auto& [name, count] : fields) f[name] = count;
      out[day] = f;
    }
    return json{{"ok", true}, {"days", out}};
  }

  json report(int days, const std::string& format) {
    if (!state.observe().stats()) return error("statistics are off (set [stats] file)");
    ops::report_options options;
    options.last_day = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
    options.days = days;
    options.title = "mxguard statistics: " + state.current()->cfg->values.server.hostname;
    auto text =
        ops::render_report(load(days), options,
                           format == "html" ? ops::report_format::html : ops::report_format::text);
    return json{{"ok", true}, {"format", format}, {"report", text}};
  }
};

control_server::control_server(asio::io_context& io, daemon_state& state, control_actions actions)
    : impl_(std::make_shared<impl>(io, state, std::move(actions))) {}

control_server::~control_server() {
  stop();
}

void control_server::start(const std::string& path, const std::string& group) {
  namespace fs = std::filesystem;
  std::error_code fec;
  if (fs::is_socket(path, fec)) fs::remove(path, fec);  // left by a killed daemon
  gid_t gid = static_cast<gid_t>(-1);
  if (!group.empty()) {
    const ::group* g = ::getgrnam(group.c_str());
    if (g == nullptr) throw std::runtime_error("control.group: no group '" + group + "'");
    gid = g->gr_gid;
  }
  // Created owner-only, then opened to the group: never world-accessible,
  // not even for a moment.
  auto old_mask = ::umask(0177);
  boost::system::error_code ec;
  impl_->acceptor.open(local(), ec);
  if (!ec) impl_->acceptor.bind(local::endpoint(path), ec);
  if (!ec) impl_->acceptor.listen(16, ec);
  ::umask(old_mask);
  if (ec) throw std::runtime_error("control.socket " + path + ": " + ec.message());
  if (!group.empty() &&
      (::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0 || ::chmod(path.c_str(), 0660) != 0))
    throw std::runtime_error("control.socket " + path + ": " + std::strerror(errno));
  impl_->path = path;
  asio::co_spawn(impl_->acceptor.get_executor(), impl_->accept_loop(), asio::detached);
}

void control_server::stop() {
  if (!impl_ || !impl_->acceptor.is_open()) return;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  std::error_code fec;
  std::filesystem::remove(impl_->path, fec);
}

}  // namespace mxguard::guard
