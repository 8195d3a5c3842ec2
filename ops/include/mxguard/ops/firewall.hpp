// mxguard::ops firewall feeders, the pure half: block entries, the planner that
// turns "what the blocklist wants" into "what to change in the kernel", and the
// batch builders that print those changes as nft / ipset / file / argv text.
//
// Nothing here does I/O or reads a clock; `now` is passed in. The half that runs
// programs and owns a thread is firewall_feeder.hpp.
//
// Trust boundary. Entries come from the blocklist, which auto-block rules fill
// from client behaviour, so every field is treated as hostile:
//   - prefixes are printed from the parsed ip_prefix, never copied from text;
//   - set, table, chain names match ^[A-Za-z_][A-Za-z0-9_.-]{0,31}$ and are
//     checked when a spec is built (std::invalid_argument), not when printing;
//   - reasons and rules never enter nft or ipset text at all; the file feeder
//     writes them in a comment and the exec hook as one argv element, both
//     through `sanitize_text` (printable ASCII, no quotes, backslashes or
//     newlines, truncated);
//   - a /0 prefix, and any prefix shorter than the configured minimum (default
//     /8 for IPv4, /16 for IPv6), is refused by the planner and counted: one bad
//     rule must not firewall off the Internet, or the administrator.
//
// nftables layout (chosen): one table holding one set per address family,
// `type ipv4_addr` / `type ipv6_addr`, `flags interval,timeout`. The spec is
// "family table set"; for family `inet` the IPv6 set is named `set6` unless
// configured, for `ip` there is only the IPv4 set and for `ip6` only the IPv6
// set (entries of the other family are refused and counted). Interval sets
// refuse overlapping elements, so the planner leaves out an entry covered by
// another one of the same family (it comes back when the cover goes).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mxguard/net.hpp"

namespace mxguard::ops {

using sys_clock = std::chrono::system_clock;

struct block_entry {
  ip_prefix prefix;
  std::string reason;
  std::string rule;
  sys_clock::time_point created, expires;  // expires == time_point::max(): permanent
  friend bool operator==(const block_entry&, const block_entry&) = default;
};

// An entry as it goes into the kernel: `timeout` is what the element is given
// there (zero: no timeout, i.e. a permanent entry), possibly capped below the
// entry's remaining time.
struct timed_entry {
  block_entry entry;
  std::chrono::seconds timeout{0};
  friend bool operator==(const timed_entry&, const timed_entry&) = default;
};

// One batch of changes for one feeder. Removes come before adds in every
// builder, so an element can be refreshed (removed and re-added) and a cover can
// replace what it covers inside one transaction.
struct batch_plan {
  // Replace the whole set with `effective` (start-up reconcile, or recovery
  // after a failed batch left the kernel state unknown).
  bool full = false;
  std::vector<block_entry> removes;
  std::vector<timed_entry> adds;
  // Present before and after, with a new timeout (refresh before the kernel cap
  // runs out, or the ban was extended).
  std::vector<timed_entry> updates;
  // Everything the feeder's target holds after this batch, sorted by prefix.
  std::vector<timed_entry> effective;
  std::size_t evicted = 0;  // left out because of maxelem
  std::size_t refused = 0;  // /0, too short, or a family the target cannot hold

  bool has_changes() const { return full || !removes.empty() || !adds.empty() || !updates.empty(); }
};

struct feeder_limits {
  // Longest timeout the target accepts; longer bans are written with this and
  // refreshed `refresh_margin` before it runs out. Zero: no cap.
  std::chrono::seconds max_timeout{0};
  std::chrono::seconds refresh_margin{3600};
  // Per address family; zero: unlimited. Above it the entries closest to expiry
  // are left out (a permanent entry is the last to go).
  std::size_t maxelem = 0;
  // Leave out entries covered by another of the same family (nft interval sets
  // refuse overlaps; ipset hash:net and files do not care).
  bool collapse_covered = false;
  bool accept_v4 = true;
  bool accept_v6 = true;
  unsigned min_v4_length = 8;
  unsigned min_v6_length = 16;
};

// Throws std::invalid_argument naming the problem when `limits` are inconsistent
// (a refresh margin not below the cap).
void validate(const feeder_limits& limits);

// What the blocklist wants (desired) against what the feeder has put in
// (installed). Not thread-safe: the feeder_runner's thread owns it.
class feeder_state {
 public:
  explicit feeder_state(feeder_limits limits);

  void upsert(block_entry e);
  void erase(const ip_prefix& p);
  // Replaces the desired set; the next plan is a full one.
  void reset(std::vector<block_entry> entries);
  // The next plan is a full one (the target's state is unknown).
  void force_full() { full_ = true; }

