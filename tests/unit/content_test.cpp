// Unit tests for scan/content.hpp (what a scan result and a score mean for the
// transaction, and the header edits) and the scores of WARN rules.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "header_rules.hpp"
#include "mxguard/scan/content.hpp"

namespace mxguard::scan {
namespace {

TEST(content_decide, scan_outcomes_under_each_policy) {
  struct row {
    const char* label;
    outcome what;
    disposition setting;
    action want;
    const char* want_reply;   // prefix; "" when relayed
    const char* want_header;  // a header line prefix that must be added; "" for none
  };
  const row rows[] = {
      {"clean", outcome::clean, disposition::reject, action::cont, "",
       "X-Virus-Scanned: mxguard (ClamAV 1.4.6/3)"},
      {"virus rejected", outcome::virus, disposition::reject, action::reject,
       "554 5.7.1 Virus found: Eicar", ""},
      {"virus discarded", outcome::virus, disposition::discard, action::discard, "250", ""},
      {"virus passed", outcome::virus, disposition::pass, action::cont, "",
       "X-Virus-Status: Infected (Eicar)"},
      {"error tempfails", outcome::error, disposition::tempfail, action::defer, "451 4.7.0", ""},
      {"error passes", outcome::error, disposition::pass, action::cont, "",
       "X-Virus-Status: Unscanned (scan error: Eicar)"},
      {"encrypted rejected", outcome::encrypted, disposition::reject, action::reject,
       "554 5.7.1 Encrypted", ""},
      {"over limit passes", outcome::over_limit, disposition::pass, action::cont, "",
       "X-Virus-Status: Unscanned (limit exceeded"},
      {"overloaded tempfails", outcome::overloaded, disposition::tempfail, action::defer,
       "451 4.7.0", ""},
      {"timeout passes", outcome::timeout, disposition::pass, action::cont, "",
       "X-Virus-Status: Unscanned (scan timeout)"},
  };
  for (const auto& r : rows) {
    content_policy p;
    p.scanning = true;
    p.on_virus = p.on_error = p.on_encrypted = p.on_over_limit = p.on_overload = r.setting;
    result scanned{r.what, "Eicar", {}, 0};
    auto d = decide(p, &scanned, "ClamAV 1.4.6/3", 0);
    EXPECT_EQ(d.decision.what, r.want) << r.label;
    EXPECT_TRUE(d.decision.reply.starts_with(r.want_reply)) << r.label << ": " << d.decision.reply;
    bool found = std::string_view(r.want_header).empty();
    for (const auto& h : d.add_headers)
      if (h.starts_with(r.want_header)) found = true;
    EXPECT_TRUE(found) << r.label;
    if (d.decision.decided()) {
      EXPECT_TRUE(d.add_headers.empty()) << r.label;
    }
  }
}

TEST(content_decide, score_levels) {
  content_policy p;
  p.scoring = true;
  p.tag_level = 2;
  p.tag2_level = 5;
  p.kill_level = 9;
  struct row {
    double score;
    bool want_header, want_spam;
    action want;
  };
  const row rows[] = {{1.99, false, false, action::cont}, {2, true, false, action::cont},
                      {4.99, true, false, action::cont},  {5, true, true, action::cont},
                      {8.99, true, true, action::cont},   {9, false, false, action::reject},
                      {-5, false, false, action::cont}};
  for (const auto& r : rows) {
    auto d = decide(p, nullptr, "", r.score);
    EXPECT_EQ(d.decision.what, r.want) << r.score;
    EXPECT_EQ(!d.add_headers.empty(), r.want_header) << r.score;
    EXPECT_EQ(d.spam, r.want_spam) << r.score;
    EXPECT_EQ(d.tag_subject, r.want_spam) << r.score;
    if (r.want_header) {
      EXPECT_TRUE(
          d.add_headers[0].starts_with(r.want_spam ? "X-Spam-Status: Yes" : "X-Spam-Status: No"));
    }
  }
  p.subject_tag.clear();
  EXPECT_FALSE(decide(p, nullptr, "", 6).tag_subject) << "an empty tag leaves the Subject";
  p.scoring = false;
  EXPECT_TRUE(decide(p, nullptr, "", 100).add_headers.empty()) << "scoring off: nothing";
}

TEST(rewrite_headers, removes_forged_copies_and_prefixes_subject) {
  struct row {
    const char* label;
    std::string message;
    std::vector<std::string_view> remove;
    std::string_view prefix;
    std::optional<std::string> want;
  };
  const row rows[] = {
      {"nothing to do", "Subject: a\r\n\r\nbody\r\n", {"X-Spam-Status"}, "", std::nullopt},
      {"folded copy removed, any case",
       "x-spam-status: No,\r\n score=-5\r\nSubject: a\r\n\r\nX-Spam-Status: body line\r\n",
       {"X-Spam-Status"},
       "",
       "Subject: a\r\n\r\nX-Spam-Status: body line\r\n"},
      {"subject prefixed, folding kept",
       "From: a\r\nSubject:  hello\r\n world\r\n\r\nb\r\n",
       {},
       "[SPAM] ",
       "From: a\r\nSubject: [SPAM] hello\r\n world\r\n\r\nb\r\n"},
      {"subject added when missing",
       "From: a\r\n\r\nb\r\n",
       {},
       "[SPAM] ",
       "From: a\r\nSubject: [SPAM]\r\n\r\nb\r\n"},
      {"only the first subject",
       "Subject: a\r\nSubject: b\r\n\r\n",
       {},
       "[S] ",
       "Subject: [S] a\r\nSubject: b\r\n\r\n"},
      {"an encoded-word stays apart from a tag without a space",
       "Subject: =?UTF-8?B?aMOpbGxv?=\r\n\r\n",
       {},
       "[SPAM]",
       "Subject: [SPAM] =?UTF-8?B?aMOpbGxv?=\r\n\r\n"},
      {"a body line is not a header",
       "From: a\r\n\r\nSubject: x\r\n",
       {},
       "[S] ",
       "From: a\r\nSubject: [S]\r\n\r\nSubject: x\r\n"},
  };
  for (const auto& r : rows)
    EXPECT_EQ(rewrite_headers(r.message, r.remove, r.prefix), r.want) << r.label;
}

TEST(parse_disposition, words) {
  EXPECT_EQ(parse_disposition("reject"), disposition::reject);
  EXPECT_EQ(parse_disposition("tempfail"), disposition::tempfail);
  EXPECT_EQ(parse_disposition("discard"), disposition::discard);
  EXPECT_EQ(parse_disposition("pass"), disposition::pass);
  EXPECT_EQ(parse_disposition("Reject"), std::nullopt);
  EXPECT_EQ(parse_disposition(""), std::nullopt);
}

}  // namespace
}  // namespace mxguard::scan

