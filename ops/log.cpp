#include "mxguard/ops/log.hpp"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

#include <unistd.h>

#include <atomic>
#include <cerrno>

#include <fmt/format.h>

namespace mxguard::ops {

namespace {

std::atomic<log_format> format_{log_format::kv};
std::atomic<int> fd_{2};

const char* severity_name(severity s) {
  switch (s) {
    case severity::info:
      return "info";
    case severity::warning:
      return "warning";
    case severity::error:
      return "error";
  }
  return "info";
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned char>(c));
        else
          out.push_back(c);
    }
  }
  out.push_back('"');
}

bool needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  for (char c : s)
    if (c == ' ' || c == '"' || c == '=' || c == '\\') return true;
  return false;
}

std::atomic<bool> syslog_{false};
std::mutex file_mutex_;
std::string file_path_;

void write_line(std::string& line, severity level) {
  if (syslog_.load(std::memory_order_relaxed)) {
    // syslog(3) adds the time, host, ident and pid; one record per line.
    const int priority = level == severity::error     ? LOG_ERR
                         : level == severity::warning ? LOG_WARNING
                                                      : LOG_INFO;
    ::syslog(priority, "%.*s", static_cast<int>(line.size()), line.data());
    return;
  }
  line.push_back('\n');
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    auto n = ::write(fd_.load(std::memory_order_relaxed), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere to complain to; never block or crash for a log line
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void set_log_format(log_format f) {
  format_.store(f);
}
log_format current_log_format() {
  return format_.load();
}
void set_log_fd(int fd) {
  fd_.store(fd < 0 ? 2 : fd);
}

bool log_to_file(const std::string& path, std::string& error) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = path + ": " + std::strerror(errno);
    return false;
  }
  std::lock_guard lock(file_mutex_);
  file_path_ = path;
  fd_.store(fd);
  return true;
}

void reopen_log_file() {
  std::lock_guard lock(file_mutex_);
  if (file_path_.empty()) return;
  int fd = ::open(file_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return;  // keep writing to the old file rather than to nowhere
  // dup2 swaps the file behind the descriptor in one step: a line being
  // written from another thread lands whole in the old file or the new.
  ::dup2(fd, fd_.load());
  ::close(fd);
}

void log_to_syslog() {
  ::openlog("mxguard", LOG_PID | LOG_NDELAY, LOG_MAIL);
  syslog_.store(true);
}

std::string escape_client_text(std::string_view text, std::size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max) + 8);
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= max) {
      out.append("...");
      break;
    }
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f)
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
    else
      out.push_back(static_cast<char>(c));
  }
  return out;
}

event::event(std::string_view word, severity level)
    : json_(format_.load(std::memory_order_relaxed) == log_format::json), level_(level) {
  line_.reserve(256);
  if (json_) {
    line_.append("{\"event\":");
    append_json_string(line_, word);
    if (level != severity::info) {
      line_.append(",\"severity\":");
      append_json_string(line_, severity_name(level));
    }
  } else {
    line_.append(word);
    if (level != severity::info) {
      line_.append(" severity=");
      line_.append(severity_name(level));
    }
  }
}

event& event::add(std::string_view key, std::string_view value) {
  // Values are escaped here as well, so a caller that forgets cannot break the format.
  auto safe = escape_client_text(value, 1000);
  if (json_) {
    line_.push_back(',');
    append_json_string(line_, key);
    line_.push_back(':');
    append_json_string(line_, safe);
  } else {
    line_.push_back(' ');
    line_.append(key);
    line_.push_back('=');
    if (needs_quotes(safe)) {
      line_.push_back('"');
      for (char c : safe) {
        if (c == '"' || c == '\\') line_.push_back('\\');
        line_.push_back(c);
      }
      line_.push_back('"');
    } else {
      line_.append(safe);
    }
  }
  return *this;
}

event& event::add(std::string_view key, std::int64_t value) {
  if (json_) {
    line_.push_back(',');
    append_json_string(line_, key);
    fmt::format_to(std::back_inserter(line_), ":{}", value);
  } else {
    fmt::format_to(std::back_inserter(line_), " {}={}", key, value);
  }
  return *this;
}

event& event::add(std::string_view key, double value) {
  if (json_) {
    line_.push_back(',');
    append_json_string(line_, key);
    fmt::format_to(std::back_inserter(line_), ":{:.3f}", value);
  } else {
    fmt::format_to(std::back_inserter(line_), " {}={:.3f}", key, value);
  }
  return *this;
}

void event::emit() {
  if (json_) line_.push_back('}');
  write_line(line_, level_);
}

void log_message(severity level, std::string_view word, std::string_view text) {
  event(word, level).add("msg", text).emit();
}

}  // namespace mxguard::ops
