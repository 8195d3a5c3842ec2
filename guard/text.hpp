// Small text helpers shared by the rule-file parsers of guard/.
#pragma once

#include <cctype>
#include <string_view>

namespace mxguard::guard {

// Without leading and trailing white space.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// True when every byte is printable ASCII: text that may go into an SMTP reply.
inline bool printable_ascii(std::string_view s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

}  // namespace mxguard::guard
