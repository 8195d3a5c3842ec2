// The DNSBL zone responder on a real loopback socket, asked by real DNS
// clients: ldns's `drill` over UDP and TCP, and the project's own dns_client
// comparing it with Debian's rbldnsd serving rbldnsd_export() of the same
// list. Child processes get an argument vector (never a shell), a deadline
// and a kill by PID.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include "mxguard/dnsbl/dns.hpp"
#include "mxguard/dnsbl/zone.hpp"

extern char** environ;

namespace mxguard::dnsbl {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr const char* drill_path = "/usr/bin/drill";
constexpr const char* rbldnsd_path = "/usr/sbin/rbldnsd";

struct child_result {
  int exit_code = -1;  // -1: killed at the deadline or could not start
  std::string output;  // stdout and stderr
};

// Runs argv[0] with argv, collects its output, kills it by PID at `timeout`.
child_result run(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  child_result result;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    result.output = "spawn failed: " + std::string(strerror(rc));
    return result;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  char buffer[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    pollfd p{pipe_fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    auto n = read(pipe_fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    result.output.append(buffer, static_cast<std::size_t>(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!killed && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

std::optional<listing> blocklist(const asio::ip::address& a) {
  if (a == asio::ip::make_address("192.0.2.7")) return listing{"spam flood"};
  if (a == asio::ip::make_address("2001:db8::1")) return listing{"v6 spammer"};
  if (a.is_v4() && asio::ip::network_v4(a.to_v4(), 24).canonical() ==
                       asio::ip::make_network_v4("198.51.100.0/24"))
    return listing{"whole /24"};
  return std::nullopt;
}

const std::vector<export_entry> blocklist_entries = {
    {"192.0.2.7", "spam flood"}, {"2001:db8::1", "v6 spammer"}, {"198.51.100.0/24", "whole /24"}};

zone_settings settings() {
  zone_settings s;
  s.zone = "bl.example.org";
  s.listen = {"127.0.0.1:0"};
  s.soa.serial = 7;
  return s;
}

// The responder on its own I/O thread, as the daemon runs it.
class ZoneOnLoopback : public ::testing::Test {
 protected:
  virtual zone_settings test_settings() { return settings(); }
  void SetUp() override {
    responder_ = std::make_unique<zone_responder>(io_, test_settings(), blocklist);
    responder_->start();
    port_ = responder_->udp_endpoints().at(0).port();
    ASSERT_EQ(responder_->tcp_endpoints().at(0).port(), port_);
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    asio::post(io_, [this] { responder_->stop(); });
    auto work_done = std::async(std::launch::async, [this] { thread_.join(); });
    if (work_done.wait_for(5s) != std::future_status::ready) {
      ADD_FAILURE() << "coroutines still running 5 s after stop()";
      io_.stop();
    }
    work_done.get();
    responder_.reset();
  }

  child_result drill(const std::string& name, const std::string& type, bool tcp) {
    std::vector<std::string> args = {drill_path, "-p", std::to_string(port_)};
    if (tcp) args.push_back("-t");
    for (auto a : {name, std::string("@127.0.0.1"), type}) args.push_back(a);
    return run(args, 10s);
  }

  asio::io_context io_;
  std::unique_ptr<zone_responder> responder_;
  std::thread thread_;
  unsigned short port_ = 0;
};

TEST_F(ZoneOnLoopback, DrillUdpAndTcp) {
  if (access(drill_path, X_OK) != 0) GTEST_SKIP() << drill_path << " is not installed (ldnsutils)";
  struct row {
    const char* label;
    std::string name, type;
    std::string rcode;
    std::vector<std::string> must_contain;
  };
  const std::vector<row> rows = {
      {"listed A", "7.2.0.192.bl.example.org", "A", "NOERROR", {"\tA\t127.0.0.2", "flags: qr aa"}},
      {"listed TXT",
       "7.2.0.192.bl.example.org",
       "TXT",
       "NOERROR",
       {"\"Blocked by mxguard: spam flood\""}},
      {"listed v6",
       "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.org",
       "TXT",
       "NOERROR",
       {"\"Blocked by mxguard: v6 spammer\""}},
      {"in a listed /24", "9.100.51.198.bl.example.org", "A", "NOERROR", {"\tA\t127.0.0.2"}},
      {"test entry", "2.0.0.127.bl.example.org", "A", "NOERROR", {"\tA\t127.0.0.2"}},
      {"unlisted", "9.2.0.192.bl.example.org", "A", "NXDOMAIN", {"\tSOA\t"}},
      {"127.0.0.1", "1.0.0.127.bl.example.org", "A", "NXDOMAIN", {}},
      {"apex SOA", "bl.example.org", "SOA", "NOERROR", {"hostmaster.bl.example.org. 7 "}},
      {"other zone", "7.2.0.192.bl.example.net", "A", "REFUSED", {}},
  };
  for (bool tcp : {false, true}) {
    for (const auto& r : rows) {
      SCOPED_TRACE(std::string(r.label) + (tcp ? " over TCP" : " over UDP"));
      auto out = drill(r.name, r.type, tcp);
      ASSERT_EQ(out.exit_code, 0) << out.output;
      EXPECT_NE(out.output.find("rcode: " + r.rcode + ","), std::string::npos) << out.output;
      for (const auto& s : r.must_contain)
        EXPECT_NE(out.output.find(s), std::string::npos) << s << "\n" << out.output;
      EXPECT_EQ(out.output.find(" ra "), std::string::npos) << "recursion offered\n" << out.output;
    }
  }
  EXPECT_GE(responder_->counters().queries.load(), rows.size() * 2);
  EXPECT_EQ(responder_->counters().refused.load(), 2u);
}

// Asks one server with the project's DNS client (UDP, TCP on truncation).
dns_result ask(unsigned short port, const std::string& name, rr_type type) {
  asio::io_context io;
  resolver_settings rs;
  rs.servers = {asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), port)};
  rs.try_timeout = 1000ms;
  rs.attempts = 2;
  dns_client client(rs);
  auto result = asio::co_spawn(io, client.query(name, type, std::chrono::steady_clock::now() + 3s),
                               asio::use_future);
  io.run();
  return result.get();
}

// A free loopback port for UDP and TCP, for a server that cannot report the
// one it bound (rbldnsd). Racy in principle; retried by the caller.
unsigned short free_port() {
  asio::io_context io;
  asio::ip::udp::socket u(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  auto port = u.local_endpoint().port();
  asio::ip::tcp::acceptor t(io);
  t.open(asio::ip::tcp::v4());
  boost::system::error_code ec;
  t.bind(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  return ec ? 0 : port;
}

TEST_F(ZoneOnLoopback, RbldnsdServingTheExportAnswersTheSame) {
  if (access(rbldnsd_path, X_OK) != 0) GTEST_SKIP() << rbldnsd_path << " is not installed";
  char dir_template[] = "/tmp/mxguard-zone-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir = dir_template;
  // rbldnsd drops to `nobody` when started as root and reads the file then.
  chmod(dir.c_str(), 0755);
  { std::ofstream(dir / "bl.txt") << rbldnsd_export(blocklist_entries, settings()); }
  chmod((dir / "bl.txt").c_str(), 0644);

  pid_t pid = -1;
  unsigned short port = 0;
  for (int attempt = 0; attempt < 5 && pid < 0; ++attempt) {
    port = free_port();
    if (port == 0) continue;
    std::vector<std::string> args = {
        rbldnsd_path, "-n", "-q", "-b", "127.0.0.1/" + std::to_string(port), "-w", dir.string()};
    if (geteuid() == 0) {
      args.push_back("-u");
      args.push_back("nobody");
    }
    args.push_back("bl.example.org:combined:bl.txt");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&actions);
    // Up once the test entry answers; gone if the port was taken after all.
    bool up = false;
    for (int i = 0; i < 50 && !up; ++i) {
      if (waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;
        break;
      }
      up = ask(port, "2.0.0.127.bl.example.org", rr_type::a).state == dns_result::status::answer;
      if (!up) std::this_thread::sleep_for(100ms);
    }
    if (pid > 0 && !up) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ASSERT_GT(pid, 0) << "rbldnsd did not start serving the export";

  const std::vector<std::pair<std::string, rr_type>> questions = {
      {"7.2.0.192.bl.example.org", rr_type::a},
      {"7.2.0.192.bl.example.org", rr_type::txt},
      {"9.100.51.198.bl.example.org", rr_type::txt},
      {"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.org",
       rr_type::txt},
      {"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.org",
       rr_type::a},
      {"2.0.0.127.bl.example.org", rr_type::a},
      {"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.example.org",
       rr_type::txt},
      {"1.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.example.org",
       rr_type::a},
      {"2.0.0.127.bl.example.org", rr_type::txt},
      {"1.0.0.127.bl.example.org", rr_type::a},
      {"9.2.0.192.bl.example.org", rr_type::a},
      {"9.2.0.192.bl.example.org", rr_type::txt},
  };
  for (const auto& [name, type] : questions) {
    SCOPED_TRACE(name + (type == rr_type::a ? " A" : " TXT"));
    auto ours = ask(port_, name, type);
    auto theirs = ask(port, name, type);
    EXPECT_EQ(to_string(ours.state), to_string(theirs.state)) << theirs.error;
    EXPECT_EQ(ours.addresses, theirs.addresses);
    EXPECT_EQ(ours.texts, theirs.texts);
    if (ours.state == dns_result::status::answer) {
      EXPECT_EQ(ours.ttl, theirs.ttl);
    }
  }
  EXPECT_EQ(to_string(ask(port, "9.2.0.192.bl.example.org", rr_type::a).state),
            std::string("nxdomain"));

  kill(pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 30 && waitpid(pid, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(100ms);
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  std::filesystem::remove_all(dir);
}

// Small TCP limits, to see them act.
class ZoneTcpLimits : public ZoneOnLoopback {
 protected:
  zone_settings test_settings() override {
    auto s = settings();
    s.max_tcp_connections = 2;
    s.tcp_idle_timeout = 300ms;
    return s;
  }
};

std::vector<std::uint8_t> framed_query(const std::string& name, rr_type type, std::uint16_t id) {
  auto q = build_query(name, type, id);
  q.insert(q.begin(),
           {static_cast<std::uint8_t>(q.size() >> 8), static_cast<std::uint8_t>(q.size())});
  return q;
}

// Connects with a 2 s receive timeout, so that a broken server fails the test
// instead of hanging it.
asio::ip::tcp::socket connect_tcp(asio::io_context& io, unsigned short port) {
  asio::ip::tcp::socket s(io);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  timeval tv{2, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return s;
}

// One framed reply, or nullopt at EOF / error.
std::optional<std::vector<std::uint8_t>> read_reply(asio::ip::tcp::socket& s) {
  std::uint8_t length[2];
  boost::system::error_code ec;
  asio::read(s, asio::buffer(length), ec);
  if (ec) return std::nullopt;
  std::vector<std::uint8_t> body((length[0] << 8) | length[1]);
  asio::read(s, asio::buffer(body), ec);
  if (ec) return std::nullopt;
  return body;
}

TEST_F(ZoneTcpLimits, PipelinedQueriesOnOneConnection) {
  asio::io_context io;
  auto s = connect_tcp(io, port_);
  std::vector<std::uint8_t> batch;
  const std::vector<std::pair<std::string, rr_type>> qs = {
      {"7.2.0.192.bl.example.org", rr_type::a},
      {"9.2.0.192.bl.example.org", rr_type::a},
      {"7.2.0.192.bl.example.org", rr_type::txt}};
  for (std::size_t i = 0; i < qs.size(); ++i) {
    auto q = framed_query(qs[i].first, qs[i].second, static_cast<std::uint16_t>(100 + i));
    batch.insert(batch.end(), q.begin(), q.end());
  }
  asio::write(s, asio::buffer(batch));
  const char* want[] = {"answer", "nxdomain", "answer"};
  for (std::size_t i = 0; i < qs.size(); ++i) {
    auto reply = read_reply(s);
    ASSERT_TRUE(reply) << i;
    bool tc = false;
    auto r = parse_response(reply->data(), reply->size(), qs[i].first, qs[i].second,
                            static_cast<std::uint16_t>(100 + i), tc);
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(to_string(r->state), std::string(want[i]));
  }
  // Garbage with intact framing is skipped, and the connection goes on.
  std::vector<std::uint8_t> junk = {0, 5, 1, 2, 3, 4, 5};
  asio::write(s, asio::buffer(junk));
  auto q = framed_query("2.0.0.127.bl.example.org", rr_type::a, 7);
  asio::write(s, asio::buffer(q));
  auto reply = read_reply(s);
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)[1], 7);
}

TEST_F(ZoneTcpLimits, IdleConnectionsAreClosedAndTheCapHolds) {
  asio::io_context io;
  auto a = connect_tcp(io, port_);
  auto b = connect_tcp(io, port_);
  // Both are being served: each gets an answer.
  for (auto* s : {&a, &b}) {
    auto q = framed_query("7.2.0.192.bl.example.org", rr_type::a, 1);
    asio::write(*s, asio::buffer(q));
    ASSERT_TRUE(read_reply(*s));
  }
  auto c = connect_tcp(io, port_);  // the kernel accepts; the responder closes it
  EXPECT_FALSE(read_reply(c));
  EXPECT_EQ(responder_->counters().tcp_rejected.load(), 1u);
  // After the idle timeout (300 ms) the server closes a and b without a word.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(read_reply(a));
  EXPECT_FALSE(read_reply(b));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  // Slots are free again.
  auto d = connect_tcp(io, port_);
  auto q = framed_query("7.2.0.192.bl.example.org", rr_type::a, 2);
  asio::write(d, asio::buffer(q));
  EXPECT_TRUE(read_reply(d));
}

// A query "from" a privileged port other than 53 is a forged source aiming
// the reply at a service that answers back (echo, daytime, chargen).
TEST_F(ZoneOnLoopback, UdpFromAPrivilegedPortOtherThan53GetsNothing) {
  asio::io_context io;
  const asio::ip::udp::endpoint server(asio::ip::make_address("127.0.0.1"), port_);
  auto q = build_query("7.2.0.192.bl.example.org", rr_type::a, 9);
  auto replied_from = [&](unsigned short source_port) -> std::optional<bool> {
    asio::ip::udp::socket s(io);
    s.open(asio::ip::udp::v4());
    boost::system::error_code ec;
    s.bind(asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), source_port), ec);
    if (ec) return std::nullopt;  // not root, or the port is taken
    s.send_to(asio::buffer(q), server);
    // (Asio's blocking receive would wait past SO_RCVTIMEO: it polls again.)
    pollfd readable{s.native_handle(), POLLIN, 0};
    return ::poll(&readable, 1, 500) == 1;
  };
  auto from_chargen = replied_from(19);
  if (!from_chargen) GTEST_SKIP() << "cannot bind 127.0.0.1:19 (needs root)";
  EXPECT_FALSE(*from_chargen);
  EXPECT_EQ(replied_from(0), std::optional<bool>(true)) << "an ephemeral port is answered";
  EXPECT_EQ(responder_->counters().dropped.load(), 1u);
}

TEST_F(ZoneOnLoopback, UdpGarbageIsSurvived) {
  asio::io_context io;
  asio::ip::udp::socket s(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  timeval tv{2, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const asio::ip::udp::endpoint server(asio::ip::make_address("127.0.0.1"), port_);
  std::vector<std::uint8_t> junk(3000, 0xff);
  for (std::size_t n : {0, 1, 11, 12, 100, 3000}) s.send_to(asio::buffer(junk.data(), n), server);
  auto q = build_query("7.2.0.192.bl.example.org", rr_type::a, 9);
  s.send_to(asio::buffer(q), server);
  // The junk gets nothing (over UDP an error reply could feed a loop with a
  // forged source); the real query is answered after it.
  std::uint8_t buffer[4096];
  bool answered = false;
  for (int i = 0; i < 8 && !answered; ++i) {
    boost::system::error_code ec;
    auto n = s.receive(asio::buffer(buffer), 0, ec);
    if (ec) break;
    bool tc = false;
    auto r = parse_response(buffer, n, "7.2.0.192.bl.example.org", rr_type::a, 9, tc);
    answered = r && r->state == dns_result::status::answer;
  }
  EXPECT_TRUE(answered);
}

}  // namespace
}  // namespace mxguard::dnsbl
