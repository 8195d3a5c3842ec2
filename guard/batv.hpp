// BATV (Bounce Address Tag Validation, draft-levine-smtp-batv-01, "prvs"):
// outbound envelope senders are signed, so that a bounce coming back can be
// told from a forged one — the defence against backscatter storms.
//
//   prvs=KDDDSSSSSS=local@domain
//   K       key number (one digit), so keys can be rotated
//   DDD     the day the tag expires: days since 1970, modulo 1000
//   SSSSSS  the first three bytes of HMAC-SHA1(key, "KDDD" + local@domain), hex
//
// Both gateways of a pair configured with the same keys accept each other's
// tags. Pure functions; `today` is injected (days since 1970).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace mxguard::guard {

struct batv_keys {
  std::map<int, std::string> secrets;  // key number 0-9 → secret
  int sign_key = 0;
  int validity_days = 7;
};

// Parses "N:secret"; nullopt with `error` set on a bad entry.
std::optional<std::pair<int, std::string>> parse_batv_key(std::string_view text,
                                                          std::string& error);

// The signed form of `address` (local@domain), valid for keys.validity_days.
std::string batv_sign(const batv_keys& keys, std::string_view address, std::int64_t today);

enum class batv_status { untagged, valid, expired, bad_signature, unknown_key, malformed };
const char* to_string(batv_status s);

struct batv_check {
  batv_status status = batv_status::untagged;
  std::string original;  // the address without its tag (when tagged)
};

// Checks a recipient address that may carry a tag.
batv_check batv_verify(const batv_keys& keys, std::string_view address, std::int64_t today);

std::int64_t days_since_epoch();

}  // namespace mxguard::guard
