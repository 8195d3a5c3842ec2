// mxguard::ops logging: one grep-able line per decision.
//
// Every line starts with an uppercase event word (CONNECT, REJECT, ACCEPT,
// RELAY, DISCARD, DISCONNECT, WARN, ...) followed by key=value fields, or the
// same as one JSON object per line (`--log-format json`). Values that come
// from the client are escaped (non-printable bytes as \xNN) and truncated, so
// a hostile client cannot forge log lines or flood the log.
//
// Lines are written to stderr with a single write(2) each, unbuffered, so the
// log is never late (a complaint about a commercial gateway) and lines from
// different threads never interleave. Thread-safe; no locks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mxguard::ops {

enum class log_format { kv, json };
enum class severity { info, warning, error };

void set_log_format(log_format f);
log_format current_log_format();
// Redirect output (tests); -1 restores stderr.
void set_log_fd(int fd);
// Append to a file instead of stderr; `reopen_log_file` (SIGUSR1) opens the
// path again after logrotate moved the file away.
bool log_to_file(const std::string& path, std::string& error);
void reopen_log_file();
// syslog(3), facility mail, ident "mxguard", instead of stderr.
void log_to_syslog();

// Builds one event line; `emit()` writes it.
class event {
 public:
  explicit event(std::string_view word, severity level = severity::info);
  event& add(std::string_view key, std::string_view value);
  event& add(std::string_view key, std::int64_t value);
  event& add(std::string_view key, std::uint64_t value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  event& add(std::string_view key, int value) { return add(key, static_cast<std::int64_t>(value)); }
  event& add(std::string_view key, unsigned value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  event& add(std::string_view key, double value);
  event& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  event& add(std::string_view key, const std::string& value) {
    return add(key, std::string_view(value));
  }
  void emit();

 private:
  std::string line_;
  bool json_;
  severity level_;
};

// Escapes and truncates client-supplied bytes for a log field.
std::string escape_client_text(std::string_view text, std::size_t max = 200);

// A free-form operational message (start-up, reload, dependency state).
void log_message(severity level, std::string_view word, std::string_view text);

}  // namespace mxguard::ops
