#include "smtp_syntax.hpp"

#include <array>
#include <charconv>

namespace mxguard::guard {

namespace {

char upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (upper(a[i]) != upper(b[i])) return false;
  return true;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 5322 atext.
bool is_atext(char c) {
  if (is_alnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

struct verb_name {
  std::string_view name;
  verb what;
};
constexpr std::array verb_names{
    verb_name{"HELO", verb::helo}, verb_name{"EHLO", verb::ehlo},
    verb_name{"MAIL", verb::mail}, verb_name{"RCPT", verb::rcpt},
    verb_name{"DATA", verb::data}, verb_name{"RSET", verb::rset},
    verb_name{"NOOP", verb::noop}, verb_name{"QUIT", verb::quit},
    verb_name{"HELP", verb::help}, verb_name{"VRFY", verb::vrfy},
    verb_name{"EXPN", verb::expn}, verb_name{"STARTTLS", verb::starttls},
    verb_name{"BDAT", verb::bdat}, verb_name{"AUTH", verb::auth},
};

bool valid_dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.' ? prev == '.' : !is_atext(c)) return false;
    prev = c;
  }
  return true;
}

bool valid_ipv4_literal(std::string_view s) {
  int parts = 0;
  while (!s.empty()) {
    auto dot = s.find('.');
    auto part = s.substr(0, dot);
    unsigned value = 0;
    auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || part.size() > 3 || ec != std::errc{} || p != part.data() + part.size() ||
        value > 255)
      return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
    if (s.empty()) return false;
  }
  return parts == 4;
}

bool valid_address_literal(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
  auto inner = s.substr(1, s.size() - 2);
  if (inner.size() > 5 && iequals(inner.substr(0, 5), "IPv6:")) {
    for (char c : inner.substr(5))
      if (!(is_alnum(c) || c == ':' || c == '.')) return false;
    return true;
  }
  return valid_ipv4_literal(inner);
}

}  // namespace

command parse_command(std::string_view line) {
  command cmd;
  auto space = line.find(' ');
  cmd.name = line.substr(0, space);
  if (space != std::string_view::npos) {
    auto arg = line.substr(space);
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    while (!arg.empty() && (arg.back() == ' ' || arg.back() == '\t')) arg.remove_suffix(1);
    cmd.argument = arg;
  }
  for (const auto& v : verb_names)
    if (iequals(cmd.name, v.name)) cmd.what = v.what;
  return cmd;
}

line_problem inspect_command_line(std::string_view line) {
  for (char ch : line) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\r') return line_problem::bare_cr;
    if (c == 0) return line_problem::nul;
    if (c >= 0x80) return line_problem::eight_bit;
    if (c < 0x20 && c != '\t') return line_problem::control;
    if (c == 0x7f) return line_problem::control;
  }
  return line_problem::none;
}

const char* to_string(path_error e) {
  switch (e) {
    case path_error::none:
      return "none";
    case path_error::syntax:
      return "syntax";
    case path_error::source_route:
      return "source_route";
    case path_error::percent_hack:
      return "percent_hack";
    case path_error::bang_path:
      return "bang_path";
    case path_error::quoted_at:
      return "quoted_at";
    case path_error::trailing_dot:
      return "trailing_dot";
    case path_error::ip_literal:
      return "ip_literal";
    case path_error::too_long:
      return "too_long";
  }
  return "?";
}

bool valid_domain(std::string_view domain) {
  if (domain.empty() || domain.size() > 255) return false;
  std::size_t label = 0;
  char prev = '.';
  for (char c : domain) {
    if (c == '.') {
      if (prev == '.' || prev == '-' || label == 0) return false;
      label = 0;
    } else if (is_alnum(c) || c == '-' || c == '_') {
      // '_' is not LDH, but appears in real HELO names and SRV-style hosts;
      // accepting it costs nothing here and refusing it loses mail.
      if (label == 0 && c == '-') return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '.' && prev != '-';
}

bool valid_helo(std::string_view argument) {
  if (argument.empty()) return false;
  if (argument.front() == '[') return valid_address_literal(argument);
  // Many real clients send a bare hostname with a trailing dot, or an
  // unqualified name; HELO syntax is not a reason to lose mail, so only
  // emptiness and characters outside printable ASCII are refused here.
  for (char c : argument)
    if (c <= ' ' || c > '~') return false;
  return true;
}

std::optional<std::uint64_t> parse_size_parameter(std::string_view value) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || ec != std::errc{} || p != value.data() + value.size()) return std::nullopt;
  return n;
}

