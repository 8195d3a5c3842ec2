// Relay domains and routes: which recipient domains we accept, and where
// each goes.
//
// Domain patterns: "example.org" matches exactly, ".example.org" matches any
// subdomain (not example.org itself, as in Postfix's parent_domain_matches_subdomains=no),
// "*" (routes only) is the default route for outbound mail from trusted networks.
// Next hops are IP:port or hostname:port; a hostname is resolved by A/AAAA
// only, never by MX, since the MX of an accepted domain points back to us.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxguard/net.hpp"

namespace mxguard::guard {

// Lower-cases ASCII only; domains arrive here already checked for syntax
// (a trailing dot is a relay trick refused by the address parser).
std::string lower_ascii(std::string_view s);

class relay_domain_set {
 public:
  void add(std::string_view pattern);
  bool matches(std::string_view domain) const;
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  std::vector<std::string> patterns_;  // lower case
};

struct route {
  std::string domain;  // pattern as configured, lower case
  std::vector<host_port> next_hops;
};

class route_table {
 public:
  void add(route r);
  // The route for a recipient domain: exact, then the nearest ".parent"
  // pattern, then "*". nullptr when nothing matches.
  const route* find(std::string_view domain) const;
  const std::vector<route>& routes() const { return routes_; }

 private:
  std::vector<route> routes_;
};

}  // namespace mxguard::guard
