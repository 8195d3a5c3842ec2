// mxguard configuration: one TOML file, validated at start, then frozen.
//
// `load_config` parses and validates everything (unknown keys and bad values
// are errors naming file, line and key) and returns an immutable snapshot. The
// daemon holds a `std::shared_ptr<const config>`; SIGHUP builds a new one and
// swaps it in, so a session sees one consistent configuration for its life.
//
// Every scalar setting is described once in `settings_table()` (name, type,
// default, bounds, help): the parser, `--check-config` output and the README
// reference all come from that table.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <map>
#include <set>

#include "access_list.hpp"
#include "batv.hpp"
#include "blocklist.hpp"
#include "header_rules.hpp"
#include "mxguard/dnsbl/dnsbl.hpp"
#include "mxguard/net.hpp"
#include "mxguard/ratelimit/ratelimit.hpp"
#include "mxguard/ratelimit/redis_store.hpp"
#include "mxguard/scan/content.hpp"
#include "mxguard/scan/scanner.hpp"
#include "routes.hpp"
#include "smtp_syntax.hpp"

namespace mxguard::guard {

using duration = std::chrono::milliseconds;

struct server_settings {
  std::vector<std::string> listen;
  std::string hostname;
  std::int64_t workers = 0;
  std::int64_t max_sessions = 0;
  std::int64_t max_sessions_per_ip = 0;
  std::int64_t ipv6_prefix = 0;
  std::int64_t max_message_size = 0;
  std::int64_t max_recipients = 0;
  std::int64_t max_line_length = 0;
  std::int64_t max_commands = 0;
  std::int64_t max_errors = 0;
  std::int64_t soft_error_delay_after = 0;
  std::int64_t max_buffered_bytes = 0;
  duration command_timeout{};
  duration data_timeout{};
  duration session_timeout{};
  duration error_delay{};
  duration greet_pause{};
  duration refused_session_time{};
  std::string banner;
  bool add_received_header = true;
  std::vector<std::string> proxy_protocol_from;
  duration proxy_protocol_timeout{};
  std::string user;
};

struct tls_settings {
  std::string cert;
  std::string key;
  duration handshake_timeout{};
  bool relay_starttls = true;
};

struct relay_settings {
  std::vector<std::string> domains;
  std::vector<std::string> trusted_networks;
  duration connect_timeout{};
  duration command_timeout{};
  duration data_timeout{};
  std::string helo_name;
  duration connection_cache_time{};
  duration connection_reuse_time{};
  std::int64_t connection_cache_size = 0;
};

struct access_settings {
  std::vector<std::string> rules;
  std::string file;
};

struct header_rule_settings {
  std::vector<std::string> rules;
  std::int64_t max_header_size = 0;
  std::int64_t max_header_lines = 0;
  std::vector<std::string> body_rules;
  std::int64_t body_size_limit = 0;
};

struct scan_settings {
  std::string signatures;
  std::int64_t workers = 0;
  std::int64_t queue_size = 0;
  duration timeout{0};
  std::string virus_action, error_action, encrypted_action, limits_action, overload_action;
  std::int64_t max_file_size = 0, max_scan_size = 0, max_recursion = 0, max_files = 0;
  duration max_scan_time{0};
  std::int64_t temp_file_above = 0;
  std::string temp_dir;
  duration reload_check_interval{0};
};

struct blocklist_settings {
  duration sync_interval{0};
  std::string import_file;
  std::vector<std::string> auto_block;
  std::vector<std::string> never_block;
  duration ban_time{0}, max_ban_time{0};
  std::int64_t max_entries = 0;
  std::string reply;
  std::string nft_set, nft_set6, nft_drop_chain;
  std::string ipset_set, ipset_set6;
  std::int64_t ipset_maxelem = 0;
  std::string file, file6, file_format, exec;
};

struct dnsbl_zone_settings {
  std::vector<std::string> listen;
  std::string zone;
  duration ttl{0};
  std::string txt;
};

struct metrics_settings {
  std::string listen;
};

struct stats_settings {
  std::string store;
  std::string file;
  duration flush_interval{0};
  std::int64_t retention_days = 0;
  std::int64_t max_names_per_day = 0;
};

struct control_settings {
  std::string socket;
  std::string group;
};

struct score_settings {
  bool enabled = false;
  double tag_level = 0, tag2_level = 0, kill_level = 0;
  std::string subject_tag;
};

struct log_settings {
  std::string format;
  std::string file;
  bool syslog = false;
};

struct dnsbl_settings {
  std::vector<std::string> resolvers;
  std::vector<std::string> sites;
  std::vector<std::string> rhsbl_sites;
  std::int64_t threshold = 0;
  std::int64_t allowlist_threshold = 0;
  duration timeout{};
  duration query_timeout{};
  std::int64_t attempts = 0;
  duration min_ttl{};
  duration max_ttl{};
  std::int64_t cache_size = 0;
  std::string action;
  std::string reply;
  std::string rhsbl_reply;
  bool reply_txt = false;
  duration health_interval{};
  std::vector<std::string> keys;
  friend bool operator==(const dnsbl_settings&, const dnsbl_settings&) = default;
};

struct bounce_settings {
  std::string double_bounce;
  std::vector<std::string> double_bounce_addresses;
};

struct batv_settings {
  std::vector<std::string> domains;
  std::vector<std::string> keys;
  std::int64_t sign_key = 0;
  std::int64_t validity_days = 0;
  std::vector<std::string> exempt_recipients;
  std::vector<std::string> exempt_clients;
};

struct limits_settings {
  std::string connections_per_ip;
  std::string messages_per_ip;
  std::string recipients_per_ip;
  std::string null_sender_per_ip;
  std::string messages_per_sender;
  std::string refused_recipients_per_ip;
  std::int64_t concurrent_per_ip = 0;
  duration lease_ttl{};
  std::int64_t ipv4_prefix = 0;
  std::int64_t ipv6_prefix = 0;
  std::vector<std::string> per_prefix;
  std::int64_t max_keys = 0;
  duration pass_cache_ttl{0};
};

struct redis_config {
  std::string url;
  std::string failure;
  duration timeout{};
  std::string prefix;
  std::vector<std::string> sentinels;
  std::string sentinel_master;
  std::string sentinel_password;
  friend bool operator==(const redis_config&, const redis_config&) = default;
};

struct greylist_settings {
  bool enabled = false;
  duration delay{};
  duration retry_window{};
  duration lifetime{};
  std::int64_t auto_allowlist_after = 0;
  std::vector<std::string> allowlist_networks;
  std::vector<std::string> allowlist_sender_domains;
  std::int64_t ipv4_prefix = 0;
  std::int64_t ipv6_prefix = 0;
  bool fcrdns = true;
};

// Plain values straight from the file, defaults filled in.
struct settings {
  server_settings server;
  tls_settings tls;
  relay_settings relay;
  access_settings access;
  header_rule_settings header_rules;
  log_settings log;
  dnsbl_settings dnsbl;
  bounce_settings bounce;
  batv_settings batv;
  limits_settings limits;
  greylist_settings greylist;
  redis_config redis;
  scan_settings scan;
  score_settings score;
  blocklist_settings blocklist;
  dnsbl_zone_settings dnsbl_zone;
  metrics_settings metrics;
  stats_settings stats;
  control_settings control;
};

// The frozen, validated configuration: settings plus what was compiled from
// them (access list, header rules, routes, networks).
struct config {
  std::string source;  // the file it came from
  settings values;
  access_list access;
  header_rule_set header_rules;
  header_rule_set body_rules;
  route_table routes;
  relay_domain_set relay_domains;
  std::vector<ip_prefix> trusted_networks;
  std::vector<ip_prefix> proxy_networks;
  // [dnsbl] compiled: ready to build a dnsbl::engine from. `dnsbl_enabled`
  // when any site is configured.
  dnsbl::settings dnsbl;
  bool dnsbl_enabled = false;
  bool dnsbl_at_rcpt = false;

