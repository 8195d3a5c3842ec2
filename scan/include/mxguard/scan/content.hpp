// Content verdicts: what a scan result and a message score mean for the
// transaction (amavisd-new's final_*_destiny, SpamAssassin's levels), and the
// header edits that carry the verdict to the recipient's mail client.
//
// Small pure functions, no I/O: the session applies the decision.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxguard/scan/engine.hpp"
#include "mxguard/verdict.hpp"

namespace mxguard::scan {

enum class disposition { reject, tempfail, discard, pass };
// "reject" | "tempfail" | "discard" | "pass"; nullopt for anything else.
std::optional<disposition> parse_disposition(std::string_view text);

struct content_policy {
  bool scanning = false;  // a signature directory is configured
  disposition on_virus = disposition::reject;
  disposition on_error = disposition::tempfail;
  disposition on_encrypted = disposition::pass;
  disposition on_over_limit = disposition::pass;
  disposition on_overload = disposition::tempfail;

  bool scoring = false;
  double tag_level = -999, tag2_level = 6.31, kill_level = 999;
  std::string subject_tag = "[SPAM] ";
};

struct content_decision {
  verdict decision;                      // cont: relay the message
  std::vector<std::string> add_headers;  // complete header lines, no CRLF, added on top
  bool spam = false;                     // score reached tag2_level
  bool tag_subject = false;              // prefix the Subject with subject_tag
};

// `scan` is null when the message was not scanned (scanning off);
// `engine_description` names the engine for X-Virus-Scanned.
content_decision decide(const content_policy& policy, const result* scan,
                        std::string_view engine_description, double score);

// The message with the client's copies of `remove` deleted (the headers the
// guard vouches for, so that a spammer cannot pre-label his message
// "X-Spam-Status: No") from the header
// section (folded continuation lines too) and, when `subject_prefix` is not
// empty, the Subject prefixed (a Subject header added if there is none).
// nullopt when nothing would change: the message is relayed as it came.
std::optional<std::string> rewrite_headers(std::string_view message,
                                           const std::vector<std::string_view>& remove,
                                           std::string_view subject_prefix);

}  // namespace mxguard::scan
