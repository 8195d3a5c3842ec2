#include "config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "mxguard/units.hpp"
#include "smtp_syntax.hpp"
#include "text.hpp"

namespace mxguard::guard {

namespace {

// Sections this version knows; [[route]] is handled apart from the table.
const std::set<std::string_view> known_sections{
    "server",  "tls",   "relay",   "access",    "header_rules", "log",  "dnsbl",
    "bounce",  "batv",  "limits",  "greylist",  "redis",        "scan", "score",
    "metrics", "stats", "control", "blocklist", "dnsbl_zone"};

std::string where(const std::string& file, const toml::source_region& src) {
  return fmt::format("{}:{}", file, src.begin.line);
}

[[noreturn]] void fail(const std::string& file, const toml::node& node, std::string_view key,
                       std::string_view problem) {
  throw config_error(fmt::format("{}: {}: {}", where(file, node.source()), key, problem));
}

std::string kind_name(value_kind k) {
  switch (k) {
    case value_kind::integer:
      return "an integer";
    case value_kind::size:
      return "a size (bytes, or \"25M\")";
    case value_kind::duration:
      return "a duration (\"250ms\", \"30s\", \"5m\", \"4h\", \"7d\")";
    case value_kind::boolean:
      return "true or false";
    case value_kind::string:
      return "a string";
    case value_kind::string_list:
      return "a list of strings";
    case value_kind::number:
      return "a number";
  }
  return "?";
}

// Converts one TOML node to the row's kind, checking bounds; throws with the
// file, line and key on any problem.
setting_value convert(const setting_spec& spec, const toml::node& node, const std::string& file,
                      std::string_view full_key) {
  auto wrong_type = [&]() -> setting_value {
    fail(file, node, full_key, "must be " + kind_name(spec.kind));
  };
  auto check_bounds = [&](std::int64_t v, std::string_view shown) {
    if (v < spec.min || v > spec.max)
      fail(file, node, full_key,
           fmt::format("{} is out of range [{}, {}]", shown,
                       spec.kind == value_kind::duration ? format_duration(duration(spec.min))
                                                         : std::to_string(spec.min),
                       spec.kind == value_kind::duration ? format_duration(duration(spec.max))
                                                         : std::to_string(spec.max)));
  };
  switch (spec.kind) {
    case value_kind::integer: {
      auto v = node.value_exact<std::int64_t>();
      if (!v) return wrong_type();
      check_bounds(*v, std::to_string(*v));
      return *v;
    }
    case value_kind::size: {
      std::optional<std::int64_t> v = node.value_exact<std::int64_t>();
      if (!v) {
        auto s = node.value_exact<std::string>();
        if (!s) return wrong_type();
        v = parse_size(*s);
        if (!v) return wrong_type();
      }
      check_bounds(*v, std::to_string(*v));
      return *v;
    }
    case value_kind::duration: {
      std::optional<duration> d;
      if (auto i = node.value_exact<std::int64_t>()) {
        if (*i >= 0 && *i < (1ll << 40)) d = duration(*i * 1000);
      } else if (auto s = node.value_exact<std::string>()) {
        d = parse_duration(*s);
      }
      if (!d) return wrong_type();
      check_bounds(d->count(), format_duration(*d));
      return *d;
    }
    case value_kind::boolean: {
      auto v = node.value_exact<bool>();
      if (!v) return wrong_type();
      return *v;
    }
    case value_kind::string: {
      auto v = node.value_exact<std::string>();
      if (!v) return wrong_type();
      return *v;
    }
    case value_kind::number: {
      // Integers are numbers too: `kill_level = 10` must not be an error.
      std::optional<double> v = node.value_exact<double>();
      if (!v) {
        if (auto i = node.value_exact<std::int64_t>()) v = static_cast<double>(*i);
      }
      if (!v || !std::isfinite(*v)) return wrong_type();
      if (*v < static_cast<double>(spec.min) || *v > static_cast<double>(spec.max))
        fail(file, node, full_key,
             fmt::format("{} is out of range [{}, {}]", *v, spec.min, spec.max));
      return *v;
    }
    case value_kind::string_list: {
      auto* arr = node.as_array();
      if (!arr) return wrong_type();
      std::vector<std::string> out;
      for (const auto& item : *arr) {
        auto v = item.value_exact<std::string>();
        if (!v) fail(file, item, full_key, "every element must be a string");
        out.push_back(*v);
      }
      return out;
    }
  }
  return wrong_type();
}

const setting_spec* find_spec(std::string_view section, std::string_view name) {
  for (const auto& spec : settings_table())
    if (spec.section == section && spec.name == name) return &spec;
  return nullptr;
}

settings default_settings() {
  settings s;
  for (const auto& spec : settings_table()) {
    auto doc = toml::parse(fmt::format("v = {}", spec.default_text));
    spec.set(s, convert(spec, *doc.get("v"), "<defaults>", spec.name));
  }
  return s;
}

std::string value_text(const setting_value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::int64_t>)
          return std::to_string(x);
        else if constexpr (std::is_same_v<T, duration>)
          return "\"" + format_duration(x) + "\"";
        else if constexpr (std::is_same_v<T, bool>)
          return x ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>)
          return fmt::format("{}", x);
        else if constexpr (std::is_same_v<T, std::string>) {
          std::ostringstream out;
          out << toml::value<std::string>(x);
          return out.str();
        } else {
          std::string out = "[";
          for (std::size_t i = 0; i < x.size(); ++i) {
            std::ostringstream one;
            one << toml::value<std::string>(x[i]);
            out += (i ? ", " : "") + one.str();
          }
          return out + "]";
        }
      },
      v);
}

