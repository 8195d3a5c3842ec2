// Client access list: CIDR (v4/v6) → OK / REJECT / DEFER, checked at connect.
//
// Line format as in Postfix client access tables: `ADDRESS[/LEN] ACTION [text]`,
// e.g. `61.49.138.219 REJECT`, `150.59.112.17 OK`, `192.0.2.0/24 DEFER`.
// The most specific matching prefix wins, whatever the order of the lines
// (unlike Postfix cidr tables, which take the first match: with longest-match
// an admin can add an exception anywhere in the file without reordering).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "mxguard/net.hpp"
#include "mxguard/verdict.hpp"

namespace mxguard::guard {

enum class access_action { ok, reject, defer };

struct access_entry {
  ip_prefix network;
  access_action what = access_action::ok;
  std::string text;    // optional admin text for the reply
  std::string origin;  // "file:line" or "rules[3]" for the log line
};

class access_list {
 public:
  // Parses one rule line; on error returns nullopt and sets `error`.
  static std::optional<access_entry> parse_line(std::string_view line, std::string& error);

  void add(access_entry entry);
  std::size_t size() const { return count_; }

  // The most specific entry containing `client`, if any.
  const access_entry* find(const boost::asio::ip::address& client) const;

  // The connect-stage verdict: accept (skip DNSBL etc.), reject, defer or cont.
  verdict check(const boost::asio::ip::address& client) const;

 private:
  // prefix length, longest first → the entries of that length
  std::map<int, std::unordered_map<ip_prefix, access_entry, ip_prefix_hash>, std::greater<>> v4_,
      v6_;
  std::size_t count_ = 0;
};

}  // namespace mxguard::guard
