#include "mxguard/scan/content.hpp"

#include <cctype>

#include <fmt/format.h>

namespace mxguard::scan {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// The field name of a header line ("Subject" of "Subject: x"), empty when the
// line is no header field.
std::string_view field_name(std::string_view line) {
  auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  auto name = line.substr(0, colon);
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
  return name;
}

// Why a message went unchecked, for X-Virus-Status.
std::string unscanned_reason(const result& r) {
  switch (r.what) {
    case outcome::encrypted:
      return fmt::format("Unscanned (encrypted: {})", r.name);
    case outcome::over_limit:
      return fmt::format("Unscanned (limit exceeded: {})", r.name);
    case outcome::overloaded:
      return "Unscanned (scanner busy)";
    case outcome::timeout:
      return "Unscanned (scan timeout)";
    default:
      return fmt::format("Unscanned (scan error: {})", r.name);
  }
}

// A scan outcome that is not clean and not a virus: what the policy says.
content_decision unscanned(disposition d, const result& r, std::string_view rule,
                           std::string_view reject_text) {
  content_decision out;
  out.decision.rule = std::string(rule);
  switch (d) {
    case disposition::reject:
      out.decision.what = action::reject;
      out.decision.reply = fmt::format("554 5.7.1 {}", reject_text);
      break;
    case disposition::tempfail:
      out.decision.what = action::defer;
      out.decision.reply = "451 4.7.0 Message could not be scanned, try again later";
      break;
    case disposition::discard:
      out.decision.what = action::discard;
      out.decision.reply = "250 2.0.0 Ok";
      break;
    case disposition::pass:
      out.decision.rule.clear();
      out.add_headers.push_back("X-Virus-Status: " + unscanned_reason(r));
      break;
  }
  return out;
}

}  // namespace

std::optional<disposition> parse_disposition(std::string_view text) {
  if (text == "reject") return disposition::reject;
  if (text == "tempfail") return disposition::tempfail;
  if (text == "discard") return disposition::discard;
  if (text == "pass") return disposition::pass;
  return std::nullopt;
}

content_decision decide(const content_policy& policy, const result* scan,
                        std::string_view engine_description, double score) {
  content_decision out;
  if (policy.scanning && scan != nullptr) {
    switch (scan->what) {
      case outcome::clean:
        out.add_headers.push_back(fmt::format("X-Virus-Scanned: mxguard ({})", engine_description));
        break;
      case outcome::virus:
        switch (policy.on_virus) {
          case disposition::reject:
            out.decision = {action::reject, "554 5.7.1 Virus found: " + scan->name, "virus"};
            return out;
          case disposition::tempfail:
            out.decision = {action::defer, "451 4.7.1 Virus found: " + scan->name, "virus"};
            return out;
          case disposition::discard:
            out.decision = {action::discard, "250 2.0.0 Ok", "virus"};
            return out;
          case disposition::pass:
            out.add_headers.push_back(
                fmt::format("X-Virus-Scanned: mxguard ({})", engine_description));
            out.add_headers.push_back("X-Virus-Status: Infected (" + scan->name + ")");
            break;
        }
        break;
      case outcome::encrypted:
        out = unscanned(policy.on_encrypted, *scan, "scan_encrypted",
                        "Encrypted content cannot be scanned: " + scan->name);
        if (out.decision.decided()) return out;
        break;
      case outcome::over_limit:
        out =
            unscanned(policy.on_over_limit, *scan, "scan_limit", "Message exceeds the scan limits");
        if (out.decision.decided()) return out;
        break;
      case outcome::overloaded:
      case outcome::timeout:
        out = unscanned(policy.on_overload, *scan,
                        scan->what == outcome::timeout ? "scan_timeout" : "scan_overload",
                        "Message could not be scanned");
        if (out.decision.decided()) return out;
        break;
      case outcome::error:
        out = unscanned(policy.on_error, *scan, "scan_error", "Message could not be scanned");
        if (out.decision.decided()) return out;
        break;
    }
  }
  if (!policy.scoring) return out;
  if (score >= policy.kill_level) {
    out.add_headers.clear();
    out.decision = {action::reject,
                    fmt::format("554 5.7.1 Message refused as spam (score {:.2f})", score),
                    "score_kill"};
    return out;
  }
  out.spam = score >= policy.tag2_level;
  if (score >= policy.tag_level)
    out.add_headers.push_back(
        fmt::format("X-Spam-Status: {}, score={:.2f} tagged_above={:g} "
                    "required={:g}",
                    out.spam ? "Yes" : "No", score, policy.tag_level, policy.tag2_level));
  out.tag_subject = out.spam && !policy.subject_tag.empty();
  return out;
}

std::optional<std::string> rewrite_headers(std::string_view message,
                                           const std::vector<std::string_view>& remove,
                                           std::string_view subject_prefix) {
  std::string out;
  bool changed = false;
  bool subject_seen = false;
  bool dropping = false;   // inside a removed field's continuation lines
  bool separated = false;  // the header section ended with an empty line
  std::size_t pos = 0;
  auto copy_rest = [&] { out.append(message.substr(pos)); };
  while (pos < message.size()) {
    auto eol = message.find("\r\n", pos);
    std::size_t next = eol == std::string_view::npos ? message.size() : eol + 2;
    std::string_view line = message.substr(pos, next - pos);
    std::string_view bare = message.substr(pos, (eol == std::string_view::npos ? next : eol) - pos);
    // The header section ends where guard's header rules say it does: at
    // the empty line, or at a line that cannot be a header (the body began
    // without a separator).
    if (bare.empty()) {
      separated = true;
      break;
    }
    if (bare.front() == ' ' || bare.front() == '\t') {
      if (pos == 0) break;
      if (!dropping) out.append(line);
      pos = next;
      continue;
    }
    if (bare.find(':') == std::string_view::npos) break;
    dropping = false;
    auto name = field_name(bare);
    bool drop = false;
    for (auto r : remove)
      if (iequals(name, r)) drop = true;
    if (drop) {
      dropping = true;
      changed = true;
    } else if (!subject_prefix.empty() && !subject_seen && iequals(name, "Subject")) {
      subject_seen = true;
      changed = true;
      auto value = line.substr(line.find(':') + 1);
      std::size_t spaces = 0;
      while (spaces < value.size() && (value[spaces] == ' ' || value[spaces] == '\t')) ++spaces;
      out.append("Subject: ");
      out.append(subject_prefix);
      // An encoded-word must stand apart (RFC 2047 5): "[SPAM]=?UTF-8?..."
      // would show as the raw text.
      if (value.substr(spaces).starts_with("=?") && !subject_prefix.ends_with(' '))
        out.push_back(' ');
      out.append(value.substr(spaces));
    } else {
      out.append(line);
    }
    pos = next;
  }
  if (!subject_prefix.empty() && !subject_seen) {
    std::string_view trimmed = subject_prefix;
    while (!trimmed.empty() && trimmed.back() == ' ') trimmed.remove_suffix(1);
    out.append("Subject: ");
    out.append(trimmed);
    out.append("\r\n");
    // A body that began without the empty line would otherwise read as
    // continuation lines of the new Subject.
    if (!separated) out.append("\r\n");
    changed = true;
  }
  if (!changed) return std::nullopt;
  copy_rest();
  return out;
}

}  // namespace mxguard::scan