template <typename NodeFor>
void compile_content(config& cfg, NodeFor&& node_for) {
  const auto& file = cfg.source;
  const auto& sc = cfg.values.scan;
  auto action_of = [&](std::string_view key, const std::string& text,
                       std::initializer_list<scan::disposition> allowed, std::string_view shown) {
    auto d = scan::parse_disposition(text);
    if (!d || std::find(allowed.begin(), allowed.end(), *d) == allowed.end())
      fail(file, node_for("scan", key), fmt::format("scan.{}", key),
           fmt::format("'{}' is not one of {}", text, shown));
    return *d;
  };
  using scan::disposition;
  auto& c = cfg.content;
  c.on_virus = action_of(
      "virus_action", sc.virus_action,
      {disposition::reject, disposition::discard, disposition::pass, disposition::tempfail},
      "reject, discard, pass, tempfail");
  c.on_error = action_of("error_action", sc.error_action,
                         {disposition::reject, disposition::tempfail, disposition::pass},
                         "tempfail, reject, pass");
  c.on_encrypted = action_of("encrypted_action", sc.encrypted_action,
                             {disposition::reject, disposition::tempfail, disposition::pass},
                             "pass, reject, tempfail");
  c.on_over_limit = action_of("limits_action", sc.limits_action,
                              {disposition::reject, disposition::tempfail, disposition::pass},
                              "pass, reject, tempfail");
  c.on_overload = action_of("overload_action", sc.overload_action,
                            {disposition::tempfail, disposition::pass}, "tempfail, pass");
  c.scanning = !sc.signatures.empty();
  if (c.scanning) {
    scan::signature_source src;
    src.directory = sc.signatures;
    src.limits.max_file_size = static_cast<std::uint64_t>(sc.max_file_size);
    src.limits.max_scan_size = static_cast<std::uint64_t>(sc.max_scan_size);
    src.limits.max_recursion = static_cast<std::uint32_t>(sc.max_recursion);
    src.limits.max_files = static_cast<std::uint32_t>(sc.max_files);
    src.limits.max_scan_time = sc.max_scan_time;
    src.limits.temp_dir = sc.temp_dir;
    src.check_interval = sc.reload_check_interval;
    cfg.signatures = std::move(src);
  }
  cfg.scan_pool.workers = static_cast<unsigned>(sc.workers);
  cfg.scan_pool.queue_size = static_cast<std::size_t>(sc.queue_size);
  cfg.scan_pool.timeout = sc.timeout;
  cfg.scan_pool.temp_file_above = static_cast<std::uint64_t>(sc.temp_file_above);
  cfg.scan_pool.temp_dir = sc.temp_dir;

  const auto& sv = cfg.values.score;
  c.scoring = sv.enabled;
  c.tag_level = sv.tag_level;
  c.tag2_level = sv.tag2_level;
  c.kill_level = sv.kill_level;
  c.subject_tag = sv.subject_tag;
  if (!printable_ascii(sv.subject_tag))
    fail(file, node_for("score", "subject_tag"), "score.subject_tag", "must be printable ASCII");
  if (sv.enabled && !(sv.tag_level <= sv.tag2_level && sv.tag2_level <= sv.kill_level))
    fail(file, node_for("score", "tag2_level"), "score",
         "levels must satisfy tag_level <= tag2_level <= kill_level");
}

