// mxguard-zone-server: hosts mxguard::dnsbl::zone_responder for bench/zone.sh, serving a list
// file the way the daemon serves its blocklist: an in-memory copy, looked up synchronously.
//
//   mxguard-zone-server --zone bench.bl --listen 127.0.0.1:5300 --list list.txt
//                       [--export rbldnsd.txt]
//
// The list has one "prefix reason..." per line (IPv4 or IPv6, with or without /len). With
// --export it also writes rbldnsd_export() of the same entries, so rbldnsd serves the same list.
// Runs until SIGINT/SIGTERM; prints "ready <port>" on stdout once it serves.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <boost/asio/signal_set.hpp>

#include "mxguard/dnsbl/zone.hpp"

namespace {

namespace asio = boost::asio;
namespace dnsbl = mxguard::dnsbl;

// Longest-prefix match with one hash map per prefix length in use: what an owner with a large
// list of /32s and a few ranges would keep; the benchmark measures the responder, not this.
class prefix_table {
 public:
  void add(const asio::ip::address& a, unsigned len, std::string reason) {
    if (a.is_v4()) {
      auto key = mask4(a.to_v4().to_uint(), len);
      v4_[len].emplace(key, std::move(reason));
    } else {
      auto net = asio::ip::network_v6(a.to_v6(), static_cast<unsigned short>(len)).canonical();
      v6_[len].emplace(net.address().to_string(), std::move(reason));
    }
  }
  std::optional<dnsbl::listing> find(const asio::ip::address& a) const {
    if (a.is_v4()) {
      for (auto it = v4_.rbegin(); it != v4_.rend(); ++it)
        if (auto hit = it->second.find(mask4(a.to_v4().to_uint(), it->first));
            hit != it->second.end())
          return dnsbl::listing{hit->second};
      return std::nullopt;
    }
    for (auto it = v6_.rbegin(); it != v6_.rend(); ++it) {
      auto net = asio::ip::network_v6(a.to_v6(), static_cast<unsigned short>(it->first));
      if (auto hit = it->second.find(net.canonical().address().to_string());
          hit != it->second.end())
        return dnsbl::listing{hit->second};
    }
    return std::nullopt;
  }

 private:
  static std::uint32_t mask4(std::uint32_t a, unsigned len) {
    return len == 0 ? 0 : a & ~((std::uint64_t{1} << (32 - len)) - 1);
  }
  std::map<unsigned, std::unordered_map<std::uint32_t, std::string>> v4_;
  std::map<unsigned, std::unordered_map<std::string, std::string>> v6_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string zone = "bench.bl", listen = "127.0.0.1:5300", list_path, export_path;
  CLI::App app{"mxguard-zone-server: the DNSBL zone responder serving a list file"};
  app.add_option("--zone", zone, "zone name");
  app.add_option("--listen", listen, "address:port");
  app.add_option("--list", list_path, "\"prefix reason\" per line")->required();
  app.add_option("--export", export_path, "write the rbldnsd dataset of the list here");
  CLI11_PARSE(app, argc, argv);

  auto table = std::make_shared<prefix_table>();
  std::vector<dnsbl::export_entry> entries;
  std::ifstream in(list_path);
  if (!in) {
    std::cerr << "cannot read " << list_path << "\n";
    return 2;
  }
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string prefix, reason;
    if (!(words >> prefix)) continue;
    std::getline(words >> std::ws, reason);
    auto slash = prefix.find('/');
    boost::system::error_code ec;
    auto address = asio::ip::make_address(prefix.substr(0, slash), ec);
    if (ec) continue;
    unsigned len = address.is_v4() ? 32 : 128;
    if (slash != std::string::npos)
      len = static_cast<unsigned>(std::stoul(prefix.substr(slash + 1)));
    table->add(address, len, reason);
    entries.push_back({prefix, reason});
  }

  dnsbl::zone_settings settings;
  settings.zone = zone;
  settings.listen = {listen};
  if (!export_path.empty()) {
    std::ofstream(export_path) << dnsbl::rbldnsd_export(entries, settings);
  }
  asio::io_context io(1);
  dnsbl::zone_responder responder(io, settings,
                                  [table](const asio::ip::address& a) { return table->find(a); });
  responder.start();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { responder.stop(); });
  std::cout << "ready " << responder.udp_endpoints().at(0).port() << " entries " << entries.size()
            << std::endl;
  io.run();
  const auto& c = responder.counters();
  std::cout << "queries " << c.queries << " noerror " << c.noerror << " nxdomain " << c.nxdomain
            << " dropped " << c.dropped << std::endl;
  return 0;
}
