// The zone responder's packet logic: query bytes in, reply bytes out (see
// zone.hpp). No sockets here, so that unit tests and the fuzzer drive it.
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include "mxguard/dnsbl/dns.hpp"
#include "mxguard/dnsbl/zone.hpp"
// Last: ldns/common.h defines `bool` as a macro, which breaks C++ headers after it.
#include <ldns/ldns.h>

namespace mxguard::dnsbl {

namespace asio = boost::asio;

namespace {

struct pkt_deleter {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct rr_deleter {
  void operator()(ldns_rr* r) const { ldns_rr_free(r); }
};
struct rdf_deleter {
  void operator()(ldns_rdf* r) const { ldns_rdf_deep_free(r); }
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_deleter>;
using rr_ptr = std::unique_ptr<ldns_rr, rr_deleter>;
using rdf_ptr = std::unique_ptr<ldns_rdf, rdf_deleter>;

constexpr std::size_t header_size = 12;
constexpr std::size_t plain_udp_size = 512;  // RFC 1035 §4.2.1, without EDNS0
constexpr std::size_t max_txt_bytes = 1000;  // four character-strings; fits 1232 with headroom
constexpr std::size_t max_export_txt = 250;  // rbldnsd refuses templates near 255
constexpr const char* test_entry_text = "RFC 5782 test entry: 127.0.0.2 is always listed";

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

// "bl.example.org." → {"bl", "example", "org"}; empty on a bad name.
std::vector<std::string> split_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::vector<std::string> labels;
  if (name.empty() || name.size() > 253) return labels;
  std::size_t start = 0;
  while (start <= name.size()) {
    auto dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    std::string label(name.substr(start, dot - start));
    bool ok = !label.empty() && label.size() <= 63;
    for (char& c : label) {
      c = ascii_lower(c);
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
    }
    if (!ok) return {};
    labels.push_back(std::move(label));
    start = dot + 1;
  }
  return labels;
}

std::string join_name(const std::vector<std::string>& labels) {
  std::string out;
  for (const auto& l : labels) out += l + ".";
  return out;
}

// Labels of an uncompressed wire name (as ldns keeps a dname rdf).
std::vector<std::string_view> wire_labels(const ldns_rdf* dname) {
  std::vector<std::string_view> labels;
  const auto* p = ldns_rdf_data(dname);
  std::size_t size = ldns_rdf_size(dname), at = 0;
  while (at < size && p[at] != 0) {
    std::size_t len = p[at];
    if (len > 63 || at + 1 + len > size) return {};
    labels.emplace_back(reinterpret_cast<const char*>(p + at + 1), len);
    at += 1 + len;
  }
  return labels;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The address a name below the apex stands for: 4 decimal labels (RFC 5782
// §2.1) or 32 nibble labels (§2.4), least significant first.
std::optional<asio::ip::address> reverse_address(std::span<const std::string_view> labels) {
  if (labels.size() == 4) {
    asio::ip::address_v4::bytes_type b{};
    for (std::size_t i = 0; i < 4; ++i) {
      auto l = labels[3 - i];
      if (l.empty() || l.size() > 3 || (l.size() > 1 && l[0] == '0')) return std::nullopt;
      unsigned v = 0;
      for (char c : l) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
      }
      if (v > 255) return std::nullopt;
      b[i] = static_cast<unsigned char>(v);
    }
    return asio::ip::address_v4(b);
  }
  if (labels.size() == 32) {
    asio::ip::address_v6::bytes_type b{};
    for (std::size_t i = 0; i < 32; ++i) {
      auto l = labels[31 - i];
      int v = l.size() == 1 ? hex_value(l[0]) : -1;
      if (v < 0) return std::nullopt;
      b[i / 2] = static_cast<unsigned char>(b[i / 2] | (i % 2 ? v : v << 4));
    }
    return asio::ip::address_v6(b);
  }
  return std::nullopt;
}

// RFC 5782 §5: 127.0.0.2 (and ::FFFF:7F00:2) must be listed, 127.0.0.1 (and
// ::FFFF:7F00:1) must not, whatever the list says.
std::optional<bool> test_entry(const asio::ip::address& a) {
  asio::ip::address_v4 v4;
  if (a.is_v4()) {
    v4 = a.to_v4();
  } else if (a.to_v6().is_v4_mapped()) {
    v4 = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  } else {
    return std::nullopt;
  }
  if (v4.to_uint() == 0x7f000002) return true;
  if (v4.to_uint() == 0x7f000001) return false;
  return std::nullopt;
}

std::string sanitize(std::string_view text, bool for_rbldnsd) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    out.push_back((u < 0x20 || u == 0x7f || (for_rbldnsd && c == '$')) ? '?' : c);
  }
  return out;
}

std::string expand(std::string_view tmpl, std::string_view reason, std::string_view address) {
  std::string out;
  for (std::size_t i = 0; i < tmpl.size();) {
    if (tmpl.substr(i, 8) == "{reason}") {
      out += reason;
      i += 8;
    } else if (tmpl.substr(i, 9) == "{address}") {
      out += address;
      i += 9;
    } else {
      out.push_back(tmpl[i++]);
    }
  }
  return out;
}

bool valid_dname(const std::string& name) {
  return !split_name(name).empty();
}

ldns_rdf* int32_rdf(std::uint32_t v) {
  return ldns_native2rdf_int32(LDNS_RDF_TYPE_INT32, v);
}

}  // namespace

std::string check_zone_settings(const zone_settings& s) {
  if (split_name(s.zone).empty()) return "zone: not a domain name: \"" + s.zone + "\"";
  if (!s.soa.mname.empty() && !valid_dname(s.soa.mname)) return "soa.mname: not a domain name";
  if (!s.soa.rname.empty() && !valid_dname(s.soa.rname)) return "soa.rname: not a domain name";
  if (s.ttl.count() < 0 || s.ttl.count() > 0x7fffffff) return "ttl: out of range";
  if (s.negative_ttl.count() < 0 || s.negative_ttl.count() > 0x7fffffff)
    return "negative_ttl: out of range";
  boost::system::error_code ec;
  auto a = asio::ip::make_address_v4(s.listed_address, ec);
  if (ec || (a.to_uint() >> 24) != 127) return "listed_address: must be in 127.0.0.0/8";
  if (s.max_tcp_connections == 0) return "max_tcp_connections: must be at least 1";
  if (s.tcp_idle_timeout.count() <= 0) return "tcp_idle_timeout: must be positive";
  if (s.max_udp_payload < plain_udp_size) return "max_udp_payload: must be at least 512";
  return {};
}

struct zone_answerer::impl {
  zone_lookup lookup;
  std::vector<std::string> zone_labels;  // lower case
  std::string txt_template;
  std::uint8_t listed_a[4];
  std::uint32_t ttl;
  std::uint16_t max_udp_payload;
  rr_ptr soa;  // owner = the apex
  rr_ptr ns;
  rdf_ptr apex;

