// Fuzz target: header unfolding, a fixed rule set over arbitrary messages
// (as header and as body rules), and the content stage's header rewriting.
//
// Also parses the input's first line as a rule, so the /regex/flags ACTION
// text syntax is fuzzed too. Checks the unfolding contract: every logical
// header fits max_size, holds no CRLF, and the body offset lies inside the
// message at a line start.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <re2/re2.h>

#include "header_rules.hpp"
#include "mxguard/scan/content.hpp"

namespace {

using namespace mxguard::guard;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

const header_rule_set& rules() {
  static const header_rule_set set = [] {
    header_rule_set s;
    for (const char* line : {
             "/^Subject:.*Make Money Fast/ REJECT spam",
             "/^Subject:.*casino/ DISCARD",
             "/^X-Mailer: Bulk/ WARN bulk mailer",
             "/^From:.*@spam\\.example/c REJECT forged",
             "/^Content-Type: text/html; charset=\"?koi8/ WARN",
             "/^(To|Cc):([^,]*,){50}/ REJECT too many recipients",
             "/^Received: from .*\\[192\\.0\\.2\\./ WARN from the test net",
         }) {
      std::string error;
      auto rule = header_rule_set::parse_line(line, error);
      require(rule.has_value(), "the fixed rules parse");
      s.add(std::move(*rule));
    }
    return s;
  }();
  return set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t max_size = 16 + data[0] * 4;
  std::string_view message(reinterpret_cast<const char*>(data + 1), size - 1);

  std::string error;
  const auto first_line = message.substr(0, message.find('\n'));
  if (first_line.size() < 512) {
    auto rule = header_rule_set::parse_line(first_line, error);
    if (rule)
      require(rule->pattern != nullptr && rule->pattern->ok(), "a parsed rule has a pattern");
    else
      require(!error.empty(), "a refused rule comes with a message");
  }

  std::size_t headers = 0;
  const auto body = for_each_header(message, max_size, [&](std::string_view h) {
    ++headers;
    require(h.size() <= max_size, "a header is truncated to max_size");
    require(h.find("\r\n") == std::string_view::npos, "an unfolded header holds no CRLF");
    require(!h.empty() && h.front() != ' ' && h.front() != '\t', "a header starts with its name");
  });
  require(body <= message.size(), "the body offset lies inside the message");
  require(body == 0 || body == message.size() || message.substr(body - 2, 2) == "\r\n",
          "the body starts at a line start");

  std::vector<std::string> warnings;
  const auto v = rules().check(message, max_size, &warnings);
  require(v.what == mxguard::action::cont || v.what == mxguard::action::reject ||
              v.what == mxguard::action::discard,
          "header rules only reject or discard");
  require(v.decided() == !v.reply.empty(), "a decision has a reply");
  require(warnings.size() <= headers, "at most one warning per header");

  const auto b = rules().check_body(message, max_size * 16, nullptr);
  require(b.decided() == !b.reply.empty(), "a body decision has a reply");

  // Rewriting keeps the body byte for byte and leaves no removed header.
  const bool tag = (data[0] & 1) != 0;
  auto rewritten = mxguard::scan::rewrite_headers(message, {"X-Spam-Status", "X-Virus-Scanned"},
                                                  tag ? "[SPAM] " : "");
  if (rewritten) {
    const auto body_part = message.substr(body);
    require(std::string_view(*rewritten).ends_with(body_part), "the body is kept byte for byte");
    const auto new_body = for_each_header(*rewritten, 1 << 20, [&](std::string_view h) {
      require(!h.starts_with("X-Spam-Status:") && !h.starts_with("X-Virus-Scanned:"),
              "removed headers are gone");
    });
    require(new_body <= rewritten->size(), "the rewritten body offset lies inside it");
  }
  return 0;
}
