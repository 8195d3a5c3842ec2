// Unit tests for guard/proxy_protocol.hpp: PROXY protocol v1 and v2 headers.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "proxy_protocol.hpp"

namespace mxguard::guard {
namespace {

using pstatus = proxy_header::status;

const std::string v2_signature("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);

// A v2 header: signature, version/command, family, length, then `body`.
std::string v2(unsigned char version_command, unsigned char family, const std::string& body,
               std::size_t declared_length = std::string::npos) {
  const std::size_t length = declared_length == std::string::npos ? body.size() : declared_length;
  std::string h = v2_signature;
  h += static_cast<char>(version_command);
  h += static_cast<char>(family);
  h += static_cast<char>(length >> 8);
  h += static_cast<char>(length & 0xff);
  return h + body;
}

std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s += static_cast<char>(v);
  return s;
}

// 192.0.2.1:56324 -> 198.51.100.1:25
const std::string v4_block = bytes({192, 0, 2, 1, 198, 51, 100, 1, 0xDC, 0x04, 0, 25});
// 2001:db8::1:443 -> 2001:db8::2:25
const std::string v6_block =
    bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,  // source
           0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,  // destination
           0x01, 0xBB, 0,    25});

struct row {
  const char* label;
  std::string input;
  pstatus want_status;
  std::size_t want_length = 0;
  std::string want_source{};  // "address:port" or "" for none
};

std::string endpoint_text(const std::optional<boost::asio::ip::tcp::endpoint>& e) {
  if (!e) return "";
  return e->address().to_string() + ":" + std::to_string(e->port());
}

void check(const std::vector<row>& rows) {
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto got = parse_proxy_header(r.input);
    EXPECT_EQ(static_cast<int>(got.state), static_cast<int>(r.want_status));
    if (r.want_status != pstatus::ok) continue;
    EXPECT_EQ(got.length, r.want_length);
    EXPECT_EQ(endpoint_text(got.source), r.want_source);
  }
}

