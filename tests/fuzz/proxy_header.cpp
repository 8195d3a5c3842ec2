// Fuzz target: PROXY protocol v1/v2 headers.
//
// Checks that the parser's answer is a function of the header bytes alone:
// an ok header reports a length inside the input and at most
// proxy_header_max, parses the same from exactly those bytes and with more
// bytes after them, and every shorter prefix is merely incomplete; an
// incomplete answer is only possible below proxy_header_max.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy_protocol.hpp"

namespace {

using namespace mxguard::guard;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

bool same(const proxy_header& a, const proxy_header& b) {
  return a.state == b.state && a.length == b.length && a.source == b.source;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto h = parse_proxy_header(bytes);
  using st = proxy_header::status;
  if (h.state == st::incomplete) {
    require(size < proxy_header_max, "incomplete only below the maximum header size");
    require(!h.source && h.length == 0, "nothing reported while incomplete");
    return 0;
  }
  if (h.state == st::invalid) {
    require(!h.source && h.length == 0, "nothing reported for an invalid header");
    std::string more(bytes);
    more += "\r\nPROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n";
    require(parse_proxy_header(more).state == st::invalid,
            "more bytes do not fix an invalid header");
    return 0;
  }
  require(h.length > 0 && h.length <= size && h.length <= proxy_header_max, "length in range");
  const auto exact = bytes.substr(0, h.length);
  require(same(parse_proxy_header(exact), h), "the header alone parses the same");
  std::string longer(exact);
  longer += "EHLO mx.example.org\r\n";
  require(same(parse_proxy_header(longer), h), "bytes after the header do not matter");
  for (std::size_t n = 0; n < h.length; ++n)
    require(parse_proxy_header(exact.substr(0, n)).state == st::incomplete,
            "every prefix of a header is incomplete");
  if (h.source) require(h.source->address().is_v4() || h.source->address().is_v6(), "an address");
  return 0;
}
