// What a client's name says about who sends from it.
//
// A client's name is a PTR name of its address whose A (or AAAA) records
// lead back to the address: forward-confirmed reverse DNS (FCrDNS, RFC 8601's
// "iprev"). Anyone can put any PTR on an address they hold; only the owner
// of the domain can point the name back. `dnsbl::engine::confirmed_name`
// looks it up; these helpers judge it. Greylisting keys the large senders,
// whose outbound pools rotate addresses, by the registrable domain of such a
// name instead of their network.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

namespace mxguard::dnsbl {

// The registrable domain ("example.co.uk" of "mx1.out.example.co.uk") by the
// Public Suffix List (libpsl: the newer of its built-in list and Debian's
// publicsuffix file); nullopt for a public suffix itself or a name that is
// not a host name.
std::optional<std::string> registrable_domain(std::string_view name);

// Names ISPs and hosters give to whole address ranges
// ("dsl-198-51-100-7.dyn.example.net", "7.100.51.198.static.example.de",
// "c63364d7.cust.example"): the address written into the name, or a label
// saying dynamic/dsl/pool/customer/... They name a range, not a sender.
bool looks_generic(std::string_view name, const boost::asio::ip::address& client);

}  // namespace mxguard::dnsbl
