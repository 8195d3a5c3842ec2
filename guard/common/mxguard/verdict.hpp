// mxguard common vocabulary: the result of a policy check.
//
// A check takes facts, its policy and `now` and returns a verdict; it never
// writes to a socket. The session applies the verdict (postscreen's
// drop/enforce/ignore with a fixed reply, Envoy's FilterStatus).
#pragma once

#include <string>

namespace mxguard {

enum class action {
  cont,     // no opinion: the next check decides
  accept,   // an explicit OK (access list OK): skip the remaining checks of this kind
  reject,   // permanent refusal (5xx)
  defer,    // temporary refusal (4xx)
  discard,  // accept towards the client, relay nothing (logged)
  drop,     // reply, then close the connection (421)
};

struct verdict {
  action what = action::cont;
  std::string reply;  // full SMTP reply line(s) without CRLF, e.g. "554 5.7.1 Relay access denied"
  std::string rule;   // the rule that decided, for the log line and the counters
  double score = 0;   // contribution to the message score (WARN rules, DNSBL)
  // Refuse at the first RCPT rather than now (postscreen's "enforce"): the
  // client gets to say who it is and what it sends, so the log shows whose
  // mail was refused, which is what a postmaster is asked about.
  bool at_rcpt = false;

  static verdict pass() { return {}; }
  bool decided() const { return what != action::cont; }
};

const char* to_string(action a);

}  // namespace mxguard