namespace mxguard::guard {
namespace {

TEST(rule_scores, warn_rules_carry_a_score_others_may_not) {
  std::string error;
  auto rule = header_rule_set::parse_line("/^X-Bulk:/ WARN score=2.5 bulk mail", error);
  ASSERT_TRUE(rule) << error;
  EXPECT_DOUBLE_EQ(rule->score, 2.5);
  EXPECT_EQ(rule->text, "bulk mail");
  rule = header_rule_set::parse_line("/x/ WARN score=-1", error);
  ASSERT_TRUE(rule) << error;
  EXPECT_DOUBLE_EQ(rule->score, -1);
  EXPECT_FALSE(header_rule_set::parse_line("/x/ REJECT score=3 no", error));
  EXPECT_NE(error.find("only WARN"), std::string::npos);
  EXPECT_FALSE(header_rule_set::parse_line("/x/ WARN score=lots", error));
  EXPECT_NE(error.find("bad score"), std::string::npos);
  EXPECT_FALSE(header_rule_set::parse_line("/x/ WARN score=inf", error));
}

TEST(rule_scores, body_rules_count_once_and_sum) {
  header_rule_set body;
  std::string error;
  for (const char* line : {"/pills/ WARN score=3 pills", "/casino/ WARN score=1.5 casino"})
    body.add(*header_rule_set::parse_line(line, error));
  std::vector<std::string> warnings;
  auto v =
      body.check_body("Subject: pills\r\n\r\npills\r\npills\r\ncasino\r\n", 1 << 20, &warnings);
  EXPECT_FALSE(v.decided());
  EXPECT_DOUBLE_EQ(v.score, 4.5) << "the Subject is not body; each rule once";
  EXPECT_EQ(warnings.size(), 2u);
  v = body.check_body("Subject: x\r\n\r\nhello\r\ncasino\r\n", 8, &warnings);
  EXPECT_DOUBLE_EQ(v.score, 0) << "past body_size_limit nothing is looked at";
  body.add(*header_rule_set::parse_line("/forbidden/ REJECT no thanks", error));
  v = body.check_body("\r\nforbidden word\r\n", 1 << 20, nullptr);
  EXPECT_EQ(v.what, action::reject);
  EXPECT_EQ(v.reply, "550 5.7.1 no thanks");
  EXPECT_EQ(v.rule, "body_rules[2]");
}

}  // namespace
}  // namespace mxguard::guard