template <typename NodeFor>
void compile_dnsbl(config& cfg, NodeFor&& node_for) {
  const auto& file = cfg.source;
  const auto& d = cfg.values.dnsbl;
  auto& out = cfg.dnsbl;
  auto parse_sites = [&](const std::vector<std::string>& specs, std::string_view key,
                         std::vector<dnsbl::site>& sites) {
    for (std::size_t i = 0; i < specs.size(); ++i) {
      std::string error;
      auto site = dnsbl::parse_site(specs[i], error);
      if (!site) fail(file, node_for("dnsbl", key), fmt::format("dnsbl.{}[{}]", key, i), error);
      sites.push_back(std::move(*site));
    }
  };
  parse_sites(d.sites, "sites", out.sites);
  parse_sites(d.rhsbl_sites, "rhsbl_sites", out.rhsbl_sites);
  for (std::size_t i = 0; i < d.keys.size(); ++i) {
    auto eq = d.keys[i].find('=');
    std::string zone = eq == std::string::npos ? "" : lower_ascii(d.keys[i].substr(0, eq));
    std::string key = eq == std::string::npos ? "" : d.keys[i].substr(eq + 1);
    bool found = false;
    for (auto* list : {&out.sites, &out.rhsbl_sites})
      for (auto& site : *list)
        if (site.domain == zone) {
          site.key = key;
          found = true;
        }
    if (!found || key.empty() || !valid_domain(key))
      fail(file, node_for("dnsbl", "keys"), fmt::format("dnsbl.keys[{}]", i),
           "must be \"zone=KEY\" for a configured site, KEY a DNS label");
  }
  for (const auto& r : d.resolvers) {
    auto hp = parse_host_port(r);
    boost::system::error_code ec;
    boost::asio::ip::address addr;
    if (hp) addr = boost::asio::ip::make_address(hp->host, ec);
    if (!hp || ec)
      fail(file, node_for("dnsbl", "resolvers"), "dnsbl.resolvers",
           "'" + r + "' is not IP:PORT ([v6]:port for IPv6)");
    out.resolvers.servers.emplace_back(addr, hp->port);
  }
  out.resolvers.try_timeout = d.query_timeout;
  out.resolvers.attempts = static_cast<unsigned>(d.attempts);
  out.threshold = static_cast<int>(d.threshold);
  out.allowlist_threshold = static_cast<int>(d.allowlist_threshold);
  out.timeout = d.timeout;
  out.min_ttl = std::chrono::duration_cast<std::chrono::seconds>(d.min_ttl);
  out.max_ttl = std::chrono::duration_cast<std::chrono::seconds>(d.max_ttl);
  if (out.min_ttl > out.max_ttl)
    fail(file, node_for("dnsbl", "min_ttl"), "dnsbl.min_ttl", "is longer than dnsbl.max_ttl");
  out.cache_size = static_cast<std::size_t>(d.cache_size);
  out.fetch_txt = d.reply_txt;
  out.health_interval = d.health_interval;
  if (d.action != "connect" && d.action != "rcpt")
    fail(file, node_for("dnsbl", "action"), "dnsbl.action", "must be \"connect\" or \"rcpt\"");
  for (const auto* reply : {&d.reply, &d.rhsbl_reply}) {
    bool ok = reply->size() > 4 && (reply->starts_with("4") || reply->starts_with("5")) &&
              std::isdigit(static_cast<unsigned char>((*reply)[1])) &&
              std::isdigit(static_cast<unsigned char>((*reply)[2])) && (*reply)[3] == ' ';
    for (char c : *reply) ok = ok && c >= 0x20 && c < 0x7f;
    // Fix: a bad rhsbl_reply was reported as "dnsbl.reply".
    if (!ok)
      fail(file, node_for("dnsbl", reply == &d.reply ? "reply" : "rhsbl_reply"),
           reply == &d.reply ? "dnsbl.reply" : "dnsbl.rhsbl_reply",
           "must be a 4xx or 5xx SMTP reply line of printable ASCII");
  }
  cfg.dnsbl_at_rcpt = d.action == "rcpt";
  cfg.dnsbl_enabled = !out.sites.empty() || !out.rhsbl_sites.empty();
  if ((cfg.dnsbl_enabled || cfg.client_names_wanted()) && out.resolvers.servers.empty()) {
    out.resolvers.servers = dnsbl::system_resolvers();
    if (out.resolvers.servers.empty())
      fail(file, node_for("dnsbl", "resolvers"), "dnsbl.resolvers",
           "no resolvers configured and none in /etc/resolv.conf");
  }
}

std::string lower_text(std::string_view s) {
  return lower_ascii(s);
}

template <typename NodeFor>
void compile_bounce(config& cfg, const toml::table& root, NodeFor&& node_for) {
  const auto& file = cfg.source;
  const auto& b = cfg.values.bounce;
  if (b.double_bounce != "discard" && b.double_bounce != "reject")
    fail(file, node_for("bounce", "double_bounce"), "bounce.double_bounce",
         "must be \"discard\" or \"reject\"");
  cfg.discard_double_bounces = b.double_bounce == "discard";
  for (const auto& a : b.double_bounce_addresses) {
    auto at = a.rfind('@');
    if (at == std::string::npos || at == 0 || !valid_domain(a.substr(at + 1)))
      fail(file, node_for("bounce", "double_bounce_addresses"), "bounce.double_bounce_addresses",
           "'" + a + "' is not local@domain");
    cfg.double_bounce_addresses.insert(lower_text(a));
  }

  const auto& v = cfg.values.batv;
  for (std::size_t i = 0; i < v.keys.size(); ++i) {
    std::string error;
    auto key = parse_batv_key(v.keys[i], error);
    if (!key) fail(file, node_for("batv", "keys"), fmt::format("batv.keys[{}]", i), error);
    cfg.batv.secrets[key->first] = key->second;
  }
  cfg.batv.sign_key = static_cast<int>(v.sign_key);
  cfg.batv.validity_days = static_cast<int>(v.validity_days);
  for (const auto& d : v.domains) {
    if (!valid_domain(d.starts_with('.') ? d.substr(1) : d))
      fail(file, node_for("batv", "domains"), "batv.domains", "'" + d + "' is not a domain");
    cfg.batv_domains.add(d);
  }
  if (!v.domains.empty() && !cfg.batv.secrets.contains(cfg.batv.sign_key))
    fail(file, node_for("batv", "sign_key"), "batv.sign_key",
         fmt::format("key {} is not in batv.keys", cfg.batv.sign_key));
  for (const auto& r : v.exempt_recipients) cfg.batv_exempt_recipients.insert(lower_text(r));
  for (const auto& n : v.exempt_clients) {
    auto p = ip_prefix::parse(n);
    if (!p)
      fail(file, node_for("batv", "exempt_clients"), "batv.exempt_clients",
           "'" + n + "' is not an address or CIDR prefix");
    cfg.batv_exempt_clients.push_back(*p);
  }

  if (auto* node = root.get("recipients")) {
    auto* table = node->as_table();
    if (!table) fail(file, *node, "recipients", "must be a table: \"domain\" = \"/path/file\"");
    for (const auto& [domain_key, path_node] : *table) {
      std::string domain = lower_text(domain_key.str());
      auto key = "recipients." + std::string(domain_key.str());
      auto path = path_node.template value_exact<std::string>();
      if (!valid_domain(domain)) fail(file, path_node, key, "is not a domain");
      if (!path) fail(file, path_node, key, "must be a file path (string)");
      std::ifstream in(*path);
      if (!in) fail(file, path_node, key, "cannot read '" + *path + "'");
      auto& users = cfg.recipient_lists[domain];
      std::string line;
      for (int number = 1; std::getline(in, line); ++number) {
        auto hash = line.find('#');
        if (hash != std::string::npos) line.erase(hash);
        auto start = line.find_first_not_of(" \t\r");
        if (start == std::string::npos) continue;
        auto end = line.find_last_not_of(" \t\r");
        std::string local = lower_text(line.substr(start, end - start + 1));
        // "user" or "user@domain" (the domain must be this one).
        auto at = local.rfind('@');
        if (at != std::string::npos) {
          if (local.substr(at + 1) != domain)
            throw config_error(
                fmt::format("{}:{}: '{}' is not in domain {}", *path, number, local, domain));
          local.erase(at);
        }
        users.insert(local);
      }
      cfg.recipient_files[domain] = *path;
    }
  }
}

