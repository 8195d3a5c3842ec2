#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace mxguard::test {

namespace {

std::string random_suffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng() % 1000000000ull);
}

bool make_address(const std::string& host, int port, sockaddr_storage& out, socklen_t& len) {
  std::memset(&out, 0, sizeof out);
  if (host.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&out);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) return false;
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&out);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return false;
    len = sizeof *a;
  }
  return true;
}

int connect_socket(const std::string& source, const std::string& host, int port) {
  sockaddr_storage addr;
  socklen_t len;
  if (!make_address(host, port, addr, len)) return -1;
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (!source.empty()) {
    sockaddr_storage src;
    socklen_t src_len;
    if (!make_address(source, 0, src, src_len) ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&src), src_len) != 0) {
      ::close(fd);
      return -1;
    }
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

temp_dir::temp_dir() {
  path_ = fs::temp_directory_path() / ("mxguard-test-" + random_suffix());
  fs::create_directories(path_);
  // smtp-sink drops privileges to nobody and must still write its dumps.
  fs::permissions(path_, fs::perms::all);
}

temp_dir::~temp_dir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

int free_port() {
  // Below the kernel's ephemeral range (32768-60999 by default), so that no
  // client connection of a parallel test can take the port between our pick
  // and the server's bind; random, so that parallel tests rarely pick alike
  // (and the starters retry when they do).
  static thread_local std::mt19937 rng{std::random_device{}()};
  for (int attempt = 0; attempt < 200; ++attempt) {
    int port = std::uniform_int_distribution<int>(20000, 32000)(rng);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return port;
  }
  throw std::runtime_error("free_port: no free port found");
}

bool wait_for_port(int port, std::chrono::milliseconds timeout, const std::string& host) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    int fd = connect_socket("", host, port);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool running_as_root() {
  return ::geteuid() == 0;
}

// --- child -----------------------------------------------------------------

child::child(const std::vector<std::string>& argv, const fs::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = posix_spawn(&pid_, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
}

child& child::operator=(child&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
  }
  return *this;
}

