// DNS messages made by hand for the unit tests of the DNSBL client and zone.
#pragma once

#include <cstdint>
#include <iterator>
#include <vector>

namespace mxguard::test {

// `message` with `records` more additional records of `type` (root owner, no
// rdata but a TSIG's few fixed fields), ARCOUNT raised to match.
inline std::vector<std::uint8_t> with_additional(std::vector<std::uint8_t> message,
                                                 std::uint16_t type, int records) {
  // TSIG rdata: algorithm name (root), time 48 bits, fudge, MAC size 0,
  // original ID, error, other length 0.
  const std::vector<std::uint8_t> tsig_rdata = {0, 0, 0,    0,    0, 0, 0, 1, 44,
                                                0, 0, 0x42, 0x42, 0, 0, 0, 0};
  for (int i = 0; i < records; ++i) {
    const auto& rdata = type == 250 ? tsig_rdata : std::vector<std::uint8_t>{};
    const std::uint8_t fixed[] = {0,
                                  static_cast<std::uint8_t>(type >> 8),
                                  static_cast<std::uint8_t>(type),
                                  0x04,
                                  0xd0,
                                  0,
                                  0,
                                  0,
                                  0,
                                  0,
                                  static_cast<std::uint8_t>(rdata.size())};
    message.insert(message.end(), std::begin(fixed), std::end(fixed));
    message.insert(message.end(), rdata.begin(), rdata.end());
  }
  const unsigned count = ((message[10] << 8) | message[11]) + static_cast<unsigned>(records);
  message[10] = static_cast<std::uint8_t>(count >> 8);
  message[11] = static_cast<std::uint8_t>(count);
  return message;
}

}  // namespace mxguard::test
