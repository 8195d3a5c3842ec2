#include "header_rule_check.hpp"

#include "mxguard/ops/log.hpp"

namespace mxguard::guard {

boost::asio::awaitable<verdict> header_rule_check::evaluate(stage, const check_input& input) {
  std::vector<std::string> warnings;
  const auto& limits = cfg_->values.header_rules;
  auto v = cfg_->header_rules.check(input.message, static_cast<std::size_t>(limits.max_header_size),
                                    &warnings, static_cast<std::size_t>(limits.max_header_lines));
  if (!v.decided() && cfg_->body_rules.size() > 0) {
    auto body = cfg_->body_rules.check_body(
        input.message, static_cast<std::size_t>(cfg_->values.header_rules.body_size_limit),
        &warnings);
    body.score += v.score;
    v = std::move(body);
  }
  for (const auto& w : warnings)
    ops::event("WARN")
        .add("stage", "end_of_data")
        .add("sid", input.session.id)
        .add("rule", w)
        .emit();
  if (v.decided()) v.score = 0;
  co_return v;
}

}  // namespace mxguard::guard
