#include "mxguard/dnsbl/dns.hpp"

#include <ldns/ldns.h>
#include <openssl/rand.h>

#include <fstream>
#include <memory>
#include <sstream>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace mxguard::dnsbl {

namespace asio = boost::asio;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint16_t edns_udp_size = 1232;  // DNS flag day 2020: no IP fragmentation

struct pkt_deleter {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct rdf_deleter {
  void operator()(ldns_rdf* r) const { ldns_rdf_deep_free(r); }
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_deleter>;
using rdf_ptr = std::unique_ptr<ldns_rdf, rdf_deleter>;

std::uint16_t random_id() {
  std::uint16_t id = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) {
    // The CSPRNG failing is a broken invariant of the host, not of the input.
    std::abort();
  }
  return id;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

dns_result failed(dns_result::status s, std::string why) {
  dns_result r;
  r.state = s;
  r.error = std::move(why);
  return r;
}

}  // namespace

const char* to_string(dns_result::status s) {
  switch (s) {
    case dns_result::status::answer:
      return "answer";
    case dns_result::status::nxdomain:
      return "nxdomain";
    case dns_result::status::servfail:
      return "servfail";
    case dns_result::status::refused:
      return "refused";
    case dns_result::status::timeout:
      return "timeout";
    case dns_result::status::error:
      return "error";
  }
  return "?";
}

std::vector<std::uint8_t> build_query(std::string_view name, rr_type type, std::uint16_t id) {
  std::string fqdn(name);
  if (fqdn.empty() || fqdn.size() > 253) return {};
  if (fqdn.back() != '.') fqdn.push_back('.');
  rdf_ptr owner(ldns_dname_new_frm_str(fqdn.c_str()));
  if (!owner) return {};
  pkt_ptr pkt(ldns_pkt_query_new(owner.release(), static_cast<ldns_rr_type>(type), LDNS_RR_CLASS_IN,
                                 LDNS_RD));
  if (!pkt) return {};
  ldns_pkt_set_id(pkt.get(), id);
  ldns_pkt_set_edns_udp_size(pkt.get(), edns_udp_size);
  std::uint8_t* wire = nullptr;
  std::size_t size = 0;
  if (ldns_pkt2wire(&wire, pkt.get(), &size) != LDNS_STATUS_OK) return {};
  std::vector<std::uint8_t> out(wire, wire + size);
  std::free(wire);
  return out;
}

std::optional<wire_outline> outline(const std::uint8_t* data, std::size_t size) {
  if (size < 12) return std::nullopt;
  auto u16 = [data](std::size_t at) {
    return static_cast<unsigned>((data[at] << 8) | data[at + 1]);
  };
  std::size_t pos = 12;
  auto skip_name = [&]() -> bool {
    for (int labels = 0; labels < 128; ++labels) {  // a name has at most 127 labels
      if (pos >= size) return false;
      const std::uint8_t len = data[pos];
      if ((len & 0xc0) == 0xc0) return (pos += 2) <= size;  // a pointer ends the name
      if (len & 0xc0) return false;                         // no other label types
      pos += 1u + len;
      if (len == 0) return pos <= size;
    }
    return false;
  };
  const unsigned questions = u16(4), answers = u16(6), authority = u16(8), additional = u16(10);
  for (unsigned i = 0; i < questions; ++i)
    if (!skip_name() || (pos += 4) > size) return std::nullopt;
  wire_outline out;
  for (unsigned i = 0; i < answers + authority + additional; ++i) {
    if (!skip_name() || pos + 10 > size) return std::nullopt;
    const unsigned type = u16(pos), rdlength = u16(pos + 8);
    if ((pos += 10u + rdlength) > size) return std::nullopt;
    if (type == LDNS_RR_TYPE_TSIG) ++out.tsig;
    if (type == LDNS_RR_TYPE_OPT && i >= answers + authority) ++out.opt;
  }
  return out;
}

std::optional<dns_result> parse_response(const std::uint8_t* data, std::size_t size,
                                         std::string_view name, rr_type type, std::uint16_t id,
                                         bool& truncated) {
  truncated = false;
  // Our queries are not signed: an answer with TSIG is not for us.
  if (auto o = outline(data, size); !o || o->tsig > 0) return std::nullopt;
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, data, size) != LDNS_STATUS_OK) return std::nullopt;
  pkt_ptr pkt(raw);
  if (ldns_pkt_id(pkt.get()) != id || !ldns_pkt_qr(pkt.get())) return std::nullopt;
  // The question must be ours: an answer to something else is a spoofing attempt
  // or a confused resolver.
  ldns_rr_list* question = ldns_pkt_question(pkt.get());
  if (!question || ldns_rr_list_rr_count(question) != 1) return std::nullopt;
  ldns_rr* q = ldns_rr_list_rr(question, 0);
  if (ldns_rr_get_type(q) != static_cast<ldns_rr_type>(type) ||
      ldns_rr_get_class(q) != LDNS_RR_CLASS_IN)
    return std::nullopt;
  char* qname = ldns_rdf2str(ldns_rr_owner(q));
  if (!qname) return std::nullopt;
  bool same = lower(qname) == lower(name);
  std::free(qname);
  if (!same) return std::nullopt;

  truncated = ldns_pkt_tc(pkt.get());
  dns_result result;
  switch (ldns_pkt_get_rcode(pkt.get())) {
    case LDNS_RCODE_NOERROR:
      result.state = dns_result::status::answer;
      break;
    case LDNS_RCODE_NXDOMAIN:
      result.state = dns_result::status::nxdomain;
      break;
    case LDNS_RCODE_SERVFAIL:
      result.state = dns_result::status::servfail;
      break;
    case LDNS_RCODE_REFUSED:
      result.state = dns_result::status::refused;
      break;
    default:
      result.state = dns_result::status::error;
      result.error = "rcode " + std::to_string(ldns_pkt_get_rcode(pkt.get()));
  }
  std::optional<std::uint32_t> ttl;
  ldns_rr_list* answer = ldns_pkt_answer(pkt.get());
  for (std::size_t i = 0; answer && i < ldns_rr_list_rr_count(answer); ++i) {
    ldns_rr* rr = ldns_rr_list_rr(answer, i);
    if (ldns_rr_get_type(rr) != static_cast<ldns_rr_type>(type)) continue;  // CNAMEs etc.
    ttl = std::min(ttl.value_or(ldns_rr_ttl(rr)), ldns_rr_ttl(rr));
    if (type == rr_type::a && ldns_rr_rd_count(rr) == 1) {
      ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
      if (ldns_rdf_get_type(rdf) == LDNS_RDF_TYPE_A && ldns_rdf_size(rdf) == 4) {
        asio::ip::address_v4::bytes_type b;
        std::memcpy(b.data(), ldns_rdf_data(rdf), 4);
        result.addresses.emplace_back(b);
      }
    } else if (type == rr_type::aaaa && ldns_rr_rd_count(rr) == 1) {
      ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
      if (ldns_rdf_get_type(rdf) == LDNS_RDF_TYPE_AAAA && ldns_rdf_size(rdf) == 16) {
        asio::ip::address_v6::bytes_type b;
        std::memcpy(b.data(), ldns_rdf_data(rdf), 16);
        result.addresses6.emplace_back(b);
      }
    } else if (type == rr_type::ptr && ldns_rr_rd_count(rr) == 1) {
      ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
      if (ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME) continue;
      char* text = ldns_rdf2str(rdf);
      if (!text) continue;
      std::string target = lower(text);
      std::free(text);
      if (target.ends_with('.')) target.pop_back();
      result.names.push_back(std::move(target));
    } else if (type == rr_type::txt) {
      std::string text;
      for (std::size_t j = 0; j < ldns_rr_rd_count(rr); ++j) {
        ldns_rdf* rdf = ldns_rr_rdf(rr, j);
        const std::uint8_t* p = ldns_rdf_data(rdf);
        std::size_t n = ldns_rdf_size(rdf);
        if (n == 0 || p[0] + 1u > n) continue;
        text.append(reinterpret_cast<const char*>(p + 1), p[0]);
      }
      result.texts.push_back(std::move(text));
    }
  }
  if (!ttl) {
    // Negative answers are cached for the SOA minimum (RFC 2308).
    ldns_rr_list* authority = ldns_pkt_authority(pkt.get());
    for (std::size_t i = 0; authority && i < ldns_rr_list_rr_count(authority); ++i) {
      ldns_rr* rr = ldns_rr_list_rr(authority, i);
      if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && ldns_rr_rd_count(rr) >= 7)
        ttl = std::min(ldns_rr_ttl(rr), ldns_rdf2native_int32(ldns_rr_rdf(rr, 6)));
    }
  }
  result.ttl = ttl.value_or(0);
  return result;
}