bool child::alive() {
  if (pid_ <= 0) return false;
  int status;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void child::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> child::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return 0;
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

int child::stop() {
  if (pid_ <= 0) return 0;
  ::kill(pid_, SIGTERM);
  if (auto status = wait_exit(5s)) return *status;
  ::kill(pid_, SIGKILL);
  return wait_exit(5s).value_or(-1);
}

// --- smtp-sink ---------------------------------------------------------------

smtp_sink::smtp_sink(const temp_dir& dir, std::vector<std::string> options, const std::string& name)
    : dump_dir_(dir / (name + "-dump")), log_(dir / (name + ".log")) {
  fs::create_directories(dump_dir_);
  fs::permissions(dump_dir_, fs::perms::all);
  std::vector<std::string> argv{"/usr/sbin/smtp-sink"};
  if (running_as_root()) {
    argv.push_back("-u");
    argv.push_back("nobody");
  }
  // %Y%m%d%H%M%S. prefix keeps dumps in arrival order when sorted by mtime.
  argv.push_back("-d");
  argv.push_back((dump_dir_ / "%H%M%S.").string());
  for (auto& o : options) argv.push_back(std::move(o));
  argv_ = argv;
  for (int attempt = 0;; ++attempt) {
    port_ = free_port();
    auto args = argv;
    args.push_back("127.0.0.1:" + std::to_string(port_));
    args.push_back("128");
    process_ = child(args, log_);
    if (wait_for_port(port_, 5s)) break;
    if (attempt >= 5) throw std::runtime_error("smtp-sink did not start");
    process_.stop();  // most likely the port was taken meanwhile: another pick
  }
}

void smtp_sink::kill() {
  process_.signal(SIGKILL);
  process_.wait_exit(5s);
}

void smtp_sink::restart() {
  kill();
  auto args = argv_;
  args.push_back("127.0.0.1:" + std::to_string(port_));
  args.push_back("128");
  process_ = child(args, log_);
  if (!wait_for_port(port_, 5s)) throw std::runtime_error("smtp-sink did not restart");
}

std::vector<std::string> smtp_sink::messages() const {
  std::vector<std::pair<fs::file_time_type, fs::path>> files;
  // smtp-sink removes the dump of a transaction that ends without DATA: a
  // file listed a moment ago may be gone.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dump_dir_, ec)) {
    auto written = e.last_write_time(ec);
    if (!ec && e.is_regular_file(ec)) files.emplace_back(written, e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> out;
  // smtp-sink opens a dump at MAIL; only a transaction that got as far as
  // DATA has its Received line: that is a delivered message.
  for (const auto& [t, p] : files) {
    auto text = read_file(p);
    if (text.find("\nReceived: ") != std::string::npos) out.push_back(std::move(text));
  }
  return out;
}

bool smtp_sink::wait_messages(std::size_t n, std::chrono::milliseconds timeout) const {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    // smtp-sink writes the dump before it answers the final dot, so a
    // complete file exists once the client has its 250; allow a moment anyway.
    auto m = messages();
    if (m.size() >= n && (n == 0 || !m.back().empty())) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::string dumped_body(const std::string& dump) {
  // smtp-sink writes X-* records, then its own 3-line Received header; then
  // the message as received, which starts with mxguard's Received header
  // (3 lines), and finally an empty line of its own.
  std::istringstream in(dump);
  std::string line, out;
  int received_seen = 0;
  bool in_received = false;
  while (std::getline(in, line)) {
    if (received_seen < 2) {
      if (line.rfind("Received: ", 0) == 0) {
        ++received_seen;
        in_received = true;
      }
      continue;
    }
    if (in_received && (line.rfind("\t", 0) == 0 || line.rfind(" ", 0) == 0)) continue;
    in_received = false;
    out += line + "\n";
  }
  // Drop the empty line smtp-sink appends after each message.
  if (out.size() >= 2 && out.ends_with("\n\n")) out.pop_back();
  return out;
}

// --- redis ------------------------------------------------------------------------

redis_server::redis_server(const temp_dir& dir, const std::string& password, int port,
                           std::vector<std::string> extra)
    : dir_(dir), password_(password), port_(port ? port : free_port()), extra_(std::move(extra)) {
  start();
}

void redis_server::start() {
  std::vector<std::string> argv{"/usr/bin/redis-server",
                                "--port",
                                std::to_string(port_),
                                "--bind",
                                "127.0.0.1",
                                "--save",
                                "",
                                "--appendonly",
                                "no",
                                "--dir",
                                dir_.path().string()};
  if (!password_.empty()) {
    argv.push_back("--requirepass");
    argv.push_back(password_);
  }
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  process_ = child(argv, dir_ / ("redis-" + std::to_string(port_) + ".log"));
  auto until = std::chrono::steady_clock::now() + 10s;
  while (!wait_for_port(port_, 100ms))
    if (!process_.alive() || std::chrono::steady_clock::now() > until)
      throw std::runtime_error("redis-server did not start on port " + std::to_string(port_));
}

std::string redis_server::url(const std::string& password) const {
  return "redis://" + (password.empty() ? std::string() : ":" + password + "@") +
         "127.0.0.1:" + std::to_string(port_) + "/0";
}

void redis_server::kill() {
  process_.signal(SIGKILL);
  process_.wait_exit(5s);
}
void redis_server::pause() {
  process_.signal(SIGSTOP);
}
void redis_server::resume() {
  process_.signal(SIGCONT);
}
void redis_server::restart() {
  kill();
  start();
}

namespace {

std::string redis_cli(const temp_dir& dir, int port, const std::string& password,
                      const std::string& args) {
  // One output file per call: tests ask from several threads.
  static std::atomic<int> calls{0};
  auto out = dir / ("redis-cli-" + std::to_string(++calls) + ".out");
  std::string command = "/usr/bin/redis-cli -p " + std::to_string(port) +
                        (password.empty() ? "" : " --no-auth-warning -a " + password) + " " + args +
                        " > " + out.string() + " 2>&1";
  // Test-controlled arguments only; never client data.
  if (std::system(command.c_str()) != 0) return "";
  auto text = read_file(out);
  std::error_code ec;
  fs::remove(out, ec);
  return text;
}

}  // namespace

std::string redis_server::cli(const std::string& args) const {
  return redis_cli(dir_, port_, password_, args);
}

// --- redis-sentinel --------------------------------------------------------------

redis_sentinel::redis_sentinel(const temp_dir& dir, int primary_port, const std::string& master,
                               int quorum, std::chrono::milliseconds down_after,
                               std::chrono::milliseconds failover_timeout)
    : dir_(dir), master_(master) {
  for (int attempt = 0;; ++attempt) {
    port_ = free_port();
    // Sentinel rewrites its configuration file: one per sentinel, writable.
    const auto conf = dir / ("sentinel-" + std::to_string(port_) + ".conf");
    write_file(conf, "port " + std::to_string(port_) +
                         "\nbind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir " +
                         dir.path().string() + "\nsentinel monitor " + master + " 127.0.0.1 " +
                         std::to_string(primary_port) + " " + std::to_string(quorum) +
                         "\nsentinel down-after-milliseconds " + master + " " +
                         std::to_string(down_after.count()) + "\nsentinel failover-timeout " +
                         master + " " + std::to_string(failover_timeout.count()) +
                         "\nsentinel parallel-syncs " + master + " 1\n");
    process_ = child({"/usr/bin/redis-sentinel", conf.string()},
                     dir / ("sentinel-" + std::to_string(port_) + ".log"));
    auto until = std::chrono::steady_clock::now() + 10s;
    bool up = false;
    while (!(up = wait_for_port(port_, 100ms)))
      if (!process_.alive() || std::chrono::steady_clock::now() > until) break;
    if (up) return;
    if (attempt >= 5)
      throw std::runtime_error("redis-sentinel did not start on port " + std::to_string(port_));
    process_.stop();
  }
}

std::string redis_sentinel::cli(const std::string& args) const {
  return redis_cli(dir_, port_, "", args);
}

int redis_sentinel::primary_port() const {
  // Two lines: the address, the port.
  std::istringstream in(cli("SENTINEL get-master-addr-by-name " + master_));
  std::string host, port;
  if (!(in >> host >> port)) return 0;
  return std::atoi(port.c_str());
}

std::size_t redis_sentinel::replicas() const {
  // A flat list of field, value lines per replica; each starts with "name".
  std::istringstream in(cli("SENTINEL replicas " + master_));
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) n += line == "name";
  return n;
}

// --- guard ---------------------------------------------------------------------

guard::guard(const temp_dir& dir, std::string config, const std::string& name)
    : config_path_(dir / (name + ".toml")), log_path_(dir / (name + ".log")) {
  for (int attempt = 0;; ++attempt) {
    port_ = free_port();
    std::string text = config;
    std::string::size_type pos;
    while ((pos = text.find("@PORT@")) != std::string::npos)
      text.replace(pos, 6, std::to_string(port_));
    write_file(config_path_, text);
    fs::remove(log_path_);
    if (start_process()) break;
    // Another test took the port between our pick and the bind: pick again.
    if (attempt < 5 && log().find("Address already in use") != std::string::npos) continue;
    throw std::runtime_error("mxguard did not start:\n" + log());
  }
  probe();
}

bool guard::start_process() {
  process_ = child({MXGUARD_BINARY, "--config", config_path_.string()}, log_path_);
  auto until = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    if (wait_for_port(port_, 100ms)) return true;
    if (!process_.alive() || std::chrono::steady_clock::now() > until) return false;
  }
}

void guard::probe() const {
  // wait_for_port's probe opened a session; let it end, so that tests of the
  // session caps start from zero.
  smtp_client probe;
  if (probe.connect(port_)) {
    probe.read_reply(2s);
    probe.command("QUIT", 2s);
    probe.closed_by_peer(2s);
  }
  std::this_thread::sleep_for(50ms);
}

void guard::restart() {
  if (process_.alive()) {
    process_.signal(SIGKILL);
    process_.wait_exit(5s);
  }
  if (!start_process()) throw std::runtime_error("mxguard did not restart:\n" + log());
  probe();
}

void guard::reload(std::string config) {
  std::string::size_type pos;
  while ((pos = config.find("@PORT@")) != std::string::npos)
    config.replace(pos, 6, std::to_string(port_));
  write_file(config_path_, config);
  process_.signal(SIGHUP);
}

// --- smtp client -----------------------------------------------------------------

smtp_client::~smtp_client() {
  close();
}

void smtp_client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool smtp_client::connect(int port, const std::string& host) {
  return connect_from("", port, host);
}

bool smtp_client::connect_from(const std::string& source, int port, const std::string& host) {
  close();
  buffer_.clear();
  fd_ = connect_socket(source, host, port);
  return fd_ >= 0;
}

void smtp_client::send(const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server closed; the next read tells the test
    done += static_cast<std::size_t>(n);
  }
}

