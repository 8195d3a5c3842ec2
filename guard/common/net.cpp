#include "mxguard/net.hpp"

#include <charconv>
#include <cstring>

#include "mxguard/verdict.hpp"

namespace mxguard {

namespace asio = boost::asio;

namespace {

void mask_bytes(std::array<std::uint8_t, 16>& bytes, unsigned length, unsigned total_bits) {
  for (unsigned bit = length; bit < total_bits; ++bit) bytes[bit / 8] &= ~(0x80u >> (bit % 8));
}

}  // namespace

asio::ip::address normalize(const asio::ip::address& addr) {
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  return addr;
}

ip_prefix::ip_prefix(const asio::ip::address& raw, unsigned length) {
  const auto addr = normalize(raw);
  v4_ = addr.is_v4();
  const unsigned total = v4_ ? 32 : 128;
  length_ = length > total ? total : length;
  if (v4_) {
    auto b = addr.to_v4().to_bytes();
    std::memcpy(bytes_.data(), b.data(), 4);
  } else {
    auto b = addr.to_v6().to_bytes();
    std::memcpy(bytes_.data(), b.data(), 16);
  }
  mask_bytes(bytes_, length_, total);
}

std::optional<ip_prefix> ip_prefix::parse(std::string_view text) {
  auto slash = text.find('/');
  std::string host(text.substr(0, slash));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return std::nullopt;
  addr = normalize(addr);
  unsigned total = addr.is_v4() ? 32 : 128;
  unsigned length = total;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    auto [ptr, err] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
    if (err != std::errc{} || ptr != digits.data() + digits.size() || digits.empty() ||
        length > total)
      return std::nullopt;
  }
  return ip_prefix(addr, length);
}

bool ip_prefix::contains(const asio::ip::address& raw) const {
  const auto addr = normalize(raw);
  if (addr.is_v4() != v4_) return false;
  return ip_prefix(addr, length_).bytes_ == bytes_;
}

std::string ip_prefix::to_string() const {
  std::string host;
  if (v4_) {
    asio::ip::address_v4::bytes_type b;
    std::memcpy(b.data(), bytes_.data(), 4);
    host = asio::ip::address_v4(b).to_string();
  } else {
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), bytes_.data(), 16);
    host = asio::ip::address_v6(b).to_string();
  }
  return host + "/" + std::to_string(length_);
}

ip_prefix client_key(const asio::ip::address& addr, unsigned v6_length) {
  const auto a = normalize(addr);
  return ip_prefix(a, a.is_v4() ? 32 : v6_length);
}

std::optional<host_port> parse_host_port(std::string_view text) {
  host_port out;
  std::string_view port;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [ptr, err] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (out.host.empty() || port.empty() || err != std::errc{} || ptr != port.data() + port.size() ||
      value > 65535)
    return std::nullopt;
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

std::size_t ip_prefix_hash::operator()(const ip_prefix& p) const noexcept {
  // FNV-1a over the masked bytes and the length: cheap and good enough for a
  // table keyed by client networks (not attacker-chosen beyond their address).
  std::size_t h = 1469598103934665603ull;
  auto mix = [&h](std::uint8_t b) { h = (h ^ b) * 1099511628211ull; };
  for (auto b : p.bytes()) mix(b);
  mix(static_cast<std::uint8_t>(p.length()));
  mix(p.is_v4() ? 4 : 6);
  return h;
}

const char* to_string(action a) {
  switch (a) {
    case action::cont:
      return "continue";
    case action::accept:
      return "accept";
    case action::reject:
      return "reject";
    case action::defer:
      return "defer";
    case action::discard:
      return "discard";
    case action::drop:
      return "drop";
  }
  return "?";
}

}  // namespace mxguard
