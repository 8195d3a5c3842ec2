// Unit tests for guard/config.hpp: defaults, errors naming file, line and key,
// the value parsers and --check-config output.
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "config.hpp"

namespace mxguard::guard {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<const config> parse(std::string_view text) {
  return parse_config(text, "test.toml");
}

// A relay domain needs a route; most tests start from this.
const std::string minimal_relay = R"(
[relay]
domains = ["example.org"]

[[route]]
domain = "example.org"
next_hops = ["192.0.2.25:25"]
)";

// The defaults fit together: a message of the largest size is scanned whole
// (it is libclamav's outermost file, with our Received header on top), and
// libclamav gives up on a scan no later than the session stops waiting.
TEST(config, default_scan_limits_cover_what_sessions_accept) {
  auto cfg = parse("");
  const auto& s = cfg->values;
  EXPECT_GT(s.scan.max_file_size, s.server.max_message_size + 65536);
  EXPECT_GE(s.scan.max_scan_size, s.scan.max_file_size);
  EXPECT_LE(s.scan.max_scan_time, s.scan.timeout);
}

// A reload names what it cannot change; what it can is not named.
TEST(config, restart_only_changes_are_named) {
  auto before = parse("[server]\nbanner = \"one\"\n");
  auto after = parse(
      "[server]\nbanner = \"two\"\nworkers = 3\n[metrics]\nlisten = \"127.0.0.1:9125\"\n"
      "[redis]\ntimeout = \"1s\"\n[blocklist]\nexec = \"/usr/local/bin/hook\"\n");
  EXPECT_EQ(restart_only_changes(before->values, after->values),
            (std::vector<std::string>{"server.workers", "redis.timeout", "blocklist.exec",
                                      "metrics.listen"}));
  EXPECT_TRUE(restart_only_changes(before->values, before->values).empty());
  // The README's reference says so.
  auto row_of = [table = settings_reference_markdown()](std::string_view key) {
    auto start = table.find(fmt::format("| `{}` |", key));
    return start == std::string::npos ? std::string()
                                      : table.substr(start, table.find('\n', start) - start);
  };
  EXPECT_TRUE(row_of("metrics.listen").ends_with("*Restart to change.* |"))
      << row_of("metrics.listen");
  EXPECT_TRUE(row_of("redis.url").ends_with("*Restart to change.* |"));
  EXPECT_FALSE(row_of("server.banner").empty());
  EXPECT_EQ(row_of("server.banner").find("Restart"), std::string::npos);
}

TEST(config, defaults_applied) {
  auto cfg = parse("");
  const auto& s = cfg->values;
  EXPECT_EQ(cfg->source, "test.toml");
  EXPECT_EQ(s.server.listen, std::vector<std::string>{"127.0.0.1:2525"});
  EXPECT_EQ(s.server.hostname, "localhost");
  EXPECT_EQ(s.server.workers, 0);
  EXPECT_EQ(s.server.max_sessions, 10000);
  EXPECT_EQ(s.server.max_sessions_per_ip, 20);
  EXPECT_EQ(s.server.ipv6_prefix, 64);
  EXPECT_EQ(s.server.max_message_size, 26214400);
  EXPECT_EQ(s.server.max_recipients, 100);
  EXPECT_EQ(s.server.max_line_length, 2048);
  EXPECT_EQ(s.server.command_timeout, 5min);
  EXPECT_EQ(s.server.data_timeout, 10min);
  EXPECT_EQ(s.server.session_timeout, 30min);
  EXPECT_EQ(s.server.error_delay, 1s);
  EXPECT_EQ(s.server.proxy_protocol_timeout, 10s);
  EXPECT_EQ(s.server.banner, "ESMTP mxguard");
  EXPECT_TRUE(s.server.add_received_header);
  EXPECT_TRUE(s.tls.relay_starttls);
  EXPECT_EQ(s.tls.handshake_timeout, 30s);
  EXPECT_EQ(s.relay.connect_timeout, 10s);
  EXPECT_EQ(s.relay.command_timeout, 60s);
  EXPECT_EQ(s.header_rules.max_header_size, 102400);
  EXPECT_EQ(s.log.format, "kv");
  EXPECT_EQ(cfg->access.size(), 0u);
  EXPECT_EQ(cfg->header_rules.size(), 0u);
  EXPECT_TRUE(cfg->routes.routes().empty());
}

