// mxguard-dns-loadgen: DNSBL queries per second a DNS server answers over UDP (bench/zone.sh).
//
//   mxguard-dns-loadgen --target 127.0.0.1:5300 --zone bench.bl --duration 10 --inflight 64
//
// One connected UDP socket keeps --inflight A queries outstanding (matched by ID). Query i asks
// for a listed address (--listed-base + k, k < --listed-count) when i is even and for an
// unlisted one (--unlisted-base + k) when odd, so the mix is half and half; a listed answer
// must be NOERROR with an answer, an unlisted one NXDOMAIN, else it counts as `wrong`. A query
// unanswered after --timeout-ms counts as a timeout and its slot is reused. Bounded by
// --duration (at most 600 s). Output: one JSON line on stdout.
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

namespace {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

// A question for `a` (IPv4, host order) in `zone`, type A, class IN, no RD.
std::vector<std::uint8_t> make_query(std::uint16_t id, std::uint32_t a, const std::string& zone) {
  std::vector<std::uint8_t> q = {static_cast<std::uint8_t>(id >> 8),
                                 static_cast<std::uint8_t>(id),
                                 0,
                                 0,
                                 0,
                                 1,
                                 0,
                                 0,
                                 0,
                                 0,
                                 0,
                                 0};
  auto label = [&](const std::string& l) {
    q.push_back(static_cast<std::uint8_t>(l.size()));
    q.insert(q.end(), l.begin(), l.end());
  };
  for (int shift = 0; shift < 32; shift += 8) label(std::to_string((a >> shift) & 0xff));
  std::size_t start = 0;
  while (start < zone.size()) {
    auto dot = zone.find('.', start);
    if (dot == std::string::npos) dot = zone.size();
    label(zone.substr(start, dot - start));
    start = dot + 1;
  }
  for (std::uint8_t b : {0, 0, 1, 0, 1}) q.push_back(b);
  return q;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct slot {
  bool busy = false;
  bool listed = false;
  clock_type::time_point sent;
};

}  // namespace

int main(int argc, char** argv) {
  std::string target = "127.0.0.1:5300", zone = "bench.bl";
  std::string listed_base = "10.1.0.0", unlisted_base = "10.3.0.0";
  unsigned listed_count = 10000, unlisted_count = 60000, inflight = 64, timeout_ms = 1000;
  double duration = 10;
  CLI::App app{"mxguard-dns-loadgen: DNSBL queries per second over UDP"};
  app.add_option("--target", target, "ipv4:port");
  app.add_option("--zone", zone, "DNSBL zone");
  app.add_option("--listed-base", listed_base);
  app.add_option("--listed-count", listed_count)->check(CLI::Range(1u, 1u << 24));
  app.add_option("--unlisted-base", unlisted_base);
  app.add_option("--unlisted-count", unlisted_count)->check(CLI::Range(1u, 1u << 24));
  app.add_option("--inflight", inflight, "queries outstanding")->check(CLI::Range(1u, 4096u));
  app.add_option("--timeout-ms", timeout_ms)->check(CLI::Range(1u, 10000u));
  app.add_option("--duration", duration, "seconds")->check(CLI::Range(0.1, 600.0));
  CLI11_PARSE(app, argc, argv);

  auto colon = target.rfind(':');
  asio::io_context io;
  asio::ip::udp::socket socket(io);
  const asio::ip::udp::endpoint server(
      asio::ip::make_address_v4(target.substr(0, colon)),
      static_cast<unsigned short>(std::stoul(target.substr(colon + 1))));
  socket.open(asio::ip::udp::v4());
  socket.connect(server);
  socket.non_blocking(true);
  const auto listed0 = asio::ip::make_address_v4(listed_base).to_uint();
  const auto unlisted0 = asio::ip::make_address_v4(unlisted_base).to_uint();

  std::vector<slot> slots(65536);
  std::vector<std::uint32_t> latencies_us;
  latencies_us.reserve(1 << 20);
  std::uint64_t sent = 0, answered = 0, wrong = 0, timeouts = 0, in_flight = 0;
  std::uint16_t next_id = 0;
  const auto timeout = std::chrono::milliseconds(timeout_ms);
  const double cpu0 = cpu_seconds();
  const auto start = clock_type::now();
  const auto end = start + std::chrono::duration_cast<clock_type::duration>(
                               std::chrono::duration<double>(duration));
  auto last_sweep = start;
  std::uint8_t buffer[4096];
  for (;;) {
    auto now = clock_type::now();
    if (now >= end) break;
    while (in_flight < inflight) {
      std::uint16_t id = next_id++;
      if (slots[id].busy) continue;  // still waiting after 65536 sends: leave it
      bool listed = sent % 2 == 0;
      std::uint32_t k = static_cast<std::uint32_t>(sent / 2);
      std::uint32_t a = listed ? listed0 + k % listed_count : unlisted0 + k % unlisted_count;
      auto q = make_query(id, a, zone);
      boost::system::error_code ec;
      socket.send(asio::buffer(q), 0, ec);
      if (ec) break;  // socket buffer full: receive first
      slots[id] = {true, listed, clock_type::now()};
      ++sent;
      ++in_flight;
    }
    pollfd p{socket.native_handle(), POLLIN, 0};
    poll(&p, 1, 50);
    for (;;) {
      boost::system::error_code ec;
      auto n = socket.receive(asio::buffer(buffer), 0, ec);
      if (ec) break;
      if (n < 12) continue;
      std::uint16_t id = static_cast<std::uint16_t>((buffer[0] << 8) | buffer[1]);
      auto& s = slots[id];
      if (!s.busy) continue;  // late answer to a timed-out query
      s.busy = false;
      --in_flight;
      ++answered;
      const int rcode = buffer[3] & 0x0f;
      const int ancount = (buffer[6] << 8) | buffer[7];
      if (s.listed ? (rcode != 0 || ancount == 0) : rcode != 3) ++wrong;
      latencies_us.push_back(static_cast<std::uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - s.sent)
              .count()));
    }
    now = clock_type::now();
    if (now - last_sweep > timeout / 4) {
      last_sweep = now;
      for (auto& s : slots)
        if (s.busy && now - s.sent > timeout) {
          s.busy = false;
          --in_flight;
          ++timeouts;
        }
    }
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  const double cpu = cpu_seconds() - cpu0;
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double p) -> std::uint32_t {
    if (latencies_us.empty()) return 0;
    auto i = static_cast<std::size_t>(p * static_cast<double>(latencies_us.size() - 1));
    return latencies_us[i];
  };
  fmt::print(
      "{{\"target\":\"{}\",\"sent\":{},\"answered\":{},\"wrong\":{},\"timeouts\":{},"
      "\"elapsed_s\":{:.3f},\"queries_per_s\":{:.1f},\"p50_us\":{},\"p99_us\":{},\"cpu_s\":{:.3f}}}"
      "\n",
      target, sent, answered, wrong, timeouts, elapsed, static_cast<double>(answered) / elapsed,
      pct(0.5), pct(0.99), cpu);
  return answered > 0 ? 0 : 1;
}
