// mxguard::dnsbl DNS client: queries built and parsed with ldns, sent with
// Asio (UDP, TCP when the answer is truncated), never a blocking resolver call.
//
// Spoofing defences: a random query ID from the OS CSPRNG, a fresh UDP socket
// (random source port) per try connected to the resolver (the kernel drops
// datagrams from any other address), and answers accepted only when ID, QR
// bit and question match. A mismatched answer is ignored and the wait goes on.
//
// One client per I/O thread; all calls on that thread's executor.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>
#include <boost/asio/ip/udp.hpp>

namespace mxguard::dnsbl {

enum class rr_type : std::uint16_t { a = 1, ptr = 12, txt = 16, aaaa = 28 };

struct dns_result {
  enum class status { answer, nxdomain, servfail, refused, timeout, error };
  status state = status::error;
  std::vector<boost::asio::ip::address_v4> addresses;   // A records
  std::vector<boost::asio::ip::address_v6> addresses6;  // AAAA records
  std::vector<std::string> texts;                       // TXT strings, joined per record
  std::vector<std::string> names;  // PTR targets: lower case, no trailing dot, as sent
  std::uint32_t ttl = 0;           // smallest answer TTL, or the SOA minimum of a negative answer
  bool via_tcp = false;
  std::string error;  // what went wrong, for the log
};
const char* to_string(dns_result::status s);

// Wire helpers, exposed for tests and fuzzing.
// Builds a query with EDNS0 (UDP size 1232) and the given ID; empty on a bad name.
std::vector<std::uint8_t> build_query(std::string_view name, rr_type type, std::uint16_t id);
// Parses a response to (name, type, id). nullopt when it is not an answer to
// that question (wrong ID, not a response, other question): ignore it.
// `truncated` is set when the TC bit is on.
std::optional<dns_result> parse_response(const std::uint8_t* data, std::size_t size,
                                         std::string_view name, rr_type type, std::uint16_t id,
                                         bool& truncated);

// What ldns must not be given. libldns 1.8.3's ldns_wire2pkt keeps one TSIG
// record per packet and leaks each earlier one (a message with three or more
// additional records, two of them TSIG): every such datagram would cost
// memory for good. Messages are walked first, without building anything.
struct wire_outline {
  unsigned tsig = 0;  // TSIG records anywhere
  unsigned opt = 0;   // OPT records in the additional section
};
// nullopt when the sections do not fit the message (ldns would refuse it too).
std::optional<wire_outline> outline(const std::uint8_t* data, std::size_t size);

struct resolver_settings {
  std::vector<boost::asio::ip::udp::endpoint> servers;
  std::chrono::milliseconds try_timeout{1000};  // one UDP (or TCP) exchange
  unsigned attempts = 2;                        // tries, rotating over servers
};

// Reads "nameserver" lines of /etc/resolv.conf (port 53).
std::vector<boost::asio::ip::udp::endpoint> system_resolvers(
    const std::string& path = "/etc/resolv.conf");

class dns_client {
 public:
  explicit dns_client(resolver_settings settings) : settings_(std::move(settings)) {}
  // Never throws; a deadline that passes ends the query with `timeout`.
  boost::asio::awaitable<dns_result> query(std::string name, rr_type type,
                                           std::chrono::steady_clock::time_point deadline);

 private:
  resolver_settings settings_;
  unsigned next_server_ = 0;
};

}  // namespace mxguard::dnsbl