smtp_reply smtp_client::read_reply(std::chrono::milliseconds timeout) {
  smtp_reply reply;
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Complete lines first.
    std::size_t start = 0;
    for (;;) {
      auto eol = buffer_.find("\r\n", start);
      if (eol == std::string::npos) break;
      std::string line = buffer_.substr(start, eol - start);
      start = eol + 2;
      if (!reply.text.empty()) reply.text += "\r\n";
      reply.text += line;
      if (line.size() < 4 || line[3] == ' ') {
        reply.code = line.size() >= 3 ? std::atoi(line.substr(0, 3).c_str()) : -1;
        buffer_.erase(0, start);
        return reply;
      }
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0 || fd_ < 0) return {0, reply.text};
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {0, reply.text};
    char chunk[4096];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return {0, reply.text};
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

smtp_reply smtp_client::command(const std::string& line, std::chrono::milliseconds timeout) {
  send(line + "\r\n");
  return read_reply(timeout);
}

smtp_reply smtp_client::start_transaction(const std::string& from, const std::string& to) {
  auto r = command("EHLO client.test");
  if (r.code != 250) return r;
  r = command("MAIL FROM:<" + from + ">");
  if (r.code != 250) return r;
  return command("RCPT TO:<" + to + ">");
}

smtp_reply smtp_client::send_message(const std::string& message) {
  auto r = command("DATA");
  if (r.code != 354) return r;
  std::string wire;
  bool line_start = true;
  for (char c : message) {
    if (line_start && c == '.') wire.push_back('.');
    wire.push_back(c);
    line_start = c == '\n';
  }
  if (!wire.ends_with("\r\n")) wire += "\r\n";
  wire += ".\r\n";
  send(wire);
  return read_reply(30s);
}

bool smtp_client::closed_by_peer(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[4096];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return true;
  }
}

