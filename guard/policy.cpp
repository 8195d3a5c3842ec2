#include "policy.hpp"

namespace mxguard::guard {

const char* to_string(stage s) {
  switch (s) {
    case stage::connect:
      return "connect";
    case stage::helo:
      return "helo";
    case stage::mail:
      return "mail";
    case stage::rcpt:
      return "rcpt";
    case stage::data:
      return "data";
    case stage::end_of_data:
      return "end_of_data";
  }
  return "?";
}

bool policy_chain::empty_for(stage s) const {
  for (const auto& c : checks_)
    if (c->applies_to(s)) return false;
  return true;
}

boost::asio::awaitable<verdict> policy_chain::run(stage s, const check_input& input) const {
  // Undecided checks may still score (WARN rules): the pass verdict carries
  // the sum, for the content verdict at end of DATA.
  double score = 0;
  for (const auto& c : checks_) {
    if (!c->applies_to(s)) continue;
    verdict v = co_await c->evaluate(s, input);
    if (v.decided()) {
      if (v.rule.empty()) v.rule = std::string(c->name());
      co_return v;
    }
    score += v.score;
  }
  verdict pass;
  pass.score = score;
  co_return pass;
}

}  // namespace mxguard::guard
