// The header and body rules as an end-of-DATA policy check. WARN rules
// with a score pass it on in the verdict, for [score].
#pragma once

#include <memory>

#include "config.hpp"
#include "policy.hpp"

namespace mxguard::guard {

class header_rule_check final : public stage_check {
 public:
  explicit header_rule_check(std::shared_ptr<const config> cfg) : cfg_(std::move(cfg)) {}
  std::string_view name() const override { return "header_rules"; }
  bool applies_to(stage s) const override { return s == stage::end_of_data; }
  boost::asio::awaitable<verdict> evaluate(stage s, const check_input& input) override;

 private:
  std::shared_ptr<const config> cfg_;
};

}  // namespace mxguard::guard
