// Fuzz target: the DATA phase (end of data, unstuffing, size limit).
//
// The input is fed in pseudo-random pieces chosen by its first bytes, and
// checked against:
//  - an independent oracle for where the data ends: the first "." line with
//    a genuine CRLF on both sides (or first in the data), nowhere else — so
//    no smuggling variant ("\n.\n", "\r.\r\n", ...) ends it early;
//  - the same bytes fed in one piece (the split must not matter);
//  - a round trip: the message re-stuffed with dot_stuffer and read again is
//    the same message, ending exactly at the end of the stuffed form.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp_framing.hpp"

namespace {

using namespace mxguard::guard;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

struct outcome {
  std::size_t consumed = 0;
  bool done = false;
  bool too_big = false;
  std::size_t size = 0;
  std::string message;
  std::size_t bare_lf = 0, bare_cr = 0;
  bool operator==(const outcome&) const = default;
};

// Feeds `bytes` in pieces from a small LCG seeded with `seed` (0: one piece).
outcome read(std::string_view bytes, std::size_t max_size, std::uint32_t seed) {
  data_reader reader(max_size);
  outcome o;
  std::uint32_t state = seed;
  while (o.consumed < bytes.size() && !reader.done()) {
    std::size_t step = bytes.size();
    if (seed != 0) {
      state = state * 1664525u + 1013904223u;
      step = 1 + (state >> 24) % 16;
    }
    auto piece = bytes.substr(o.consumed, step);
    auto n = reader.feed(piece);
    require(n <= piece.size(), "feed consumes at most what it was given");
    o.consumed += n;
    if (n < piece.size()) require(reader.done(), "feed stops early only at the end");
  }
  o.done = reader.done();
  o.too_big = reader.too_big();
  o.size = reader.size();
  o.message = reader.message();
  o.bare_lf = reader.bare_lf();
  o.bare_cr = reader.bare_cr();
  return o;
}

// Where the data must end: just past the first "." CRLF line that starts the
// input or follows a CRLF; npos when there is none.
std::size_t expected_end(std::string_view bytes) {
  for (std::size_t i = 0; i + 3 <= bytes.size(); ++i) {
    if (bytes.compare(i, 3, ".\r\n") != 0) continue;
    if (i == 0 || (i >= 2 && bytes.compare(i - 2, 2, "\r\n") == 0)) return i + 3;
  }
  return std::string_view::npos;
}

bool crlf_lines(std::string_view m) {
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\r' && (i + 1 >= m.size() || m[i + 1] != '\n')) return false;
    if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r')) return false;
  }
  return m.empty() || m.ends_with("\r\n");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  static constexpr std::size_t limits[] = {8, 64, 1000, 1 << 20};
  const std::size_t max_size = limits[data[0] % 4];
  const std::uint32_t seed = (std::uint32_t{data[1]} << 8 | data[2]) | 1;
  std::string_view bytes(reinterpret_cast<const char*>(data + 3), size - 3);

  const auto split = read(bytes, max_size, seed);
  const auto whole = read(bytes, max_size, 0);
  require(split == whole, "the result does not depend on how the input is split");

  const auto end = expected_end(bytes);
  if (end == std::string_view::npos) {
    require(!whole.done, "no end of data without a CRLF . CRLF line");
    require(whole.consumed == bytes.size(), "everything consumed while not done");
  } else {
    require(whole.done, "the CRLF . CRLF line ends the data");
    require(whole.consumed == end, "the data ends exactly at the first CRLF . CRLF line");
  }
  if (whole.too_big) {
    require(whole.message.empty(), "nothing kept past the limit");
    // Until its line ends, part of a line is not counted yet.
    if (whole.done) require(whole.size > max_size, "too_big only past the limit");
  } else {
    // size() counts a partial line too; the message holds complete lines.
    require(whole.done ? whole.message.size() == whole.size : whole.message.size() <= whole.size,
            "size counts the message");
    require(whole.size <= max_size, "within the limit unless too_big");
  }
  if (!whole.done || whole.too_big) return 0;

  require(crlf_lines(whole.message), "the message is normalised to CRLF lines");
  dot_stuffer stuffer(whole.message);
  std::string wire, piece;
  const std::size_t chunk = 1 + data[1] % 200;
  while (stuffer.next(piece, chunk)) wire += piece;
  require(wire.ends_with(".\r\n"), "stuffed form ends with . CRLF");
  require(expected_end(wire) == wire.size(), "the stuffed form ends only at its end");
  const auto again = read(wire, 1 << 20, seed);
  require(again.done && !again.too_big, "the stuffed form reads back");
  require(again.consumed == wire.size(), "the stuffed form is consumed whole");
  require(again.message == whole.message, "re-stuffed message reads back the same");
  return 0;
}