  rr_ptr record(const ldns_rdf* owner, ldns_rr_type type, std::uint32_t rr_ttl) const {
    rr_ptr rr(ldns_rr_new());
    ldns_rr_set_owner(rr.get(), ldns_rdf_clone(owner));
    ldns_rr_set_type(rr.get(), type);
    ldns_rr_set_class(rr.get(), LDNS_RR_CLASS_IN);
    ldns_rr_set_ttl(rr.get(), rr_ttl);
    return rr;
  }

  // The apex records answered for the question's own spelling of the name.
  rr_ptr apex_record(const rr_ptr& proto, const ldns_rdf* owner) const {
    rr_ptr rr(ldns_rr_clone(proto.get()));
    ldns_rdf_deep_free(ldns_rr_owner(rr.get()));
    ldns_rr_set_owner(rr.get(), ldns_rdf_clone(owner));
    return rr;
  }

  rr_ptr txt_record(const ldns_rdf* owner, std::string_view text) const {
    auto rr = record(owner, LDNS_RR_TYPE_TXT, ttl);
    text = text.substr(0, max_txt_bytes);
    do {
      auto piece = text.substr(0, 255);
      text.remove_prefix(piece.size());
      std::vector<std::uint8_t> data(piece.size() + 1);
      data[0] = static_cast<std::uint8_t>(piece.size());
      std::memcpy(data.data() + 1, piece.data(), piece.size());
      ldns_rr_push_rdf(rr.get(),
                       ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, data.size(), data.data()));
    } while (!text.empty());
    return rr;
  }
};

