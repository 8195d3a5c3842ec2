// Unit tests for guard/header_rules.hpp: header unfolding, rule parsing and
// the verdict of a rule set.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <re2/re2.h>

#include "header_rules.hpp"

namespace mxguard::guard {
namespace {

TEST(for_each_header, unfolding) {
  struct row {
    const char* label;
    std::string message;
    std::size_t max_size;
    std::vector<std::string> want_headers;
    std::size_t want_body;
  };
  const row rows[] = {
      {"two headers and a body",
       "Subject: hi\r\nFrom: a@example.org\r\n\r\nbody\r\n",
       1000,
       {"Subject: hi", "From: a@example.org"},
       36},
      {"folded with space and tab",
       "Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\n",
       1000,
       {"Subject: a b\tc", "To: x"},
       29},
      {"folding keeps all whitespace",
       "X-Long: one\r\n    two\r\n\r\n",
       1000,
       {"X-Long: one    two"},
       24},
      {"no body", "Subject: a\r\n", 1000, {"Subject: a"}, 12},
      {"last header without CRLF", "Subject: a", 1000, {"Subject: a"}, 10},
      {"empty header section", "\r\nbody", 1000, {}, 2},
      {"empty message", "", 1000, {}, 0},
      {"body without separator", "Subject: a\r\nthis is body text\r\n", 1000, {"Subject: a"}, 12},
      {"continuation with nothing to continue", " folded\r\nSubject: a\r\n", 1000, {}, 0},
      {"folded body line after separator is body", "A: 1\r\n\r\n x\r\n", 1000, {"A: 1"}, 8},
      {"empty header value", "X-Empty:\r\n\r\n", 1000, {"X-Empty:"}, 12},
      {"truncated to max_size", "Subject: 0123456789\r\n\r\n", 12, {"Subject: 012"}, 23},
      {"truncated across folds",
       "Subject: 0123\r\n 4567\r\n 89\r\nTo: x\r\n\r\n",
       16,
       {"Subject: 0123 45", "To: x"},
       36},
      {"exactly max_size kept whole", "A: 123\r\n\r\n", 6, {"A: 123"}, 10},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::vector<std::string> got;
    auto body =
        for_each_header(r.message, r.max_size, [&](std::string_view h) { got.emplace_back(h); });
    EXPECT_EQ(got, r.want_headers);
    EXPECT_EQ(body, r.want_body);
  }
}

std::string trimmed(std::string s) {
  s.erase(0, s.find_first_not_of(" \t"));
  s.erase(s.find_last_not_of(" \t") + 1);
  return s;
}

struct parse_row {
  const char* label;
  std::string line;
  std::string want_error;  // empty: the line is valid
  header_action want_action = header_action::warn;
  std::string want_text{};
  std::vector<std::string> must_match{};
  std::vector<std::string> must_not_match{};
};

TEST(header_rule_set, parse_line) {
  using ha = header_action;
  const parse_row rows[] = {
      {"reject with text",
       "/^Subject:.*Make Money Fast/ REJECT spam",
       "",
       ha::reject,
       "spam",
       {"Subject: MAKE MONEY FAST now"},
       {"X-Subject: make money fast", "Subject: money"}},
      {"discard", "/^Subject:.*Casino/ DISCARD", "", ha::discard, "", {"Subject: casino"}, {}},
      {"warn with i flag",
       "/^X-Mailer: Bulk/i WARN bulk mailer",
       "",
       ha::warn,
       "bulk mailer",
       {"x-mailer: bulk 2.0"},
       {"X-Mailer: Mutt"}},
      {"c flag is case-sensitive",
       "/^X-Spam: YES/c warn",
       "",
       ha::warn,
       "",
       {"X-Spam: YES"},
       {"X-Spam: yes", "x-spam: YES"}},
      {"case-insensitive by default",
       "/^subject: casino/ REJECT",
       "",
       ha::reject,
       "",
       {"SUBJECT: CASINO"},
       {}},
      {"action in any case", "/x/ reject no", "", ha::reject, "no", {"x"}, {}},
      {"surrounding whitespace ignored",
       "  /^A:/ WARN  a  note  ",
       "",
       ha::warn,
       "a  note",
       {"A: 1"},
       {}},
      {"tab before action", "/^A:/\tREJECT\tsee text", "", ha::reject, "see text", {"A:"}, {}},
      {"escaped slash in pattern",
       "/^Content-Type: text\\/html/ REJECT html",
       "",
       ha::reject,
       "html",
       {"Content-Type: text/html"},
       {"Content-Type: text/plain"}},
      {"plain slash in pattern",
       "/^Content-Type: text/html/ REJECT",
       "",
       ha::reject,
       "",
       {"Content-Type: text/html"},
       {"Content-Type: text/plain"}},
      {"slash in text",
       "/^Subject: x/ REJECT spam/phishing detected",
       "",
       ha::reject,
       "spam/phishing detected",
       {"Subject: x"},
       {"Subject: y"}},
      {"URL in text",
       "/^Subject: x/ REJECT see https://example.org/ now",
       "",
       ha::reject,
       "see https://example.org/ now",
       {"Subject: x"},
       {}},
      {"text that looks like a rule",
       "/^A: 1/ WARN then /B/ REJECT",
       "",
       ha::warn,
       "then /B/ REJECT",
       {"A: 1"},
       {"B: 1"}},
      {"flags then text with slashes", "/^A/i REJECT a/b c", "", ha::reject, "a/b c", {"a: x"}, {}},
      // Errors.
      {"no slash", "Subject: x REJECT", "expected '/regex/[flags]"},
      {"empty line", "", "expected '/regex/[flags]"},
      {"no action", "/abc/", "unterminated /regex/ or missing action"},
      {"unterminated pattern", "/abc REJECT", "unterminated /regex/ or missing action"},
      {"unknown flag", "/abc/x REJECT", "unknown flag 'x' (i, c)"},
      {"unknown action", "/abc/ BOUNCE now", "unknown action 'BOUNCE' (REJECT, DISCARD, WARN)"},
      {"bad regex", "/(abc/ REJECT", "bad regular expression: missing )"},
      {"backreference is not RE2", "/(a)\\1/ REJECT", "bad regular expression"},
      {"8-bit text", "/abc/ REJECT caf\xc3\xa9", "rule text must be printable ASCII"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::string error;
    auto rule = header_rule_set::parse_line(r.line, error);
    if (!r.want_error.empty()) {
      EXPECT_FALSE(rule);
      EXPECT_TRUE(error.starts_with(r.want_error)) << error;
      continue;
    }
    ASSERT_TRUE(rule) << error;
    EXPECT_EQ(rule->what, r.want_action);
    EXPECT_EQ(rule->text, r.want_text);
    EXPECT_EQ(rule->source, trimmed(r.line));
    for (const auto& h : r.must_match) EXPECT_TRUE(RE2::PartialMatch(h, *rule->pattern)) << h;
    for (const auto& h : r.must_not_match) EXPECT_FALSE(RE2::PartialMatch(h, *rule->pattern)) << h;
  }
}

header_rule_set make_rules(const std::vector<std::string>& lines) {
  header_rule_set set;
  for (const auto& l : lines) {
    std::string error;
    auto rule = header_rule_set::parse_line(l, error);
    EXPECT_TRUE(rule) << l << ": " << error;
    if (rule) set.add(std::move(*rule));
  }
  return set;
}

TEST(header_rule_set, check) {
  const auto rules = make_rules({
      "/^Subject:.*Make Money Fast/ REJECT spam",  // 0
      "/^Subject:.*Casino/ DISCARD",               // 1
      "/^X-Mailer: Bulk/ WARN bulk mailer",        // 2
      "/^From:.*@spam\\.example/ REJECT",          // 3
      "/^Subject:/ REJECT any subject",            // 4
      "/^X-Note:/ WARN",                           // 5
      "/^X-Note: casino/ REJECT never reached",    // 6
  });
  ASSERT_EQ(rules.size(), 7u);
  struct row {
    const char* label;
    std::string message;
    action want_action;
    std::string want_rule;
    std::string want_reply;
    std::vector<std::string> want_warnings;
  };
  const row rows[] = {
      {"no header matches",
       "To: a@example.org\r\n\r\nSubject: make money fast\r\n",
       action::cont,
       "",
       "",
       {}},
      {"reject with its text",
       "Subject: make money fast\r\n\r\nbody",
       action::reject,
       "header_rules[0]",
       "550 5.7.1 spam",
       {}},
      {"matching is case-insensitive",
       "SUBJECT: Make MONEY fast\r\n\r\n",
       action::reject,
       "header_rules[0]",
       "550 5.7.1 spam",
       {}},
      {"folded header is unfolded",
       "Subject: make\r\n money\r\n fast\r\n\r\n",
       action::reject,
       "header_rules[0]",
       "550 5.7.1 spam",
       {}},
      {"reject without text",
       "From: x@spam.example\r\n\r\n",
       action::reject,
       "header_rules[3]",
       "550 5.7.1 Message content rejected",
       {}},
      {"discard",
       "Subject: Casino!\r\n\r\n",
       action::discard,
       "header_rules[1]",
       "250 2.0.0 Ok",
       {}},
      {"first header decides",
       "From: x@spam.example\r\nSubject: make money fast\r\n\r\n",
       action::reject,
       "header_rules[3]",
       "550 5.7.1 Message content rejected",
       {}},
      {"first rule decides for a header",
       "Subject: hello\r\n\r\n",
       action::reject,
       "header_rules[4]",
       "550 5.7.1 any subject",
       {}},
      {"warn does not decide",
       "X-Mailer: bulk 1.0\r\nTo: a@example.org\r\n\r\n",
       action::cont,
       "",
       "",
       {"header_rules[2] bulk mailer"}},
      {"warnings collected before a decision",
       "X-Mailer: Bulk\r\nX-Note: 1\r\nSubject: casino\r\nX-Mailer: Bulk again\r\n\r\n",
       action::discard,
       "header_rules[1]",
       "250 2.0.0 Ok",
       {"header_rules[2] bulk mailer", "header_rules[5]"}},
      {"a WARN match takes the header line",
       "X-Note: casino\r\n\r\n",
       action::cont,
       "",
       "",
       {"header_rules[5]"}},
      {"body is not checked", "To: a\r\n\r\nSubject: casino\r\n", action::cont, "", "", {}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    std::vector<std::string> warnings;
    auto v = rules.check(r.message, 1000, &warnings);
    EXPECT_EQ(v.what, r.want_action);
    EXPECT_EQ(v.rule, r.want_rule);
    EXPECT_EQ(v.reply, r.want_reply);
    EXPECT_EQ(warnings, r.want_warnings);
    // Without a warnings list the verdict is the same.
    auto quiet = rules.check(r.message, 1000, nullptr);
    EXPECT_EQ(quiet.what, r.want_action);
    EXPECT_EQ(quiet.rule, r.want_rule);
  }
}

TEST(header_rule_set, check_truncates_long_headers) {
  const auto rules = make_rules({"/TAIL-MARKER/ REJECT found"});
  const std::string message = "X-Pad: " + std::string(2000, 'a') + "TAIL-MARKER\r\n\r\n";
  EXPECT_EQ(rules.check(message, 1024, nullptr).what, action::cont);
  EXPECT_EQ(rules.check(message, 4096, nullptr).what, action::reject);
}

// A WARN rule scores once a message: 500 copies of a header do not add
// (or, with a negative score, take away) 500 times.
TEST(header_rule_set, warn_scores_once_a_message) {
  const auto rules = make_rules({"/^X-Mailer: Known/ WARN score=-2 known mailer"});
  std::string message;
  for (int i = 0; i < 500; ++i) message += "X-Mailer: Known " + std::to_string(i) + "\r\n";
  message += "\r\nbody\r\n";
  std::vector<std::string> warnings;
  auto v = rules.check(message, 1000, &warnings);
  EXPECT_FALSE(v.decided());
  EXPECT_DOUBLE_EQ(v.score, -2);
  EXPECT_EQ(warnings.size(), 1u);
}

// Bytes, not UTF-8: `.` matches a Latin-1 byte as Postfix's regexp does.
TEST(header_rule_set, rules_match_bytes) {
  const auto rules = make_rules({"/^Subject:.*Casino/ REJECT no"});
  EXPECT_EQ(rules.check("Subject: Caf\xE9 Casino\r\n\r\n", 1000, nullptr).what, action::reject);
}

// Every header line is matched against every rule: their number is capped.
TEST(header_rule_set, too_many_header_lines_refused) {
  const auto rules = make_rules({"/^Subject: never/ REJECT no"});
  std::string message;
  for (int i = 0; i < 150; ++i) message += "a: b\r\n";
  message += "\r\nbody\r\n";
  EXPECT_FALSE(rules.check(message, 1000, nullptr, 150).decided());
  auto v = rules.check(message, 1000, nullptr, 149);
  EXPECT_EQ(v.what, action::reject);
  EXPECT_EQ(v.reply, "552 5.3.4 Error: message header has too many lines");
  EXPECT_EQ(v.rule, "header_rules:max_header_lines");
}

TEST(header_rule_set, empty_set_passes) {
  header_rule_set none;
  std::vector<std::string> warnings;
  auto v = none.check("Subject: anything\r\n\r\n", 1000, &warnings);
  EXPECT_FALSE(v.decided());
  EXPECT_TRUE(warnings.empty());
}

}  // namespace
}  // namespace mxguard::guard
