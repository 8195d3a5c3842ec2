#include "mxguard/dnsbl/client_name.hpp"

#include <libpsl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

#include <fmt/format.h>

namespace mxguard::dnsbl {

namespace {

bool host_name(std::string_view name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') return false;
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return name.find('.') != std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Labels that ISPs use for ranges of subscriber addresses.
constexpr std::array<std::string_view, 24> generic_words = {
    "dynamic", "dyn",         "dhcp",       "dsl",        "adsl",     "vdsl",
    "xdsl",    "cable",       "ppp",        "pppoe",      "dial",     "dialup",
    "dialin",  "pool",        "broadband",  "cust",       "customer", "client",
    "clients", "residential", "subscriber", "unassigned", "nat",      "wifi"};

// The alphabetic and the numeric runs of the host part of a name.
struct runs {
  std::vector<std::string> words;
  std::vector<std::string> numbers;
  std::string alnum;  // every letter and digit, separators dropped
};

runs split(std::string_view host) {
  runs out;
  std::string word, number;
  auto flush = [&] {
    if (!word.empty()) out.words.push_back(std::exchange(word, {}));
    if (!number.empty()) out.numbers.push_back(std::exchange(number, {}));
  };
  for (char c : host) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      if (!number.empty()) out.numbers.push_back(std::exchange(number, {}));
      word.push_back(c);
      out.alnum.push_back(c);
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      if (!word.empty()) out.words.push_back(std::exchange(word, {}));
      number.push_back(c);
      out.alnum.push_back(c);
    } else {
      flush();
    }
  }
  flush();
  return out;
}

// The four octets in order or reversed among the name's numbers.
bool has_octets(const std::vector<std::string>& numbers, const std::array<unsigned char, 4>& b) {
  auto value = [](const std::string& n) { return n.size() > 3 ? -1 : std::stoi(n); };
  for (std::size_t i = 0; i + 4 <= numbers.size(); ++i) {
    bool forward = true, backward = true;
    for (std::size_t k = 0; k < 4; ++k) {
      forward = forward && value(numbers[i + k]) == b[k];
      backward = backward && value(numbers[i + k]) == b[3 - k];
    }
    if (forward || backward) return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> registrable_domain(std::string_view raw) {
  auto name = lower(raw);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (!host_name(name)) return std::nullopt;
  // psl_latest: the built-in list, or Debian's file when that is newer.
  static const psl_ctx_t* list = [] {
    const psl_ctx_t* latest = psl_latest(nullptr);
    return latest ? latest : psl_builtin();
  }();
  if (!list) return std::nullopt;
  const char* domain = psl_registrable_domain(list, name.c_str());
  if (!domain) return std::nullopt;
  return std::string(domain);
}

bool looks_generic(std::string_view raw, const boost::asio::ip::address& client) {
  auto name = lower(raw);
  // Only the part left of the registrable domain names the host.
  auto domain = registrable_domain(name);
  std::string_view host(name);
  if (domain && name.size() > domain->size())
    host = host.substr(0, name.size() - domain->size() - 1);
  else if (domain)
    return false;  // the bare domain names nobody's range
  auto parts = split(host);
  for (const auto& w : parts.words)
    if (std::find(generic_words.begin(), generic_words.end(), w) != generic_words.end())
      return true;
  if (client.is_v4() || (client.is_v6() && client.to_v6().is_v4_mapped())) {
    auto v4 = client.is_v4()
                  ? client.to_v4()
                  : boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, client.to_v6());
    auto b = v4.to_bytes();
    if (has_octets(parts.numbers, b)) return true;
    // As one number: zero-padded decimal octets, hex, or the 32-bit value.
    const auto padded = fmt::format("{:03}{:03}{:03}{:03}", b[0], b[1], b[2], b[3]);
    const auto hex = fmt::format("{:08x}", v4.to_uint());
    const auto whole = std::to_string(v4.to_uint());
    for (const auto& n : {padded, whole})
      if (parts.alnum.find(n) != std::string::npos) return true;
    return parts.alnum.find(hex) != std::string::npos;
  }
  // IPv6: the low 32 bits in hex inside the name.
  auto b = client.to_v6().to_bytes();
  const auto low = fmt::format("{:02x}{:02x}{:02x}{:02x}", b[12], b[13], b[14], b[15]);
  return parts.alnum.find(low) != std::string::npos;
}

}  // namespace mxguard::dnsbl
