#include "header_rule_check.hpp"

#include "mxguard/ops/log.hpp"

namespace mxguard::guard {

boost::asio::awaitable<verdict> header_rule_check::evaluate(stage, const check_input& input) {
  std::vector<std::string> warnings;
  auto v = cfg_->header_rules.check(
      input.message, static_cast<std::size_t>(cfg_->values.header_rules.max_header_size),
      &warnings);
  for (const auto& w : warnings)
    ops::event("WARN")
        .add("stage", "end_of_data")
        .add("sid", input.session.id)
        .add("rule", w)
        .emit();
  co_return v;
}

}  // namespace mxguard::guard