path_result parse_path_argument(std::string_view argument, std::string_view keyword) {
  path_result result;
  result.error = path_error::syntax;
  if (argument.size() < keyword.size() + 1 ||
      !iequals(argument.substr(0, keyword.size()), keyword) || argument[keyword.size()] != ':')
    return result;
  auto rest = argument.substr(keyword.size() + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty() || rest.front() != '<') return result;

  // Find the closing '>' outside a quoted string.
  std::size_t close = std::string_view::npos;
  bool quoted = false;
  for (std::size_t i = 1; i < rest.size(); ++i) {
    char c = rest[i];
    if (quoted && c == '\\') {
      ++i;
      continue;
    }
    if (c == '"') quoted = !quoted;
    if (!quoted && c == '>') {
      close = i;
      break;
    }
  }
  if (close == std::string_view::npos) return result;
  auto path = rest.substr(1, close - 1);
  auto params = rest.substr(close + 1);

  // ESMTP parameters: space-separated keyword[=value].
  if (!params.empty() && params.front() != ' ') return result;
  while (!params.empty()) {
    while (!params.empty() && params.front() == ' ') params.remove_prefix(1);
    if (params.empty()) break;
    auto end = params.find(' ');
    auto param = params.substr(0, end);
    auto eq = param.find('=');
    std::string key(param.substr(0, eq));
    if (key.empty()) return result;
    for (auto& c : key) {
      if (!is_alnum(c) && c != '-') return result;
      c = upper(c);
    }
    std::string value =
        eq == std::string_view::npos ? std::string() : std::string(param.substr(eq + 1));
    result.parameters.emplace_back(std::move(key), std::move(value));
    if (end == std::string_view::npos) break;
    params.remove_prefix(end);
  }

  if (path.size() > 256) {
    result.error = path_error::too_long;
    return result;
  }
  if (path.empty()) {
    result.null_sender = true;
    result.error = path_error::none;
    return result;
  }
  if (path.front() == '@') {
    // A source route (RFC 5321 §4.1.2 A-d-l): "@a,@b:user@c". Servers must
    // accept and ignore it in a sender; in a recipient it asks us to relay.
    auto colon = path.find(':');
    if (colon == std::string_view::npos) return result;
    auto route = path.substr(1, colon - 1);
    for (char c : route)
      if (!(is_alnum(c) || c == '.' || c == '-' || c == ',' || c == '@' || c == '[' || c == ']' ||
            c == ':'))
        return result;
    result.trick = path_error::source_route;
    path.remove_prefix(colon + 1);
    if (path.empty()) return result;
  }

  // Local part: dot-string or quoted-string.
  std::size_t at;
  std::string_view local;
  if (path.front() == '"') {
    std::size_t i = 1;
    bool closed = false;
    for (; i < path.size(); ++i) {
      char c = path[i];
      if (c == '\\') {
        if (++i >= path.size()) return result;
        continue;
      }
      if (c == '"') {
        closed = true;
        break;
      }
      if (static_cast<unsigned char>(c) < 0x20) return result;
    }
    if (!closed) return result;
    local = path.substr(0, i + 1);
    at = i + 1;
    auto inner = local.substr(1, local.size() - 2);
    if (inner.find_first_of("@%!") != std::string_view::npos && result.trick == path_error::none)
      result.trick = path_error::quoted_at;
    if (at < path.size() && path[at] != '@') return result;
    if (at >= path.size()) at = std::string_view::npos;
  } else {
    at = path.rfind('@');
    local = path.substr(0, at);
    if (!valid_dot_string(local)) return result;
    if (result.trick == path_error::none) {
      if (local.find('%') != std::string_view::npos)
        result.trick = path_error::percent_hack;
      else if (local.find('!') != std::string_view::npos)
        result.trick = path_error::bang_path;
    }
  }
  if (local.size() > 64) {
    result.error = path_error::too_long;
    return result;
  }
  result.address.local = std::string(local);
  if (at == std::string_view::npos) {
    // Only <postmaster> may come without a domain (RFC 5321 §4.5.1).
    if (!iequals(local, "postmaster")) return result;
    result.error = path_error::none;
    return result;
  }
  auto domain = path.substr(at + 1);
  if (domain.empty()) return result;
  if (domain.front() == '[') {
    if (!valid_address_literal(domain)) return result;
    if (result.trick == path_error::none) result.trick = path_error::ip_literal;
    result.address.domain = std::string(domain);
    result.error = path_error::none;
    return result;
  }
  if (domain.back() == '.') {
    domain.remove_suffix(1);
    if (result.trick == path_error::none) result.trick = path_error::trailing_dot;
  }
  if (!valid_domain(domain)) return result;
  result.address.domain = std::string(domain);
  result.error = path_error::none;
  return result;
}

}  // namespace mxguard::guard
