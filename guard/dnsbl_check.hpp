// DNS list checks as policy: client lists at connect, sender and HELO domains
// (RHSBL) at MAIL. A listed client is refused at once, or — with
// `dnsbl.action = "rcpt"` — at its first RCPT, after it said who it is.
#pragma once

#include <memory>

#include "config.hpp"
#include "mxguard/dnsbl/dnsbl.hpp"
#include "policy.hpp"

namespace mxguard::guard {

class dnsbl_check final : public stage_check {
 public:
  dnsbl_check(std::shared_ptr<dnsbl::engine> engine, std::shared_ptr<const config> cfg)
      : engine_(std::move(engine)), cfg_(std::move(cfg)) {}
  std::string_view name() const override { return "dnsbl"; }
  bool applies_to(stage s) const override;
  boost::asio::awaitable<verdict> evaluate(stage s, const check_input& input) override;

 private:
  boost::asio::awaitable<verdict> check_client(const check_input& input);
  boost::asio::awaitable<verdict> check_domains(const check_input& input);
  std::shared_ptr<dnsbl::engine> engine_;
  std::shared_ptr<const config> cfg_;
};

// Fills a reply template's {placeholders}; the TXT text, if any, is appended.
std::string expand_reply(
    std::string_view pattern,
    std::initializer_list<std::pair<std::string_view, std::string_view>> values,
    std::string_view txt);

}  // namespace mxguard::guard
