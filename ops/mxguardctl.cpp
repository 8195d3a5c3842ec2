// mxguardctl: the postmaster's handle on a running mxguard, over its control
// socket ([control] socket). One request, one JSON answer; printed as text,
// or as the JSON itself with --json for scripts.
//
// Exit codes: 0 done; 1 the daemon refused or failed the command; 2 usage;
// 3 the daemon cannot be reached; 4 `check`: the subject is listed.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace {

using json = nlohmann::json;

constexpr int exit_failed = 1;
constexpr int exit_unreachable = 3;
constexpr int exit_listed = 4;

int connect_to(const std::string& path, std::string& error) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) {
    error = "socket path too long";
    return -1;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  timeval timeout{120, 0};  // a report over years of statistics takes a moment
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

// Sends one request line, returns the daemon's JSON (nullopt: unreachable).
std::optional<json> ask(const std::string& path, const std::string& request, std::string& error) {
  int fd = connect_to(path, error);
  if (fd < 0) return std::nullopt;
  std::string line = request + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    error = std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  std::string answer;
  char buffer[65536];
  for (;;) {
    auto n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  auto parsed = json::parse(answer, nullptr, false);
  if (parsed.is_discarded()) {
    error = answer.empty() ? "no answer" : "not a JSON answer";
    return std::nullopt;
  }
  return parsed;
}

void print_status(const json& j) {
  for (const auto& [key, value] : j.items()) {
    if (key == "ok") continue;
    if (value.is_object()) {
      std::cout << key << ":\n";
      for (const auto& [k, v] : value.items()) std::cout << "  " << k << ": " << v.dump() << "\n";
    } else {
      std::cout << key << ": " << (value.is_string() ? value.get<std::string>() : value.dump())
                << "\n";
    }
  }
}

void print_check(const json& j) {
  for (const auto& site : j["sites"]) {
    std::cout << site["site"].get<std::string>() << ": " << site["result"].get<std::string>();
    if (!site["answer"].empty()) {
      std::string codes;
      for (const auto& c : site["answer"])
        codes += (codes.empty() ? "" : ",") + c.get<std::string>();
      std::cout << " answer=" << codes;
    }
    std::cout << " weight=" << site["weight"].get<int>();
    if (!site["txt"].get<std::string>().empty())
      std::cout << " txt=\"" << site["txt"].get<std::string>() << "\"";
    if (!site["error"].get<std::string>().empty())
      std::cout << " (" << site["error"].get<std::string>() << ")";
    std::cout << "\n";
  }
  std::cout << j["subject"].get<std::string>() << ": score " << j["score"].get<int>() << ", "
            << (j["listed"].get<bool>()        ? "listed"
                : j["allowlisted"].get<bool>() ? "allowlisted"
                                               : "passes")
            << "\n";
}

void print_stats(const json& j) {
  const char* outcomes[] = {"accepted", "spam", "refused", "tempfailed", "discarded", "virus"};
  std::cout << "day       ";
  for (const char* o : outcomes) std::cout << " " << std::setw(10) << o;
  std::cout << "\n";
  for (const auto& [day, fields] : j["days"].items()) {
    std::cout << day;
    for (const char* o : outcomes) {
      auto it = fields.find(std::string("outcome:") + o);
      std::cout << " " << std::setw(10) << (it == fields.end() ? 0 : it->get<std::int64_t>());
    }
    std::cout << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mxguardctl: control a running mxguard over its control socket"};
  app.require_subcommand(1);
  std::string socket_path = "/run/mxguard/control.sock";
  bool as_json = false;
  app.add_option("-s,--socket", socket_path, "The daemon's control.socket")->capture_default_str();
  app.add_flag("--json", as_json, "Print the daemon's JSON answer as it is (for scripts)");

  auto* status = app.add_subcommand("status", "Version, uptime, sessions, scanner, DNS lists");
  auto* config = app.add_subcommand("config", "The effective configuration, secrets masked");
  auto* reload = app.add_subcommand("reload",
                                    "Reload the configuration (like SIGHUP); a bad "
                                    "file is refused and the old one stays");
  auto* check = app.add_subcommand("check", "How the DNS lists judge an IP address or domain");
  std::string subject;
  check->add_option("subject", subject, "IP address or domain")->required();
  auto* block = app.add_subcommand(
      "block", "Block an address or CIDR prefix on every gateway sharing the state store");
  std::string block_prefix, block_for = "permanent", block_reason;
  block->add_option("prefix", block_prefix, "IP address or CIDR prefix")->required();
  block->add_option("--for", block_for, "How long: a duration (1h, 7d) or permanent")
      ->capture_default_str();
  block->add_option("--reason", block_reason, "Why (shown in logs, the DNS zone's TXT)");
  auto* unblock = app.add_subcommand("unblock", "Remove an entry from the blocklist");
  std::string unblock_prefix;
  unblock->add_option("prefix", unblock_prefix, "The entry's address or CIDR prefix")->required();
  auto* blocked = app.add_subcommand("blocked", "List the blocklist");
  auto* stats = app.add_subcommand("stats", "Per-day counters by outcome");
  int stats_days = 7;
  stats->add_option("--days", stats_days, "Days back from today")->capture_default_str();
  auto* report = app.add_subcommand("report", "The statistics report (tables and charts)");
  int report_days = 30;
  std::string format = "text", output;
  report->add_option("--days", report_days, "Days back from today")->capture_default_str();
  report->add_option("--format", format, "text or html (self-contained, inline SVG charts)")
      ->check(CLI::IsMember({"text", "html"}))
      ->capture_default_str();
  report->add_option("-o,--output", output, "Write the report to this file instead of stdout");
  auto* drain = app.add_subcommand(
      "drain", "Stop accepting, let open sessions finish, then the daemon exits 0");
  int wait_seconds = 600;
  drain->add_option("--wait", wait_seconds, "Seconds to wait for the daemon to exit; 0 = no wait")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" that exit 0; every other is usage.
    return app.exit(e) == 0 ? 0 : 2;
  }

  std::string request;
  if (*status) request = "status";
  if (*config) request = "config";
  if (*reload) request = "reload";
  if (*check) request = "check " + subject;
  if (*stats) request = "stats " + std::to_string(stats_days);
  if (*report) request = "report " + std::to_string(report_days) + " " + format;
  if (*drain) request = "drain";
  if (*block) request = "block " + block_prefix + " " + block_for + " " + block_reason;
  if (*unblock) request = "unblock " + unblock_prefix;
  if (*blocked) request = "blocked";
  for (const auto* word : {&block_prefix, &unblock_prefix, &block_for})
    if (word->find_first_of(" \t\r\n") != std::string::npos) {
      std::cerr << "mxguardctl: addresses and durations are one word\n";
      return 2;
    }
  if (block_reason.find_first_of("\r\n") != std::string::npos) {
    std::cerr << "mxguardctl: the reason is one line\n";
    return 2;
  }
  if (subject.find_first_of(" \t\r\n") != std::string::npos) {
    std::cerr << "mxguardctl: the subject must be one word\n";
    return 2;
  }

  std::string error;
  auto answer = ask(socket_path, request, error);
  if (!answer) {
    std::cerr << "mxguardctl: cannot reach mxguard at " << socket_path << ": " << error << "\n";
    return exit_unreachable;
  }
  const auto& j = *answer;
  if (as_json && !*report) std::cout << j.dump(2) << "\n";
  if (!j.value("ok", false)) {
    if (!as_json) std::cerr << "mxguardctl: " << j.value("error", std::string("failed")) << "\n";
    return exit_failed;
  }
  if (*report) {
    const auto text = j["report"].get<std::string>();
    if (output.empty()) {
      std::cout << text;
    } else {
      std::ofstream out(output, std::ios::binary);
      out << text;
      if (!out) {
        std::cerr << "mxguardctl: cannot write " << output << "\n";
        return exit_failed;
      }
    }
    return 0;
  }
  if (*drain && wait_seconds > 0) {
    // The daemon closes its control socket as it exits.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(wait_seconds);
    while (std::chrono::steady_clock::now() < until) {
      std::string ignored;
      int fd = connect_to(socket_path, ignored);
      if (fd < 0) {
        if (!as_json) std::cout << "drained: mxguard has exited\n";
        return 0;
      }
      ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::cerr << "mxguardctl: still draining after " << wait_seconds << " s\n";
    return exit_failed;
  }
  if (as_json) return *check && j.value("listed", false) ? exit_listed : 0;
  if (*status) print_status(j);
  if (*config) std::cout << j["config"].get<std::string>();
  if (*reload) std::cout << "reloaded " << j["reloaded"].get<std::string>() << "\n";
  if (*check) {
    print_check(j);
    if (j.value("listed", false)) return exit_listed;
  }
  if (*stats) print_stats(j);
  if (*block) std::cout << "blocked " << j["blocked"].get<std::string>() << "\n";
  if (*unblock) std::cout << "unblocked " << j["unblocked"].get<std::string>() << "\n";
  if (*blocked) {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    for (const auto& e : j["entries"]) {
      const auto expires = e["expires_ms"].get<std::int64_t>();
      std::cout << std::left << std::setw(20) << e["prefix"].get<std::string>() << " "
                << std::setw(24) << e["rule"].get<std::string>() << " " << std::setw(12)
                << (expires == 0 ? std::string("permanent")
                                 : std::to_string(std::max<std::int64_t>(0, expires - now) / 1000) +
                                       "s left")
                << " " << e["reason"].get<std::string>() << "\n";
    }
  }
  if (*drain) std::cout << "draining " << j["sessions"].get<std::int64_t>() << " sessions\n";
  return 0;
}