TEST(config, values_set) {
  auto cfg = parse(R"(
[server]
listen = ["0.0.0.0:25", "[::]:25"]
hostname = "mx1.example.org"
max_sessions = 500
max_message_size = "50M"
max_line_length = 1024
command_timeout = "90s"
data_timeout = 300          # bare seconds
session_timeout = "1h"
error_delay = "250ms"
add_received_header = false
proxy_protocol_from = ["10.0.0.0/8"]

[relay]
domains = ["example.org", ".example.org"]
trusted_networks = ["192.0.2.0/24", "2001:db8::/32"]
helo_name = "out.example.org"

[access]
rules = ["203.0.113.0/24 REJECT", "203.0.113.5 OK"]

[header_rules]
rules = ["/^Subject: casino/ DISCARD"]
max_header_size = "64k"

[log]
format = "json"

[[route]]
domain = "example.org"
next_hops = ["192.0.2.25:25", "[2001:db8::25]:2525"]

[[route]]
domain = ".example.org"
next_hops = ["inner.example.org:25"]
)");
  const auto& s = cfg->values;
  EXPECT_EQ(s.server.listen, (std::vector<std::string>{"0.0.0.0:25", "[::]:25"}));
  EXPECT_EQ(s.server.hostname, "mx1.example.org");
  EXPECT_EQ(s.server.max_sessions, 500);
  EXPECT_EQ(s.server.max_message_size, 50 << 20);
  EXPECT_EQ(s.server.command_timeout, 90s);
  EXPECT_EQ(s.server.data_timeout, 300s);
  EXPECT_EQ(s.server.session_timeout, 1h);
  EXPECT_EQ(s.server.error_delay, 250ms);
  EXPECT_FALSE(s.server.add_received_header);
  EXPECT_EQ(s.header_rules.max_header_size, 64 << 10);
  EXPECT_EQ(s.log.format, "json");
  EXPECT_EQ(cfg->access.size(), 2u);
  EXPECT_EQ(cfg->header_rules.size(), 1u);
  ASSERT_EQ(cfg->routes.routes().size(), 2u);
  EXPECT_EQ(cfg->routes.routes()[0].next_hops[1].host, "2001:db8::25");
  EXPECT_EQ(cfg->routes.routes()[0].next_hops[1].port, 2525);
  EXPECT_TRUE(cfg->relay_domains.matches("EXAMPLE.org"));
  EXPECT_TRUE(cfg->relay_domains.matches("a.example.org"));
  EXPECT_FALSE(cfg->relay_domains.matches("example.net"));
  EXPECT_TRUE(cfg->is_trusted(boost::asio::ip::make_address("192.0.2.9")));
  EXPECT_TRUE(cfg->is_trusted(boost::asio::ip::make_address("::ffff:192.0.2.9")));
  EXPECT_TRUE(cfg->is_trusted(boost::asio::ip::make_address("2001:db8::9")));
  EXPECT_FALSE(cfg->is_trusted(boost::asio::ip::make_address("198.51.100.1")));
  ASSERT_EQ(cfg->proxy_networks.size(), 1u);
  EXPECT_EQ(cfg->proxy_networks[0].to_string(), "10.0.0.0/8");
  EXPECT_EQ(cfg->access.check(boost::asio::ip::make_address("203.0.113.5")).what, action::accept);
  EXPECT_EQ(cfg->access.check(boost::asio::ip::make_address("203.0.113.6")).what, action::reject);
}

