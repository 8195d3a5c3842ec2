// SMTP command and address syntax (RFC 5321 §4.1), with the relay tricks
// that must be refused (percent hack, source routes, bang paths, quoted local
// parts hiding '@' or '%', trailing dots, address literals).
//
// Pure functions over one command line (without its CRLF): no I/O, no
// allocation beyond the returned strings. Fuzzed by tests/fuzz/smtp_command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxguard::guard {

enum class verb {
  helo,
  ehlo,
  mail,
  rcpt,
  data,
  rset,
  noop,
  quit,
  help,
  vrfy,
  expn,
  starttls,
  bdat,
  auth,
  unknown
};

struct command {
  verb what = verb::unknown;
  std::string_view name;      // the verb as sent
  std::string_view argument;  // after the verb and one or more spaces
};

// Splits a command line into verb and argument (case-insensitive verbs).
command parse_command(std::string_view line);

// Why a command line is refused before it is parsed at all.
enum class line_problem { none, bare_cr, nul, eight_bit, control };
line_problem inspect_command_line(std::string_view line);

struct mailbox {
  std::string local;   // as sent (quoted form kept)
  std::string domain;  // empty only for <postmaster> and the null sender
  std::string text() const { return domain.empty() ? local : local + "@" + domain; }
};

// `syntax` and `too_long` make a path unusable; the others are well-formed
// paths that are relay tricks when they name a recipient (reported in
// `path_result::trick`, the address still filled in).
enum class path_error {
  none,
  syntax,        // 501 5.1.3 / 501 5.1.7
  source_route,  // @a,@b:user@c (route stripped from `address`)
  percent_hack,  // user%other@ourdomain
  bang_path,     // host!user@ourdomain
  quoted_at,     // "user@other"@ourdomain
  trailing_dot,  // user@ourdomain. (dot stripped from `address`)
  ip_literal,    // user@[192.0.2.1]
  too_long,      // RFC 5321 §4.5.3.1: local 64, domain 255, path 256
};
const char* to_string(path_error e);

struct path_result {
  path_error error = path_error::none;  // none, syntax or too_long
  path_error trick = path_error::none;  // a relay trick in an otherwise valid path
  bool null_sender = false;             // MAIL FROM:<>
  mailbox address;
  std::vector<std::pair<std::string, std::string>> parameters;  // upper-cased keyword, value
};

// Parses the argument of MAIL ("FROM:<path> params") or RCPT ("TO:<path> params").
// `keyword` is "FROM" or "TO". A space after the colon is tolerated (common in
// real clients); angle brackets are required.
path_result parse_path_argument(std::string_view argument, std::string_view keyword);

// Checks a domain name's syntax (LDH labels, no trailing dot, ≤ 255).
bool valid_domain(std::string_view domain);

// HELO/EHLO argument: a domain or an address literal; returns false for empty.
bool valid_helo(std::string_view argument);

// Parses "SIZE=123"; nullopt when malformed.
std::optional<std::uint64_t> parse_size_parameter(std::string_view value);

}  // namespace mxguard::guard