// limits.per_prefix entries: "COUNTER FAMILY/LENGTH RATE".
template <typename NodeFor>
void compile_prefix_limits(config& cfg, NodeFor&& node_for) {
  using counter = config::compiled_limits::counter;
  static constexpr std::pair<std::string_view, counter> counters[] = {
      {"connections", counter::connections},
      {"messages", counter::messages},
      {"recipients", counter::recipients},
      {"null_sender", counter::null_sender},
      {"refused_recipients", counter::refused_recipients},
  };
  const auto& l = cfg.values.limits;
  auto& c = cfg.limits;
  c.tag_ipv4_prefix = static_cast<unsigned>(l.ipv4_prefix);
  c.tag_ipv6_prefix = static_cast<unsigned>(l.ipv6_prefix);
  for (const auto& entry : l.per_prefix) {
    auto bad = [&](std::string_view why) {
      fail(cfg.source, node_for("limits", "per_prefix"), "limits.per_prefix",
           fmt::format("'{}': {}", entry, why));
    };
    std::istringstream words(entry);
    std::string what, where, rate_text, extra;
    if (!(words >> what >> where >> rate_text) || (words >> extra))
      bad("expected COUNTER FAMILY/LENGTH N/period, e.g. \"connections ipv4/24 150/1m\"");
    config::compiled_limits::prefix_limit p;
    auto known = std::find_if(std::begin(counters), std::end(counters),
                              [&](const auto& k) { return k.first == what; });
    if (known == std::end(counters))
      bad("the counter must be connections, messages, recipients, null_sender or "
          "refused_recipients");
    p.what = known->second;
    auto slash = where.find('/');
    auto family = where.substr(0, slash);
    if (slash == std::string::npos || (family != "ipv4" && family != "ipv6"))
      bad("the network must be ipv4/LENGTH or ipv6/LENGTH");
    p.ipv6 = family == "ipv6";
    unsigned length = 0;
    auto digits = std::string_view(where).substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), length);
    const unsigned low = p.ipv6 ? 16 : 8, high = p.ipv6 ? 128 : 32;
    if (ec != std::errc() || end != digits.data() + digits.size() || length < low || length > high)
      bad(fmt::format("the length must be {} to {}", low, high));
    p.length = length;
    auto r = ratelimit::parse_rate(rate_text);
    if (!r || !r->enabled()) bad("the rate must be N/period, e.g. 150/1m");
    p.limit = *r;
    if (p.length == static_cast<unsigned>(p.ipv6 ? l.ipv6_prefix : l.ipv4_prefix))
      bad(fmt::format("that is the prefix the {}_per_ip limit counts at", what));
    p.name = what + " " + where;
    for (const auto& other : c.per_prefix)
      if (other.what == p.what && other.ipv6 == p.ipv6 && other.length == p.length)
        bad("a second limit for the same counter and network");
    auto& tag = p.ipv6 ? c.tag_ipv6_prefix : c.tag_ipv4_prefix;
    tag = std::min(tag, p.length);
    c.per_prefix.push_back(std::move(p));
  }
}

