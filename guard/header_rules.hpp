// Header rules: an ordered list of RE2 patterns over unfolded header lines,
// each with an action, like Postfix header_checks:
//
//   /^Subject:.*Make Money Fast/ REJECT spam
//   /^Subject:.*Casino/ DISCARD
//   /^X-Mailer: Bulk/i WARN bulk mailer
//
// Patterns are case-insensitive by default, as in Postfix regexp tables; the
// `c` flag makes one case-sensitive. The first matching rule decides for a
// header line; REJECT and DISCARD end the evaluation, WARN is logged and the
// evaluation goes on. RE2 is used because its matching time is linear in the
// input: a hostile header cannot make a rule backtrack for seconds.
#pragma once

#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxguard/verdict.hpp"

namespace re2 {
class RE2;
}

namespace mxguard::guard {

enum class header_action { reject, discard, warn };

struct header_rule {
  std::shared_ptr<const re2::RE2> pattern;
  header_action what = header_action::warn;
  std::string text;
  double score = 0;    // WARN rules: added to the message score
  std::string source;  // the rule as written, for logs and --check-config
};

// Calls `on_header(line)` for each unfolded header line of `message` (CRLF
// line ends, header section up to the first empty line). Folding CRLFs are
// removed, the whitespace after them kept (RFC 5322 §2.2.3). A logical line
// longer than `max_size` is truncated to it for matching, like Postfix's
// header_size_limit. Returns the offset where the body starts.
template <typename F>
std::size_t for_each_header(std::string_view message, std::size_t max_size, F&& on_header);

class header_rule_set {
 public:
  static std::optional<header_rule> parse_line(std::string_view line, std::string& error);
  void add(header_rule rule) { rules_.push_back(std::move(rule)); }
  std::size_t size() const { return rules_.size(); }
  const std::vector<header_rule>& rules() const { return rules_; }

  // The verdict of the first REJECT/DISCARD rule to match any header line;
  // WARN matches are appended to `warnings` (rule text) and do not decide;
  // each WARN rule scores once a message. A header section of more than
  // `max_header_lines` logical lines is refused (552 5.3.4): every line is
  // matched against every rule.
  verdict check(std::string_view message, std::size_t max_header_size,
                std::vector<std::string>* warnings,
                std::size_t max_header_lines = std::numeric_limits<std::size_t>::max()) const;
  // The same rules over the body's lines (Postfix body_checks), the first
  // `body_limit` bytes; WARN scores are summed into the verdict's score.
  verdict check_body(std::string_view message, std::size_t body_limit,
                     std::vector<std::string>* warnings) const;

 private:
  std::vector<header_rule> rules_;
};

// --- implementation of the template ---------------------------------------

template <typename F>
std::size_t for_each_header(std::string_view message, std::size_t max_size, F&& on_header) {
  std::string logical;
  bool have_logical = false;
  std::size_t pos = 0;
  auto flush = [&] {
    if (have_logical) on_header(std::string_view(logical));
    logical.clear();
    have_logical = false;
  };
  while (pos < message.size()) {
    auto eol = message.find("\r\n", pos);
    std::string_view line =
        message.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    std::size_t next = eol == std::string_view::npos ? message.size() : eol + 2;
    if (line.empty()) {  // end of the header section
      flush();
      return next;
    }
    const bool continuation = line.front() == ' ' || line.front() == '\t';
    if (!continuation) {
      flush();
      // A line without a colon is not a header: the body started without a separator.
      if (line.find(':') == std::string_view::npos) return pos;
      have_logical = true;
    } else if (!have_logical) {
      return pos;  // a continuation with nothing to continue: treat as body
    }
    if (logical.size() < max_size) logical.append(line.substr(0, max_size - logical.size()));
    pos = next;
  }
  flush();
  return message.size();
}

}  // namespace mxguard::guard
