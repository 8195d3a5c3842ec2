// mxguard common vocabulary: the time units configuration values are written
// in ("250ms", "30s", "5m", "4h", "36d"; rates "30/1m"), one table for every
// parser so that a unit means the same everywhere.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace mxguard {

// Milliseconds in one `unit` ("ms", "s", "m", "h", "d"); nullopt otherwise.
inline std::optional<std::int64_t> unit_millis(std::string_view unit) {
  if (unit == "ms") return 1;
  if (unit == "s") return 1'000;
  if (unit == "m") return 60'000;
  if (unit == "h") return 3'600'000;
  if (unit == "d") return 86'400'000;
  return std::nullopt;
}

}  // namespace mxguard
