// Fuzzes the DNSBL zone responder's query parser and answer builder
// (zone_answerer::answer), the bytes any host on the network can send it.
//
// Invariants: no reply to a message shorter than a header or with QR set
// (nor, over UDP, to a malformed one);
// every reply carries the query's ID and QR, never RA; a UDP reply fits 512
// bytes, or the EDNS0 size the query asked for (up to 1232); a reply of more
// than a header parses back with ldns.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include <boost/asio/ip/address.hpp>

#include "mxguard/dnsbl/zone.hpp"
// Last: ldns/common.h defines `bool` as a macro, which breaks C++ headers after it.
#include <ldns/ldns.h>

using namespace mxguard::dnsbl;

namespace {

// Lists every address whose last byte is odd, with a reason long enough to
// need truncation for some, and fails for last byte 0x42.
std::optional<listing> lookup(const boost::asio::ip::address& a) {
  unsigned char last = a.is_v4() ? a.to_v4().to_bytes()[3] : a.to_v6().to_bytes()[15];
  if (last == 0x42) throw std::runtime_error("store down");
  if (!(last & 1)) return std::nullopt;
  return listing{std::string(last, last & 0x80 ? 'x' : '\n')};
}

const zone_answerer& answerer() {
  static const zone_answerer z = [] {
    zone_settings s;
    s.zone = "bl.example.org";
    s.txt_template = "{address} {reason}";
    return zone_answerer(s, lookup);
  }();
  return z;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  for (auto transport : {zone_transport::udp, zone_transport::tcp}) {
    auto reply = answerer().answer(std::span(data, size), transport);
    if (size < 12 || (data[2] & 0x80)) {
      if (reply) std::abort();
      continue;
    }
    // Over UDP only a well-formed query is answered; over TCP everything is.
    if (!reply && transport == zone_transport::udp) continue;
    if (!reply || reply->size() < 12) std::abort();
    const auto& r = *reply;
    if (r[0] != data[0] || r[1] != data[1] || !(r[2] & 0x80) || (r[3] & 0x80)) std::abort();
    ldns_pkt* pkt = nullptr;
    if (ldns_wire2pkt(&pkt, r.data(), r.size()) != LDNS_STATUS_OK) std::abort();
    if (transport == zone_transport::udp) {
      // The size the query asked for, as ldns reads it.
      ldns_pkt* q = nullptr;
      std::size_t limit = 512;
      // (ldns leaks on some messages: see mxguard::dnsbl::outline; those got no reply.)
      if (ldns_wire2pkt(&q, data, size) == LDNS_STATUS_OK && ldns_pkt_edns(q))
        limit = std::max<std::size_t>(512, std::min<std::size_t>(ldns_pkt_edns_udp_size(q), 1232));
      ldns_pkt_free(q);
      if (r.size() > limit) std::abort();
    }
    ldns_pkt_free(pkt);
  }
  return 0;
}