zone_answerer::zone_answerer(const zone_settings& s, zone_lookup lookup)
    : impl_(std::make_unique<impl>()) {
  if (auto error = check_zone_settings(s); !error.empty()) throw std::invalid_argument(error);
  auto& m = *impl_;
  m.lookup = std::move(lookup);
  m.zone_labels = split_name(s.zone);
  m.txt_template = s.txt_template;
  auto a = asio::ip::make_address_v4(s.listed_address).to_bytes();
  std::memcpy(m.listed_a, a.data(), 4);
  m.ttl = static_cast<std::uint32_t>(s.ttl.count());
  m.max_udp_payload = s.max_udp_payload;

  const auto zone = join_name(m.zone_labels);
  const auto mname = s.soa.mname.empty() ? zone : join_name(split_name(s.soa.mname));
  const auto rname =
      s.soa.rname.empty() ? "hostmaster." + zone : join_name(split_name(s.soa.rname));
  m.apex.reset(ldns_dname_new_frm_str(zone.c_str()));
  rdf_ptr mname_rdf(ldns_dname_new_frm_str(mname.c_str()));
  rdf_ptr rname_rdf(ldns_dname_new_frm_str(rname.c_str()));
  if (!m.apex || !mname_rdf || !rname_rdf) throw std::invalid_argument("zone: not a domain name");
  const auto negative = static_cast<std::uint32_t>(s.negative_ttl.count());
  const auto serial = s.soa.serial ? s.soa.serial : static_cast<std::uint32_t>(std::time(nullptr));
  // The SOA's own TTL is the negative TTL too: resolvers cache a negative
  // answer for min(SOA TTL, SOA minimum) (RFC 2308 §5).
  m.soa = m.record(m.apex.get(), LDNS_RR_TYPE_SOA, negative);
  ldns_rr_push_rdf(m.soa.get(), ldns_rdf_clone(mname_rdf.get()));
  ldns_rr_push_rdf(m.soa.get(), rname_rdf.release());
  for (auto v : {serial, static_cast<std::uint32_t>(s.soa.refresh.count()),
                 static_cast<std::uint32_t>(s.soa.retry.count()),
                 static_cast<std::uint32_t>(s.soa.expire.count()), negative})
    ldns_rr_push_rdf(m.soa.get(), int32_rdf(v));
  m.ns = m.record(m.apex.get(), LDNS_RR_TYPE_NS, m.ttl);
  ldns_rr_push_rdf(m.ns.get(), mname_rdf.release());
}

zone_answerer::~zone_answerer() = default;
zone_answerer::zone_answerer(zone_answerer&&) noexcept = default;
zone_answerer& zone_answerer::operator=(zone_answerer&&) noexcept = default;

namespace {

// A reply that is only a header: for queries not worth (or not possible) to
// parse. The ID, opcode and RD come from the query (RFC 1035 §4.1.1).
std::vector<std::uint8_t> header_only(std::span<const std::uint8_t> q, ldns_pkt_rcode rcode) {
  std::vector<std::uint8_t> r(header_size, 0);
  r[0] = q[0];
  r[1] = q[1];
  r[2] = static_cast<std::uint8_t>(0x80 | (q[2] & 0x79));  // QR, opcode, RD
  r[3] = static_cast<std::uint8_t>(rcode);
  return r;
}

std::optional<std::vector<std::uint8_t>> to_wire(const ldns_pkt* pkt) {
  std::uint8_t* wire = nullptr;
  std::size_t size = 0;
  if (ldns_pkt2wire(&wire, pkt, &size) != LDNS_STATUS_OK) {
    std::free(wire);
    return std::nullopt;
  }
  std::vector<std::uint8_t> out(wire, wire + size);
  std::free(wire);
  return out;
}

}  // namespace