// --- http ----------------------------------------------------------------------------

std::string http_get(int port, const std::string& path, int* status) {
  smtp_client c;  // a plain TCP client is all HTTP/1.0 needs
  if (!c.connect(port)) return "";
  c.send("GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  std::string all;
  char buffer[65536];
  for (;;) {
    auto n = ::recv(c.fd(), buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    all.append(buffer, static_cast<std::size_t>(n));
  }
  if (status && all.size() > 12) *status = std::atoi(all.substr(9, 3).c_str());
  auto body = all.find("\r\n\r\n");
  return body == std::string::npos ? "" : all.substr(body + 4);
}

double metric(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  return -1;
}

int established_at(int port) {
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);  // the column names
  int count = 0;
  while (std::getline(tcp, line)) {
    // "  sl  local_address rem_address   st ...", addresses as HEXIP:HEXPORT
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    auto colon = local.find(':');
    if (colon == std::string::npos || state != "01") continue;
    if (std::stoi(local.substr(colon + 1), nullptr, 16) == port) ++count;
  }
  return count;
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string make_message(const std::string& subject, const std::string& body,
                         const std::string& from, const std::string& to) {
  return "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: " + subject +
         "\r\nMessage-ID: <test@client.test>\r\n\r\n" + body;
}

}  // namespace mxguard::test
