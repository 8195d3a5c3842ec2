// mxguard common vocabulary: client addresses and CIDR prefixes.
//
// Shared by every module (guard, dnsbl, ratelimit, ops) so that an IP address
// means the same thing everywhere. Header-only, no allocation, no I/O.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

namespace mxguard {

// An IPv4 or IPv6 network: the address with host bits cleared, and its length.
// IPv4-mapped IPv6 client addresses are unmapped on the way in (see
// `normalize`), so a v4 client is always matched against v4 prefixes.
class ip_prefix {
 public:
  ip_prefix() = default;
  ip_prefix(const boost::asio::ip::address& addr, unsigned length);

  // "192.0.2.0/24", "2001:db8::/32", or a bare address (full length).
  static std::optional<ip_prefix> parse(std::string_view text);

  bool is_v4() const { return v4_; }
  const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
  unsigned length() const { return length_; }
  bool contains(const boost::asio::ip::address& addr) const;
  std::string to_string() const;

  friend auto operator<=>(const ip_prefix&, const ip_prefix&) = default;

 private:
  std::array<std::uint8_t, 16> bytes_{};
  unsigned length_ = 0;
  bool v4_ = true;
};

// Unmaps ::ffff:a.b.c.d to a.b.c.d; other addresses are returned unchanged.
boost::asio::ip::address normalize(const boost::asio::ip::address& addr);

// The key a client is counted under: its /32 for IPv4, its /`v6_length` for
// IPv6 (a single host owns a whole /64, so counting /128s is no limit at all).
ip_prefix client_key(const boost::asio::ip::address& addr, unsigned v6_length);

// "host:port" or "[v6]:port" into its parts; nullopt when malformed.
struct host_port {
  std::string host;
  std::uint16_t port = 0;
  friend bool operator==(const host_port&, const host_port&) = default;
};
std::optional<host_port> parse_host_port(std::string_view text);

struct ip_prefix_hash {
  std::size_t operator()(const ip_prefix& p) const noexcept;
};

}  // namespace mxguard