std::optional<std::vector<std::uint8_t>> zone_answerer::answer(std::span<const std::uint8_t> q,
                                                               zone_transport transport) const try {
  if (q.size() < header_size) return std::nullopt;
  if (q[2] & 0x80) return std::nullopt;
  const bool udp = transport == zone_transport::udp;
  auto error_reply = [&](ldns_pkt_rcode rcode) -> std::optional<std::vector<std::uint8_t>> {
    if (udp) return std::nullopt;
    return header_only(q, rcode);
  };
  if (((q[2] >> 3) & 0x0f) != LDNS_PACKET_QUERY) return error_reply(LDNS_RCODE_NOTIMPL);
  if (q[4] != 0 || q[5] != 1) return error_reply(LDNS_RCODE_FORMERR);
  // Walked before ldns sees it (see dnsbl::outline): no TSIG here (the zone
  // has no keys), and one OPT record at most (RFC 6891 §6.1.1).
  const auto parts = outline(q.data(), q.size());
  if (!parts || parts->opt > 1) return error_reply(LDNS_RCODE_FORMERR);
  if (parts->tsig > 0) return error_reply(LDNS_RCODE_REFUSED);
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, q.data(), q.size()) != LDNS_STATUS_OK) {
    ldns_pkt_free(raw);
    return error_reply(LDNS_RCODE_FORMERR);
  }
  pkt_ptr query(raw);
  ldns_rr_list* question = ldns_pkt_question(query.get());
  if (!question || ldns_rr_list_rr_count(question) != 1) return error_reply(LDNS_RCODE_FORMERR);
  const ldns_rr* qrr = ldns_rr_list_rr(question, 0);
  const ldns_rdf* qname = ldns_rr_owner(qrr);
  const auto qtype = ldns_rr_get_type(qrr);
  const auto qclass = ldns_rr_get_class(qrr);
  const auto& m = *impl_;

  pkt_ptr reply(ldns_pkt_new());
  ldns_pkt_set_id(reply.get(), ldns_pkt_id(query.get()));
  ldns_pkt_set_qr(reply.get(), true);
  ldns_pkt_set_opcode(reply.get(), LDNS_PACKET_QUERY);
  // RD is copied back (RFC 1035) but never acted on; RA stays clear.
  ldns_pkt_set_rd(reply.get(), ldns_pkt_rd(query.get()));
  ldns_pkt_set_cd(reply.get(), ldns_pkt_cd(query.get()));
  ldns_pkt_push_rr(reply.get(), LDNS_SECTION_QUESTION, ldns_rr_clone(qrr));
  const bool edns = ldns_pkt_edns(query.get());
  std::size_t limit = transport == zone_transport::tcp ? 65535 : plain_udp_size;
  if (edns) {
    ldns_pkt_set_edns_udp_size(reply.get(), m.max_udp_payload);
    if (transport == zone_transport::udp)
      limit = std::clamp<std::size_t>(ldns_pkt_edns_udp_size(query.get()), plain_udp_size,
                                      m.max_udp_payload);
    if (ldns_pkt_edns_version(query.get()) != 0) {
      // BADVERS (16): the upper 8 bits of the 12-bit rcode live in the OPT record.
      ldns_pkt_set_edns_extended_rcode(reply.get(), 1);
      ldns_pkt_set_rcode(reply.get(), LDNS_RCODE_NOERROR);
      return to_wire(reply.get());
    }
  }

  auto labels = wire_labels(qname);
  const auto& zone = m.zone_labels;
  bool inside = labels.size() >= zone.size();
  for (std::size_t i = 0; inside && i < zone.size(); ++i)
    inside = iequal(labels[labels.size() - zone.size() + i], zone[i]);
  const bool transfer = qtype == LDNS_RR_TYPE_AXFR || qtype == LDNS_RR_TYPE_IXFR;
  if (!inside || (qclass != LDNS_RR_CLASS_IN && qclass != LDNS_RR_CLASS_ANY) || transfer) {
    ldns_pkt_set_rcode(reply.get(), LDNS_RCODE_REFUSED);
    return to_wire(reply.get());
  }
  ldns_pkt_set_aa(reply.get(), true);
  const bool any = qtype == LDNS_RR_TYPE_ANY;
  auto add = [&](ldns_pkt_section section, rr_ptr rr) {
    ldns_pkt_push_rr(reply.get(), section, rr.release());
  };
  auto negative = [&](ldns_pkt_rcode rcode) {
    ldns_pkt_set_rcode(reply.get(), rcode);
    add(LDNS_SECTION_AUTHORITY, rr_ptr(ldns_rr_clone(m.soa.get())));
  };

  if (labels.size() == zone.size()) {
    if (qtype == LDNS_RR_TYPE_SOA || any) add(LDNS_SECTION_ANSWER, m.apex_record(m.soa, qname));
    if (qtype == LDNS_RR_TYPE_NS || any) add(LDNS_SECTION_ANSWER, m.apex_record(m.ns, qname));
    if (ldns_pkt_ancount(reply.get()) == 0) negative(LDNS_RCODE_NOERROR);
  } else if (auto address = reverse_address(std::span(labels).first(labels.size() - zone.size()))) {
    std::optional<std::string> text;
    if (auto test = test_entry(*address)) {
      if (*test) text = test_entry_text;
    } else {
      std::optional<listing> listed;
      try {
        listed = m.lookup(*address);
      } catch (...) {
        // The owner's store failed: the requester should try again later,
        // not cache a wrong NXDOMAIN.
        ldns_pkt_set_aa(reply.get(), false);
        ldns_pkt_set_rcode(reply.get(), LDNS_RCODE_SERVFAIL);
        return to_wire(reply.get());
      }
      if (listed)
        text = expand(m.txt_template, sanitize(listed->reason, false), address->to_string());
    }
    if (!text) {
      negative(LDNS_RCODE_NXDOMAIN);
    } else {
      if (qtype == LDNS_RR_TYPE_A || any) {
        auto rr = m.record(qname, LDNS_RR_TYPE_A, m.ttl);
        ldns_rr_push_rdf(rr.get(), ldns_rdf_new_frm_data(LDNS_RDF_TYPE_A, 4, m.listed_a));
        add(LDNS_SECTION_ANSWER, std::move(rr));
      }
      // ANY: the A record alone (RFC 8482), not the longer TXT as well.
      if (qtype == LDNS_RR_TYPE_TXT)
        add(LDNS_SECTION_ANSWER, m.txt_record(qname, sanitize(*text, false)));
      if (ldns_pkt_ancount(reply.get()) == 0) negative(LDNS_RCODE_NOERROR);
    }
  } else {
    negative(LDNS_RCODE_NXDOMAIN);
  }

  auto wire = to_wire(reply.get());
  if (wire && wire->size() > limit) {
    // Too big for the requester's datagram: the question alone with TC, so
    // that it asks again over TCP (RFC 2181 §9: no partial RRsets).
    ldns_rr_list_deep_free(ldns_pkt_answer(reply.get()));
    ldns_rr_list_deep_free(ldns_pkt_authority(reply.get()));
    ldns_pkt_set_answer(reply.get(), ldns_rr_list_new());
    ldns_pkt_set_authority(reply.get(), ldns_rr_list_new());
    ldns_pkt_set_ancount(reply.get(), 0);
    ldns_pkt_set_nscount(reply.get(), 0);
    ldns_pkt_set_tc(reply.get(), true);
    wire = to_wire(reply.get());
  }
  return wire;
} catch (...) {
  // Memory ran out: the requester should try again later.
  if (q.size() < header_size) return std::nullopt;
  return header_only(q, LDNS_RCODE_SERVFAIL);
}

