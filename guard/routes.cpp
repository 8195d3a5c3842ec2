#include "routes.hpp"

namespace mxguard::guard {

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

namespace {

// True when `pattern` matches `domain` (both lower case).
bool domain_matches(std::string_view pattern, std::string_view domain) {
  if (pattern.starts_with('.')) return domain.size() > pattern.size() && domain.ends_with(pattern);
  return pattern == domain;
}

}  // namespace

void relay_domain_set::add(std::string_view pattern) {
  patterns_.push_back(lower_ascii(pattern));
}

bool relay_domain_set::matches(std::string_view raw) const {
  const auto domain = lower_ascii(raw);
  for (const auto& p : patterns_)
    if (domain_matches(p, domain)) return true;
  return false;
}

void route_table::add(route r) {
  r.domain = lower_ascii(r.domain);
  routes_.push_back(std::move(r));
}

const route* route_table::find(std::string_view raw) const {
  const auto domain = lower_ascii(raw);
  for (const auto& r : routes_)
    if (r.domain == domain) return &r;
  // The nearest parent first: a.b.example.org tries .b.example.org, then .example.org.
  for (auto dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1)) {
    std::string_view parent = std::string_view(domain).substr(dot);
    for (const auto& r : routes_)
      if (r.domain == parent) return &r;
  }
  for (const auto& r : routes_)
    if (r.domain == "*") return &r;
  return nullptr;
}

}  // namespace mxguard::guard