template <typename NodeFor>
void compile_limits(config& cfg, NodeFor&& node_for) {
  const auto& file = cfg.source;
  const auto& l = cfg.values.limits;
  auto rate_of = [&](const std::string& text, std::string_view key, ratelimit::rate& out) {
    auto r = ratelimit::parse_rate(text);
    if (!r)
      fail(file, node_for("limits", key), fmt::format("limits.{}", key),
           "'" + text + "' is not N/period (e.g. \"30/1m\", \"100/1h\") or \"0\"");
    out = *r;
  };
  auto& c = cfg.limits;
  rate_of(l.connections_per_ip, "connections_per_ip", c.connections_per_ip);
  rate_of(l.messages_per_ip, "messages_per_ip", c.messages_per_ip);
  rate_of(l.recipients_per_ip, "recipients_per_ip", c.recipients_per_ip);
  rate_of(l.null_sender_per_ip, "null_sender_per_ip", c.null_sender_per_ip);
  rate_of(l.messages_per_sender, "messages_per_sender", c.messages_per_sender);
  rate_of(l.refused_recipients_per_ip, "refused_recipients_per_ip", c.refused_recipients_per_ip);
  c.concurrent_per_ip = l.concurrent_per_ip;
  compile_prefix_limits(cfg, node_for);

  const auto& r = cfg.values.redis;
  if (r.failure != "local" && r.failure != "open" && r.failure != "tempfail")
    fail(file, node_for("redis", "failure"), "redis.failure",
         "must be \"local\", \"open\" or \"tempfail\"");
  if (r.prefix.find_first_of("{}") != std::string::npos)
    fail(file, node_for("redis", "prefix"), "redis.prefix",
         "must not contain '{' or '}': mxguard's keys carry Redis Cluster hash tags");
  if (!r.sentinel_master.empty() && r.sentinels.empty())
    fail(file, node_for("redis", "sentinel_master"), "redis.sentinel_master",
         "needs redis.sentinels");
  if (!r.url.empty() || !r.sentinels.empty()) {
    std::string error;
    // With sentinels the url may be left out: it only adds password and database.
    auto settings = r.url.empty() ? std::optional<ratelimit::redis_settings>(std::in_place)
                                  : ratelimit::parse_redis_url(r.url, error);
    if (!settings) fail(file, node_for("redis", "url"), "redis.url", error);
    if (!r.sentinels.empty()) {
      if (!settings->unix_socket.empty())
        fail(file, node_for("redis", "url"), "redis.url",
             "a unix:// url cannot be combined with redis.sentinels");
      if (r.sentinel_master.empty())
        fail(file, node_for("redis", "sentinels"), "redis.sentinels",
             "needs redis.sentinel_master (the name the sentinels monitor)");
      for (const auto& text : r.sentinels) {
        auto sentinel = ratelimit::parse_sentinel_address(text, error);
        if (!sentinel)
          fail(file, node_for("redis", "sentinels"), "redis.sentinels", "'" + text + "': " + error);
        settings->sentinels.push_back(std::move(*sentinel));
      }
      settings->sentinel_master = r.sentinel_master;
      settings->sentinel_password = r.sentinel_password;
    }
    settings->timeout = r.timeout;
    settings->prefix = r.prefix;
    settings->failure = r.failure == "local"  ? ratelimit::redis_settings::on_failure::local
                        : r.failure == "open" ? ratelimit::redis_settings::on_failure::open
                                              : ratelimit::redis_settings::on_failure::tempfail;
    cfg.redis = std::move(settings);
  }

  const auto& g = cfg.values.greylist;
  cfg.greylist.delay = g.delay.count();
  cfg.greylist.retry_window = g.retry_window.count();
  cfg.greylist.lifetime = g.lifetime.count();
  cfg.greylist.auto_allowlist_after = g.auto_allowlist_after;
  for (const auto& n : g.allowlist_networks) {
    auto p = ip_prefix::parse(n);
    if (!p)
      fail(file, node_for("greylist", "allowlist_networks"), "greylist.allowlist_networks",
           "'" + n + "' is not an address or CIDR prefix");
    cfg.greylist_allowlist_networks.push_back(*p);
  }
  for (const auto& d : g.allowlist_sender_domains) {
    if (!valid_domain(d.starts_with('.') ? d.substr(1) : d))
      fail(file, node_for("greylist", "allowlist_sender_domains"),
           "greylist.allowlist_sender_domains", "'" + d + "' is not a domain");
    cfg.greylist_allowlist_senders.add(d);
  }
}

