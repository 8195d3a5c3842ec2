// DNS servers for the integration tests: rbldnsd serving the zones of
// tests/data/dnsbl, dnsmasq serving names and reverse names, and the hand-made DNS wire format the
// fake servers and readiness probes use.
//
// The zones list
//   bl.test   127.0.0.2, .10 (TXT), .11 (code outside the filter),
//             .14 (127.255.255.254), .15, .30; ::1 (ip6trie)
//   wl.test   127.0.0.2, .15 (127.0.10.2, an allowlist code)
//   w1.test   127.0.0.2, .12, .13        w2.test 127.0.0.2, .12
//   dbl.test  test, spam.example, bad-helo.example
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "harness.hpp"

namespace mxguard::test {

using clock = std::chrono::steady_clock;

inline const std::string zones_dir = std::string(MXGUARD_TEST_DATA) + "/dnsbl";

// --- DNS wire format, by hand ---------------------------------------------------

struct dns_query {
  std::uint16_t id = 0;
  bool rd = false;
  std::string name;  // lower case, no trailing dot
  std::uint16_t type = 0;
  std::vector<std::uint8_t> question;  // the question section as received
};

inline std::optional<dns_query> parse_query(const std::uint8_t* p, std::size_t n) {
  if (n < 12 || (p[2] & 0x80) || ((p[4] << 8) | p[5]) != 1) return std::nullopt;
  dns_query q;
  q.id = static_cast<std::uint16_t>((p[0] << 8) | p[1]);
  q.rd = p[2] & 0x01;
  std::size_t i = 12;
  while (i < n && p[i] != 0) {
    std::size_t len = p[i];
    if (len > 63 || i + 1 + len > n) return std::nullopt;
    if (!q.name.empty()) q.name += '.';
    for (std::size_t k = 0; k < len; ++k) q.name += static_cast<char>(std::tolower(p[i + 1 + k]));
    i += 1 + len;
  }
  if (i + 5 > n) return std::nullopt;
  q.type = static_cast<std::uint16_t>((p[i + 1] << 8) | p[i + 2]);
  q.question.assign(p + 12, p + i + 5);
  return q;
}

inline std::vector<std::uint8_t> make_query(const std::string& name, std::uint16_t id) {
  std::vector<std::uint8_t> out{static_cast<std::uint8_t>(id >> 8),
                                static_cast<std::uint8_t>(id & 0xff),
                                0x01,
                                0,
                                0,
                                1,
                                0,
                                0,
                                0,
                                0,
                                0,
                                0};
  std::istringstream labels(name);
  std::string label;
  while (std::getline(labels, label, '.')) {
    out.push_back(static_cast<std::uint8_t>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
  }
  out.insert(out.end(), {0, 0, 1, 0, 1});  // root, type A, class IN
  return out;
}

constexpr std::uint8_t rcode_noerror = 0, rcode_nxdomain = 3;

// An answer to `q` with the given ID; `address` adds one A record.
inline std::vector<std::uint8_t> make_answer(const dns_query& q, std::uint16_t id,
                                             std::uint8_t rcode, bool tc,
                                             std::optional<std::array<std::uint8_t, 4>> address) {
  std::uint8_t flags1 = 0x80 | 0x04 | (tc ? 0x02 : 0) | (q.rd ? 0x01 : 0);  // QR AA TC RD
  std::uint8_t flags2 = 0x80 | rcode;                                       // RA
  const std::uint8_t header[12] = {static_cast<std::uint8_t>(id >> 8),
                                   static_cast<std::uint8_t>(id & 0xff),
                                   flags1,
                                   flags2,
                                   0,
                                   1,  // one question
                                   0,
                                   static_cast<std::uint8_t>(address ? 1 : 0),
                                   0,
                                   0,
                                   0,
                                   0};
  std::vector<std::uint8_t> out;
  out.reserve(sizeof header + q.question.size() + 16);
  out.insert(out.end(), std::begin(header), std::end(header));
  out.insert(out.end(), q.question.begin(), q.question.end());
  if (address) {
    // Name: pointer to the question; type A, class IN, TTL 60, 4 bytes.
    out.insert(out.end(), {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4});
    out.insert(out.end(), address->begin(), address->end());
  }
  return out;
}

// A file descriptor closed at the end of the scope.
class fd_guard {
 public:
  explicit fd_guard(int fd = -1) : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

inline sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  return a;
}

inline int bound_socket(int type, int port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  int one = 1;
  if (type == SOCK_STREAM) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto a = loopback(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline int local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// True once a DNS server on 127.0.0.1:port answers a query for `name`.
inline bool dns_answers(int port, const std::string& name, std::chrono::milliseconds timeout) {
  fd_guard fd(bound_socket(SOCK_DGRAM, 0));
  auto server = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) return false;
  const auto query = make_query(name, 0x5151);
  const auto until = clock::now() + timeout;
  while (clock::now() < until) {
    ::send(fd.get(), query.data(), query.size(), 0);
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) == 1) {
      std::uint8_t buffer[512];
      auto n = ::recv(fd.get(), buffer, sizeof buffer, 0);
      if (n >= 12 && buffer[0] == 0x51 && buffer[1] == 0x51) return true;
    }
  }
  return false;
}

// --- rbldnsd --------------------------------------------------------------------

// rbldnsd with every zone of tests/data/dnsbl, logging each query.
class rbldnsd {
 public:
  explicit rbldnsd(const temp_dir& dir) : query_log_(dir / "rbldnsd-queries.log") {
    // The port is free when picked; under ctest -j another process may bind
    // it first, and rbldnsd then exits: pick another.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      process_ =
          child({"/usr/sbin/rbldnsd", "-n", "-b", "127.0.0.1/" + std::to_string(port_), "-w",
                 zones_dir, "-l", "+" + query_log_.string(), "bl.test:ip4set:bl.zone",
                 "bl.test:ip6trie:bl6.zone", "wl.test:ip4set:wl.zone", "w1.test:ip4set:w1.zone",
                 "w2.test:ip4set:w2.zone", "dbl.test:dnset:dbl.zone"},
                dir / "rbldnsd.log");
      const auto until = clock::now() + 5s;
      while (process_.alive() && clock::now() < until)
        if (dns_answers(port_, "ready.bl.test", 100ms)) return;
    }
    throw std::runtime_error("rbldnsd did not start:\n" + read_file(dir / "rbldnsd.log"));
  }
  std::string resolver() const { return "127.0.0.1:" + std::to_string(port_); }
  // SIGSTOP: a black hole (queries are taken by the kernel, never answered);
  // SIGCONT: answering again (resume before the end of a test).
  void pause() { process_.signal(SIGSTOP); }
  void resume() { process_.signal(SIGCONT); }
  // How many queries for exactly `name` (any type) rbldnsd has answered.
  std::size_t queries_for(const std::string& name) const {
    std::istringstream lines(read_file(query_log_));
    std::string line;
    std::size_t n = 0;
    // "<time> <client ip> <name> <type> <class>: <result>"
    while (std::getline(lines, line)) n += line.find(" " + name + " ") != std::string::npos;
    return n;
  }

