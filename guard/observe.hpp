// Every decision the guard makes, counted twice: in the Prometheus metrics
// (what is happening now) and in the per-day statistics (what happened this
// month). One place, so that the two never disagree with each other or with
// the log lines, which are written next to the calls.
#pragma once

#include <array>

#include <chrono>
#include <memory>
#include <string_view>

#include "mxguard/ops/metrics.hpp"
#include "mxguard/ops/stats.hpp"
#include "mxguard/scan/engine.hpp"

namespace mxguard::guard {

// How a transaction ended after DATA.
enum class transaction_end { relayed, spam, discarded, virus, refused, tempfailed };

class observer {
 public:
  // Registers the guard's metric families in `reg` (once per registry).
  explicit observer(ops::registry& reg);

  // Statistics are on when a recorder is attached (before serving).
  void attach_stats(std::shared_ptr<ops::stats_recorder> stats) { stats_ = std::move(stats); }
  ops::stats_recorder* stats() const { return stats_.get(); }

  // A connection got a session (after admission and the connect stage).
  void connection_accepted();
  // A connection was refused before or at the greeting.
  void connection_refused();
  // Any refusal with its stage and rule (the REJECT log line's): counted in
  // metrics; in the statistics when it is a decision about mail or client,
  // not a protocol slip (syntax, sequence). `reply` tells 4xx from 5xx.
  void refused(std::string_view stage, std::string_view rule, std::string_view reply,
               std::string_view client, std::string_view sender_domain, bool in_statistics = true);
  // The end of a transaction whose message was read.
  void transaction(transaction_end end, std::string_view virus_name = {});
  // A scan's outcome and the time the session waited for it (queue included).
  void scanned(const scan::result& r, std::chrono::steady_clock::duration waited);
  void next_hop_data(std::chrono::steady_clock::duration took, std::string_view reply_code);
  // A session got a next-hop connection: a parked one, or a new one.
  void next_hop_connection(bool reused) { (reused ? next_hop_reused_ : next_hop_opened_).inc(); }
  void dnsbl_scored(std::chrono::steady_clock::duration took);

 private:
  ops::family<ops::counter>& connections_;
  ops::family<ops::counter>& refusals_;
  ops::family<ops::counter>& transactions_;
  ops::counter& viruses_;
  ops::family<ops::histogram>& scan_seconds_;
  ops::histogram& next_hop_seconds_;
  ops::family<ops::counter>& next_hop_replies_;
  ops::family<ops::counter>& next_hop_connections_;
  ops::histogram& dnsbl_seconds_;
  // Series of fixed labels, looked up once (a family's lookup takes its mutex;
  // these are counted for every connection and message). Exported from the
  // start at 0, as Prometheus advises for known label values.
  ops::counter &accepted_, &refused_connections_;
  std::array<ops::counter*, 6> transactions_by_end_{};  // by transaction_end
  ops::counter &next_hop_2xx_, &next_hop_4xx_, &next_hop_5xx_, &next_hop_local_;
  ops::counter &next_hop_opened_, &next_hop_reused_;
  std::shared_ptr<ops::stats_recorder> stats_;
};

}  // namespace mxguard::guard