TEST(config, errors_name_file_line_and_key) {
  struct row {
    const char* label;
    std::string text;
    std::string want;  // the whole message
  };
  const std::string route = "\n[[route]]\ndomain = \"*\"\nnext_hops = [\"192.0.2.25:25\"]\n";
  const row rows[] = {
      {"TOML syntax error", "[server\nworkers = 1\n", "test.toml:1: "},
      {"unknown section", "[server]\nworkers = 1\n[bogus]\nsites = []\n",
       "test.toml:3: bogus: unknown section"},
      {"section that is not a table", "server = 5\n",
       "test.toml:1: server: must be a table ([server])"},
      {"unknown key", "[server]\nworkers = 1\nmax_session = 5\n",
       "test.toml:3: server.max_session: unknown key"},
      {"integer as string", "[server]\n\nmax_sessions = \"many\"\n",
       "test.toml:3: server.max_sessions: must be an integer"},
      {"float for an integer", "[server]\nmax_sessions = 1.5\n",
       "test.toml:2: server.max_sessions: must be an integer"},
      {"integer below range", "[server]\nmax_sessions = 0\n",
       "test.toml:2: server.max_sessions: 0 is out of range [1, 1000000]"},
      {"integer above range", "[server]\nipv6_prefix = 129\n",
       "test.toml:2: server.ipv6_prefix: 129 is out of range [32, 128]"},
      {"size with bad unit", "[server]\nmax_message_size = \"25X\"\n",
       "test.toml:2: server.max_message_size: must be a size (bytes, or \"25M\")"},
      {"size below range", "[server]\nmax_buffered_bytes = \"512k\"\n",
       "test.toml:2: server.max_buffered_bytes: 524288 is out of range [1048576, 4398046511104]"},
      {"size too small", "[server]\nmax_message_size = 1000\n",
       "test.toml:2: server.max_message_size: 1000 is out of range [1024, 1099511627776]"},
      {"ban cap below the first ban", "[blocklist]\nban_time = \"2d\"\nmax_ban_time = \"1d\"\n",
       "test.toml:3: blocklist.max_ban_time: shorter than blocklist.ban_time, the first ban"},
      {"duration with bad unit", "[server]\ncommand_timeout = \"5 minutes\"\n",
       "test.toml:2: server.command_timeout: must be a duration (\"250ms\", \"30s\", \"5m\", "
       "\"4h\", \"7d\")"},
      {"duration above range", "[server]\ncommand_timeout = \"2h\"\n",
       "test.toml:2: server.command_timeout: 2h is out of range [1s, 1h]"},
      {"duration below range", "[relay]\nconnect_timeout = \"50ms\"\n",
       "test.toml:2: relay.connect_timeout: 50ms is out of range [100ms, 10m]"},
      {"negative duration", "[server]\ncommand_timeout = -5\n",
       "test.toml:2: server.command_timeout: must be a duration (\"250ms\", \"30s\", \"5m\", "
       "\"4h\", \"7d\")"},
      {"boolean as string", "[server]\nadd_received_header = \"yes\"\n",
       "test.toml:2: server.add_received_header: must be true or false"},
      {"string as integer", "[server]\nhostname = 5\n",
       "test.toml:2: server.hostname: must be a string"},
      {"list as string", "[server]\nlisten = \"127.0.0.1:25\"\n",
       "test.toml:2: server.listen: must be a list of strings"},
      {"list element not a string", "[server]\nlisten = [\n  \"127.0.0.1:25\",\n  25,\n]\n",
       "test.toml:4: server.listen: every element must be a string"},
      {"unknown virus action", "[scan]\nvirus_action = \"bounce\"\n",
       "test.toml:2: scan.virus_action: 'bounce' is not one of reject, discard, pass, tempfail"},
      {"overload cannot reject", "[scan]\noverload_action = \"reject\"\n",
       "test.toml:2: scan.overload_action: 'reject' is not one of tempfail, pass"},
      {"score as string", "[score]\ntag2_level = \"high\"\n",
       "test.toml:2: score.tag2_level: must be a number"},
      {"score out of range", "[score]\nkill_level = 5000\n",
       "test.toml:2: score.kill_level: 5000 is out of range [-1000, 1000]"},
      {"levels out of order", "[score]\nenabled = true\ntag2_level = 8\nkill_level = 4\n",
       "test.toml:3: score: levels must satisfy tag_level <= tag2_level <= kill_level"},
      {"score on a REJECT rule", "[header_rules]\nbody_rules = ['/x/ REJECT score=1']\n",
       "test.toml:2: header_rules.body_rules[0]: only WARN rules carry a score"},
      {"listen on a host name", "[server]\nlisten = [\"localhost:25\"]\n",
       "test.toml:2: server.listen: 'localhost:25' is not ADDRESS:PORT with a literal IP "
       "([v6]:port "
       "for IPv6)"},
      {"listen list empty", "[server]\nlisten = []\n",
       "test.toml:2: server.listen: needs at least one address"},
      {"bad host name", "[server]\nhostname = \"mx example\"\n",
       "test.toml:2: server.hostname: must be a host name"},
      {"banner with CRLF", "[server]\nbanner = \"ESMTP\\r\\n250 fake\"\n",
       "test.toml:2: server.banner: must be printable ASCII on one line"},
      {"bad relay HELO name", "[relay]\nhelo_name = \"out example\"\n",
       "test.toml:2: relay.helo_name: must be empty, a host name or an address literal"},
      {"bad log format", "[log]\nformat = \"xml\"\n",
       "test.toml:2: log.format: must be \"kv\" or \"json\""},
      {"bad access rule", "[access]\nrules = [\n  \"192.0.2.1 OK\",\n  \"192.0.2.2 DROP\",\n]\n",
       "test.toml:2: access.rules[1]: unknown action 'DROP' (OK, REJECT, DEFER)"},
      {"bad access prefix", "[access]\nrules = [\"192.0.2.0/33 REJECT\"]\n",
       "test.toml:2: access.rules[0]: bad address or prefix '192.0.2.0/33'"},
      {"unreadable access file", "[access]\nfile = \"/nonexistent/access\"\n",
       "test.toml:2: access.file: cannot read '/nonexistent/access'"},
      {"bad header rule", "[header_rules]\nrules = [\"/(a/ REJECT\"]\n",
       "test.toml:2: header_rules.rules[0]: bad regular expression: missing ): (a"},
      {"header rule without action", "[header_rules]\nrules = [\"/a/\"]\n",
       "test.toml:2: header_rules.rules[0]: unterminated /regex/ or missing action"},
      {"bad relay domain", "[relay]\ndomains = [\"exa mple.org\"]\n",
       "test.toml:2: relay.domains: 'exa mple.org' is not a domain"},
      {"relay domain without route", "[relay]\ndomains = [\"example.org\"]\n",
       "test.toml:2: relay.domains: 'example.org' has no [[route]] (add one for it, or a default "
       "route \"*\")"},
      {"subdomain pattern with only an exact route",
       "[relay]\ndomains = [\".example.org\"]\n[[route]]\ndomain = \"example.org\"\nnext_hops = "
       "[\"192.0.2.1:25\"]\n",
       "test.toml:2: relay.domains: '.example.org' has no [[route]] (add one for it, or a default "
       "route \"*\")"},
      {"bad trusted network", "[relay]\ntrusted_networks = [\"192.0.2.0/24\", \"lan\"]\n",
       "test.toml:2: relay.trusted_networks: 'lan' is not an address or CIDR prefix"},
      {"bad proxy network", "[server]\nproxy_protocol_from = [\"10.0.0.0/99\"]\n",
       "test.toml:2: server.proxy_protocol_from: '10.0.0.0/99' is not an address or CIDR prefix"},
      {"tls cert without key", "[tls]\ncert = \"/etc/ssl/cert.pem\"\n",
       "test.toml:2: tls: cert and key go together"},
      {"tls key without cert", "[tls]\n\nkey = \"/etc/ssl/key.pem\"\n",
       "test.toml:3: tls: cert and key go together"},
      {"unreadable tls cert",
       "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n",
       "test.toml:2: tls: cannot read '/nonexistent/c.pem'"},
      {"route is not an array of tables", "route = 5\n",
       "test.toml:1: route: must be an array of tables ([[route]])"},
      {"route without domain", "[[route]]\nnext_hops = [\"192.0.2.1:25\"]\n",
       "test.toml:1: route[0].domain: is required"},
      {"route without next hops", route + "[[route]]\ndomain = \"example.org\"\n",
       "test.toml:5: route[1].next_hops: is required"},
      {"route with empty next hops", "[[route]]\ndomain = \"*\"\nnext_hops = []\n",
       "test.toml:3: route[0].next_hops: must be a non-empty list"},
      {"route with a bad next hop", "[[route]]\ndomain = \"*\"\nnext_hops = [\"192.0.2.1\"]\n",
       "test.toml:3: route[0].next_hops: each next hop must be \"HOST:PORT\""},
      {"route with a bad next hop name",
       "[[route]]\ndomain = \"*\"\nnext_hops = [\"192.0.2.1:25\", \"mx example.org:25\"]\n",
       "test.toml:3: route[0].next_hops: 'mx example.org' is not an IP address or host name"},
      {"route with a quote in a next hop", "[[route]]\ndomain = \"*\"\nnext_hops = ['a\"b:25']\n",
       "test.toml:3: route[0].next_hops: 'a\"b' is not an IP address or host name"},
      {"route with port 0", "[[route]]\ndomain = \"*\"\nnext_hops = [\"192.0.2.1:0\"]\n",
       "test.toml:3: route[0].next_hops: each next hop must be \"HOST:PORT\""},
      {"route with a bad domain", "[[route]]\ndomain = \"a b\"\nnext_hops = [\"192.0.2.1:25\"]\n",
       "test.toml:2: route[0].domain: 'a b' is not a domain, .domain or *"},
      {"route domain not a string", "[[route]]\ndomain = 1\nnext_hops = [\"192.0.2.1:25\"]\n",
       "test.toml:2: route[0].domain: must be a string"},
      {"route with an unknown key", "[[route]]\ndomain = \"*\"\nnexthops = [\"192.0.2.1:25\"]\n",
       "test.toml:3: route[0].nexthops: unknown key"},
      {"duplicate route", route + "[[route]]\ndomain = \"*\"\nnext_hops = [\"192.0.2.2:25\"]\n",
       "test.toml:5: route[1].domain: '*' has a route already"},
      {"duplicate route in another case",
       "[[route]]\ndomain = \"Example.org\"\nnext_hops = [\"192.0.2.1:25\"]\n[[route]]\ndomain = "
       "\"example.ORG\"\nnext_hops = [\"192.0.2.2:25\"]\n",
       "test.toml:4: route[1].domain: 'example.ORG' has a route already"},
      {"blocklist file relative", "[blocklist]\nfile = \"blocked.txt\"\n",
       "test.toml:2: blocklist.file: must be an absolute path"},
      {"file6 without the iptables format", "[blocklist]\nfile = \"/a\"\nfile6 = \"/b\"\n",
       "test.toml:3: blocklist.file6: only with file_format = \"iptables\" (a cidr file holds "
       "both families)"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    try {
      parse(r.text);
      ADD_FAILURE() << "accepted";
    } catch (const config_error& e) {
      if (r.want.ends_with(": "))
        EXPECT_TRUE(std::string(e.what()).starts_with(r.want)) << e.what();
      else
        EXPECT_EQ(std::string(e.what()), r.want);
    }
  }
}

TEST(config, per_prefix_limits_compiled_and_the_hash_tag_prefix_follows_the_widest) {
  auto cfg = parse(R"([limits]
connections_per_ip = "30/1m"
per_prefix = ["connections ipv4/24 150/1m", "messages ipv6/48 500/1h",
              "refused_recipients ipv4/16 100/1h"]
)");
  const auto& l = cfg->limits;
  ASSERT_EQ(l.per_prefix.size(), 3u);
  using counter = config::compiled_limits::counter;
  EXPECT_EQ(l.per_prefix[0].what, counter::connections);
  EXPECT_FALSE(l.per_prefix[0].ipv6);
  EXPECT_EQ(l.per_prefix[0].length, 24u);
  EXPECT_EQ(l.per_prefix[0].limit, (ratelimit::rate{150, 60'000}));
  EXPECT_EQ(l.per_prefix[0].name, "connections ipv4/24");
  EXPECT_EQ(l.per_prefix[1].what, counter::messages);
  EXPECT_TRUE(l.per_prefix[1].ipv6);
  EXPECT_EQ(l.per_prefix[1].length, 48u);
  EXPECT_EQ(l.per_prefix[2].what, counter::refused_recipients);
  EXPECT_EQ(l.tag_ipv4_prefix, 16u);
  EXPECT_EQ(l.tag_ipv6_prefix, 48u);
  EXPECT_TRUE(l.counts(counter::connections));
  EXPECT_FALSE(l.counts(counter::recipients));
  EXPECT_TRUE(l.any());
  // Without per_prefix the tag is the client's own counting prefix.
  auto plain = parse("");
  EXPECT_EQ(plain->limits.tag_ipv4_prefix, 32u);
  EXPECT_EQ(plain->limits.tag_ipv6_prefix, 64u);
  EXPECT_FALSE(plain->limits.any());
}

TEST(config, per_prefix_errors_name_the_entry) {
  struct row {
    const char* entry;
    const char* why;
  };
  const row rows[] = {
      {"connections ipv4/24", "expected COUNTER FAMILY/LENGTH N/period"},
      {"connections ipv4/24 150/1m extra", "expected COUNTER FAMILY/LENGTH N/period"},
      {"sessions ipv4/24 150/1m", "the counter must be"},
      {"connections ip/24 150/1m", "the network must be ipv4/LENGTH or ipv6/LENGTH"},
      {"connections ipv4 150/1m", "the network must be ipv4/LENGTH or ipv6/LENGTH"},
      {"connections ipv4/33 150/1m", "the length must be 8 to 32"},
      {"connections ipv6/8 150/1m", "the length must be 16 to 128"},
      {"connections ipv4/2x 150/1m", "the length must be 8 to 32"},
      {"connections ipv4/24 lots", "the rate must be N/period"},
      {"connections ipv4/24 0", "the rate must be N/period"},
      {"connections ipv4/32 10/1m", "that is the prefix the connections_per_ip limit counts at"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.entry);
    try {
      parse(std::string("[limits]\nper_prefix = [\"") + r.entry + "\"]\n");
      ADD_FAILURE() << "accepted";
    } catch (const config_error& e) {
      std::string what = e.what();
      EXPECT_NE(what.find("limits.per_prefix: '" + std::string(r.entry) + "': " + r.why),
                std::string::npos)
          << what;
    }
  }
  EXPECT_THROW(parse("[limits]\nper_prefix = [\"messages ipv4/24 1/1m\", \"messages ipv4/24 "
                     "2/1m\"]\n"),
               config_error);
  EXPECT_THROW(parse("[redis]\nprefix = \"mx{g}:\"\n"), config_error);
}

TEST(config, valid_edge_values) {
  struct row {
    const char* label;
    std::string text;
  };
  const row rows[] = {
      {"lowest bounds", "[server]\nmax_sessions = 1\nipv6_prefix = 32\nmax_line_length = 512\n"},
      {"highest bounds", "[server]\nmax_sessions = 1000000\nipv6_prefix = 128\n"},
      {"duration at its maximum", "[server]\ncommand_timeout = \"1h\"\n"},
      {"duration as bare seconds", "[server]\ncommand_timeout = 60\n"},
      {"relay domain with a default route",
       "[relay]\ndomains = [\"example.org\"]\n[[route]]\ndomain "
       "= \"*\"\nnext_hops = [\"192.0.2.1:25\"]\n"},
      {"relay subdomains with a parent route",
       "[relay]\ndomains = [\".example.org\"]\n[[route]]\ndomain = \".example.org\"\nnext_hops = "
       "[\"inner:25\"]\n"},
      {"empty banner", "[server]\nbanner = \"\"\n"},
      {"comments and blank lines", "# a comment\n\n[server] # trailing\nworkers = 2 # two\n"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_NO_THROW(parse(r.text));
  }
}

TEST(config, parse_duration) {
  struct row {
    const char* label;
    std::string_view input;
    std::optional<duration> want;
  };
  const row rows[] = {
      {"milliseconds", "250ms", 250ms},
      {"seconds", "30s", 30s},
      {"bare number is seconds", "45", 45s},
      {"minutes", "5m", 5min},
      {"hours", "4h", 4h},
      {"days", "36d", 36 * 24h},
      {"zero", "0s", 0ms},
      {"empty", "", std::nullopt},
      {"unit only", "ms", std::nullopt},
      {"negative", "-5s", std::nullopt},
      {"fraction", "1.5s", std::nullopt},
      {"unknown unit", "5w", std::nullopt},
      {"upper-case unit", "5S", std::nullopt},
      {"space before unit", "5 s", std::nullopt},
      {"overflow", "9223372036854775807d", std::nullopt},
      {"too many digits", "99999999999999999999s", std::nullopt},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(parse_duration(r.input), r.want);
  }
}

TEST(config, parse_size) {
  struct row {
    const char* label;
    std::string_view input;
    std::optional<std::int64_t> want;
  };
  const row rows[] = {
      {"bytes", "26214400", 26214400},
      {"kibibytes", "512k", 512 * 1024},
      {"kibibytes upper", "512K", 512 * 1024},
      {"mebibytes", "25M", 25 << 20},
      {"gibibytes", "1G", 1ll << 30},
      {"zero", "0", 0},
      {"empty", "", std::nullopt},
      {"negative", "-1", std::nullopt},
      {"lower-case m is not mega", "25m", std::nullopt},
      {"unit with B", "25MB", std::nullopt},
      {"overflow", "9223372036854775807G", std::nullopt},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(parse_size(r.input), r.want);
  }
}

TEST(config, format_duration) {
  struct row {
    const char* label;
    duration input;
    std::string want;
  };
  const row rows[] = {
      {"zero", 0ms, "0s"},     {"milliseconds", 250ms, "250ms"}, {"mixed", 1500ms, "1500ms"},
      {"seconds", 90s, "90s"}, {"minutes", 5min, "5m"},          {"hours", 2h, "2h"},
      {"days", 48h, "2d"},     {"hours not days", 25h, "25h"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(format_duration(r.input), r.want);
    // What it prints parses back to the same duration.
    EXPECT_EQ(parse_duration(format_duration(r.input)), r.input);
  }
}

TEST(config, describe_marks_defaults) {
  auto cfg = parse(minimal_relay + R"(
[server]
max_sessions = 500
command_timeout = "90s"
banner = "ESMTP \"quoted\" gateway"
)");
  const auto text = describe(*cfg);
  struct row {
    const char* label;
    std::string want_line;
  };
  const row rows[] = {
      {"set value, no marker", "\nmax_sessions = 500\n"},
      {"default value marked", "\nmax_sessions_per_ip = 20  # default\n"},
      {"set duration", "\ncommand_timeout = \"90s\"\n"},
      {"default duration marked", "\ndata_timeout = \"10m\"  # default\n"},
      {"string quoted for TOML", "\nbanner = 'ESMTP \"quoted\" gateway'\n"},
      {"default list", "\nlisten = ['127.0.0.1:2525']  # default\n"},
      {"set list", "\ndomains = ['example.org']\n"},
      {"default boolean", "\nadd_received_header = true  # default\n"},
      {"section header", "\n[header_rules]\n"},
      {"route", "\n[[route]]\ndomain = \"example.org\"\nnext_hops = [\"192.0.2.25:25\"]\n"},
      {"summary", "# compiled: 0 access entries, 0 header rules, 1 routes\n"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_NE(text.find(r.want_line), std::string::npos) << text;
  }
  // Every setting of the table appears once.
  for (const auto& spec : settings_table()) {
    SCOPED_TRACE(std::string(spec.section) + "." + std::string(spec.name));
    EXPECT_NE(text.find("\n" + std::string(spec.name) + " = "), std::string::npos);
  }
}

TEST(config, describe_output_parses_back_to_the_same_configuration) {
  auto cfg = parse(R"(
[server]
listen = ["[::1]:2525", "127.0.0.1:2525"]
hostname = "mx.example.org"
max_message_size = "10M"
error_delay = "1500ms"
banner = "ESMTP \\ back\"slash"

[relay]
domains = ["example.org", ".example.net"]
trusted_networks = ["192.0.2.0/24"]

[access]
rules = ["203.0.113.0/24 REJECT go away"]

[header_rules]
rules = ["/^Subject: \\d+ casino/i DISCARD"]

[[route]]
domain = "example.org"
next_hops = ["[2001:db8::25]:25", "inner.example.org:2525"]

[[route]]
domain = "*"
next_hops = ["192.0.2.25:25"]
)");
  const auto first = describe(*cfg);
  auto again = parse_config(first, "test.toml");
  EXPECT_EQ(describe(*again), first);
}

TEST(config, settings_table_is_consistent) {
  // Every default lies within its own bounds, and every name is unique.
  auto defaults = parse("");
  std::set<std::string> names;
  for (const auto& spec : settings_table()) {
    const std::string name = std::string(spec.section) + "." + std::string(spec.name);
    SCOPED_TRACE(name);
    EXPECT_TRUE(names.insert(name).second);
    EXPECT_FALSE(spec.help.empty());
    EXPECT_LE(spec.min, spec.max);
  }
  EXPECT_NE(settings_reference_markdown().find("| `server.max_sessions` | integer | `10000` |"),
            std::string::npos);
}

}  // namespace
}  // namespace mxguard::guard
