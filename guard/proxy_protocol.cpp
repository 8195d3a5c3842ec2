#include "proxy_protocol.hpp"

#include <charconv>
#include <cstring>

namespace mxguard::guard {

namespace {

namespace asio = boost::asio;

constexpr unsigned char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

proxy_header invalid() {
  return {proxy_header::status::invalid, 0, std::nullopt};
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v > 65535 ||
      (s.size() > 1 && s[0] == '0'))
    return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

proxy_header parse_v1(std::string_view bytes) {
  auto end = bytes.find("\r\n");
  if (end == std::string_view::npos) return bytes.size() >= 107 ? invalid() : proxy_header{};
  if (end + 2 > 107) return invalid();
  std::string_view line = bytes.substr(0, end);
  proxy_header result{proxy_header::status::ok, end + 2, std::nullopt};
  // "PROXY UNKNOWN ..." : the balancer does not know; use the peer address.
  if (line == "PROXY UNKNOWN" || line.starts_with("PROXY UNKNOWN ")) return result;
  std::string_view fields[6];
  std::size_t count = 0, pos = 0;
  while (count < 6) {
    // The last field takes the rest of the line, so that trailing junk
    // ("... 25 extra", "... 25 ") fails the port check instead of being
    // silently ignored: a header is exactly six fields (spec §2.1).
    if (count == 5) {
      fields[count++] = line.substr(pos);
      break;
    }
    auto space = line.find(' ', pos);
    fields[count++] = line.substr(pos, space == std::string_view::npos ? space : space - pos);
    if (space == std::string_view::npos) break;
    pos = space + 1;
  }
  if (count != 6 || fields[0] != "PROXY" || (fields[1] != "TCP4" && fields[1] != "TCP6"))
    return invalid();
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(std::string(fields[2]), ec);
  if (ec || addr.is_v4() != (fields[1] == "TCP4")) return invalid();
  auto dst = asio::ip::make_address(std::string(fields[3]), ec);
  if (ec || dst.is_v4() != addr.is_v4()) return invalid();
  auto sport = parse_port(fields[4]);
  auto dport = parse_port(fields[5]);
  if (!sport || !dport) return invalid();
  result.source = asio::ip::tcp::endpoint(addr, *sport);
  return result;
}

proxy_header parse_v2(std::string_view bytes) {
  if (bytes.size() < 16) return {};
  auto b = reinterpret_cast<const unsigned char*>(bytes.data());
  if ((b[12] >> 4) != 2) return invalid();
  const unsigned command = b[12] & 0x0F;
  const unsigned family = b[13];
  const std::size_t length = (static_cast<std::size_t>(b[14]) << 8) | b[15];
  if (16 + length > proxy_header_max) return invalid();
  if (bytes.size() < 16 + length) return {};
  proxy_header result{proxy_header::status::ok, 16 + length, std::nullopt};
  if (command == 0) return result;  // LOCAL: the balancer's own health check
  if (command != 1) return invalid();
  const unsigned char* a = b + 16;
  if (family == 0x11) {  // TCP over IPv4
    if (length < 12) return invalid();
    asio::ip::address_v4::bytes_type src;
    std::memcpy(src.data(), a, 4);
    std::uint16_t port = static_cast<std::uint16_t>((a[8] << 8) | a[9]);
    result.source = asio::ip::tcp::endpoint(asio::ip::address_v4(src), port);
  } else if (family == 0x21) {  // TCP over IPv6
    if (length < 36) return invalid();
    asio::ip::address_v6::bytes_type src;
    std::memcpy(src.data(), a, 16);
    std::uint16_t port = static_cast<std::uint16_t>((a[32] << 8) | a[33]);
    result.source = asio::ip::tcp::endpoint(asio::ip::address_v6(src), port);
  } else if (family != 0x00) {
    return invalid();  // UDP or UNIX sockets make no sense for SMTP
  }
  return result;
}

}  // namespace

proxy_header parse_proxy_header(std::string_view bytes) {
  if (bytes.empty()) return {};
  if (static_cast<unsigned char>(bytes[0]) == v2_signature[0]) {
    auto n = std::min(bytes.size(), sizeof v2_signature);
    if (std::memcmp(bytes.data(), v2_signature, n) != 0) return invalid();
    if (bytes.size() < sizeof v2_signature) return {};
    return parse_v2(bytes);
  }
  constexpr std::string_view v1_prefix = "PROXY ";
  auto n = std::min(bytes.size(), v1_prefix.size());
  if (bytes.substr(0, n) != v1_prefix.substr(0, n)) return invalid();
  return parse_v1(bytes);
}

}  // namespace mxguard::guard