std::vector<asio::ip::udp::endpoint> system_resolvers(const std::string& path) {
  std::vector<asio::ip::udp::endpoint> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string keyword, address;
    if (!(words >> keyword >> address) || keyword != "nameserver") continue;
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(address, ec);
    if (!ec) out.emplace_back(addr, 53);
  }
  return out;
}

namespace {

using namespace asio::experimental::awaitable_operators;

asio::awaitable<std::optional<dns_result>> udp_exchange(const asio::ip::udp::endpoint& server,
                                                        const std::vector<std::uint8_t>& query,
                                                        std::string_view name, rr_type type,
                                                        std::uint16_t id, bool& truncated) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::udp::socket socket(executor);
  boost::system::error_code ec;
  socket.open(server.protocol(), ec);
  if (!ec) socket.connect(server, ec);
  if (ec) co_return failed(dns_result::status::error, "udp: " + ec.message());
  auto [sec, sent] = co_await socket.async_send(asio::buffer(query), use_tuple);
  if (sec) co_return failed(dns_result::status::error, "udp send: " + sec.message());
  std::uint8_t buffer[4096];
  for (;;) {
    auto [rec, n] = co_await socket.async_receive(asio::buffer(buffer), use_tuple);
    if (rec == asio::error::connection_refused)
      co_return failed(dns_result::status::error, "udp: port unreachable");
    if (rec) co_return failed(dns_result::status::error, "udp receive: " + rec.message());
    auto result = parse_response(buffer, n, name, type, id, truncated);
    if (result || truncated) co_return result;
    // Not an answer to our question: ignore it and keep waiting.
  }
}

