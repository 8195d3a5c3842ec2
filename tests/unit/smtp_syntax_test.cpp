// Unit tests for guard/smtp_syntax.hpp: command lines, paths and relay tricks.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "smtp_syntax.hpp"

namespace mxguard::guard {
namespace {

TEST(parse_command, verbs_and_arguments) {
  struct row {
    const char* label;
    std::string_view input;
    verb want_verb;
    std::string_view want_name;
    std::string_view want_argument;
  };
  const row rows[] = {
      {"upper case", "HELO mx.example.org", verb::helo, "HELO", "mx.example.org"},
      {"lower case", "ehlo mx.example.org", verb::ehlo, "ehlo", "mx.example.org"},
      {"mixed case", "MaIl FROM:<a@b.example>", verb::mail, "MaIl", "FROM:<a@b.example>"},
      {"rcpt", "rcpt TO:<a@b.example>", verb::rcpt, "rcpt", "TO:<a@b.example>"},
      {"no argument", "DATA", verb::data, "DATA", ""},
      {"trailing space only", "DATA ", verb::data, "DATA", ""},
      {"several spaces before argument", "HELO    host", verb::helo, "HELO", "host"},
      {"trailing spaces and tabs trimmed", "HELO host \t ", verb::helo, "HELO", "host"},
      {"inner spaces kept", "MAIL FROM:<a@b> SIZE=10", verb::mail, "MAIL", "FROM:<a@b> SIZE=10"},
      {"rset", "rset", verb::rset, "rset", ""},
      {"noop with argument", "NOOP hello", verb::noop, "NOOP", "hello"},
      {"quit", "Quit", verb::quit, "Quit", ""},
      {"help", "HELP", verb::help, "HELP", ""},
      {"vrfy", "VRFY root", verb::vrfy, "VRFY", "root"},
      {"expn", "expn staff", verb::expn, "expn", "staff"},
      {"starttls", "StartTLS", verb::starttls, "StartTLS", ""},
      {"bdat", "BDAT 100 LAST", verb::bdat, "BDAT", "100 LAST"},
      {"auth", "AUTH PLAIN", verb::auth, "AUTH", "PLAIN"},
      {"unknown verb", "XYZZY now", verb::unknown, "XYZZY", "now"},
      {"verb prefix is not the verb", "HEL host", verb::unknown, "HEL", "host"},
      {"verb with suffix is not the verb", "HELOX host", verb::unknown, "HELOX", "host"},
      {"empty line", "", verb::unknown, "", ""},
      {"tab is not a separator", "HELO\thost", verb::unknown, "HELO\thost", ""},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto cmd = parse_command(r.input);
    EXPECT_EQ(cmd.what, r.want_verb);
    EXPECT_EQ(cmd.name, r.want_name);
    EXPECT_EQ(cmd.argument, r.want_argument);
  }
}

TEST(inspect_command_line, odd_bytes) {
  struct row {
    const char* label;
    std::string input;
    line_problem want;
  };
  const row rows[] = {
      {"plain", "MAIL FROM:<a@b.example>", line_problem::none},
      {"empty", "", line_problem::none},
      {"tab allowed", "HELO\thost", line_problem::none},
      {"all printable ASCII", std::string("!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~"),
       line_problem::none},
      {"bare CR inside", "HELO a\rb", line_problem::bare_cr},
      {"bare CR at end", "HELO a\r", line_problem::bare_cr},
      {"NUL", std::string("HELO a\0b", 8), line_problem::nul},
      {"8-bit", "HELO h\xc3\xa9", line_problem::eight_bit},
      {"0xff", "HELO \xff", line_problem::eight_bit},
      {"escape", "HELO \x1b[0m", line_problem::control},
      {"vertical tab", "HELO a\vb", line_problem::control},
      {"form feed", "HELO a\fb", line_problem::control},
      {"DEL", "HELO a\x7f", line_problem::control},
      {"bare LF inside", "HELO a\nb", line_problem::control},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(inspect_command_line(r.input), r.want);
  }
}

// What parse_path_argument should produce for one argument.
struct path_want {
  path_error error = path_error::none;
  path_error trick = path_error::none;
  std::string local;
  std::string domain;
  bool null_sender = false;
  std::vector<std::pair<std::string, std::string>> parameters;
};

using parameter_list = std::vector<std::pair<std::string, std::string>>;

// A well-formed path with no relay trick.
path_want addr(std::string local, std::string domain = "", parameter_list parameters = {}) {
  path_want w;
  w.local = std::move(local);
  w.domain = std::move(domain);
  w.parameters = std::move(parameters);
  return w;
}
// A well-formed path that is a relay trick, the address still filled in.
path_want trick(path_error t, std::string local, std::string domain) {
  auto w = addr(std::move(local), std::move(domain));
  w.trick = t;
  return w;
}
path_want null_path(parameter_list parameters = {}) {
  path_want w;
  w.null_sender = true;
  w.parameters = std::move(parameters);
  return w;
}
path_want error(path_error e) {
  path_want w;
  w.error = e;
  return w;
}

struct path_row {
  const char* label;
  std::string argument;
  path_want want;
};

void check_paths(const std::vector<path_row>& rows, std::string_view keyword) {
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    SCOPED_TRACE(r.argument);
    auto got = parse_path_argument(r.argument, keyword);
    EXPECT_EQ(to_string(got.error), std::string(to_string(r.want.error)));
    if (r.want.error != path_error::none) continue;
    EXPECT_EQ(to_string(got.trick), std::string(to_string(r.want.trick)));
    EXPECT_EQ(got.address.local, r.want.local);
    EXPECT_EQ(got.address.domain, r.want.domain);
    EXPECT_EQ(got.null_sender, r.want.null_sender);
    EXPECT_EQ(got.parameters, r.want.parameters);
  }
}

TEST(parse_path_argument, mail_from) {
  using pe = path_error;
  const std::vector<path_row> rows = {
      {"plain", "FROM:<user@example.org>", addr("user", "example.org")},
      {"keyword case-insensitive", "from:<user@example.org>", addr("user", "example.org")},
      {"space after colon", "FROM: <user@example.org>", addr("user", "example.org")},
      {"dots in local part", "FROM:<first.last@mail.example.org>",
       addr("first.last", "mail.example.org")},
      {"atext specials", "FROM:<a+b_c-d=e@example.org>", addr("a+b_c-d=e", "example.org")},
      {"domain case kept", "FROM:<User@Example.ORG>", addr("User", "Example.ORG")},
      {"null sender", "FROM:<>", null_path()},
      {"null sender with space", "FROM: <>", null_path()},
      {"null sender with parameters", "FROM:<> SIZE=1000", null_path({{"SIZE", "1000"}})},
      {"SIZE and BODY", "FROM:<a@example.org> SIZE=12345 body=8BITMIME",
       addr("a", "example.org", {{"SIZE", "12345"}, {"BODY", "8BITMIME"}})},
      {"parameter without value", "FROM:<a@example.org> SMTPUTF8",
       addr("a", "example.org", {{"SMTPUTF8", ""}})},
      {"several spaces between parameters", "FROM:<a@example.org>  SIZE=1   RET=HDRS",
       addr("a", "example.org", {{"SIZE", "1"}, {"RET", "HDRS"}})},
      {"quoted local part", "FROM:<\"john doe\"@example.org>", addr("\"john doe\"", "example.org")},
      {"quoted local part with '>'", "FROM:<\"a>b\"@example.org>", addr("\"a>b\"", "example.org")},
      {"postmaster without domain", "FROM:<postmaster>", addr("postmaster")},
      {"IPv4 literal", "FROM:<user@[192.0.2.1]>", trick(pe::ip_literal, "user", "[192.0.2.1]")},
      {"source route in a sender", "FROM:<@relay.example:user@example.org>",
       trick(pe::source_route, "user", "example.org")},
      // Refused outright.
      {"no angle brackets", "FROM:user@example.org", error(pe::syntax)},
      {"no closing bracket", "FROM:<user@example.org", error(pe::syntax)},
      {"no colon", "FROM <user@example.org>", error(pe::syntax)},
      {"wrong keyword", "TO:<user@example.org>", error(pe::syntax)},
      {"keyword prefix only", "FRO:<user@example.org>", error(pe::syntax)},
      {"empty argument", "", error(pe::syntax)},
      {"space before colon", "FROM :<user@example.org>", error(pe::syntax)},
      {"parameter glued to path", "FROM:<a@example.org>SIZE=1", error(pe::syntax)},
      {"bad parameter keyword", "FROM:<a@example.org> SI_ZE=1", error(pe::syntax)},
      {"empty parameter keyword", "FROM:<a@example.org> =1", error(pe::syntax)},
      {"missing domain", "FROM:<user@>", error(pe::syntax)},
      {"missing local part", "FROM:<@example.org>", error(pe::syntax)},
      {"two at signs", "FROM:<a@b@example.org>", error(pe::syntax)},
      {"unqualified user", "FROM:<user>", error(pe::syntax)},
      {"leading dot in local part", "FROM:<.user@example.org>", error(pe::syntax)},
      {"double dot in local part", "FROM:<a..b@example.org>", error(pe::syntax)},
      {"space in local part", "FROM:<a b@example.org>", error(pe::syntax)},
      {"bad domain", "FROM:<user@exa mple.org>", error(pe::syntax)},
      {"domain label starting with '-'", "FROM:<user@-example.org>", error(pe::syntax)},
      {"unterminated quoted local part", "FROM:<\"abc@example.org>", error(pe::syntax)},
      {"text after quoted local part", "FROM:<\"abc\"x@example.org>", error(pe::syntax)},
      {"bad IPv4 literal", "FROM:<user@[192.0.2.256]>", error(pe::syntax)},
      {"IPv4 literal with 3 parts", "FROM:<user@[192.0.2]>", error(pe::syntax)},
      {"general address literal", "FROM:<user@[tag:content]>", error(pe::syntax)},
      {"only a trailing dot", "FROM:<user@.>", error(pe::syntax)},
      {"route without colon", "FROM:<@a,@b>", error(pe::syntax)},
      {"route with nothing after it", "FROM:<@a:>", error(pe::syntax)},
  };
  check_paths(rows, "FROM");
}

TEST(parse_path_argument, rcpt_to_relay_tricks) {
  using pe = path_error;
  const std::vector<path_row> rows = {
      {"plain", "TO:<user@ourdomain.example>", addr("user", "ourdomain.example")},
      {"postmaster", "TO:<postmaster>", addr("postmaster")},
      {"postmaster any case", "TO:<PostMaster>", addr("PostMaster")},
      {"space after colon", "to: <user@ourdomain.example>", addr("user", "ourdomain.example")},
      {"percent hack", "TO:<user%other.example@ourdomain.example>",
       trick(pe::percent_hack, "user%other.example", "ourdomain.example")},
      {"source route", "TO:<@a.example,@b.example:user@ourdomain.example>",
       trick(pe::source_route, "user", "ourdomain.example")},
      {"single-hop source route", "TO:<@a.example:user@ourdomain.example>",
       trick(pe::source_route, "user", "ourdomain.example")},
      {"bang path", "TO:<host!user@ourdomain.example>",
       trick(pe::bang_path, "host!user", "ourdomain.example")},
      {"quoted local part with @", "TO:<\"user@other.example\"@ourdomain.example>",
       trick(pe::quoted_at, "\"user@other.example\"", "ourdomain.example")},
      {"quoted local part with %", "TO:<\"user%other.example\"@ourdomain.example>",
       trick(pe::quoted_at, "\"user%other.example\"", "ourdomain.example")},
      {"quoted local part with !", "TO:<\"host!user\"@ourdomain.example>",
       trick(pe::quoted_at, "\"host!user\"", "ourdomain.example")},
      {"quoted local part with escaped @", "TO:<\"user\\@other\"@ourdomain.example>",
       trick(pe::quoted_at, "\"user\\@other\"", "ourdomain.example")},
      {"harmless quoted local part", "TO:<\"john doe\"@ourdomain.example>",
       addr("\"john doe\"", "ourdomain.example")},
      {"trailing dot", "TO:<user@ourdomain.example.>",
       trick(pe::trailing_dot, "user", "ourdomain.example")},
      {"IPv4 literal", "TO:<user@[192.0.2.1]>", trick(pe::ip_literal, "user", "[192.0.2.1]")},
      {"IPv6 literal", "TO:<user@[IPv6:2001:db8::1]>",
       trick(pe::ip_literal, "user", "[IPv6:2001:db8::1]")},
      {"IPv6 literal tag any case", "TO:<user@[ipv6:2001:db8::1]>",
       trick(pe::ip_literal, "user", "[ipv6:2001:db8::1]")},
      {"first trick reported: route then percent", "TO:<@a.example:user%b@ourdomain.example>",
       trick(pe::source_route, "user%b", "ourdomain.example")},
      {"percent hack to an IP literal", "TO:<user%other@[192.0.2.1]>",
       trick(pe::percent_hack, "user%other", "[192.0.2.1]")},
      {"with a parameter", "TO:<user@ourdomain.example> NOTIFY=NEVER",
       addr("user", "ourdomain.example", {{"NOTIFY", "NEVER"}})},
      {"null path parsed (the session refuses it)", "TO:<>", null_path()},
      {"missing angle brackets", "TO:user@ourdomain.example", error(pe::syntax)},
      {"FROM keyword for RCPT", "FROM:<user@ourdomain.example>", error(pe::syntax)},
      {"user without domain", "TO:<user>", error(pe::syntax)},
      {"quoted postmaster is not postmaster", "TO:<\"postmaster\">", error(pe::syntax)},
      {"double trailing dot", "TO:<user@ourdomain.example..>", error(pe::syntax)},
  };
  check_paths(rows, "TO");
}

TEST(parse_path_argument, length_limits) {
  using pe = path_error;
  const std::string local64(64, 'a');
  const std::string local65(65, 'a');
  // A domain of 4 labels of 63 characters: 255 characters.
  const std::string label(63, 'b');
  const std::string domain255 = label + "." + label + "." + label + "." + label;
  ASSERT_EQ(domain255.size(), 255u);
  const std::string domain200 = label + "." + label + "." + label + "." + std::string(8, 'c');
  ASSERT_EQ(domain200.size(), 200u);
  const std::vector<path_row> rows = {
      {"local part of 64", "TO:<" + local64 + "@example.org>", addr(local64, "example.org")},
      {"local part of 65", "TO:<" + local65 + "@example.org>", error(pe::too_long)},
      {"quoted local part of 65", "TO:<\"" + std::string(63, 'q') + "\"@example.org>",
       error(pe::too_long)},
      {"path of 250", "TO:<" + std::string(49, 'a') + "@" + domain200 + ">",
       addr(std::string(49, 'a'), domain200)},
      {"path over 256", "TO:<" + local64 + "@" + domain255 + ">", error(pe::too_long)},
      {"null-ish long path", "FROM:<" + std::string(300, 'x') + ">", error(pe::too_long)},
  };
  check_paths({rows.begin(), rows.begin() + 5}, "TO");
  check_paths({rows.begin() + 5, rows.end()}, "FROM");
}

TEST(valid_domain, syntax) {
  struct row {
    const char* label;
    std::string input;
    bool want;
  };
  const row rows[] = {
      {"simple", "example.org", true},
      {"single label", "localhost", true},
      {"digits and hyphens", "mx-1.a1.example", true},
      {"underscore tolerated", "_srv.example.org", true},
      {"label of 63", std::string(63, 'a') + ".org", true},
      {"label of 64", std::string(64, 'a') + ".org", false},
      {"255 characters",
       std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
           std::string(63, 'd'),
       true},
      {"256 characters",
       std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
           std::string(64, 'd'),
       false},
      {"empty", "", false},
      {"trailing dot", "example.org.", false},
      {"leading dot", ".example.org", false},
      {"double dot", "example..org", false},
      {"label starts with hyphen", "-a.example", false},
      {"label ends with hyphen", "a-.example", false},
      {"ends with hyphen", "example-", false},
      {"space", "exa mple.org", false},
      {"percent", "a%b.example", false},
      {"8-bit", "b\xc3\xa4r.example", false},
      {"literal brackets", "[192.0.2.1]", false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(valid_domain(r.input), r.want);
  }
}

TEST(valid_helo, syntax) {
  struct row {
    const char* label;
    std::string_view input;
    bool want;
  };
  const row rows[] = {
      {"host name", "mx.example.org", true},
      {"unqualified name", "DESKTOP-4711", true},
      {"trailing dot tolerated", "mx.example.org.", true},
      {"IPv4 literal", "[192.0.2.1]", true},
      {"IPv6 literal", "[IPv6:2001:db8::1]", true},
      {"empty", "", false},
      {"bad IPv4 literal", "[192.0.2.300]", false},
      {"unterminated literal", "[192.0.2.1", false},
      {"empty literal", "[]", false},
      {"IPv6 literal with junk", "[IPv6:2001:db8::1/64]", false},
      {"space inside", "mx example", false},
      {"control character", "mx\x01", false},
      {"8-bit", "m\xc3\xa9", false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(valid_helo(r.input), r.want);
  }
}

TEST(parse_size_parameter, values) {
  struct row {
    const char* label;
    std::string_view input;
    std::optional<std::uint64_t> want;
  };
  const row rows[] = {
      {"zero", "0", 0},
      {"number", "26214400", 26214400},
      {"largest", "18446744073709551615", 18446744073709551615ull},
      {"overflow", "18446744073709551616", std::nullopt},
      {"empty", "", std::nullopt},
      {"negative", "-1", std::nullopt},
      {"plus sign", "+1", std::nullopt},
      {"unit suffix", "25M", std::nullopt},
      {"trailing space", "10 ", std::nullopt},
      {"hex", "0x10", std::nullopt},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(parse_size_parameter(r.input), r.want);
  }
}

TEST(path_error, names) {
  EXPECT_STREQ(to_string(path_error::percent_hack), "percent_hack");
  EXPECT_STREQ(to_string(path_error::source_route), "source_route");
  EXPECT_STREQ(to_string(path_error::too_long), "too_long");
}

}  // namespace
}  // namespace mxguard::guard
