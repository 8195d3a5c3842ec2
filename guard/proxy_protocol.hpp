// PROXY protocol v1 (text) and v2 (binary) headers, as sent by HAProxy and
// cloud load balancers in front of port 25, so that every check sees the
// real client address. Accepted only from `server.proxy_protocol_from`.
//
// A pure parser over the bytes peeked from the socket; fuzzed.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

namespace mxguard::guard {

struct proxy_header {
  enum class status { incomplete, invalid, ok };
  status state = status::incomplete;
  std::size_t length = 0;  // bytes the header occupies (ok only)
  // The original client; empty for LOCAL (health checks) and UNKNOWN.
  std::optional<boost::asio::ip::tcp::endpoint> source;
};

// Longest possible header: v1 is at most 107 bytes; v2 is 16 plus its
// length field, up to 64 KiB: HAProxy's TLVs (SSL details, unique IDs, cloud
// endpoint IDs) can take more than a few hundred bytes.
inline constexpr std::size_t proxy_header_max = 16 + 65535;

proxy_header parse_proxy_header(std::string_view bytes);

}  // namespace mxguard::guard
