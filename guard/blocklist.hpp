// The blocklist as the guard uses it: an in-memory copy of the entries the
// state store holds (shared by a gateway pair through Redis), read at
// admission without a lock or a round trip; the auto-block rules that add to
// it; and the firewall feeders and the DNS zone that publish it.
//
// One sync loop (on the control thread) polls the store's version every
// blocklist.sync_interval: a block made on A is refused on B within that.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "mxguard/net.hpp"
#include "mxguard/ops/firewall_feeder.hpp"
#include "mxguard/ratelimit/ratelimit.hpp"

namespace mxguard::guard {

// "PATTERN COUNT/WINDOW [BAN]": PATTERN is an event name (a refusal's rule,
// "message" for a relayed message), `*` at its end matches any rest.
struct auto_block_rule {
  std::string pattern;
  ratelimit::rate limit;
  std::chrono::milliseconds ban{0};  // 0: blocklist.ban_time
  std::string source;
  static std::optional<auto_block_rule> parse(std::string_view text, std::string& error);
  bool matches(std::string_view event) const;
};

struct blocklist_policy {
  std::vector<auto_block_rule> rules;
  std::vector<ip_prefix> never_block;
  std::chrono::milliseconds ban_time{3600000};
  std::chrono::milliseconds max_ban_time{30ll * 24 * 3600 * 1000};
  unsigned ipv6_prefix = 64;
  std::size_t max_entries = 50000;  // auto-block stops adding at this size
};

class blocklist {
 public:
  struct hit {
    std::string prefix, reason, rule;
    std::int64_t expires_ms = 0;
  };

  // The entry covering `client`, if any and not expired. Lock-free.
  std::optional<hit> find(const boost::asio::ip::address& client) const;
  std::vector<ratelimit::block_record> entries() const;
  std::size_t size() const;

  // Feeders get every change; the first sync reconciles them.
  void add_feeder(std::unique_ptr<ops::feeder_runner> feeder);
  const std::vector<std::unique_ptr<ops::feeder_runner>>& feeders() const { return feeders_; }

  // Reads the store's list when its version moved; installs it and tells the
  // feeders what changed. Runs on the control thread.
  boost::asio::awaitable<void> sync(ratelimit::state_store& store);
  boost::asio::awaitable<void> sync_loop(std::shared_ptr<ratelimit::state_store> store,
                                         std::chrono::milliseconds interval);

  // Manual and automatic blocks go to the store, then through sync().
  boost::asio::awaitable<bool> block(ratelimit::state_store& store, ratelimit::block_record r);
  boost::asio::awaitable<bool> unblock(ratelimit::state_store& store, std::string prefix);

  // An event a session saw (thread-safe, returns at once): counted against
  // the auto-block rules that match; a client past one is blocked. `exempt`
  // clients (allowlisted, trusted) are never counted.
  void event(std::string_view name, const boost::asio::ip::address& client, bool exempt);
  // Where events are counted and blocks made (the daemon's control thread).
  void attach(boost::asio::io_context& control, std::shared_ptr<ratelimit::state_store> store,
              std::shared_ptr<const blocklist_policy> policy);
  void set_policy(std::shared_ptr<const blocklist_policy> policy);

  std::uint64_t auto_blocks() const { return auto_blocks_.load(std::memory_order_relaxed); }
  // Auto-blocks not made because the list was at blocklist.max_entries.
  std::uint64_t auto_blocks_skipped() const {
    return auto_blocks_skipped_.load(std::memory_order_relaxed);
  }
  std::int64_t version() const { return version_.load(std::memory_order_relaxed); }

 private:
  struct snapshot {
    std::vector<ratelimit::block_record> records;
    std::int64_t earliest_expiry_ms = 0;  // of the records; 0 = none expires
    // Per prefix length present, the prefixes of that length → record index.
    std::map<unsigned, std::unordered_map<ip_prefix, std::size_t, ip_prefix_hash>, std::greater<>>
        v4, v6;
  };
  boost::asio::awaitable<void> count(std::string name, boost::asio::ip::address client,
                                     std::shared_ptr<const blocklist_policy> policy);

  std::atomic<std::shared_ptr<const snapshot>> snapshot_{std::make_shared<const snapshot>()};
  std::atomic<std::int64_t> version_{-1};
  std::vector<std::unique_ptr<ops::feeder_runner>> feeders_;
  bool feeders_reconciled_ = false;

  boost::asio::io_context* control_ = nullptr;
  std::shared_ptr<ratelimit::state_store> store_;
  std::atomic<std::shared_ptr<const blocklist_policy>> policy_;
  // Prefixes an auto-block is on its way for (the control thread only): the
  // events of a burst that counted past the limit meanwhile add nothing, not
  // one doubled ban each.
  std::set<std::string> blocking_;
  std::mutex offences_mutex_;
  std::unordered_map<std::string, std::int64_t>
      offences_;  // prefix → times blocked (this instance)
  std::atomic<std::uint64_t> auto_blocks_{0};
  std::atomic<std::uint64_t> auto_blocks_skipped_{0};
  bool full_logged_ = false;  // control thread only
};

// A block_record as the feeders want it; nullopt for a prefix that does not parse.
std::optional<ops::block_entry> to_block_entry(const ratelimit::block_record& r);

}  // namespace mxguard::guard