asio::awaitable<std::optional<dns_result>> tcp_exchange(const asio::ip::udp::endpoint& server,
                                                        const std::vector<std::uint8_t>& query,
                                                        std::string_view name, rr_type type,
                                                        std::uint16_t id) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::socket socket(executor);
  const asio::ip::tcp::endpoint peer(server.address(), server.port());  // named: GCC 12
  auto [cec] = co_await socket.async_connect(peer, use_tuple);
  if (cec) co_return failed(dns_result::status::error, "tcp connect: " + cec.message());
  // RFC 1035 §4.2.2: a two-byte length before the message.
  std::vector<std::uint8_t> framed(query.size() + 2);
  framed[0] = static_cast<std::uint8_t>(query.size() >> 8);
  framed[1] = static_cast<std::uint8_t>(query.size() & 0xff);
  std::copy(query.begin(), query.end(), framed.begin() + 2);
  auto [wec, w] = co_await asio::async_write(socket, asio::buffer(framed), use_tuple);
  if (wec) co_return failed(dns_result::status::error, "tcp write: " + wec.message());
  std::uint8_t length[2];
  auto [lec, l] = co_await asio::async_read(socket, asio::buffer(length), use_tuple);
  if (lec) co_return failed(dns_result::status::error, "tcp read: " + lec.message());
  std::vector<std::uint8_t> body((length[0] << 8) | length[1]);
  auto [bec, b] = co_await asio::async_read(socket, asio::buffer(body), use_tuple);
  if (bec) co_return failed(dns_result::status::error, "tcp read: " + bec.message());
  bool truncated = false;
  auto result = parse_response(body.data(), body.size(), name, type, id, truncated);
  if (!result) co_return failed(dns_result::status::error, "tcp: answer does not match query");
  result->via_tcp = true;
  co_return result;
}

}  // namespace

asio::awaitable<dns_result> dns_client::query(std::string name, rr_type type,
                                              std::chrono::steady_clock::time_point deadline) {
  if (settings_.servers.empty()) co_return failed(dns_result::status::error, "no resolvers");
  auto executor = co_await asio::this_coro::executor;
  dns_result last = failed(dns_result::status::timeout, "no answer");
  for (unsigned attempt = 0; attempt < std::max(1u, settings_.attempts); ++attempt) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    const auto server = settings_.servers[next_server_++ % settings_.servers.size()];
    const auto id = random_id();
    const auto wire = build_query(name, type, id);
    if (wire.empty()) co_return failed(dns_result::status::error, "bad query name");
    asio::steady_timer timer(executor, std::min<std::chrono::steady_clock::duration>(
                                           settings_.try_timeout, deadline - now));
    bool truncated = false;
    auto outcome = co_await (udp_exchange(server, wire, name, type, id, truncated) ||
                             timer.async_wait(use_tuple));
    if (outcome.index() == 1) {
      last = failed(dns_result::status::timeout, "no answer from " + server.address().to_string());
      continue;
    }
    auto result = std::get<0>(std::move(outcome));
    if (truncated) {
      // The answer did not fit a datagram: ask the same server over TCP (RFC 7766).
      timer.expires_after(std::min<std::chrono::steady_clock::duration>(
          settings_.try_timeout, deadline - std::chrono::steady_clock::now()));
      auto over_tcp =
          co_await (tcp_exchange(server, wire, name, type, id) || timer.async_wait(use_tuple));
      if (over_tcp.index() == 1) {
        last = failed(dns_result::status::timeout, "tcp: no answer");
        continue;
      }
      result = std::get<0>(std::move(over_tcp));
    }
    if (!result) continue;
    // SERVFAIL, REFUSED (one resolver's ACL says nothing about the others)
    // and transport errors are worth another server; answers and NXDOMAIN
    // are final.
    if (result->state == dns_result::status::servfail ||
        result->state == dns_result::status::refused ||
        result->state == dns_result::status::error) {
      last = std::move(*result);
      continue;
    }
    co_return std::move(*result);
  }
  co_return last;
}

}  // namespace mxguard::dnsbl