  // [bounce], [batv], [recipients] compiled.
  bool discard_double_bounces = true;
  std::set<std::string> double_bounce_addresses;  // lower case
  batv_keys batv;
  relay_domain_set batv_domains;
  std::set<std::string> batv_exempt_recipients;  // lower case: address, or @domain
  std::vector<ip_prefix> batv_exempt_clients;
  // Valid local parts per domain (lower case), from [recipients] files.
  std::map<std::string, std::set<std::string>> recipient_lists;
  std::map<std::string, std::string> recipient_files;  // domain → file, for describe

  // Greylisting asks for clients' names: the DNS client runs without lists too.
  bool client_names_wanted() const { return values.greylist.enabled && values.greylist.fcrdns; }
  // [limits], [greylist] compiled.
  struct compiled_limits {
    ratelimit::rate connections_per_ip, messages_per_ip, recipients_per_ip, null_sender_per_ip,
        messages_per_sender, refused_recipients_per_ip;
    std::int64_t concurrent_per_ip = 0;
    // limits.per_prefix: the same counters once more for the client's wider
    // network ("connections ipv4/24 150/1m").
    enum class counter { connections, messages, recipients, null_sender, refused_recipients };
    struct prefix_limit {
      counter what = counter::connections;
      bool ipv6 = false;
      unsigned length = 0;
      ratelimit::rate limit;
      std::string name;  // "connections ipv4/24": in replies' rule, logs, metrics
    };
    std::vector<prefix_limit> per_prefix;
    // Every key of one client carries its network at the shortest prefix any
    // of its counters uses, as Redis Cluster hash tag: one script, one slot.
    unsigned tag_ipv4_prefix = 32, tag_ipv6_prefix = 128;
    bool counts(counter what) const {
      for (const auto& p : per_prefix)
        if (p.what == what) return true;
      return false;
    }
    bool any() const {
      return concurrent_per_ip > 0 || connections_per_ip.enabled() || messages_per_ip.enabled() ||
             recipients_per_ip.enabled() || null_sender_per_ip.enabled() ||
             messages_per_sender.enabled() || refused_recipients_per_ip.enabled() ||
             !per_prefix.empty();
    }
  } limits;
  ratelimit::greylist_policy greylist;
  std::optional<ratelimit::redis_settings> redis;  // set when redis.url or redis.sentinels is
  std::vector<ip_prefix> greylist_allowlist_networks;
  relay_domain_set greylist_allowlist_senders;

