#include "header_rules.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

#include <re2/re2.h>

#include "text.hpp"

namespace mxguard::guard {

namespace {

// The action a rule's word names (any case), or nullopt.
std::optional<header_action> action_word(std::string_view word) {
  std::string upper(word);
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper == "REJECT") return header_action::reject;
  if (upper == "DISCARD") return header_action::discard;
  if (upper == "WARN") return header_action::warn;
  return std::nullopt;
}

}  // namespace

std::optional<header_rule> header_rule_set::parse_line(std::string_view line, std::string& error) {
  line = trim(line);
  if (line.size() < 2 || line.front() != '/') {
    error = "expected '/regex/[flags] REJECT|DISCARD|WARN [text]'";
    return std::nullopt;
  }
  // The pattern ends at the first '/' followed by flags, whitespace and an
  // action word; a '/' inside the pattern may be written as-is or as '\/'.
  // Taking the last '/' followed by flags and a space (as before) cut rules
  // whose text holds a slash ("REJECT spam/phishing", "see https://x/ now")
  // in the wrong place. When no '/' is followed by an action, that old rule
  // finds the end, so a bad flag or action still gets its own message.
  std::size_t close = std::string_view::npos;
  std::size_t fallback = std::string_view::npos;
  for (std::size_t i = 1; i < line.size() && close == std::string_view::npos; ++i) {
    if (line[i] == '\\') {
      ++i;
      continue;
    }
    if (line[i] != '/') continue;
    std::size_t j = i + 1;
    while (j < line.size() && std::isalpha(static_cast<unsigned char>(line[j]))) ++j;
    if (j >= line.size() || !std::isspace(static_cast<unsigned char>(line[j]))) continue;
    fallback = i;
    auto after = trim(line.substr(j));
    auto word = after.substr(0, after.find_first_of(" \t"));
    if (action_word(word)) close = i;
  }
  if (close == std::string_view::npos) close = fallback;
  if (close == std::string_view::npos) {
    error = "unterminated /regex/ or missing action";
    return std::nullopt;
  }
  std::string pattern(line.substr(1, close - 1));
  std::size_t pos = close + 1;
  bool case_sensitive = false;
  while (pos < line.size() && std::isalpha(static_cast<unsigned char>(line[pos]))) {
    char flag = line[pos++];
    if (flag == 'i')
      case_sensitive = false;
    else if (flag == 'c')
      case_sensitive = true;
    else {
      error = std::string("unknown flag '") + flag + "' (i, c)";
      return std::nullopt;
    }
  }
  auto rest = trim(line.substr(pos));
  auto word_end = rest.find_first_of(" \t");
  auto what = action_word(rest.substr(0, word_end));
  if (!what) {
    error =
        "unknown action '" + std::string(rest.substr(0, word_end)) + "' (REJECT, DISCARD, WARN)";
    return std::nullopt;
  }
  header_rule rule;
  rule.what = *what;
  if (word_end != std::string_view::npos) rule.text = std::string(trim(rest.substr(word_end)));
  // "WARN score=2.5 text": a WARN rule may add to the message score
  // ([score] levels) instead of deciding alone.
  if (rule.text.starts_with("score=")) {
    if (rule.what != header_action::warn) {
      error = "only WARN rules carry a score";
      return std::nullopt;
    }
    std::string_view number(rule.text);
    number.remove_prefix(6);
    number = number.substr(0, number.find_first_of(" \t"));
    const char* end = number.data() + number.size();
    auto [ptr, ec] = std::from_chars(number.data(), end, rule.score);
    if (ec != std::errc() || ptr != end || !std::isfinite(rule.score) || number.empty()) {
      error = "bad score '" + std::string(number) + "' (a number such as 2.5 or -1)";
      return std::nullopt;
    }
    rule.text = std::string(trim(std::string_view(rule.text).substr(6 + number.size())));
  }
  if (!printable_ascii(rule.text)) {
    error = "rule text must be printable ASCII";
    return std::nullopt;
  }
  RE2::Options options;
  // Bytes, like Postfix's regexp tables: in UTF-8 mode `.` would not match
  // a lone Latin-1 byte ("Caf\xE9 Casino").
  options.set_encoding(RE2::Options::EncodingLatin1);
  options.set_case_sensitive(case_sensitive);
  options.set_log_errors(false);
  options.set_max_mem(8 << 20);
  auto re = std::make_shared<RE2>(pattern, options);
  if (!re->ok()) {
    error = "bad regular expression: " + re->error();
    return std::nullopt;
  }
  rule.pattern = std::move(re);
  rule.source = std::string(line);
  return rule;
}