void compile(config& cfg, const toml::table& root) {
  const auto& file = cfg.source;
  const auto& s = cfg.values;
  auto node_for = [&](std::string_view section, std::string_view key) -> const toml::node& {
    if (auto* n = root.at_path(fmt::format("{}.{}", section, key)).node()) return *n;
    return root;
  };

  // Listen addresses must be literal IPs: resolving names at start hides typos.
  for (const auto& l : s.server.listen) {
    auto hp = parse_host_port(l);
    boost::system::error_code ec;
    if (hp) boost::asio::ip::make_address(hp->host, ec);
    if (!hp || ec)
      fail(file, node_for("server", "listen"), "server.listen",
           "'" + l + "' is not ADDRESS:PORT with a literal IP ([v6]:port for IPv6)");
  }
  if (s.server.listen.empty())
    fail(file, node_for("server", "listen"), "server.listen", "needs at least one address");

  for (std::size_t i = 0; i < s.access.rules.size(); ++i) {
    std::string error;
    auto entry = access_list::parse_line(s.access.rules[i], error);
    if (!entry) fail(file, node_for("access", "rules"), fmt::format("access.rules[{}]", i), error);
    entry->origin = fmt::format("access.rules[{}]", i);
    cfg.access.add(std::move(*entry));
  }
  if (!s.access.file.empty()) {
    std::ifstream in(s.access.file);
    if (!in)
      fail(file, node_for("access", "file"), "access.file", "cannot read '" + s.access.file + "'");
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      auto hash = line.find('#');
      if (hash != std::string::npos) line.erase(hash);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      std::string error;
      auto entry = access_list::parse_line(line, error);
      if (!entry) throw config_error(fmt::format("{}:{}: {}", s.access.file, number, error));
      entry->origin = fmt::format("{}:{}", s.access.file, number);
      cfg.access.add(std::move(*entry));
    }
  }

  for (std::size_t i = 0; i < s.header_rules.rules.size(); ++i) {
    std::string error;
    auto rule = header_rule_set::parse_line(s.header_rules.rules[i], error);
    if (!rule)
      fail(file, node_for("header_rules", "rules"), fmt::format("header_rules.rules[{}]", i),
           error);
    cfg.header_rules.add(std::move(*rule));
  }

  for (std::size_t i = 0; i < s.header_rules.body_rules.size(); ++i) {
    std::string error;
    auto rule = header_rule_set::parse_line(s.header_rules.body_rules[i], error);
    if (!rule)
      fail(file, node_for("header_rules", "body_rules"),
           fmt::format("header_rules.body_rules[{}]", i), error);
    cfg.body_rules.add(std::move(*rule));
  }

  compile_content(cfg, node_for);

  {
    auto policy = std::make_shared<blocklist_policy>();
    const auto& b = s.blocklist;
    for (std::size_t i = 0; i < b.auto_block.size(); ++i) {
      std::string error;
      auto rule = auto_block_rule::parse(b.auto_block[i], error);
      if (!rule)
        fail(file, node_for("blocklist", "auto_block"), fmt::format("blocklist.auto_block[{}]", i),
             error);
      policy->rules.push_back(std::move(*rule));
    }
    for (const auto& n : b.never_block) {
      auto prefix = ip_prefix::parse(n);
      if (!prefix)
        fail(file, node_for("blocklist", "never_block"), "blocklist.never_block",
             "'" + n + "' is not an address or CIDR prefix");
      policy->never_block.push_back(*prefix);
    }
    policy->ban_time = b.ban_time;
    if (b.max_ban_time < b.ban_time)
      fail(file, node_for("blocklist", "max_ban_time"), "blocklist.max_ban_time",
           "shorter than blocklist.ban_time, the first ban");
    policy->max_ban_time = b.max_ban_time;
    policy->max_entries = static_cast<std::size_t>(b.max_entries);
    policy->ipv6_prefix = static_cast<unsigned>(s.server.ipv6_prefix);
    if (b.file_format != "cidr" && b.file_format != "iptables")
      fail(file, node_for("blocklist", "file_format"), "blocklist.file_format",
           "'" + b.file_format + "' is not cidr or iptables");
    for (const auto& [key, path] : {std::pair{"file", &b.file}, std::pair{"file6", &b.file6}})
      if (!path->empty() && !path->starts_with('/'))
        fail(file, node_for("blocklist", key), std::string("blocklist.") + key,
             "must be an absolute path");
    if (!b.file6.empty() && b.file_format != "iptables")
      fail(file, node_for("blocklist", "file6"), "blocklist.file6",
           "only with file_format = \"iptables\" (a cidr file holds both families)");
    if (!b.exec.empty() && !b.exec.starts_with('/'))
      fail(file, node_for("blocklist", "exec"), "blocklist.exec", "must be an absolute path");
    if (!printable_ascii(b.reply) || !b.reply.starts_with('5'))
      fail(file, node_for("blocklist", "reply"), "blocklist.reply",
           "must be a printable 5xx reply line");
    cfg.blocklist = std::move(policy);
    if (s.stats.store != "file" && s.stats.store != "redis")
      fail(file, node_for("stats", "store"), "stats.store",
           "'" + s.stats.store + "' is not file or redis");
    if (s.stats.store == "redis" && s.redis.url.empty() && s.redis.sentinels.empty())
      fail(file, node_for("stats", "store"), "stats.store",
           "\"redis\" needs redis.url or redis.sentinels");
    if (!s.dnsbl_zone.listen.empty() && !valid_domain(s.dnsbl_zone.zone))
      fail(file, node_for("dnsbl_zone", "zone"), "dnsbl_zone.zone",
           "a zone name is needed when dnsbl_zone.listen is set");
  }

  for (const auto& d : s.relay.domains) {
    std::string_view bare = d;
    if (bare.starts_with('.')) bare.remove_prefix(1);
    if (!valid_domain(bare))
      fail(file, node_for("relay", "domains"), "relay.domains", "'" + d + "' is not a domain");
    cfg.relay_domains.add(d);
  }
  auto parse_networks = [&](const std::vector<std::string>& list, std::string_view section,
                            std::string_view key, std::vector<ip_prefix>& out) {
    for (const auto& n : list) {
      auto p = ip_prefix::parse(n);
      if (!p)
        fail(file, node_for(section, key), fmt::format("{}.{}", section, key),
             "'" + n + "' is not an address or CIDR prefix");
      out.push_back(*p);
    }
  };
  parse_networks(s.relay.trusted_networks, "relay", "trusted_networks", cfg.trusted_networks);
  parse_networks(s.server.proxy_protocol_from, "server", "proxy_protocol_from", cfg.proxy_networks);

  if (auto* routes = root.get("route")) {
    auto* arr = routes->as_array();
    if (!arr || !arr->is_array_of_tables())
      fail(file, *routes, "route", "must be an array of tables ([[route]])");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const auto& t = *arr->at(i).as_table();
      auto key = fmt::format("route[{}]", i);
      route r;
      for (const auto& [k, v] : t) {
        if (k == "domain") {
          auto d = v.value_exact<std::string>();
          if (!d) fail(file, v, key + ".domain", "must be a string");
          std::string_view bare = *d;
          if (bare.starts_with('.')) bare.remove_prefix(1);
          if (*d != "*" && !valid_domain(bare))
            fail(file, v, key + ".domain", "'" + *d + "' is not a domain, .domain or *");
          r.domain = *d;
        } else if (k == "next_hops") {
          auto* hops = v.as_array();
          if (!hops || hops->empty()) fail(file, v, key + ".next_hops", "must be a non-empty list");
          for (const auto& h : *hops) {
            auto text = h.value_exact<std::string>();
            auto hp = text ? parse_host_port(*text) : std::nullopt;
            if (!hp || hp->port == 0)
              fail(file, h, key + ".next_hops", "each next hop must be \"HOST:PORT\"");
            // The host is resolved (A/AAAA) at delivery time; a name that can
            // never resolve ("mx example", a quote) is a typo to report now,
            // and would also make describe() print TOML that does not parse.
            boost::system::error_code ec;
            boost::asio::ip::make_address(hp->host, ec);
            if (ec && !valid_domain(hp->host))
              fail(file, h, key + ".next_hops",
                   "'" + hp->host + "' is not an IP address or host name");
            r.next_hops.push_back(*hp);
          }
        } else {
          fail(file, v, fmt::format("{}.{}", key, k.str()), "unknown key");
        }
      }
      if (r.domain.empty()) fail(file, t, key + ".domain", "is required");
      if (r.next_hops.empty()) fail(file, t, key + ".next_hops", "is required");
      for (const auto& existing : cfg.routes.routes())
        if (existing.domain == lower_ascii(r.domain))
          fail(file, t, key + ".domain", "'" + r.domain + "' has a route already");
      cfg.routes.add(std::move(r));
    }
  }
  for (const auto& d : s.relay.domains) {
    std::string probe = d.starts_with('.') ? "sub" + d : d;
    if (!cfg.routes.find(probe))
      fail(file, node_for("relay", "domains"), "relay.domains",
           "'" + d + "' has no [[route]] (add one for it, or a default route \"*\")");
  }

  compile_dnsbl(cfg, node_for);
  compile_bounce(cfg, root, node_for);
  compile_limits(cfg, node_for);

  if (s.tls.cert.empty() != s.tls.key.empty())
    fail(file, node_for("tls", s.tls.cert.empty() ? "key" : "cert"), "tls",
         "cert and key go together");
  for (const auto& path : {s.tls.cert, s.tls.key})
    if (!path.empty() && !std::ifstream(path))
      fail(file, node_for("tls", path == s.tls.cert ? "cert" : "key"), "tls",
           "cannot read '" + path + "'");
  if (s.log.format != "kv" && s.log.format != "json")
    fail(file, node_for("log", "format"), "log.format", "must be \"kv\" or \"json\"");
  if (s.server.hostname.empty() || !valid_domain(s.server.hostname))
    fail(file, node_for("server", "hostname"), "server.hostname", "must be a host name");
  // The banner and the relay HELO name go into SMTP lines as they are, like
  // the host name checked above: a CR or LF in them would end the line early
  // and inject a reply towards clients or a command towards the next hop.
  if (std::any_of(s.server.banner.begin(), s.server.banner.end(),
                  [](char c) { return c < 0x20 || c > 0x7e; }))
    fail(file, node_for("server", "banner"), "server.banner",
         "must be printable ASCII on one line");
  if (!s.relay.helo_name.empty() && !valid_helo(s.relay.helo_name))
    fail(file, node_for("relay", "helo_name"), "relay.helo_name",
         "must be empty, a host name or an address literal");
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || p == text.data() || n < 0) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  auto scale = unit_millis(unit.empty() ? "s" : unit);  // a bare number is seconds
  if (!scale || n > (1ll << 50) / *scale) return std::nullopt;
  return duration(n * *scale);
}

