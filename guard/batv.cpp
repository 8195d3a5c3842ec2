#include "batv.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>
#include <chrono>

#include <fmt/format.h>

namespace mxguard::guard {

namespace {

std::string signature(const std::string& secret, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &length);
  return fmt::format("{:02x}{:02x}{:02x}", mac[0], mac[1], mac[2]);
}

bool iequal_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::int64_t days_since_epoch() {
  using namespace std::chrono;
  return duration_cast<days>(system_clock::now().time_since_epoch()).count();
}

const char* to_string(batv_status s) {
  switch (s) {
    case batv_status::untagged:
      return "untagged";
    case batv_status::valid:
      return "valid";
    case batv_status::expired:
      return "expired";
    case batv_status::bad_signature:
      return "bad_signature";
    case batv_status::unknown_key:
      return "unknown_key";
    case batv_status::malformed:
      return "malformed";
  }
  return "?";
}

std::optional<std::pair<int, std::string>> parse_batv_key(std::string_view text,
                                                          std::string& error) {
  auto colon = text.find(':');
  if (colon != 1 || text[0] < '0' || text[0] > '9') {
    error = "must be \"N:secret\" with N a key number 0-9";
    return std::nullopt;
  }
  auto secret = text.substr(2);
  if (secret.size() < 16) {
    error = "secret must be at least 16 characters";
    return std::nullopt;
  }
  return std::pair{text[0] - '0', std::string(secret)};
}

std::string batv_sign(const batv_keys& keys, std::string_view address, std::int64_t today) {
  const int day = static_cast<int>((today + keys.validity_days) % 1000);
  const std::string kddd = fmt::format("{}{:03d}", keys.sign_key, day);
  // Signed over the address as it will come back; domains are case-insensitive,
  // so sign the lower-cased domain part.
  auto at = address.rfind('@');
  std::string canonical = at == std::string_view::npos ? std::string(address)
                                                       : std::string(address.substr(0, at + 1)) +
                                                             lower(address.substr(at + 1));
  return fmt::format("prvs={}{}={}", kddd,
                     signature(keys.secrets.at(keys.sign_key), kddd + canonical), canonical);
}

batv_check batv_verify(const batv_keys& keys, std::string_view address, std::int64_t today) {
  batv_check result;
  if (!iequal_prefix(address, "prvs=")) {
    result.original = std::string(address);
    return result;
  }
  // prvs=KDDDSSSSSS=local@domain
  auto tag = address.substr(5);
  auto eq = tag.find('=');
  if (eq != 10 || tag.size() <= 11) {
    result.status = batv_status::malformed;
    return result;
  }
  std::string_view kddd = tag.substr(0, 4);
  std::string sig = lower(tag.substr(4, 6));
  auto original = tag.substr(11);
  for (char c : kddd)
    if (c < '0' || c > '9') {
      result.status = batv_status::malformed;
      return result;
    }
  result.original = std::string(original);
  auto key = keys.secrets.find(kddd[0] - '0');
  if (key == keys.secrets.end()) {
    result.status = batv_status::unknown_key;
    return result;
  }
  auto at = original.rfind('@');
  std::string canonical = at == std::string_view::npos ? std::string(original)
                                                       : std::string(original.substr(0, at + 1)) +
                                                             lower(original.substr(at + 1));
  // Compared in constant time: how far a guess matched must not show.
  const auto expected = signature(key->second, std::string(kddd) + canonical);
  if (expected.size() != sig.size() ||
      CRYPTO_memcmp(expected.data(), sig.data(), sig.size()) != 0) {
    result.status = batv_status::bad_signature;
    return result;
  }
  // DDD is the expiry day modulo 1000: the tag is good while today is at most
  // `validity_days` before it (counting across the wrap from 999 to 000).
  int expiry = (kddd[1] - '0') * 100 + (kddd[2] - '0') * 10 + (kddd[3] - '0');
  int now = static_cast<int>(today % 1000);
  int left = ((expiry - now) % 1000 + 1000) % 1000;
  result.status = left <= keys.validity_days ? batv_status::valid : batv_status::expired;
  return result;
}

}  // namespace mxguard::guard