  // Drops expired desired entries and computes the changes due at `now`.
  batch_plan plan(sys_clock::time_point now);
  // Records that `p`, the result of the latest `plan()`, is now in the target.
  void commit(const batch_plan& p);
  // When the next plan would have something to do without any new input (an
  // expiry, a refresh), or time_point::max().
  sys_clock::time_point next_due() const { return next_due_; }

  std::size_t desired_size() const { return desired_.size(); }
  std::size_t installed_size() const { return installed_.size(); }
  const feeder_limits& limits() const { return limits_; }

 private:
  struct installed_entry {
    block_entry entry;
    sys_clock::time_point kernel_expires;  // max(): no timeout in the kernel
  };
  std::chrono::seconds timeout_for(const block_entry& e, sys_clock::time_point now) const;

  feeder_limits limits_;
  std::map<ip_prefix, block_entry> desired_;
  std::map<ip_prefix, installed_entry> installed_;
  // Kernel expiry of each `effective` element of the latest plan, for commit.
  std::vector<sys_clock::time_point> pending_kernel_expires_;
  bool full_ = true;
  sys_clock::time_point next_due_ = sys_clock::time_point::max();
};

// True when `name` may be used as an nft table/set/chain or ipset name.
bool valid_object_name(std::string_view name);
// Printable ASCII without quotes, backslashes or control bytes, at most `max`
// bytes; anything else becomes '_'. For reasons and rule names in comments/argv.
std::string sanitize_text(std::string_view text, std::size_t max = 200);

// ---- nftables ----

struct nft_set_spec {
  std::string family;  // ip, ip6 or inet
  std::string table;
  std::string set4;  // empty when the family is ip6
  std::string set6;  // empty when the family is ip
  // Optional: a base chain in the same table (hook input, priority filter - 10)
  // that drops traffic from the sets' addresses; rebuilt on every full batch.
  std::string drop_chain;

  // "inet mxguard blocked" [+ an IPv6 set name]; throws std::invalid_argument.
  static nft_set_spec parse(std::string_view spec, std::string_view set6 = {},
                            std::string_view drop_chain = {});
};

// The text of one `nft -f -` transaction applying `plan`.
std::string build_nft_batch(const nft_set_spec& spec, const batch_plan& plan);

// Limits matching an nft spec (families it can hold, interval overlap rule).
feeder_limits nft_limits(const nft_set_spec& spec, std::chrono::seconds max_timeout);

// ---- ipset ----

// ipset's own ceiling for a timeout (seconds); longer values are a syntax error.
inline constexpr std::chrono::seconds ipset_max_timeout{2147483};

struct ipset_spec {
  std::string set4;  // empty: no IPv4 set
  std::string set6;  // empty: no IPv6 set
  std::size_t maxelem = 65536;
  std::size_t hashsize = 1024;

  // Names are checked and must leave room for the ".new" swap suffix (ipset
  // names are at most 31 bytes); throws std::invalid_argument.
  static ipset_spec make(std::string_view set4, std::string_view set6, std::size_t maxelem);
};

// The `ipset restore` text for `plan`. A full plan fills a ".new" set and swaps
// it in, so a rule referring to the set never sees it empty or half filled.
// `existing` lists the sets present now (`ipset list -n`): a live set is
// created only when missing, because `create -exist` fails on a set that
// exists with other parameters (maxelem changed in the configuration), and a
// ".new" left over from a crash is destroyed first for the same reason.
std::string build_ipset_restore(const ipset_spec& spec, const batch_plan& plan,
                                const std::vector<std::string>& existing);

feeder_limits ipset_limits(const ipset_spec& spec, std::chrono::seconds max_timeout);

// ---- plain file ----

enum class file_format { cidr_list, iptables_restore };

struct file_spec {
  std::string path;
  file_format format = file_format::cidr_list;
  bool v4 = true, v6 = true;
  std::string chain = "mxguard-blocked";  // iptables_restore only
  std::string target = "DROP";            // DROP or REJECT

  // For iptables_restore exactly one family (iptables-restore or
  // ip6tables-restore reads it); throws std::invalid_argument.
  static file_spec make(std::string path, file_format format, bool v4, bool v6,
                        std::string_view chain = "mxguard-blocked",
                        std::string_view target = "DROP");
};

// The whole file for `effective` (sorted as given). cidr_list:
//   192.0.2.0/24 # expires=2024-06-01T12:00:00Z rule=flood reason=...
// iptables_restore: a *filter fragment for `iptables-restore --noflush`.
std::string build_file(const file_spec& spec, const std::vector<timed_entry>& effective);

// ---- exec hook ----

enum class exec_action { add, del };

// {program, "add"|"del", CIDR, EXPIRES_UNIX (0: permanent), REASON, RULE}.
std::vector<std::string> build_exec_argv(const std::string& program, exec_action action,
                                         const block_entry& e);

}  // namespace mxguard::ops
