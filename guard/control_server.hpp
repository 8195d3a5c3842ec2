// The control socket `mxguardctl` talks to: a Unix stream socket, one request
// line per connection ("status", "check 192.0.2.1", "report 30 html", ...),
// one JSON object back. Only root and `control.group` can connect (the
// socket's mode and owner); requests are bounded in size and time.
//
// Runs on the daemon's control io_context (the main thread's), never on the
// I/O threads, so a slow report cannot delay an SMTP session.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "runtime.hpp"

namespace mxguard::guard {

struct control_actions {
  std::string config_file;
  std::function<std::string()> reload;  // empty string: reloaded; else why not
  std::function<void()> drain;          // stop accepting; exit when sessions are done
  std::function<bool()> draining;
  // Per-day statistics over [first, last] (the store the daemon writes to).
  std::function<ops::stats_days(std::string_view first, std::string_view last)> load_stats;
};

class control_server {
 public:
  control_server(boost::asio::io_context& io, daemon_state& state, control_actions actions);
  ~control_server();
  // Binds `path` (a stale socket file is replaced), mode 0600, or 0660 with
  // `group`. Throws std::runtime_error naming the path on failure.
  void start(const std::string& path, const std::string& group);
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace mxguard::guard