std::optional<std::int64_t> parse_size(std::string_view text) {
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || p == text.data() || n < 0) return std::nullopt;
  std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  std::int64_t scale;
  if (unit.empty())
    scale = 1;
  else if (unit == "k" || unit == "K")
    scale = 1ll << 10;
  else if (unit == "M")
    scale = 1ll << 20;
  else if (unit == "G")
    scale = 1ll << 30;
  else
    return std::nullopt;
  if (n > (1ll << 50) / scale) return std::nullopt;
  return n * scale;
}

std::string format_duration(duration d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

bool config::is_double_bounce_address(const mailbox& rcpt) const {
  const auto local = lower_ascii(rcpt.local);
  if ((local == "mailer-daemon" || local == "double-bounce") && relay_domains.matches(rcpt.domain))
    return true;
  return double_bounce_addresses.contains(lower_ascii(rcpt.text()));
}

const std::set<std::string>* config::recipients_of(std::string_view domain) const {
  auto it = recipient_lists.find(lower_ascii(domain));
  return it == recipient_lists.end() ? nullptr : &it->second;
}

bool config::is_trusted(const boost::asio::ip::address& client) const {
  for (const auto& n : trusted_networks)
    if (n.contains(client)) return true;
  return false;
}

std::shared_ptr<const config> parse_config(std::string_view text, const std::string& name) {
  toml::table root;
  try {
    root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw config_error(fmt::format("{}:{}: {}", name, e.source().begin.line, e.description()));
  }
  auto cfg = std::make_shared<config>();
  cfg->source = name;
  cfg->values = default_settings();
  for (const auto& [section_key, section_node] : root) {
    std::string_view section = section_key.str();
    if (section == "route" || section == "recipients") continue;
    if (!known_sections.contains(section)) fail(name, section_node, section, "unknown section");
    auto* table = section_node.as_table();
    if (!table)
      fail(name, section_node, section, "must be a table ([" + std::string(section) + "])");
    for (const auto& [key, node] : *table) {
      auto full = fmt::format("{}.{}", section, key.str());
      const auto* spec = find_spec(section, key.str());
      if (!spec) fail(name, node, full, "unknown key");
      spec->set(cfg->values, convert(*spec, node, name, full));
    }
  }
  compile(*cfg, root);
  return cfg;
}

std::shared_ptr<const config> load_config(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw config_error(file + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), file);
}

