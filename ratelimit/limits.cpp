#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "mxguard/ratelimit/ratelimit.hpp"
#include "mxguard/units.hpp"

namespace mxguard::ratelimit {

millis wall_clock_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::optional<rate> parse_rate(std::string_view text) {
  if (text.empty() || text == "0") return rate{};
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::int64_t count = 0;
  auto c = text.substr(0, slash);
  auto [p, ec] = std::from_chars(c.data(), c.data() + c.size(), count);
  if (ec != std::errc{} || p != c.data() + c.size() || count < 0 || count > 100'000'000)
    return std::nullopt;
  auto per = text.substr(slash + 1);
  std::int64_t n = 1;
  auto [q, ec2] = std::from_chars(per.data(), per.data() + per.size(), n);
  if (ec2 != std::errc{}) n = 1, q = per.data();  // "30/m" means one minute
  std::string_view unit(q, static_cast<std::size_t>(per.data() + per.size() - q));
  auto scale = unit_millis(unit);
  if (!scale || n <= 0 || n > 1'000'000) return std::nullopt;
  return rate{count, n * *scale};
}

std::string to_string(const rate& r) {
  if (!r.enabled()) return "0";
  auto p = r.period;
  if (p % 86'400'000 == 0) return fmt::format("{}/{}d", r.count, p / 86'400'000);
  if (p % 3'600'000 == 0) return fmt::format("{}/{}h", r.count, p / 3'600'000);
  if (p % 60'000 == 0) return fmt::format("{}/{}m", r.count, p / 60'000);
  if (p % 1000 == 0) return fmt::format("{}/{}s", r.count, p / 1000);
  return fmt::format("{}/{}ms", r.count, p);
}

decision gcra(millis& tat, millis now, const rate& r, std::int64_t cost) {
  if (!r.enabled()) return {};
  // Emission interval T = period/count; burst tolerance tau = period - T, so
  // `count` events fit at once into an idle key.
  const double interval = static_cast<double>(r.period) / static_cast<double>(r.count);
  const double tolerance = static_cast<double>(r.period) - interval;
  const double base = static_cast<double>(std::max(tat, now));
  const double new_tat = base + interval * static_cast<double>(cost);
  const double allow_at = new_tat - interval - tolerance;  // = new_tat - period
  if (allow_at > static_cast<double>(now)) {
    return {false, static_cast<millis>(allow_at - static_cast<double>(now)) + 1};
  }
  tat = static_cast<millis>(new_tat);
  return {true, 0};
}

millis gcra_ttl(millis tat, millis now) {
  return std::max<millis>(tat - now, 0) + 1000;
}

grey_outcome greylist_step(triplet_record& record, millis now, const greylist_policy& policy) {
  grey_outcome out;
  if (record.passed_at != 0 && now - record.last_seen <= policy.lifetime) {
    record.last_seen = now;
    out.what = grey_result::pass;
    return out;
  }
  // Unknown, forgotten, or its retry window missed: start over.
  if (record.first_seen == 0 || record.passed_at != 0 ||
      now - record.first_seen > policy.delay + policy.retry_window) {
    record = {now, 0, now};
    out.what = grey_result::defer;
    out.wait = policy.delay;
    return out;
  }
  record.last_seen = now;
  if (now - record.first_seen < policy.delay) {
    out.what = grey_result::defer;
    out.wait = policy.delay - (now - record.first_seen);
    return out;
  }
  record.passed_at = now;
  out.what = grey_result::pass;
  out.newly_passed = true;
  return out;
}

std::string encode_block(const block_record& r) {
  return fmt::format("{} {} {} {} {}", r.expires_ms, r.created_ms, r.offences,
                     r.rule.empty() ? std::string("-") : r.rule, r.reason);
}

std::optional<block_record> decode_block(std::string prefix, std::string_view value) {
  block_record r;
  r.prefix = std::move(prefix);
  std::int64_t* numbers[] = {&r.expires_ms, &r.created_ms, &r.offences};
  for (auto* n : numbers) {
    auto space = value.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    auto [p, ec] = std::from_chars(value.data(), value.data() + space, *n);
    if (ec != std::errc{} || p != value.data() + space) return std::nullopt;
    value.remove_prefix(space + 1);
  }
  auto space = value.find(' ');
  r.rule = std::string(value.substr(0, space));
  if (r.rule == "-") r.rule.clear();
  if (space != std::string_view::npos) r.reason = std::string(value.substr(space + 1));
  return r;
}

}  // namespace mxguard::ratelimit
