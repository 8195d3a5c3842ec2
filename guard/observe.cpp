#include "observe.hpp"

namespace mxguard::guard {

namespace {

// Latency buckets from 100 µs (a cached DNSBL score) to 30 s (a slow scan).
std::vector<double> latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
}

// Protocol slips are counted in metrics only: the statistics are about what
// was refused as mail, as the postmasters' reports were.
bool protocol_slip(std::string_view rule) {
  return rule == "syntax" || rule == "sequence" || rule == "unknown_command" || rule == "bare_lf" ||
         rule == "bare_cr" || rule == "nul" || rule == "control" || rule == "max_line_length" ||
         rule == "parameter";
}

const char* to_label(transaction_end e) {
  switch (e) {
    case transaction_end::relayed:
      return "relayed";
    case transaction_end::spam:
      return "spam";
    case transaction_end::discarded:
      return "discarded";
    case transaction_end::virus:
      return "virus";
    case transaction_end::refused:
      return "refused";
    case transaction_end::tempfailed:
      return "tempfailed";
  }
  return "?";
}

}  // namespace

observer::observer(ops::registry& reg)
    : connections_(reg.add_counter_family("mxguard_connections_total",
                                          "Connections by outcome at the greeting.", {"outcome"})),
      refusals_(reg.add_counter_family("mxguard_refusals_total",
                                       "Refused commands, clients and messages by stage and rule.",
                                       {"stage", "rule"})),
      transactions_(reg.add_counter_family("mxguard_transactions_total",
                                           "Transactions whose message was read, by outcome.",
                                           {"outcome"})),
      viruses_(reg.add_counter("mxguard_viruses_total", "Messages a virus signature matched.")),
      scan_seconds_(reg.add_histogram_family("mxguard_scan_seconds",
                                             "Time to a scan result, queue included, by outcome.",
                                             {"outcome"}, latency_buckets())),
      next_hop_seconds_(reg.add_histogram("mxguard_next_hop_data_seconds",
                                          "Time from DATA to the next hop's final reply.",
                                          latency_buckets())),
      next_hop_replies_(reg.add_counter_family(
          "mxguard_next_hop_replies_total",
          "The next hop's final replies after DATA, by class (2xx, 4xx, 5xx, local = no reply).",
          {"class"})),
      next_hop_connections_(reg.add_counter_family(
          "mxguard_next_hop_connections_total",
          "Next-hop connections sessions started with: newly opened, or reused from the cache.",
          {"how"})),
      dnsbl_seconds_(reg.add_histogram(
          "mxguard_dnsbl_score_seconds",
          "Time to a client's DNSBL score (all lists, cache included).", latency_buckets())),
      accepted_(connections_.with({"accepted"})),
      refused_connections_(connections_.with({"refused"})),
      next_hop_2xx_(next_hop_replies_.with({"2xx"})),
      next_hop_4xx_(next_hop_replies_.with({"4xx"})),
      next_hop_5xx_(next_hop_replies_.with({"5xx"})),
      next_hop_local_(next_hop_replies_.with({"local"})),
      next_hop_opened_(next_hop_connections_.with({"opened"})),
      next_hop_reused_(next_hop_connections_.with({"reused"})) {
  for (auto end : {transaction_end::relayed, transaction_end::spam, transaction_end::discarded,
                   transaction_end::virus, transaction_end::refused, transaction_end::tempfailed})
    transactions_by_end_[static_cast<std::size_t>(end)] = &transactions_.with({to_label(end)});
}

void observer::connection_accepted() {
  accepted_.inc();
}

void observer::connection_refused() {
  refused_connections_.inc();
}

void observer::refused(std::string_view stage, std::string_view rule, std::string_view reply,
                       std::string_view client, std::string_view sender_domain,
                       bool in_statistics) {
  refusals_.with({stage, rule}).inc();
  if (stats_ && in_statistics && !protocol_slip(rule))
    stats_->record(reply.starts_with('4') ? ops::outcome::tempfailed : ops::outcome::refused, stage,
                   rule, client, sender_domain);
}

void observer::transaction(transaction_end end, std::string_view virus_name) {
  transactions_by_end_[static_cast<std::size_t>(end)]->inc();
  if (end == transaction_end::virus) viruses_.inc();
  if (!stats_) return;
  switch (end) {
    case transaction_end::relayed:
      stats_->record(ops::outcome::accepted);
      break;
    case transaction_end::spam:
      stats_->record(ops::outcome::spam);
      break;
    case transaction_end::discarded:
      stats_->record(ops::outcome::discarded);
      break;
    case transaction_end::virus:
      stats_->record(ops::outcome::virus, {}, {}, {}, {}, virus_name);
      break;
    case transaction_end::refused:
    case transaction_end::tempfailed:
      break;  // counted by refused(), which has the stage and rule
  }
}

void observer::scanned(const scan::result& r, std::chrono::steady_clock::duration waited) {
  scan_seconds_.with({scan::to_string(r.what)}).observe(waited);
}

void observer::next_hop_data(std::chrono::steady_clock::duration took,
                             std::string_view reply_code) {
  next_hop_seconds_.observe(took);
  if (reply_code.starts_with('2'))
    next_hop_2xx_.inc();
  else if (reply_code.starts_with('4'))
    next_hop_4xx_.inc();
  else if (reply_code.starts_with('5'))
    next_hop_5xx_.inc();
  else
    next_hop_local_.inc();
}

void observer::dnsbl_scored(std::chrono::steady_clock::duration took) {
  dnsbl_seconds_.observe(took);
}

}  // namespace mxguard::guard
