#include "dnsbl_check.hpp"

#include "mxguard/ops/log.hpp"
#include "smtp_syntax.hpp"

namespace mxguard::guard {

std::string expand_reply(
    std::string_view pattern,
    std::initializer_list<std::pair<std::string_view, std::string_view>> values,
    std::string_view txt) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    bool replaced = false;
    if (pattern[i] == '{')
      for (const auto& [name, value] : values)
        if (pattern.substr(i + 1, name.size()) == name && i + 1 + name.size() < pattern.size() &&
            pattern[i + 1 + name.size()] == '}') {
          out.append(value);
          i += name.size() + 1;
          replaced = true;
          break;
        }
    if (!replaced) out.push_back(pattern[i]);
  }
  if (!txt.empty()) {
    // TXT comes from the list's DNS: keep the reply one printable line.
    out.append("; ");
    for (char c : txt.substr(0, 200)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  return out;
}

bool dnsbl_check::applies_to(stage s) const {
  if (s == stage::connect) return engine_->enabled_for_clients();
  if (s == stage::mail) return engine_->enabled_for_domains();
  return false;
}

boost::asio::awaitable<verdict> dnsbl_check::evaluate(stage s, const check_input& input) {
  if (s == stage::connect) co_return co_await check_client(input);
  co_return co_await check_domains(input);
}

namespace {

std::string listed_sites(const dnsbl::score& sc) {
  std::string out;
  for (const auto& r : sc.sites)
    if (r.counted()) out += (out.empty() ? "" : ",") + r.which->domain;
  return out;
}

int count(const dnsbl::score& sc, dnsbl::verdict_kind k) {
  int n = 0;
  for (const auto& r : sc.sites) n += r.kind == k;
  return n;
}

}  // namespace

boost::asio::awaitable<verdict> dnsbl_check::check_client(const check_input& input) {
  if (input.session.passed_before) co_return verdict::pass();
  auto sc = co_await engine_->score_client(input.session.client);
  const int timeouts = count(sc, dnsbl::verdict_kind::timeout);
  const int errors = count(sc, dnsbl::verdict_kind::error);
  if (sc.total != 0 || timeouts || errors)
    ops::event("DNSBL")
        .add("sid", input.session.id)
        .add("client", input.session.client.to_string())
        .add("score", sc.total)
        .add("listed", listed_sites(sc))
        .add("timeouts", timeouts)
        .add("errors", errors)
        .emit();
  verdict v;
  v.score = sc.total;
  if (sc.allowlisted) {
    v.what = action::accept;
    v.rule = "dnsbl:allowlist";
    co_return v;
  }
  if (!sc.listed) co_return v;
  const auto* first = sc.first_listed();
  v.what = action::reject;
  v.rule = "dnsbl:" + (first ? first->which->domain : std::string("score"));
  v.reply = expand_reply(cfg_->values.dnsbl.reply,
                         {{"client", input.session.client.to_string()},
                          {"site", first ? first->which->domain : std::string("DNS lists")}},
                         first ? first->txt : "");
  v.at_rcpt = cfg_->dnsbl_at_rcpt;
  co_return v;
}

boost::asio::awaitable<verdict> dnsbl_check::check_domains(const check_input& input) {
  struct subject {
    std::string_view what;
    std::string domain;
  };
  std::vector<subject> subjects;
  if (!input.transaction.null_sender && !input.transaction.sender.domain.empty() &&
      !input.transaction.sender.domain.starts_with('['))
    subjects.push_back({"sender", input.transaction.sender.domain});
  const auto& helo = input.session.helo;
  std::string_view helo_name = helo;
  while (helo_name.ends_with('.')) helo_name.remove_suffix(1);
  // Only a name DNS can carry: a HELO such as "a(b.example" (valid_helo is
  // lenient) comes back escaped in the answer, never matches the question,
  // and its lookup would wait out dnsbl.timeout at every MAIL.
  if (!helo.empty() && helo.front() != '[' && helo.find('.') != std::string::npos &&
      valid_domain(helo_name) &&
      (subjects.empty() || lower_ascii(helo) != lower_ascii(subjects[0].domain)))
    subjects.push_back({"helo", helo});
  for (const auto& s : subjects) {
    auto sc = co_await engine_->score_domain(s.domain);
    if (!sc.listed) continue;
    const auto* first = sc.first_listed();
    verdict v;
    v.what = action::reject;
    v.score = sc.total;
    v.rule = std::string("rhsbl_") + std::string(s.what) + ":" +
             (first ? first->which->domain : std::string("score"));
    v.reply = expand_reply(cfg_->values.dnsbl.rhsbl_reply,
                           {{"what", s.what},
                            {"domain", s.domain},
                            {"site", first ? first->which->domain : std::string("DNS lists")}},
                           first ? first->txt : "");
    v.at_rcpt = cfg_->dnsbl_at_rcpt;
    co_return v;
  }
  co_return verdict::pass();
}

}  // namespace mxguard::guard
