// Fuzzes the DNS answer parser (the bytes a resolver, or a spoofer, sends
// back), the classification of what it yields, and the judging of reverse
// names (whoever holds an address writes its PTR).
//
// Invariants: a parsed answer is for our question only; a listing is only
// ever an answer inside 127.0.0.0/8 and outside 127.255.255.0/24; the TTL of
// a parsed answer never exceeds the largest 32-bit value; a PTR name has no
// trailing dot and no upper case; a registrable domain is a suffix of its name.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mxguard/dnsbl/client_name.hpp"
#include "mxguard/dnsbl/dnsbl.hpp"

using namespace mxguard::dnsbl;

namespace {

const site& test_site() {
  static const site s = [] {
    std::string error;
    return *parse_site("bl.example=127.0.0.[2..11];127.0.1.2*2", error);
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // The first two bytes choose the query ID we "sent", so that the fuzzer can
  // make answers that match it.
  const std::uint16_t id = static_cast<std::uint16_t>((data[0] << 8) | data[1]);
  const std::string name = "2.0.0.127.bl.example";
  for (auto type : {rr_type::a, rr_type::txt}) {
    bool truncated = false;
    auto result = parse_response(data + 2, size - 2, name, type, id, truncated);
    if (!result) continue;
    if (type == rr_type::a) {
      auto verdict = classify(test_site(), *result);
      if (verdict.kind == verdict_kind::listed) {
        bool any_valid = false;
        for (const auto& code : verdict.codes) {
          auto b = code.to_bytes();
          if (b[0] != 127 || (b[1] == 255 && b[2] == 255)) std::abort();  // never a listing
          any_valid = any_valid || test_site().matches(code);
        }
        if (!any_valid) std::abort();
      }
    }
    for (const auto& t : result->texts)
      if (t.size() > 65535) std::abort();
  }
  const std::string reverse = "7.100.51.198.in-addr.arpa";
  const auto client = boost::asio::ip::make_address("198.51.100.7");
  for (auto type : {rr_type::ptr, rr_type::aaaa}) {
    bool truncated = false;
    auto result = parse_response(data + 2, size - 2, reverse, type, id, truncated);
    if (!result) continue;
    for (const auto& n : result->names) {
      if (n.ends_with('.')) std::abort();
      for (char c : n)
        if (c >= 'A' && c <= 'Z') std::abort();
      if (auto domain = registrable_domain(n); domain && !n.ends_with(*domain)) std::abort();
      (void)looks_generic(n, client);
    }
  }
  // Our own query for the same name must parse back as not-a-response.
  auto query = build_query(name, rr_type::a, id);
  bool truncated = false;
  if (query.empty() || parse_response(query.data(), query.size(), name, rr_type::a, id, truncated))
    std::abort();
  return 0;
}
