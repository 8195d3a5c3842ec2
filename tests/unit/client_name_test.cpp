// What a client's confirmed name says: its registrable domain (Public Suffix
// List) and whether it is a generic name of an address range.
#include <gtest/gtest.h>

#include "mxguard/dnsbl/client_name.hpp"

namespace mxguard::dnsbl {
namespace {

TEST(ClientName, RegistrableDomainByThePublicSuffixList) {
  struct row {
    const char* name;
    std::optional<std::string> want;
  };
  const row rows[] = {
      {"mail-ej1-f41.google.com", "google.com"},
      {"mail-db8eur05on2041.outbound.protection.outlook.com", "outlook.com"},
      {"a8-30.smtp-out.amazonses.com", "amazonses.com"},
      {"mx1.out.example.co.uk", "example.co.uk"},
      {"MX.Example.ORG.", "example.org"},
      {"example.org", "example.org"},
      {"co.uk", std::nullopt},  // a public suffix is nobody's domain
      {"com", std::nullopt},
      {"localhost", std::nullopt},
      {"", std::nullopt},
      {"bad..name.example", std::nullopt},
      {"sp ace.example.com", std::nullopt},
      {"x.github.io", "x.github.io"},  // a private suffix: each user is a domain
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(registrable_domain(r.name), r.want);
  }
}

TEST(ClientName, GenericNamesOfAddressRanges) {
  struct row {
    const char* name;
    const char* client;
    bool generic;
  };
  const row rows[] = {
      // Providers' outbound hosts: specific names.
      {"mail-ej1-f41.google.com", "209.85.218.41", false},
      {"mail-db8eur05on2041.outbound.protection.outlook.com", "40.107.7.41", false},
      {"a8-30.smtp-out.amazonses.com", "54.240.8.30", false},
      {"mx1.example.org", "198.51.100.7", false},
      {"example.org", "198.51.100.7", false},
      {"mail.example.org", "2001:db8::25", false},
      // The address written out, in order, reversed, padded, hex, as one number.
      {"198-51-100-7.example.net", "198.51.100.7", true},
      {"ec2-198-51-100-7.compute-1.amazonaws.com", "198.51.100.7", true},
      {"7.100.51.198.static.example.de", "198.51.100.7", true},
      {"host198051100007.example.net", "198.51.100.7", true},
      {"c6336407.example.net", "198.51.100.7", true},
      {"h3325256711.example.net", "198.51.100.7", true},
      {"ip-2001-db8--c633-6407.example.net", "2001:db8::c633:6407", true},
      // Words ISPs give their subscriber ranges.
      {"dsl-pool-17.example.net", "203.0.113.9", true},
      {"cpe.dynamic.example.net", "203.0.113.9", true},
      {"adsl2.example.it", "203.0.113.9", true},
      {"customer.example.com", "203.0.113.9", true},
      // The words inside the registrable domain do not count.
      {"mx.dynamic-example.com", "203.0.113.9", false},
      // Three octets are not the address.
      {"mail-198-51-100.example.net", "198.51.100.7", false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(looks_generic(r.name, boost::asio::ip::make_address(r.client)), r.generic);
  }
}

}  // namespace
}  // namespace mxguard::dnsbl
