// Unit tests for dnsbl/: site syntax, query names, classification of answers,
// and the DNS wire helpers (responses built with ldns, as a resolver would).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "config.hpp"
#include "dns_wire.hpp"
#include "dnsbl_check.hpp"
#include "mxguard/dnsbl/dns.hpp"
#include "mxguard/dnsbl/dnsbl.hpp"
#include "mxguard/ops/log.hpp"
// Last: ldns/common.h defines `bool` as a macro, which breaks C++ headers after it.
#include <ldns/ldns.h>

namespace mxguard::dnsbl {
namespace {

namespace asio = boost::asio;
using test::with_additional;

asio::ip::address ip(const char* text) {
  return asio::ip::make_address(text);
}
asio::ip::address_v4 ip4(const char* text) {
  return asio::ip::make_address_v4(text);
}

// Renders an octet set as written in a spec: "7" or "[1;3;5..9]".
std::string render(const octet_set& set) {
  if (set.ranges.size() == 1 && set.ranges[0].first == set.ranges[0].second)
    return std::to_string(set.ranges[0].first);
  std::string out = "[";
  for (const auto& [lo, hi] : set.ranges) {
    if (out.size() > 1) out += ";";
    out += std::to_string(lo);
    if (hi != lo) out += ".." + std::to_string(hi);
  }
  return out + "]";
}

// "domain patterns*weight", patterns joined by ';' ("-" when none).
std::string render(const site& s) {
  std::string patterns;
  for (const auto& p : s.patterns) {
    if (!patterns.empty()) patterns += ";";
    for (int i = 0; i < 4; ++i) patterns += (i ? "." : "") + render(p[i]);
  }
  return s.domain + " " + (patterns.empty() ? "-" : patterns) + "*" + std::to_string(s.weight);
}

site must_parse(std::string_view spec) {
  std::string error;
  auto s = parse_site(spec, error);
  EXPECT_TRUE(s.has_value()) << spec << ": " << error;
  return s.value_or(site{});
}

TEST(dnsbl_site, parse_valid) {
  struct row {
    const char* label;
    std::string_view input;
    std::string want;  // render() of the parsed site
  };
  const row rows[] = {
      {"zone only: any code, weight 1", "bl.example", "bl.example -*1"},
      {"zone lower-cased", "BL.Example", "bl.example -*1"},
      {"zone only with weight", "bl.example*5", "bl.example -*5"},
      {"single value", "zen.example=127.0.0.2", "zen.example 127.0.0.2*1"},
      {"range", "zen.example=127.0.0.[2..11]", "zen.example 127.0.0.[2..11]*1"},
      {"range with weight", "zen.example=127.0.0.[2..11]*3", "zen.example 127.0.0.[2..11]*3"},
      {"list", "bl.example=127.0.0.[1;3;5..9]", "bl.example 127.0.0.[1;3;5..9]*1"},
      {"one-element list", "bl.example=127.0.0.[4]", "bl.example 127.0.0.4*1"},
      {"ranges in several octets", "wl.example=127.0.[0..255].[1..3]*-2",
       "wl.example 127.0.[0..255].[1..3]*-2"},
      {"several patterns", "bl.example=127.0.0.2;127.0.0.4", "bl.example 127.0.0.2;127.0.0.4*1"},
      {"several patterns with lists", "bl.example=127.0.0.[2;4..5];127.0.1.[2..99]*-1",
       "bl.example 127.0.0.[2;4..5];127.0.1.[2..99]*-1"},
      {"negative weight", "wl.example*-10", "wl.example -*-10"},
      {"zero weight", "log.example=127.0.0.2*0", "log.example 127.0.0.2*0"},
      {"weight limits", "bl.example*100", "bl.example -*100"},
      {"underscore and hyphen in zone", "b_l-1.example", "b_l-1.example -*1"},
      {"full octet range", "bl.example=[0..255].[0..255].[0..255].[0..255]",
       "bl.example [0..255].[0..255].[0..255].[0..255]*1"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::string error;
    auto s = parse_site(r.input, error);
    ASSERT_TRUE(s.has_value()) << error;
    EXPECT_EQ(render(*s), r.want);
    EXPECT_EQ(s->spec, r.input);
    EXPECT_TRUE(s->key.empty());
  }
}

TEST(dnsbl_site, parse_errors) {
  struct row {
    const char* label;
    std::string_view input;
    std::string want;  // a part of the error message
  };
  const row rows[] = {
      {"octet over 255", "bl.example=127.0.0.256", "bad octet '256'"},
      {"negative octet", "bl.example=127.0.0.-1", "bad octet '-1'"},
      {"octet not a number", "bl.example=127.0.0.x", "bad octet 'x'"},
      {"range bounds reversed", "bl.example=127.0.0.[11..2]", "bad octet '[11..2]'"},
      {"range bound over 255", "bl.example=127.0.0.[2..300]", "bad octet '[2..300]'"},
      {"range without brackets", "bl.example=127.0.0.2..3", "four octets"},
      {"list without brackets", "bl.example=127.0.[0;1].2;127.0.0.1;3", "four octets"},
      {"empty list item", "bl.example=127.0.0.[;2]", "bad octet '[;2]'"},
      {"unclosed bracket", "bl.example=127.0.0.[2..11", "unbalanced brackets in '[2..11'"},
      {"stray closing bracket", "bl.example=127.0.0.2]", "bad octet '2]'"},
      {"empty brackets", "bl.example=127.0.0.[]", "'[]'"},
      {"three octets", "bl.example=127.0.0", "bad return-code pattern '127.0.0' (four octets"},
      {"five octets", "bl.example=127.0.0.2.3", "four octets"},
      {"empty octet", "bl.example=127..0.2", "empty octet ''"},
      {"empty second pattern", "bl.example=127.0.0.2;", "four octets"},
      {"weight not an integer", "bl.example=127.0.0.2*x", "bad weight 'x'"},
      {"weight fractional", "bl.example*1.5", "bad weight '1.5'"},
      {"weight empty", "bl.example*", "bad weight ''"},
      {"weight too large", "bl.example*101", "bad weight '101'"},
      {"weight too small", "bl.example*-101", "bad weight '-101'"},
      {"weight with trailing junk", "bl.example*2x", "bad weight '2x'"},
      {"empty zone", "=127.0.0.2", "bad list domain ''"},
      {"empty spec", "", "bad list domain"},
      {"double dot in zone", "bl..example", "bad list domain 'bl..example'"},
      {"leading dot", ".bl.example", "bad list domain"},
      {"trailing dot", "bl.example.", "bad list domain"},
      {"space in zone", "bl example", "bad list domain"},
      {"slash in zone", "bl/example=127.0.0.2", "bad list domain 'bl/example'"},
      {"empty filter", "bl.example=", "empty return-code filter"},
      {"empty filter with weight", "bl.example=*2", "empty return-code filter"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::string error;
    auto s = parse_site(r.input, error);
    EXPECT_FALSE(s.has_value()) << render(*s);
    EXPECT_NE(error.find(r.want), std::string::npos) << "error: " << error;
  }
}

TEST(dnsbl_site, matches) {
  struct row {
    const char* label;
    std::string_view spec;
    const char* code;
    bool want;
  };
  const row rows[] = {
      {"range low end", "bl=127.0.0.[2..11]", "127.0.0.2", true},
      {"range high end", "bl=127.0.0.[2..11]", "127.0.0.11", true},
      {"below range", "bl=127.0.0.[2..11]", "127.0.0.1", false},
      {"above range", "bl=127.0.0.[2..11]", "127.0.0.12", false},
      {"other first octets", "bl=127.0.0.[2..11]", "127.0.1.2", false},
      {"list member", "bl=127.0.0.[1;3;5..9]", "127.0.0.3", true},
      {"list gap", "bl=127.0.0.[1;3;5..9]", "127.0.0.4", false},
      {"list range end", "bl=127.0.0.[1;3;5..9]", "127.0.0.9", true},
      {"list past the end", "bl=127.0.0.[1;3;5..9]", "127.0.0.10", false},
      {"second pattern", "bl=127.0.0.2;127.0.1.[2..99]", "127.0.1.50", true},
      {"neither pattern", "bl=127.0.0.2;127.0.1.[2..99]", "127.0.0.3", false},
      {"single value", "bl=127.0.0.2", "127.0.0.2", true},
      {"single value, other", "bl=127.0.0.2", "127.0.0.4", false},
      {"ranges in two octets", "wl=127.0.[0..255].[1..3]", "127.0.200.3", true},
      {"ranges in two octets, miss", "wl=127.0.[0..255].[1..3]", "127.0.200.4", false},
      // Without a filter any code matches here; classify() is what refuses
      // codes outside 127.0.0.0/8.
      {"no filter", "bl", "127.0.0.20", true},
      {"no filter, any address", "bl", "10.0.0.1", true},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto s = must_parse(r.spec);
    EXPECT_EQ(s.matches(ip4(r.code)), r.want);
  }
}

TEST(dnsbl_names, reversed_name) {
  struct row {
    const char* label;
    const char* input;
    std::string want;
  };
  const row rows[] = {
      {"IPv4", "192.0.2.1", "1.2.0.192"},
      {"IPv4 test address", "127.0.0.2", "2.0.0.127"},
      {"IPv4 with 255", "255.254.0.10", "10.0.254.255"},
      {"IPv6", "2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"},
      {"IPv6 all nibbles", "2001:db8:1234:5678:9abc:def0:fedc:ba98",
       "8.9.a.b.c.d.e.f.0.f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.8.b.d.0.1.0.0.2"},
      {"IPv6 loopback", "::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"},
      {"v4-mapped IPv6 is queried as IPv4", "::ffff:192.0.2.7", "7.2.0.192"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto name = reversed_name(ip(r.input));
    EXPECT_EQ(name, r.want);
    if (ip(r.input).is_v6() && !ip(r.input).to_v6().is_v4_mapped()) {
      EXPECT_EQ(name.size(), 63u);  // 32 nibbles, 31 dots
    }
  }
}

TEST(dnsbl_names, query_name) {
  struct row {
    const char* label;
    std::string_view spec;
    std::string key;
    std::string subject;
    std::string want;
  };
  const row rows[] = {
      {"IPv4 subject", "bl.example=127.0.0.2", "", "2.0.0.127", "2.0.0.127.bl.example"},
      {"domain subject", "dbl.example", "", "spam.example", "spam.example.dbl.example"},
      {"with a key, before the zone", "zen.dq.example", "abcdef123", "2.0.0.127",
       "2.0.0.127.abcdef123.zen.dq.example"},
      {"domain with a key", "dbl.dq.example", "k3y", "test", "test.k3y.dbl.dq.example"},
      {"upper-case zone lowered", "BL.Example", "", "1.2.0.192", "1.2.0.192.bl.example"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto s = must_parse(r.spec);
    s.key = r.key;
    EXPECT_EQ(query_name(s, r.subject), r.want);
  }
}

dns_result answer_with(std::vector<const char*> codes) {
  dns_result d;
  d.state = dns_result::status::answer;
  for (const auto* c : codes) d.addresses.push_back(ip4(c));
  return d;
}

dns_result status_only(dns_result::status st, std::string error = "") {
  dns_result d;
  d.state = st;
  d.error = std::move(error);
  return d;
}

TEST(dnsbl_classify, answers) {
  using st = dns_result::status;
  struct row {
    const char* label;
    std::string_view spec;
    dns_result input;
    verdict_kind want;
    std::string want_error;  // part of the error, "" when none expected
  };
  const row rows[] = {
      {"listed", "bl=127.0.0.[2..11]", answer_with({"127.0.0.2"}), verdict_kind::listed, ""},
      {"one of several codes matches", "bl=127.0.0.[2..11]",
       answer_with({"127.0.0.20", "127.0.0.4"}), verdict_kind::listed, ""},
      {"code outside filter not counted", "bl=127.0.0.[2..11]", answer_with({"127.0.0.20"}),
       verdict_kind::not_listed, ""},
      {"no filter: any 127/8 code", "bl", answer_with({"127.0.0.20"}), verdict_kind::listed, ""},
      {"127.255.255.254 is an error", "bl=127.0.0.[2..11]", answer_with({"127.255.255.254"}),
       verdict_kind::error, "127.255.255.254"},
      {"127.255.255.254 is an error without a filter too", "bl", answer_with({"127.255.255.254"}),
       verdict_kind::error, "127.255.255.254"},
      {"all of 127.255.255.0/24", "bl", answer_with({"127.255.255.0"}), verdict_kind::error,
       "127.255.255.0"},
      {"127.255.254.1 is a code", "bl", answer_with({"127.255.254.1"}), verdict_kind::listed, ""},
      {"answer outside 127/8 is an error", "bl", answer_with({"10.0.0.1"}), verdict_kind::error,
       "10.0.0.1"},
      {"a bad code spoils a matching one", "bl=127.0.0.[2..11]",
       answer_with({"127.0.0.2", "10.0.0.1"}), verdict_kind::error, "10.0.0.1"},
      {"NXDOMAIN", "bl", status_only(st::nxdomain), verdict_kind::not_listed, ""},
      {"NODATA", "bl", answer_with({}), verdict_kind::not_listed, ""},
      {"timeout", "bl", status_only(st::timeout, "no answer from 192.0.2.53"),
       verdict_kind::timeout, "no answer from 192.0.2.53"},
      {"SERVFAIL", "bl", status_only(st::servfail), verdict_kind::error, "servfail"},
      {"REFUSED", "bl", status_only(st::refused), verdict_kind::error, "refused"},
      {"transport error", "bl", status_only(st::error, "udp: port unreachable"),
       verdict_kind::error, "udp: port unreachable"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto s = must_parse(r.spec);
    auto got = classify(s, r.input);
    EXPECT_EQ(got.which, &s);
    EXPECT_EQ(static_cast<int>(got.kind), static_cast<int>(r.want));
    EXPECT_EQ(got.counted(), r.want == verdict_kind::listed);
    if (r.want_error.empty()) {
      EXPECT_EQ(got.error, "");
    } else {
      EXPECT_NE(got.error.find(r.want_error), std::string::npos) << got.error;
    }
    if (r.want == verdict_kind::listed || r.want == verdict_kind::not_listed) {
      EXPECT_EQ(got.codes, r.input.addresses);  // what `--check-ip` prints
    }
  }
}

// --- wire format -------------------------------------------------------------

struct pkt_deleter {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_deleter>;

std::vector<std::uint8_t> to_wire(const ldns_pkt* p) {
  std::uint8_t* wire = nullptr;
  std::size_t size = 0;
  EXPECT_EQ(ldns_pkt2wire(&wire, p, &size), LDNS_STATUS_OK);
  std::vector<std::uint8_t> out(wire, wire + size);
  std::free(wire);
  return out;
}

void push(ldns_pkt* p, ldns_pkt_section section, const std::string& text) {
  ldns_rr* rr = nullptr;
  auto status = section == LDNS_SECTION_QUESTION
                    ? ldns_rr_new_question_frm_str(&rr, text.c_str(), nullptr, nullptr)
                    : ldns_rr_new_frm_str(&rr, text.c_str(), 0, nullptr, nullptr);
  ASSERT_EQ(status, LDNS_STATUS_OK) << text;
  ASSERT_TRUE(ldns_pkt_push_rr(p, section, rr));
}

// A response as a resolver would send it: an answer to "2.0.0.127.bl.test A"
// with ID 0x1234 unless changed.
struct response_spec {
  std::uint16_t id = 0x1234;
  bool qr = true;
  bool tc = false;
  ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR;
  std::string question = "2.0.0.127.bl.test. IN A";  // "" for none
  std::vector<std::string> answer;
  std::vector<std::string> authority;

  response_spec& with_id(std::uint16_t v) { return id = v, *this; }
  response_spec& not_a_response() { return qr = false, *this; }
  response_spec& truncated() { return tc = true, *this; }
  response_spec& with_rcode(ldns_pkt_rcode v) { return rcode = v, *this; }
  response_spec& with_question(std::string v) { return question = std::move(v), *this; }
  response_spec& with_answer(std::string rr) { return answer.push_back(std::move(rr)), *this; }
  response_spec& with_authority(std::string rr) {
    return authority.push_back(std::move(rr)), *this;
  }
};

std::vector<std::uint8_t> build_response(const response_spec& spec) {
  pkt_ptr p(ldns_pkt_new());
  ldns_pkt_set_id(p.get(), spec.id);
  ldns_pkt_set_qr(p.get(), spec.qr);
  ldns_pkt_set_tc(p.get(), spec.tc);
  ldns_pkt_set_rd(p.get(), true);
  ldns_pkt_set_ra(p.get(), true);
  ldns_pkt_set_rcode(p.get(), static_cast<std::uint8_t>(spec.rcode));
  if (!spec.question.empty()) push(p.get(), LDNS_SECTION_QUESTION, spec.question);
  for (const auto& rr : spec.answer) push(p.get(), LDNS_SECTION_ANSWER, rr);
  for (const auto& rr : spec.authority) push(p.get(), LDNS_SECTION_AUTHORITY, rr);
  return to_wire(p.get());
}

TEST(dnsbl_wire, build_query) {
  auto wire = build_query("2.0.0.127.bl.test", rr_type::a, 0xbeef);
  ASSERT_FALSE(wire.empty());
  ldns_pkt* raw = nullptr;
  ASSERT_EQ(ldns_wire2pkt(&raw, wire.data(), wire.size()), LDNS_STATUS_OK);
  pkt_ptr q(raw);
  EXPECT_EQ(ldns_pkt_id(q.get()), 0xbeef);
  EXPECT_FALSE(ldns_pkt_qr(q.get()));
  EXPECT_TRUE(ldns_pkt_rd(q.get()));
  ASSERT_EQ(ldns_pkt_qdcount(q.get()), 1);
  EXPECT_EQ(ldns_pkt_ancount(q.get()), 0);
  ldns_rr* question = ldns_rr_list_rr(ldns_pkt_question(q.get()), 0);
  char* owner = ldns_rdf2str(ldns_rr_owner(question));
  EXPECT_STREQ(owner, "2.0.0.127.bl.test.");
  std::free(owner);
  EXPECT_EQ(ldns_rr_get_type(question), LDNS_RR_TYPE_A);
  EXPECT_EQ(ldns_rr_get_class(question), LDNS_RR_CLASS_IN);
  EXPECT_TRUE(ldns_pkt_edns(q.get()));
  EXPECT_EQ(ldns_pkt_edns_udp_size(q.get()), 1232);

  auto txt = build_query("spam.example.dbl.test.", rr_type::txt, 7);
  ASSERT_EQ(ldns_wire2pkt(&raw, txt.data(), txt.size()), LDNS_STATUS_OK);
  pkt_ptr t(raw);
  EXPECT_EQ(ldns_pkt_id(t.get()), 7);
  EXPECT_EQ(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_question(t.get()), 0)), LDNS_RR_TYPE_TXT);
}

TEST(dnsbl_wire, build_query_refuses_bad_names) {
  struct row {
    const char* label;
    std::string name;
  };
  const row rows[] = {
      {"empty", ""},
      {"label over 63 bytes", std::string(64, 'a') + ".bl.test"},
      {"name over 253 bytes", std::string(60, 'a') + "." + std::string(60, 'b') + "." +
                                  std::string(60, 'c') + "." + std::string(60, 'd') + "." +
                                  std::string(60, 'e') + ".bl.test"},
      {"empty label", "spam.example..dbl.test"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_TRUE(build_query(r.name, rr_type::a, 1).empty());
  }
}

// A response made by ldns from the very query build_query() produced.
TEST(dnsbl_wire, response_to_own_query_parses) {
  const std::string name = "10.0.0.127.bl.test";
  auto wire = build_query(name, rr_type::a, 0x4242);
  ldns_pkt* raw = nullptr;
  ASSERT_EQ(ldns_wire2pkt(&raw, wire.data(), wire.size()), LDNS_STATUS_OK);
  pkt_ptr p(raw);
  ldns_pkt_set_qr(p.get(), true);
  ldns_pkt_set_ra(p.get(), true);
  push(p.get(), LDNS_SECTION_ANSWER, name + ". 900 IN A 127.0.0.4");
  auto response = to_wire(p.get());
  bool truncated = true;
  auto got = parse_response(response.data(), response.size(), name, rr_type::a, 0x4242, truncated);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(truncated);
  EXPECT_EQ(got->state, dns_result::status::answer);
  EXPECT_EQ(got->addresses, std::vector{ip4("127.0.0.4")});
  EXPECT_EQ(got->ttl, 900u);
  EXPECT_FALSE(got->via_tcp);
}

TEST(dnsbl_wire, parse_response) {
  using st = dns_result::status;
  struct want_result {
    st state;
    std::vector<const char*> addresses;
    std::vector<std::string> texts;
    std::uint32_t ttl;
    bool truncated;
  };
  struct row {
    const char* label;
    response_spec response;
    rr_type type;  // asked for "2.0.0.127.bl.test" with ID 0x1234
    std::optional<want_result> want;
  };
  const std::string soa =
      "bl.test. 3600 IN SOA ns.bl.test. hostmaster.bl.test. 1 600 300 86400 120";
  const std::string a_rr = "2.0.0.127.bl.test. 300 IN A 127.0.0.2";
  const std::string txt_question = "2.0.0.127.bl.test. IN TXT";
  const row rows[] = {
      {"listed", response_spec().with_answer(a_rr), rr_type::a,
       want_result{st::answer, {"127.0.0.2"}, {}, 300, false}},
      {"TTL is the smallest answer TTL",
       response_spec()
           .with_answer(a_rr)
           .with_answer("2.0.0.127.bl.test. 60 IN A 127.0.0.4")
           .with_answer("2.0.0.127.bl.test. 900 IN A 127.0.0.10"),
       rr_type::a,
       want_result{st::answer, {"127.0.0.2", "127.0.0.4", "127.0.0.10"}, {}, 60, false}},
      {"question compared case-insensitively",
       response_spec()
           .with_question("2.0.0.127.BL.Test. IN A")
           .with_answer("2.0.0.127.BL.Test. 30 IN A 127.0.0.2"),
       rr_type::a, want_result{st::answer, {"127.0.0.2"}, {}, 30, false}},
      {"CNAME skipped, its TTL too",
       response_spec()
           .with_answer("2.0.0.127.bl.test. 5 IN CNAME x.bl.test.")
           .with_answer("x.bl.test. 100 IN A 127.0.0.4"),
       rr_type::a, want_result{st::answer, {"127.0.0.4"}, {}, 100, false}},
      {"NXDOMAIN: TTL from the SOA minimum",
       response_spec().with_rcode(LDNS_RCODE_NXDOMAIN).with_authority(soa), rr_type::a,
       want_result{st::nxdomain, {}, {}, 120, false}},
      {"NXDOMAIN: SOA TTL when below the minimum",
       response_spec()
           .with_rcode(LDNS_RCODE_NXDOMAIN)
           .with_authority(
               "bl.test. 30 IN SOA ns.bl.test. hostmaster.bl.test. 1 600 300 86400 120"),
       rr_type::a, want_result{st::nxdomain, {}, {}, 30, false}},
      {"NXDOMAIN without SOA", response_spec().with_rcode(LDNS_RCODE_NXDOMAIN), rr_type::a,
       want_result{st::nxdomain, {}, {}, 0, false}},
      {"NODATA with SOA", response_spec().with_authority(soa), rr_type::a,
       want_result{st::answer, {}, {}, 120, false}},
      {"SERVFAIL", response_spec().with_rcode(LDNS_RCODE_SERVFAIL), rr_type::a,
       want_result{st::servfail, {}, {}, 0, false}},
      {"REFUSED", response_spec().with_rcode(LDNS_RCODE_REFUSED), rr_type::a,
       want_result{st::refused, {}, {}, 0, false}},
      {"FORMERR is an error", response_spec().with_rcode(LDNS_RCODE_FORMERR), rr_type::a,
       want_result{st::error, {}, {}, 0, false}},
      {"TC flag sets truncated", response_spec().truncated(), rr_type::a,
       want_result{st::answer, {}, {}, 0, true}},
      {"TXT strings joined per record",
       response_spec()
           .with_question(txt_question)
           .with_answer("2.0.0.127.bl.test. 300 IN TXT \"Listed\" \" for spam\"")
           .with_answer("2.0.0.127.bl.test. 200 IN TXT \"see https://bl.test/\""),
       rr_type::txt,
       want_result{st::answer, {}, {"Listed for spam", "see https://bl.test/"}, 200, false}},
      {"empty TXT string",
       response_spec().with_question(txt_question).with_answer("2.0.0.127.bl.test. 10 IN TXT \"\""),
       rr_type::txt, want_result{st::answer, {}, {""}, 10, false}},
      {"A records ignored in a TXT answer",
       response_spec().with_question(txt_question).with_answer(a_rr), rr_type::txt,
       want_result{st::answer, {}, {}, 0, false}},
      {"wrong ID", response_spec().with_id(0x1235).with_answer(a_rr), rr_type::a, std::nullopt},
      {"QR bit unset (a query, not a response)", response_spec().not_a_response().with_answer(a_rr),
       rr_type::a, std::nullopt},
      {"other question name",
       response_spec()
           .with_question("3.0.0.127.bl.test. IN A")
           .with_answer("3.0.0.127.bl.test. 300 IN A 127.0.0.2"),
       rr_type::a, std::nullopt},
      {"other question type",
       response_spec()
           .with_question(txt_question)
           .with_answer("2.0.0.127.bl.test. 300 IN TXT \"x\""),
       rr_type::a, std::nullopt},
      {"other question class", response_spec().with_question("2.0.0.127.bl.test. CH A"), rr_type::a,
       std::nullopt},
      {"no question", response_spec().with_question("").with_answer(a_rr), rr_type::a,
       std::nullopt},
      {"wrong ID with TC set does not report truncation", response_spec().with_id(1).truncated(),
       rr_type::a, std::nullopt},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto wire = build_response(r.response);
    bool truncated = !r.want || !r.want->truncated;  // must be overwritten
    auto got =
        parse_response(wire.data(), wire.size(), "2.0.0.127.bl.test", r.type, 0x1234, truncated);
    if (!r.want) {
      EXPECT_FALSE(got.has_value());
      EXPECT_FALSE(truncated);
      continue;
    }
    ASSERT_TRUE(got.has_value());
    EXPECT_STREQ(to_string(got->state), to_string(r.want->state));
    std::vector<asio::ip::address_v4> addresses;
    for (const auto* a : r.want->addresses) addresses.push_back(ip4(a));
    EXPECT_EQ(got->addresses, addresses);
    EXPECT_EQ(got->texts, r.want->texts);
    EXPECT_EQ(got->ttl, r.want->ttl);
    EXPECT_EQ(truncated, r.want->truncated);
  }
}

TEST(dnsbl_wire, ptr_and_aaaa_answers) {
  bool tc = false;
  auto ptr =
      build_response(response_spec()
                         .with_question("7.100.51.198.in-addr.arpa. IN PTR")
                         .with_answer("7.100.51.198.in-addr.arpa. 300 IN PTR Mail-1.Example.COM.")
                         .with_answer("7.100.51.198.in-addr.arpa. 300 IN PTR out.example.net."));
  auto names =
      parse_response(ptr.data(), ptr.size(), "7.100.51.198.in-addr.arpa", rr_type::ptr, 0x1234, tc);
  ASSERT_TRUE(names);
  EXPECT_EQ(names->state, dns_result::status::answer);
  EXPECT_EQ(names->names, (std::vector<std::string>{"mail-1.example.com", "out.example.net"}));
  auto aaaa = build_response(response_spec()
                                 .with_question("mail.example.com. IN AAAA")
                                 .with_answer("mail.example.com. 60 IN AAAA 2001:db8::25")
                                 .with_answer("mail.example.com. 60 IN A 192.0.2.25"));
  auto six =
      parse_response(aaaa.data(), aaaa.size(), "mail.example.com", rr_type::aaaa, 0x1234, tc);
  ASSERT_TRUE(six);
  ASSERT_EQ(six->addresses6.size(), 1u);
  EXPECT_EQ(six->addresses6[0], boost::asio::ip::make_address_v6("2001:db8::25"));
  EXPECT_TRUE(six->addresses.empty());  // the A record was not asked for
}

TEST(dnsbl_wire, parse_response_refuses_garbage) {
  struct row {
    const char* label;
    std::vector<std::uint8_t> bytes;
  };
  auto good = build_response(response_spec().with_answer("2.0.0.127.bl.test. 300 IN A 127.0.0.2"));
  const row rows[] = {
      {"empty", {}},
      {"short header", {0x12, 0x34, 0x81, 0x80}},
      {"cut in the answer", std::vector<std::uint8_t>(good.begin(), good.end() - 3)},
      // libldns 1.8.3 leaks all but one TSIG record of such a message (LSan
      // in the sanitized run sees it if it ever reaches ldns again).
      {"three TSIG records", with_additional(good, 250, 3)},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    bool truncated = true;
    EXPECT_FALSE(parse_response(r.bytes.data(), r.bytes.size(), "2.0.0.127.bl.test", rr_type::a,
                                0x1234, truncated)
                     .has_value());
    EXPECT_FALSE(truncated);
  }
}

TEST(dnsbl_wire, outline_counts_tsig_and_opt_and_refuses_what_does_not_fit) {
  auto good = build_response(response_spec().with_answer("2.0.0.127.bl.test. 300 IN A 127.0.0.2"));
  auto plain = outline(good.data(), good.size());
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->tsig, 0u);
  auto signed_twice = with_additional(with_additional(good, 41, 1), 250, 2);
  auto o = outline(signed_twice.data(), signed_twice.size());
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->tsig, 2u);
  EXPECT_EQ(o->opt, plain->opt + 1);
  // ARCOUNT promising a record that is not there; a header alone; a name
  // running off the end.
  auto short_by_one = signed_twice;
  short_by_one[11] = static_cast<std::uint8_t>(short_by_one[11] + 1);
  EXPECT_FALSE(outline(short_by_one.data(), short_by_one.size()).has_value());
  EXPECT_FALSE(outline(good.data(), 11).has_value());
  EXPECT_FALSE(outline(good.data(), 14).has_value());
  // A compression pointer loop is two bytes to skip, not a loop.
  std::vector<std::uint8_t> loop = {0, 1, 0x81, 0x80, 0, 0, 0, 1,  0, 0, 0,   0, 0xc0, 12,
                                    0, 1, 0,    1,    0, 0, 0, 60, 0, 4, 127, 0, 0,    2};
  EXPECT_TRUE(outline(loop.data(), loop.size()).has_value());
}

TEST(dnsbl_resolvers, system_resolvers) {
  auto path = std::filesystem::temp_directory_path() /
              ("mxguard-resolv-" + std::to_string(::getpid()) + ".conf");
  {
    std::ofstream out(path);
    out << "# comment\nsearch example.org\nnameserver 192.0.2.53\n"
           "nameserver   2001:db8::53\nnameserver bogus\noptions edns0\nnameserver\n";
  }
  auto got = system_resolvers(path.string());
  std::filesystem::remove(path);
  std::vector<asio::ip::udp::endpoint> want{{ip("192.0.2.53"), 53}, {ip("2001:db8::53"), 53}};
  EXPECT_EQ(got, want);
  EXPECT_TRUE(system_resolvers("/nonexistent/resolv.conf").empty());
}

// Without resolvers every site is an error and nothing is counted; the score
// comes back without any network I/O, and each site's error is logged once
// per change of state, not once per client.
TEST(dnsbl_engine, no_resolvers_counts_nothing_and_logs_once) {
  settings cfg;
  cfg.sites = {must_parse("bl.example=127.0.0.[2..11]*3"), must_parse("wl.example*-2")};
  cfg.threshold = 1;
  cfg.allowlist_threshold = -1;
  auto e = std::make_shared<engine>(cfg);
  auto log_path = std::filesystem::temp_directory_path() /
                  ("mxguard-dnsbl-log-" + std::to_string(::getpid()) + ".txt");
  std::FILE* log_file = std::fopen(log_path.c_str(), "w+");
  ASSERT_NE(log_file, nullptr);
  ops::set_log_fd(::fileno(log_file));
  asio::io_context io;
  std::vector<score> got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (const char* client : {"127.0.0.2", "192.0.2.1"})
          got.push_back(co_await e->score_client(ip(client)));
      },
      [](std::exception_ptr ex) {
        if (ex) std::rethrow_exception(ex);
      });
  io.run();
  ops::set_log_fd(-1);
  std::fclose(log_file);
  std::ifstream in(log_path);
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(log_path);

  ASSERT_EQ(got.size(), 2u);
  for (const auto& sc : got) {
    EXPECT_EQ(sc.total, 0);
    EXPECT_FALSE(sc.listed);
    EXPECT_FALSE(sc.allowlisted);
    EXPECT_EQ(sc.first_listed(), nullptr);
    ASSERT_EQ(sc.sites.size(), 2u);
    EXPECT_EQ(sc.sites[0].which, &e->config().sites[0]);
    EXPECT_EQ(sc.sites[1].which, &e->config().sites[1]);
    for (const auto& r : sc.sites) {
      SCOPED_TRACE(r.which->domain);
      EXPECT_EQ(r.kind, verdict_kind::error);
      EXPECT_NE(r.error.find("no resolvers"), std::string::npos) << r.error;
    }
  }
  EXPECT_EQ(e->stats().errors.load(), 4u);
  EXPECT_EQ(e->stats().queries.load(), 4u);  // failures are not cached
  EXPECT_EQ(e->stats().cache_hits.load(), 0u);
  EXPECT_TRUE(e->healthy(e->config().sites[0]));
  for (const char* site : {"site=bl.example state=error", "site=wl.example state=error"}) {
    SCOPED_TRACE(site);
    std::size_t n = 0;
    for (auto pos = log.find(site); pos != std::string::npos; pos = log.find(site, pos + 1)) ++n;
    EXPECT_EQ(n, 1u) << log;
  }
}

}  // namespace
}  // namespace mxguard::dnsbl

namespace mxguard::guard {
namespace {

// [dnsbl] as guard/config.cpp compiles it into dnsbl::settings.
TEST(dnsbl_config, compiled) {
  auto cfg = parse_config(
      "[dnsbl]\n"
      "resolvers = [\"127.0.0.1:5353\", \"[::1]:53\"]\n"
      "sites = [\"zen.dq.example=127.0.0.[2..11]*3\", \"wl.example=127.0.[0..255].[1..3]*-2\"]\n"
      "rhsbl_sites = [\"DBL.example=127.0.1.[2..99]\"]\n"
      "keys = [\"zen.dq.example=abc123\", \"dbl.example=k3y\"]\n"
      "threshold = 3\nallowlist_threshold = -1\ntimeout = \"1500ms\"\n"
      "query_timeout = \"300ms\"\nattempts = 3\nmin_ttl = \"10s\"\nmax_ttl = \"20m\"\n"
      "cache_size = 64\naction = \"rcpt\"\nreply_txt = true\nhealth_interval = \"0s\"\n",
      "test.toml");
  const auto& d = cfg->dnsbl;
  EXPECT_TRUE(cfg->dnsbl_enabled);
  EXPECT_TRUE(cfg->dnsbl_at_rcpt);
  std::vector<boost::asio::ip::udp::endpoint> servers{
      {boost::asio::ip::make_address("127.0.0.1"), 5353},
      {boost::asio::ip::make_address("::1"), 53}};
  EXPECT_EQ(d.resolvers.servers, servers);
  EXPECT_EQ(d.resolvers.try_timeout, std::chrono::milliseconds(300));
  EXPECT_EQ(d.resolvers.attempts, 3u);
  ASSERT_EQ(d.sites.size(), 2u);
  EXPECT_EQ(d.sites[0].domain, "zen.dq.example");
  EXPECT_EQ(d.sites[0].key, "abc123");
  EXPECT_EQ(d.sites[0].weight, 3);
  EXPECT_EQ(d.sites[1].weight, -2);
  EXPECT_EQ(d.sites[1].key, "");
  ASSERT_EQ(d.rhsbl_sites.size(), 1u);
  EXPECT_EQ(d.rhsbl_sites[0].domain, "dbl.example");
  EXPECT_EQ(d.rhsbl_sites[0].key, "k3y");
  EXPECT_EQ(dnsbl::query_name(d.sites[0], "2.0.0.127"), "2.0.0.127.abc123.zen.dq.example");
  EXPECT_EQ(d.threshold, 3);
  EXPECT_EQ(d.allowlist_threshold, -1);
  EXPECT_EQ(d.timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(d.min_ttl, std::chrono::seconds(10));
  EXPECT_EQ(d.max_ttl, std::chrono::seconds(1200));
  EXPECT_EQ(d.cache_size, 64u);
  EXPECT_TRUE(d.fetch_txt);
  EXPECT_EQ(d.health_interval.count(), 0);

  auto off = parse_config("", "test.toml");
  EXPECT_FALSE(off->dnsbl_enabled);
  EXPECT_FALSE(off->dnsbl_at_rcpt);
}

TEST(dnsbl_config, errors_name_the_key) {
  struct row {
    const char* label;
    std::string input;  // body of [dnsbl], after a resolver
    std::string want;   // part of the error
  };
  const row rows[] = {
      {"bad site spec", "sites = [\"bl.example\", \"bl.example=127.0.0.300\"]",
       "test.toml:3: dnsbl.sites[1]: bad octet '300'"},
      {"bad RHSBL spec", "rhsbl_sites = [\"dbl.example*x\"]",
       "test.toml:3: dnsbl.rhsbl_sites[0]: bad weight 'x'"},
      {"key for a zone not configured", "sites = [\"bl.example\"]\nkeys = [\"other.example=k\"]",
       "test.toml:4: dnsbl.keys[0]: must be \"zone=KEY\""},
      {"key without '='", "sites = [\"bl.example\"]\nkeys = [\"bl.example\"]", "dnsbl.keys[0]"},
      {"empty key", "sites = [\"bl.example\"]\nkeys = [\"bl.example=\"]", "dnsbl.keys[0]"},
      {"min_ttl above max_ttl", "min_ttl = \"2h\"\nmax_ttl = \"1h\"",
       "dnsbl.min_ttl: is longer than dnsbl.max_ttl"},
      {"unknown action", "action = \"later\"", "dnsbl.action: must be \"connect\" or \"rcpt\""},
      {"reply not an SMTP reply", "reply = \"blocked\"", "test.toml:3: dnsbl.reply: must be a 4xx"},
      {"reply with a 2xx code", "reply = \"250 fine\"", "dnsbl.reply: must be a 4xx"},
      {"RHSBL reply named as such", "rhsbl_reply = \"554\"",
       "test.toml:3: dnsbl.rhsbl_reply: must be a 4xx"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    const std::string text = "[dnsbl]\nresolvers = [\"127.0.0.1:53\"]\n" + r.input + "\n";
    try {
      parse_config(text, "test.toml");
      ADD_FAILURE() << "accepted:\n" << text;
    } catch (const config_error& e) {
      EXPECT_NE(std::string(e.what()).find(r.want), std::string::npos) << e.what();
    }
  }
  try {
    parse_config("[dnsbl]\nresolvers = [\"localhost:53\"]\nsites = [\"bl.example\"]\n",
                 "test.toml");
    ADD_FAILURE() << "a resolver by name was accepted";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("dnsbl.resolvers: 'localhost:53' is not IP:PORT"),
              std::string::npos)
        << e.what();
  }
}

TEST(dnsbl_reply, expand_reply) {
  struct row {
    const char* label;
    std::string_view pattern;
    std::string_view txt;
    std::string want;
  };
  const std::string long_txt(300, 'x');
  const row rows[] = {
      {"placeholders filled", "554 5.7.1 client [{client}] blocked using {site}", "",
       "554 5.7.1 client [192.0.2.7] blocked using bl.test"},
      {"unknown placeholder kept", "554 {client} {nope} {site", "", "554 192.0.2.7 {nope} {site"},
      {"TXT appended", "554 blocked", "Listed, see https://bl.test/",
       "554 blocked; Listed, see https://bl.test/"},
      {"TXT control bytes replaced", "554 blocked", "a\r\n554 forged\x7f",
       "554 blocked; a??554 forged?"},
      {"TXT cut at 200 bytes", "554 blocked", long_txt, "554 blocked; " + std::string(200, 'x')},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(expand_reply(r.pattern, {{"client", "192.0.2.7"}, {"site", "bl.test"}}, r.txt),
              r.want);
  }
}

}  // namespace
}  // namespace mxguard::guard
