#include <charconv>

#include <fmt/format.h>

#include "mxguard/dnsbl/dnsbl.hpp"

namespace mxguard::dnsbl {

namespace asio = boost::asio;

namespace {

std::optional<unsigned> number(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v > 255) return std::nullopt;
  return v;
}

// "7", "[2..11]", "[1;3;5..9]"
std::optional<octet_set> parse_octet(std::string_view text, std::string& error) {
  octet_set set;
  std::string_view body = text;
  if (text.starts_with('[')) {
    if (!text.ends_with(']') || text.size() < 3) {
      error = fmt::format("unbalanced brackets in '{}'", text);
      return std::nullopt;
    }
    body = text.substr(1, text.size() - 2);
  }
  while (!body.empty()) {
    auto semi = body.find(';');
    auto item = body.substr(0, semi);
    auto dots = item.find("..");
    std::optional<unsigned> lo, hi;
    if (dots == std::string_view::npos) {
      lo = hi = number(item);
    } else {
      lo = number(item.substr(0, dots));
      hi = number(item.substr(dots + 2));
    }
    if (!lo || !hi || *lo > *hi ||
        (!text.starts_with('[') &&
         (semi != std::string_view::npos || dots != std::string_view::npos))) {
      error = fmt::format("bad octet '{}' (N, [N..M] or [N;M..K], 0-255)", text);
      return std::nullopt;
    }
    set.ranges.emplace_back(static_cast<std::uint8_t>(*lo), static_cast<std::uint8_t>(*hi));
    if (semi == std::string_view::npos) break;
    body.remove_prefix(semi + 1);
  }
  if (set.ranges.empty()) {
    error = fmt::format("empty octet '{}'", text);
    return std::nullopt;
  }
  return set;
}

bool valid_zone(std::string_view z) {
  if (z.empty() || z.size() > 200 || z.front() == '.' || z.back() == '.') return false;
  for (char c : z)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_'))
      return false;
  return z.find("..") == std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace

bool octet_set::contains(std::uint8_t v) const {
  for (auto [lo, hi] : ranges)
    if (v >= lo && v <= hi) return true;
  return false;
}

bool site::matches(const asio::ip::address_v4& code) const {
  if (patterns.empty()) return true;
  auto b = code.to_bytes();
  for (const auto& p : patterns) {
    bool all = true;
    for (int i = 0; i < 4 && all; ++i) all = p[i].contains(b[i]);
    if (all) return true;
  }
  return false;
}

std::optional<site> parse_site(std::string_view spec, std::string& error) {
  site s;
  s.spec = std::string(spec);
  // Weight: the last '*' followed by an optional sign and digits.
  auto star = spec.rfind('*');
  if (star != std::string_view::npos) {
    auto w = spec.substr(star + 1);
    int value = 0;
    auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), value);
    if (w.empty() || ec != std::errc{} || p != w.data() + w.size() || value < -100 || value > 100) {
      error = fmt::format("bad weight '{}' (an integer from -100 to 100)", w);
      return std::nullopt;
    }
    s.weight = value;
    spec = spec.substr(0, star);
  }
  auto eq = spec.find('=');
  s.domain = lower(spec.substr(0, eq));
  if (!valid_zone(s.domain)) {
    error = fmt::format("bad list domain '{}'", spec.substr(0, eq));
    return std::nullopt;
  }
  if (eq != std::string_view::npos) {
    auto rest = spec.substr(eq + 1);
    if (rest.empty()) {
      error = "empty return-code filter after '='";
      return std::nullopt;
    }
    // Patterns separated by ';' outside brackets.
    std::size_t start = 0;
    int depth = 0;
    for (std::size_t i = 0; i <= rest.size(); ++i) {
      if (i < rest.size() && rest[i] == '[') ++depth;
      if (i < rest.size() && rest[i] == ']') --depth;
      if (i < rest.size() && (rest[i] != ';' || depth > 0)) continue;
      auto pattern = rest.substr(start, i - start);
      start = i + 1;
      // Four octets separated by dots outside brackets ("[1..3]" has dots).
      std::vector<std::string_view> parts;
      std::size_t part_start = 0;
      int part_depth = 0;
      for (std::size_t j = 0; j <= pattern.size(); ++j) {
        if (j < pattern.size() && pattern[j] == '[') ++part_depth;
        if (j < pattern.size() && pattern[j] == ']') --part_depth;
        if (j < pattern.size() && (pattern[j] != '.' || part_depth > 0)) continue;
        parts.push_back(pattern.substr(part_start, j - part_start));
        part_start = j + 1;
      }
      if (parts.size() != 4) {
        error = fmt::format("bad return-code pattern '{}' (four octets expected)", pattern);
        return std::nullopt;
      }
      std::array<octet_set, 4> octets;
      for (int o = 0; o < 4; ++o) {
        auto octet = parse_octet(parts[o], error);
        if (!octet) return std::nullopt;
        octets[o] = std::move(*octet);
      }
      s.patterns.push_back(std::move(octets));
    }
  }
  return s;
}

std::string reversed_name(const asio::ip::address& raw) {
  auto addr = raw;
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  if (addr.is_v4()) {
    auto b = addr.to_v4().to_bytes();
    return fmt::format("{}.{}.{}.{}", b[3], b[2], b[1], b[0]);
  }
  auto b = addr.to_v6().to_bytes();
  std::string out;
  out.reserve(64);
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out.push_back(hex[b[i] & 0x0f]);
    out.push_back('.');
    out.push_back(hex[b[i] >> 4]);
    if (i) out.push_back('.');
  }
  return out;
}

std::string query_name(const site& s, std::string_view subject) {
  std::string name(subject);
  if (!s.key.empty()) name += "." + s.key;
  return name + "." + s.domain;
}

site_result classify(const site& s, const dns_result& answer) {
  site_result r;
  r.which = &s;
  switch (answer.state) {
    case dns_result::status::nxdomain:
      r.kind = verdict_kind::not_listed;
      return r;
    case dns_result::status::timeout:
      r.kind = verdict_kind::timeout;
      r.error = answer.error;
      return r;
    case dns_result::status::answer:
      break;
    default:
      r.kind = verdict_kind::error;
      r.error =
          std::string(to_string(answer.state)) + (answer.error.empty() ? "" : ": " + answer.error);
      return r;
  }
  if (answer.addresses.empty()) {
    r.kind = verdict_kind::not_listed;  // NODATA
    return r;
  }
  r.codes = answer.addresses;
  bool matched = false;
  for (const auto& code : answer.addresses) {
    auto b = code.to_bytes();
    // Operators answer 127.255.255.x to queries through public resolvers or
    // over quota; outside 127/8 is a wildcard or a hijacked zone. Neither says
    // anything about the client.
    if (b[0] != 127 || (b[1] == 255 && b[2] == 255)) {
      r.kind = verdict_kind::error;
      r.error = "answer " + code.to_string() + " is not a listing (list refuses our resolver?)";
      return r;
    }
    if (s.matches(code)) matched = true;
  }
  r.kind = matched ? verdict_kind::listed : verdict_kind::not_listed;
  return r;
}

const site_result* score::first_listed() const {
  for (const auto& s : sites)
    if (s.counted() && s.which && s.which->weight > 0) return &s;
  return nullptr;
}

}  // namespace mxguard::dnsbl