std::string rbldnsd_export(const std::vector<export_entry>& entries, const zone_settings& zone) {
  const auto a = zone.listed_address.empty() ? std::string("127.0.0.2") : zone.listed_address;
  auto value = [&](std::string_view reason) {
    auto text = expand(sanitize(zone.txt_template, true), sanitize(reason, true), "$");
    if (text.size() > max_export_txt) text.resize(max_export_txt);
    return " :" + a + ":" + text + "\n";
  };
  std::string v4 = "$DATASET ip4trie:mxguard-v4 @\n", v6 = "$DATASET ip6trie:mxguard-v6 @\n";
  for (const auto& e : entries) {
    boost::system::error_code ec;
    std::string_view text = e.prefix_cidr;
    auto slash = text.find('/');
    auto addr = asio::ip::make_address(std::string(text.substr(0, slash)), ec);
    if (ec) continue;
    unsigned bits = addr.is_v4() ? 32 : 128, len = bits;
    if (slash != std::string_view::npos) {
      auto digits = text.substr(slash + 1);
      if (digits.empty() || digits.size() > 3) continue;
      len = 0;
      for (char c : digits) len = (c >= '0' && c <= '9') ? len * 10 + unsigned(c - '0') : 999;
      if (len > bits) continue;
    }
    if (addr.is_v4()) {
      auto net = asio::ip::network_v4(addr.to_v4(), static_cast<unsigned short>(len)).canonical();
      v4 += net.to_string() + value(e.reason);
    } else {
      auto net = asio::ip::network_v6(addr.to_v6(), static_cast<unsigned short>(len)).canonical();
      v6 += net.to_string() + value(e.reason);
    }
  }
  std::string out = "# mxguard blocklist, generated; serve as <zone>:combined:<this file>\n";
  out += "$TTL " + std::to_string(zone.ttl.count()) + "\n";
  if (auto labels = split_name(zone.zone); !labels.empty()) {
    const auto apex = join_name(labels);
    const auto mname = zone.soa.mname.empty() ? apex : join_name(split_name(zone.soa.mname));
    const auto rname =
        zone.soa.rname.empty() ? "hostmaster." + apex : join_name(split_name(zone.soa.rname));
    const auto neg = std::to_string(zone.negative_ttl.count());
    out += "$SOA " + neg + " " + mname + " " + rname + " " + std::to_string(zone.soa.serial) + " " +
           std::to_string(zone.soa.refresh.count()) + " " + std::to_string(zone.soa.retry.count()) +
           " " + std::to_string(zone.soa.expire.count()) + " " + neg + "\n";
    out += "$NS " + std::to_string(zone.ttl.count()) + " " + mname + "\n";
  }
  // RFC 5782 §5 test entries, as the responder answers them; the exclusion
  // wins over any range that covers 127.0.0.1.
  out += v4 + "127.0.0.2 :" + a + ":" + test_entry_text + "\n!127.0.0.1\n";
  out += v6 + "::ffff:7f00:2 :" + a + ":" + test_entry_text + "\n!::ffff:7f00:1\n";
  return out;
}

}  // namespace mxguard::dnsbl