verdict header_rule_set::check(std::string_view message, std::size_t max_header_size,
                               std::vector<std::string>* warnings,
                               std::size_t max_header_lines) const {
  verdict result;
  if (rules_.empty()) return result;
  // A WARN rule scores once however many lines it matches: repeated header
  // lines cannot run the score up (or, with a negative score, down).
  std::vector<bool> warned(rules_.size(), false);
  std::size_t lines = 0;
  for_each_header(message, max_header_size, [&](std::string_view header) {
    if (result.decided()) return;
    if (++lines > max_header_lines) {
      result.what = action::reject;
      result.rule = "header_rules:max_header_lines";
      result.reply = "552 5.3.4 Error: message header has too many lines";
      return;
    }
    for (std::size_t i = 0; i < rules_.size(); ++i) {
      const auto& rule = rules_[i];
      if (!RE2::PartialMatch(header, *rule.pattern)) continue;
      std::string name = "header_rules[" + std::to_string(i) + "]";
      switch (rule.what) {
        case header_action::warn:
          if (warned[i]) break;
          warned[i] = true;
          if (warnings) warnings->push_back(name + (rule.text.empty() ? "" : " " + rule.text));
          result.score += rule.score;
          break;
        case header_action::reject:
          result.what = action::reject;
          result.rule = name;
          result.reply = "550 5.7.1 " +
                         (rule.text.empty() ? std::string("Message content rejected") : rule.text);
          break;
        case header_action::discard:
          result.what = action::discard;
          result.rule = name;
          result.reply = "250 2.0.0 Ok";
          break;
      }
      break;  // the first matching rule decides for this header line
    }
  });
  return result;
}

verdict header_rule_set::check_body(std::string_view message, std::size_t body_limit,
                                    std::vector<std::string>* warnings) const {
  verdict result;
  if (rules_.empty()) return result;
  std::size_t start = for_each_header(message, 1, [](std::string_view) {});
  std::string_view body = message.substr(std::min(start, message.size()));
  if (body.size() > body_limit) body = body.substr(0, body_limit);
  // Each rule counts once per message, however many lines it matches, so a
  // repeated word cannot run the score up.
  std::vector<bool> matched(rules_.size(), false);
  std::size_t pos = 0;
  while (pos < body.size() && !result.decided()) {
    auto eol = body.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = body.size();
    std::string_view line = body.substr(pos, eol - pos);
    pos = eol + 2;
    for (std::size_t i = 0; i < rules_.size(); ++i) {
      const auto& rule = rules_[i];
      if (matched[i] || !RE2::PartialMatch(line, *rule.pattern)) continue;
      matched[i] = true;
      std::string name = "body_rules[" + std::to_string(i) + "]";
      if (rule.what == header_action::warn) {
        if (warnings) warnings->push_back(name + (rule.text.empty() ? "" : " " + rule.text));
        result.score += rule.score;
        continue;
      }
      result.what = rule.what == header_action::reject ? action::reject : action::discard;
      result.rule = name;
      result.reply =
          rule.what == header_action::reject
              ? "550 5.7.1 " +
                    (rule.text.empty() ? std::string("Message content rejected") : rule.text)
              : "250 2.0.0 Ok";
      break;
    }
  }
  return result;
}

}  // namespace mxguard::guard