TEST(proxy_protocol, v1) {
  const std::string tcp4 = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n";
  const std::string tcp6 = "PROXY TCP6 2001:db8::1 2001:db8::2 443 25\r\n";
  const std::string longest_tcp6 =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n";
  // The longest legal v1 header (the spec's 107 bytes).
  const std::string longest =
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n";
  ASSERT_EQ(longest.size(), 107u);
  check({
      {"TCP4", tcp4, pstatus::ok, tcp4.size(), "192.0.2.1:56324"},
      {"TCP4 followed by SMTP", tcp4 + "EHLO x\r\n", pstatus::ok, tcp4.size(), "192.0.2.1:56324"},
      {"TCP6", tcp6, pstatus::ok, tcp6.size(), "2001:db8::1:443"},
      {"longest TCP6 header", longest_tcp6, pstatus::ok, longest_tcp6.size(),
       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:65535"},
      {"longest header", longest, pstatus::ok, 107, ""},
      {"one byte too long", "PROXY UNKNOWN " + std::string(92, 'f') + "\r\n", pstatus::invalid},
      {"UNKNOWN", "PROXY UNKNOWN\r\n", pstatus::ok, 15, ""},
      {"UNKNOWN with addresses", "PROXY UNKNOWN ::1 ::1 1 2\r\nEHLO", pstatus::ok, 27, ""},
      {"port 0", "PROXY TCP4 192.0.2.1 198.51.100.1 0 25\r\n", pstatus::ok, 40, "192.0.2.1:0"},
      // Incomplete: wait for more bytes.
      {"empty", "", pstatus::incomplete},
      {"prefix of PROXY", "PRO", pstatus::incomplete},
      {"no CRLF yet", tcp4.substr(0, tcp4.size() - 2), pstatus::incomplete},
      {"CR without LF yet", tcp4.substr(0, tcp4.size() - 1), pstatus::incomplete},
      // Invalid.
      {"not PROXY", "EHLO mx.example.org\r\n", pstatus::invalid},
      {"lower case", "proxy TCP4 192.0.2.1 198.51.100.1 56324 25\r\n", pstatus::invalid},
      {"107 bytes without CRLF", std::string("PROXY ") + std::string(101, 'x'), pstatus::invalid},
      {"too long", "PROXY TCP6 " + std::string(100, 'f') + " x 1 2\r\n", pstatus::invalid},
      {"unknown protocol", "PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n", pstatus::invalid},
      {"TCP4 with IPv6 source", "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n", pstatus::invalid},
      {"TCP6 with IPv4 addresses", "PROXY TCP6 192.0.2.1 198.51.100.1 1 2\r\n", pstatus::invalid},
      {"mixed families", "PROXY TCP4 192.0.2.1 2001:db8::2 1 2\r\n", pstatus::invalid},
      {"bad address", "PROXY TCP4 192.0.2.300 198.51.100.1 1 2\r\n", pstatus::invalid},
      {"port too big", "PROXY TCP4 192.0.2.1 198.51.100.1 65536 25\r\n", pstatus::invalid},
      {"port with leading zero", "PROXY TCP4 192.0.2.1 198.51.100.1 025 25\r\n", pstatus::invalid},
      {"missing port", "PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n", pstatus::invalid},
      {"double space", "PROXY TCP4  192.0.2.1 198.51.100.1 56324 25\r\n", pstatus::invalid},
      {"extra field", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25 extra\r\n", pstatus::invalid},
      {"trailing space", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25 \r\n", pstatus::invalid},
      {"bare LF", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\nEHLO x\r\n", pstatus::invalid},
  });
}

TEST(proxy_protocol, v2) {
  const std::string tlv = bytes({0x04, 0x00, 0x03, 'a', 'b', 'c'});  // a NOOP TLV
  check({
      {"PROXY TCP over IPv4", v2(0x21, 0x11, v4_block), pstatus::ok, 28, "192.0.2.1:56324"},
      {"followed by SMTP", v2(0x21, 0x11, v4_block) + "EHLO x\r\n", pstatus::ok, 28,
       "192.0.2.1:56324"},
      {"PROXY TCP over IPv6", v2(0x21, 0x21, v6_block), pstatus::ok, 52, "2001:db8::1:443"},
      {"TLVs after the addresses are skipped", v2(0x21, 0x11, v4_block + tlv), pstatus::ok, 34,
       "192.0.2.1:56324"},
      {"LOCAL has no source", v2(0x20, 0x00, ""), pstatus::ok, 16, ""},
      {"LOCAL with an address block", v2(0x20, 0x11, v4_block), pstatus::ok, 28, ""},
      {"PROXY with UNSPEC family", v2(0x21, 0x00, ""), pstatus::ok, 16, ""},
      {"HAProxy's TLVs (a few hundred bytes and more)",
       v2(0x21, 0x11, v4_block + std::string(2000, '\0')), pstatus::ok, 16 + 12 + 2000,
       "192.0.2.1:56324"},
      {"largest length", v2(0x21, 0x11, v4_block + std::string(65535 - 12, '\0')), pstatus::ok,
       16 + 65535, "192.0.2.1:56324"},
      // Incomplete.
      {"one byte of signature", v2_signature.substr(0, 1), pstatus::incomplete},
      {"signature only", v2_signature, pstatus::incomplete},
      {"fixed part cut", v2(0x21, 0x11, v4_block).substr(0, 15), pstatus::incomplete},
      {"address block cut", v2(0x21, 0x11, v4_block).substr(0, 27), pstatus::incomplete},
      {"declared TLVs not there yet", v2(0x21, 0x11, v4_block, 20), pstatus::incomplete},
      // Invalid.
      {"broken signature", "\x0D\x0A\x0D\x0A\x01", pstatus::invalid},
      {"version 1 in a v2 header", v2(0x11, 0x11, v4_block), pstatus::invalid},
      {"version 3", v2(0x31, 0x11, v4_block), pstatus::invalid},
      {"unknown command", v2(0x22, 0x11, v4_block), pstatus::invalid},
      {"UDP over IPv4", v2(0x21, 0x12, v4_block), pstatus::invalid},
      {"UNIX stream", v2(0x21, 0x31, std::string(216, '\0')), pstatus::invalid},
      {"IPv4 block too short", v2(0x21, 0x11, v4_block.substr(0, 11)), pstatus::invalid},
      {"IPv6 block too short", v2(0x21, 0x21, v6_block.substr(0, 35)), pstatus::invalid},
      {"IPv6 family with an IPv4 block", v2(0x21, 0x21, v4_block), pstatus::invalid},

      // The longest length a v2 header can declare is waited for (within
      // server.proxy_protocol_timeout).
      {"largest declared length, not there yet", v2(0x21, 0x11, v4_block, 0xFFFF),
       pstatus::incomplete},
  });
}

TEST(proxy_protocol, length_is_exact_for_every_prefix) {
  // Every proper prefix of a valid header is incomplete, never ok or invalid,
  // and the full header reports exactly its own length.
  const std::string headers[] = {
      "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n",
      "PROXY UNKNOWN\r\n",
      v2(0x21, 0x11, v4_block),
      v2(0x21, 0x21, v6_block),
      v2(0x20, 0x00, ""),
  };
  for (const auto& h : headers) {
    SCOPED_TRACE(testing::PrintToString(h));
    for (std::size_t n = 0; n < h.size(); ++n) {
      SCOPED_TRACE(n);
      EXPECT_EQ(parse_proxy_header(h.substr(0, n)).state, pstatus::incomplete);
    }
    auto full = parse_proxy_header(h + "MAIL FROM:<a@b>\r\n");
    EXPECT_EQ(full.state, pstatus::ok);
    EXPECT_EQ(full.length, h.size());
  }
}

}  // namespace
}  // namespace mxguard::guard