 private:
  int port_ = 0;
  fs::path query_log_;
  child process_;
};

// --- dnsmasq ---------------------------------------------------------------------

// dnsmasq as a small authoritative server for names and reverse names:
// `host_records` "name,address" give an A (or AAAA) and its PTR; `ptr_records`
// "reverse-name,target" a PTR alone (a name that does not point back).
class dnsmasq {
 public:
  dnsmasq(const temp_dir& dir, const std::vector<std::string>& host_records,
          const std::vector<std::string>& ptr_records = {}) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      std::vector<std::string> argv{"/usr/sbin/dnsmasq",
                                    "--keep-in-foreground",
                                    "--conf-file=/dev/null",
                                    "--no-resolv",
                                    "--no-hosts",
                                    "--bind-interfaces",
                                    "--listen-address=127.0.0.1",
                                    "--port=" + std::to_string(port_),
                                    "--pid-file=",
                                    "--user=root",
                                    "--log-facility=-",
                                    "--log-queries"};
      for (const auto& r : host_records) argv.push_back("--host-record=" + r);
      for (const auto& r : ptr_records) argv.push_back("--ptr-record=" + r);
      process_ = child(argv, dir / "dnsmasq.log");
      const auto until = clock::now() + 5s;
      while (process_.alive() && clock::now() < until)
        if (dns_answers(port_, "ready.test", 100ms)) return;
    }
    throw std::runtime_error("dnsmasq did not start:\n" + read_file(dir / "dnsmasq.log"));
  }
  std::string resolver() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  child process_;
};

}  // namespace mxguard::test