  // [blocklist] compiled (auto-block rules, never-block networks).
  std::shared_ptr<const blocklist_policy> blocklist;

  // [scan], [score] compiled. `signatures` is set when scanning is on.
  scan::content_policy content;
  std::optional<scan::signature_source> signatures;
  scan::pool_settings scan_pool;

  bool is_double_bounce_address(const mailbox& rcpt) const;
  // nullptr when the domain has no list (the next hop decides).
  const std::set<std::string>* recipients_of(std::string_view domain) const;

  bool is_trusted(const boost::asio::ip::address& client) const;
};

class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads, validates and compiles FILE. Throws config_error with
// "FILE:LINE: key: problem".
std::shared_ptr<const config> load_config(const std::string& file);
// The same from text already in memory (tests, fuzzing); `name` is used in messages.
std::shared_ptr<const config> parse_config(std::string_view text, const std::string& name);

// The effective configuration as TOML, every key with its value, defaults marked.
std::string describe(const config& cfg);

// --- the settings table ------------------------------------------------------

enum class value_kind { integer, size, duration, boolean, string, string_list, number };
using setting_value =
    std::variant<std::int64_t, duration, bool, std::string, std::vector<std::string>, double>;

struct setting_spec {
  std::string_view section;
  std::string_view name;
  value_kind kind;
  std::string_view default_text;  // TOML literal; parsed like a file value
  std::int64_t min;               // bounds for integer/size/duration (ms)
  std::int64_t max;
  std::string_view help;
  void (*set)(settings&, setting_value);
  setting_value (*get)(const settings&);
};

std::span<const setting_spec> settings_table();

// Settings read once at start (sockets, threads, the state store, the
// firewall feeders, ...): a reload cannot change them.
bool restart_only(const setting_spec& spec);
// The restart-only keys ("section.name") whose values differ.
std::vector<std::string> restart_only_changes(const settings& before, const settings& after);

// Markdown table of every setting, for the README (`mxguard --print-settings-table`).
std::string settings_reference_markdown();

// Parses "250ms", "30s", "5m", "4h", "36d" (or a bare number of seconds).
std::optional<duration> parse_duration(std::string_view text);
// Parses 26214400, "25M", "512k", "1G" (binary multiples).
std::optional<std::int64_t> parse_size(std::string_view text);
std::string format_duration(duration d);

}  // namespace mxguard::guard
