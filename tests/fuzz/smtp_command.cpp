// Fuzz target: command lines from arbitrary bytes, as the session reads them.
//
// line_buffer → inspect_command_line → parse_command → parse_path_argument,
// plus the HELO and SIZE checks. Beyond "no crash, no UB" it checks the
// relay-safety contract of the address parser: a recipient reported without
// a relay trick has no '@', '%' or '!' in its local part and names a plain
// domain, so an inner server cannot be made to relay it elsewhere.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "smtp_framing.hpp"
#include "smtp_syntax.hpp"

namespace {

using namespace mxguard::guard;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  return true;
}

void check_path(std::string_view argument, std::string_view keyword) {
  const auto r = parse_path_argument(argument, keyword);
  require(r.error == path_error::none || r.error == path_error::syntax ||
              r.error == path_error::too_long,
          "path error is none, syntax or too_long");
  if (r.error != path_error::none) return;
  for (const auto& [key, value] : r.parameters) {
    require(!key.empty(), "parameter keyword not empty");
    for (char c : key)
      require((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-',
              "parameter keyword upper-cased alnum");
  }
  if (r.null_sender) {
    require(r.address.local.empty() && r.address.domain.empty(), "null path has no address");
    return;
  }
  const auto& local = r.address.local;
  const auto& domain = r.address.domain;
  require(!local.empty() && local.size() <= 64, "local part 1..64");
  if (domain.empty()) {
    require(iequals(local, "postmaster"), "only <postmaster> goes without a domain");
    return;
  }
  if (domain.front() == '[') {
    require(r.trick != path_error::none, "an address literal is reported as a trick");
    return;
  }
  require(valid_domain(domain), "the domain is valid");
  if (r.trick == path_error::none) {
    require(local.find_first_of("@%!") == std::string::npos,
            "no routing characters without a trick");
    require(domain.back() != '.', "no trailing dot without a trick");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // The first byte picks the line limit and the read size, the rest is the stream.
  const std::size_t max_line = 16 + data[0] * 8;
  const std::size_t read_size = 1 + (data[1] % 64);
  std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);

  line_buffer buffer(max_line);
  while (!stream.empty()) {
    std::size_t room = 0;
    char* area = buffer.write_area(room);
    const std::size_t n = std::min({room, read_size, stream.size()});
    std::memcpy(area, stream.data(), n);
    buffer.commit(n);
    stream.remove_prefix(n);
    while (auto line = buffer.next()) {
      const auto text = line->text;
      require(text.find('\n') == std::string_view::npos, "no LF inside a line");
      if (line->state == line_buffer::status::too_long) {
        require(text.empty(), "an over-long line carries no text");
        continue;
      }
      // With its CRLF (or bare LF) the line fits the limit.
      require(text.size() + (line->state == line_buffer::status::ok ? 2 : 1) <= max_line,
              "line within the limit");
      if (line->state != line_buffer::status::ok) continue;
      if (inspect_command_line(text) != line_problem::none) continue;
      const auto cmd = parse_command(text);
      require(cmd.name.size() <= text.size() && cmd.argument.size() <= text.size(),
              "command parts are inside the line");
      require(cmd.argument.empty() || (cmd.argument.front() != ' ' && cmd.argument.back() != ' '),
              "argument trimmed");
      check_path(cmd.argument, "FROM");
      check_path(cmd.argument, "TO");
      valid_helo(cmd.argument);
      valid_domain(cmd.argument);
      parse_size_parameter(cmd.argument);
    }
    // What stays buffered is the start of one line, shorter than the limit.
    require(buffer.buffered() < max_line, "the buffer holds less than one line");
  }
  return 0;
}