std::string describe(const config& cfg) {
  const auto defaults = default_settings();
  std::string out = fmt::format("# effective configuration of {}\n", cfg.source);
  std::string_view section;
  for (const auto& spec : settings_table()) {
    if (spec.section != section) {
      section = spec.section;
      out += fmt::format("\n[{}]\n", section);
    }
    setting_value value = spec.get(cfg.values);
    bool is_default = value == spec.get(defaults);
    // Secrets are masked (tls.key is a path, not a secret).
    if (spec.section == "redis" && spec.name == "url") {
      auto url = std::get<std::string>(value);
      auto at = url.rfind('@');
      auto scheme = url.find("://");
      if (at != std::string::npos && scheme != std::string::npos)
        value = url.substr(0, scheme + 3) + "********" + url.substr(at);
    }
    if (spec.section == "redis" && spec.name == "sentinel_password" &&
        !std::get<std::string>(value).empty())
      value = std::string("********");
    if ((spec.section == "batv" || spec.section == "dnsbl") && spec.name == "keys") {
      auto masked = std::get<std::vector<std::string>>(value);
      for (auto& k : masked) {
        auto sep = k.find_first_of(":=");
        k = (sep == std::string::npos ? std::string() : k.substr(0, sep + 1)) + "********";
      }
      value = masked;
    }
    std::string text = value_text(value);
    out += fmt::format("{} = {}{}\n", spec.name, text, is_default ? "  # default" : "");
  }
  for (const auto& r : cfg.routes.routes()) {
    out += fmt::format("\n[[route]]\ndomain = \"{}\"\nnext_hops = [", r.domain);
    for (std::size_t i = 0; i < r.next_hops.size(); ++i) {
      const auto& h = r.next_hops[i];
      bool v6 = h.host.find(':') != std::string::npos;
      out += fmt::format("{}\"{}{}{}:{}\"", i ? ", " : "", v6 ? "[" : "", h.host, v6 ? "]" : "",
                         h.port);
    }
    out += "]\n";
  }
  if (!cfg.recipient_files.empty()) {
    out += "\n[recipients]\n";
    for (const auto& [domain, path] : cfg.recipient_files)
      out += fmt::format("\"{}\" = \"{}\"  # {} users\n", domain, path,
                         cfg.recipient_lists.at(domain).size());
  }
  out += fmt::format("\n# compiled: {} access entries, {} header rules, {} routes\n",
                     cfg.access.size(), cfg.header_rules.size(), cfg.routes.routes().size());
  return out;
}

bool restart_only(const setting_spec& spec) {
  // Whole sections, then single keys; each is read where main() builds what
  // lives for the whole run.
  static constexpr std::string_view sections[] = {"redis", "dnsbl_zone", "stats", "control"};
  static constexpr std::string_view keys[] = {"server.listen",
                                              "server.workers",
                                              "server.user",
                                              "scan.workers",
                                              "scan.queue_size",
                                              "scan.timeout",
                                              "scan.temp_file_above",
                                              "scan.temp_dir",
                                              "limits.max_keys",
                                              "blocklist.sync_interval",
                                              "blocklist.import_file",
                                              "blocklist.nft_set",
                                              "blocklist.nft_set6",
                                              "blocklist.nft_drop_chain",
                                              "blocklist.ipset_set",
                                              "blocklist.ipset_set6",
                                              "blocklist.ipset_maxelem",
                                              "blocklist.file",
                                              "blocklist.file6",
                                              "blocklist.file_format",
                                              "blocklist.exec",
                                              "metrics.listen",
                                              "log.file",
                                              "log.syslog"};
  for (auto s : sections)
    if (spec.section == s) return true;
  const auto name = fmt::format("{}.{}", spec.section, spec.name);
  for (auto k : keys)
    if (name == k) return true;
  return false;
}

std::vector<std::string> restart_only_changes(const settings& before, const settings& after) {
  std::vector<std::string> changed;
  for (const auto& spec : settings_table())
    if (restart_only(spec) && spec.get(before) != spec.get(after))
      changed.push_back(fmt::format("{}.{}", spec.section, spec.name));
  return changed;
}

std::string settings_reference_markdown() {
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& spec : settings_table()) {
    std::string_view type;
    switch (spec.kind) {
      case value_kind::integer:
        type = "integer";
        break;
      case value_kind::size:
        type = "size";
        break;
      case value_kind::duration:
        type = "duration";
        break;
      case value_kind::boolean:
        type = "bool";
        break;
      case value_kind::string:
        type = "string";
        break;
      case value_kind::string_list:
        type = "list";
        break;
      case value_kind::number:
        type = "number";
        break;
    }
    out += fmt::format("| `{}.{}` | {} | `{}` | {}{} |\n", spec.section, spec.name, type,
                       spec.default_text, spec.help,
                       restart_only(spec) ? " *Restart to change.*" : "");
  }
  return out;
}

}  // namespace mxguard::guard
