// Integration test harness: real processes on loopback ports the test picks.
//
// `child` starts a program and kills it by PID when it goes out of scope;
// `smtp_sink` is Postfix's smtp-sink dumping each message to a file;
// `guard` is the real mxguard binary with a configuration written by the
// test; `smtp_client` is a small blocking SMTP client with timeouts, so a
// test can send exactly the bytes it wants (pipelining, smuggling, garbage).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mxguard::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A fresh directory under /tmp, removed at the end of the test.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// A loopback port that was free a moment ago.
int free_port();
// True once something accepts TCP connections on 127.0.0.1:port (or ::1).
bool wait_for_port(int port, std::chrono::milliseconds timeout,
                   const std::string& host = "127.0.0.1");
void write_file(const fs::path& path, const std::string& text);
std::string read_file(const fs::path& path);
bool running_as_root();

class child {
 public:
  child() = default;
  // argv[0] is the program path; stdout and stderr go to `log` (appended).
  child(const std::vector<std::string>& argv, const fs::path& log);
  child(child&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  child& operator=(child&& other) noexcept;
  ~child() { stop(); }

  pid_t pid() const { return pid_; }
  bool alive();
  void signal(int sig);
  // SIGTERM, wait up to 5 s, then SIGKILL; returns the exit status.
  int stop();
  // Waits for exit; nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
};

// Postfix's smtp-sink as a next hop, dumping each transaction to a file.
class smtp_sink {
 public:
  // `options` are extra smtp-sink flags, e.g. {"-f", "RCPT"} to refuse recipients.
  explicit smtp_sink(const temp_dir& dir, std::vector<std::string> options = {},
                     const std::string& name = "sink");
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The dumped messages (smtp-sink's own X- headers included), oldest first.
  std::vector<std::string> messages() const;
  // Waits until at least n messages were dumped.
  bool wait_messages(std::size_t n, std::chrono::milliseconds timeout = 5s) const;
  void stop() { process_.stop(); }
  void kill();  // SIGKILL: the next hop is gone (connections refused)
  // A new smtp-sink on the same port with the same options and dump directory.
  void restart();

 private:
  fs::path dump_dir_;
  fs::path log_;
  std::vector<std::string> argv_;  // without the address
  int port_;
  child process_;
};

// A real redis-server on a loopback port, no persistence.
class redis_server {
 public:
  // `extra` are more redis-server options, e.g. {"--replicaof", "127.0.0.1", "6379"}.
  explicit redis_server(const temp_dir& dir, const std::string& password = "", int port = 0,
                        std::vector<std::string> extra = {});
  int port() const { return port_; }
  std::string url(const std::string& password = "") const;
  void kill();     // SIGKILL
  void pause();    // SIGSTOP: a Redis that accepts nothing and answers nothing
  void resume();   // SIGCONT
  void restart();  // a new process on the same port
  // Runs redis-cli with `args`; its output.
  std::string cli(const std::string& args) const;

 private:
  const temp_dir& dir_;
  std::string password_;
  int port_;
  std::vector<std::string> extra_;
  child process_;
  void start();
};

// Debian's redis-sentinel on a loopback port, monitoring the primary on
// `primary_port` as `master`, with a quorum of `quorum` and quick failure
// detection (down-after-milliseconds, failover-timeout) for tests.
class redis_sentinel {
 public:
  redis_sentinel(const temp_dir& dir, int primary_port, const std::string& master = "mymaster",
                 int quorum = 1, std::chrono::milliseconds down_after = 1000ms,
                 std::chrono::milliseconds failover_timeout = 5000ms);
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The port of the primary the sentinel names now; 0 when it names none.
  int primary_port() const;
  // Replicas the sentinel knows of the primary.
  std::size_t replicas() const;
  std::string cli(const std::string& args) const;

 private:
  const temp_dir& dir_;
  std::string master_;
  int port_ = 0;
  child process_;
};

// The message as received from the client: the part of a sink dump after
// smtp-sink's Received header and our own Received header, with LF lines.
std::string dumped_body(const std::string& dump);

// The mxguard daemon with a TOML configuration.
class guard {
 public:
  // `config` is TOML; "@PORT@" in it is replaced by the port picked here.
  guard(const temp_dir& dir, std::string config, const std::string& name = "mxguard");
  int port() const { return port_; }
  const fs::path& config_path() const { return config_path_; }
  std::string log() const { return read_file(log_path_); }
  child& process() { return process_; }
  // Rewrites the configuration file and sends SIGHUP.
  void reload(std::string config);
  // A new process on the same port with the same configuration, after the
  // old one is gone (SIGKILL when it still runs). The log is appended to.
  void restart();

 private:
  fs::path config_path_;
  fs::path log_path_;
  int port_;
  child process_;
  bool start_process();  // true once the port answers
  void probe() const;
};

struct smtp_reply {
  int code = 0;      // 0: no reply (closed or timed out)
  std::string text;  // all lines, CRLF-joined, without the final CRLF
};

class smtp_client {
 public:
  smtp_client() = default;
  smtp_client(smtp_client&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), buffer_(std::move(other.buffer_)) {}
  ~smtp_client();
  bool connect(int port, const std::string& host = "127.0.0.1");
  // Binds the client side to a local address first (127.0.0.x source addresses).
  bool connect_from(const std::string& source, int port, const std::string& host = "127.0.0.1");
  void send(const std::string& bytes);
  smtp_reply read_reply(std::chrono::milliseconds timeout = 10s);
  smtp_reply command(const std::string& line, std::chrono::milliseconds timeout = 10s);
  // EHLO and MAIL FROM and RCPT TO; returns the RCPT reply.
  smtp_reply start_transaction(const std::string& from, const std::string& to);
  // DATA, the message (dot-stuffed here), the final reply.
  smtp_reply send_message(const std::string& message);
  // True when the server has closed the connection (EOF within timeout).
  bool closed_by_peer(std::chrono::milliseconds timeout = 5s);
  void close();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buffer_;
};

// GET over HTTP/1.0 (the metrics endpoint); the body, or "" on failure.
// `status` gets the code.
std::string http_get(int port, const std::string& path, int* status = nullptr);
// The value of one series in a Prometheus text exposition; -1 when absent.
double metric(const std::string& text, const std::string& series);

// Established TCP connections (IPv4) whose local port is `port`: what a
// server listening there holds open, seen from the kernel.
int established_at(int port);

// Lower-case hex of the bytes (ClamAV body signatures are written so).
std::string hex(const std::string& bytes);

// A minimal RFC 5322 message with CRLF lines.
std::string make_message(const std::string& subject, const std::string& body,
                         const std::string& from = "sender@remote.example",
                         const std::string& to = "user@example.org");

}  // namespace mxguard::test
