// mxguard::dnsbl zone responder: publishes mxguard's blocklist as a DNSBL zone
// (RFC 5782) over UDP and TCP, so that inner mail servers (Postfix
// `reject_rbl_client`, other mxguards) can ask the gateway which hosts it blocks.
//
// Who calls it: the daemon builds one `zone_responder` on one I/O thread's
// io_context, gives it a `zone_lookup` over its in-memory copy of the
// blocklist, calls start() and, at shutdown, stop(). Every callback and every
// member call happens on that io_context's thread (start() may also be called
// before the io_context runs). The lookup is synchronous on purpose: a DNSBL
// answer must not wait on Redis; the owner keeps the list in memory.
//
// The packet logic is `zone_answerer::answer()`, a pure function of the query
// bytes (plus the lookup), so it is unit-tested and fuzzed without sockets.
// Packets are parsed and built with ldns; no recursion is ever offered.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

namespace mxguard::dnsbl {

// What the owner's blocklist says about a listed address.
struct listing {
  std::string reason;
};
// nullopt = not listed. Called with the address the query names (v4 or v6);
// prefixes (CIDR entries) are the owner's business: it answers for any
// address inside them. Must not block; may throw (the query gets SERVFAIL).
using zone_lookup = std::function<std::optional<listing>(const boost::asio::ip::address&)>;

struct zone_soa {
  std::string mname;         // primary server, also the NS answer; empty: the zone name
  std::string rname;         // mailbox as a name; empty: "hostmaster.<zone>"
  std::uint32_t serial = 0;  // 0: the responder's start time (seconds since 1970)
  std::chrono::seconds refresh{3600};
  std::chrono::seconds retry{600};
  std::chrono::seconds expire{604800};
};

struct zone_settings {
  std::string zone;                 // e.g. "bl.example.org"; trailing dot optional
  std::vector<std::string> listen;  // "127.0.0.1:5300", "[::1]:5300"; port 0 picks one
  std::chrono::seconds ttl{300};    // listed answers (A, TXT) and apex SOA/NS
  // NXDOMAIN/NODATA: the SOA's TTL and minimum (RFC 2308). Short, so that a
  // fresh auto-block reaches the inner servers' caches within a minute.
  std::chrono::seconds negative_ttl{60};
  zone_soa soa;
  // TXT of a listed address: {reason} and {address} are replaced; control
  // characters are replaced by '?', and the result is cut at 1000 bytes.
  std::string txt_template = "Blocked by mxguard: {reason}";
  std::string listed_address = "127.0.0.2";           // the A answer (RFC 5782 §2.1: 127.0.0.0/8)
  std::size_t max_tcp_connections = 64;               // past it, new connections are closed at once
  std::chrono::milliseconds tcp_idle_timeout{10000};  // per query: wait + read, or write
  std::uint16_t max_udp_payload = 1232;  // EDNS0 sizes above it are lowered to it (flag day 2020)
};

// "" when the settings are usable; otherwise "key: why" for the config loader.
std::string check_zone_settings(const zone_settings& settings);

enum class zone_transport { udp, tcp };

// The query parser and answer builder. Immutable after construction.
class zone_answerer {
 public:
  // Throws std::invalid_argument with check_zone_settings()'s message.
  zone_answerer(const zone_settings& settings, zone_lookup lookup);
  ~zone_answerer();
  zone_answerer(zone_answerer&&) noexcept;
  zone_answerer& operator=(zone_answerer&&) noexcept;

  // One DNS message in, the reply out; nullopt = send nothing (too short to
  // carry an ID, or itself a response: answering those invites loops). Over
  // UDP, where the source may be forged, a datagram that is not a well-formed
  // query with one question gets nothing either (no FORMERR/NOTIMP ping-pong
  // with another UDP service, CVE-2024-2169); over TCP it gets its error.
  // ANY is answered minimally (RFC 8482): the A record only. Never throws.
  // UDP replies fit the requester's size (512, or its EDNS0 size up to
  // max_udp_payload) or are cut to the question with TC set.
  std::optional<std::vector<std::uint8_t>> answer(std::span<const std::uint8_t> query,
                                                  zone_transport transport) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

namespace detail {
struct zone_state;
}

// Read from any thread (metrics); written on the responder's thread.
struct zone_counters {
  std::atomic<std::uint64_t> queries{0};   // messages received (UDP datagrams, TCP frames)
  std::atomic<std::uint64_t> noerror{0};   // answers and NODATA, apex included
  std::atomic<std::uint64_t> nxdomain{0};  // unlisted or not an address
  std::atomic<std::uint64_t> refused{0};   // outside the zone, other class, transfers
  std::atomic<std::uint64_t> formerr{0};   // unparseable, QDCOUNT != 1
  std::atomic<std::uint64_t> notimp{0};    // opcode other than QUERY
  std::atomic<std::uint64_t> servfail{0};  // the lookup threw
  std::atomic<std::uint64_t> truncated{0};
  std::atomic<std::uint64_t> dropped{0};       // no answer (garbage, responses) or send failed
  std::atomic<std::uint64_t> tcp_rejected{0};  // connections over max_tcp_connections
};

class zone_responder {
 public:
  // Throws std::invalid_argument on bad settings (a configuration error).
  zone_responder(boost::asio::io_context& io, zone_settings settings, zone_lookup lookup);
  ~zone_responder();  // stop()
  zone_responder(const zone_responder&) = delete;
  zone_responder& operator=(const zone_responder&) = delete;

  // Binds UDP and TCP on every listen address (the same port for both; port 0
  // picks one free for both) and starts serving. Throws
  // boost::system::system_error when an address cannot be bound; then nothing
  // stays bound.
  void start();
  // Closes every socket; coroutines in flight end on their own. Idempotent.
  void stop();

  // Bound addresses after start(), in the order of settings.listen.
  std::vector<boost::asio::ip::udp::endpoint> udp_endpoints() const;
  std::vector<boost::asio::ip::tcp::endpoint> tcp_endpoints() const;
  const zone_counters& counters() const;

 private:
  std::shared_ptr<detail::zone_state> state_;  // shared with the serving coroutines
};

// The blocklist as an rbldnsd `combined` dataset (serve it as
// `<zone>:combined:<file>`): an ip4trie for IPv4 and an ip6trie for IPv6
// entries, each line `prefix :A:TXT`, with $SOA, $NS and $TTL from `zone`, the
// same TXT template ({address} becomes rbldnsd's `$`) and the RFC 5782 test
// entries. Prefixes are normalised to their network; unparseable ones are
// skipped. Reasons lose control characters and '$' (rbldnsd's placeholder);
// TXT is cut at 250 bytes (rbldnsd's own limit is 255).
struct export_entry {
  std::string prefix_cidr;  // "192.0.2.7", "192.0.2.0/24", "2001:db8::/32"
  std::string reason;
};
std::string rbldnsd_export(const std::vector<export_entry>& entries,
                           const zone_settings& zone = {});

}  // namespace mxguard::dnsbl
