// The settings table: every scalar configuration key, once.
//
// Adding a key: a field in the settings struct (config.hpp), a row here, and
// `--print-settings-table` regenerates the README reference.

#include "config.hpp"

namespace mxguard::guard {

namespace {

constexpr std::int64_t second = 1000;
constexpr std::int64_t minute = 60 * second;
constexpr std::int64_t hour = 60 * minute;
constexpr std::int64_t day = 24 * hour;

// Accessors for one field: `Section` is a member of `settings`, `Field` a
// member of that section. The value arrives already checked against the row's
// kind and bounds.
template <auto Section, auto Field>
void set_field(settings& s, setting_value v) {
  auto& field = (s.*Section).*Field;
  field = std::get<std::remove_cvref_t<decltype(field)>>(std::move(v));
}
template <auto Section, auto Field>
setting_value get_field(const settings& s) {
  return (s.*Section).*Field;
}

#define MXG_FIELD(section, field)                                      \
  &set_field<&settings::section, &decltype(settings::section)::field>, \
      &get_field<&settings::section, &decltype(settings::section)::field>

const setting_spec table[] = {
    // [server]
    {"server", "listen", value_kind::string_list, R"(["127.0.0.1:2525"])", 0, 0,
     "Addresses to accept SMTP on, `addr:port`, IPv6 in brackets (`[::1]:25`).",
     MXG_FIELD(server, listen)},
    {"server", "hostname", value_kind::string, R"("localhost")", 0, 0,
     "Name in the banner, EHLO reply and Received header.", MXG_FIELD(server, hostname)},
    {"server", "workers", value_kind::integer, "0", 0, 256,
     "I/O threads, each with its own SO_REUSEPORT listener; 0 = number of cores.",
     MXG_FIELD(server, workers)},
    {"server", "max_sessions", value_kind::integer, "10000", 1, 1000000,
     "Global cap on concurrent sessions; past it a client gets `421 4.7.0` and is closed.",
     MXG_FIELD(server, max_sessions)},
    {"server", "max_sessions_per_ip", value_kind::integer, "20", 1, 1000000,
     "Concurrent sessions per client address (IPv6: per `ipv6_prefix`); past it `421 4.7.0`.",
     MXG_FIELD(server, max_sessions_per_ip)},
    {"server", "ipv6_prefix", value_kind::integer, "64", 32, 128,
     "Prefix length an IPv6 client is counted under (one host usually owns a /64).",
     MXG_FIELD(server, ipv6_prefix)},
    {"server", "max_message_size", value_kind::size, "26214400", 1024, 1ll << 40,
     "Largest message in bytes (announced in EHLO SIZE, enforced while reading DATA: `552 5.3.4`).",
     MXG_FIELD(server, max_message_size)},
    {"server", "max_recipients", value_kind::integer, "100", 1, 100000,
     "Recipients per transaction; past it `452 4.5.3`.", MXG_FIELD(server, max_recipients)},
    {"server", "max_line_length", value_kind::integer, "2048", 512, 65536,
     "Longest command line in bytes (RFC 5321 needs 512); longer lines get `500 5.5.2`.",
     MXG_FIELD(server, max_line_length)},
    {"server", "max_commands", value_kind::integer, "1000", 10, 10000000,
     "Commands per session; past it `421 4.7.0` and close.", MXG_FIELD(server, max_commands)},
    {"server", "max_errors", value_kind::integer, "20", 1, 1000,
     "Refused commands per session (hard error limit); past it `421 4.7.0` and close.",
     MXG_FIELD(server, max_errors)},
    {"server", "soft_error_delay_after", value_kind::integer, "3", 0, 1000,
     "After this many errors each further error reply is delayed by `error_delay` (tarpit).",
     MXG_FIELD(server, soft_error_delay_after)},
    {"server", "error_delay", value_kind::duration, R"("1s")", 0, minute,
     "Delay before an error reply once `soft_error_delay_after` is passed.",
     MXG_FIELD(server, error_delay)},
    {"server", "max_buffered_bytes", value_kind::size, "1073741824", 1 << 20, 1ll << 42,
     "Message bytes all sessions together may hold in memory; past it new DATA gets `452 4.3.1`.",
     MXG_FIELD(server, max_buffered_bytes)},
    {"server", "command_timeout", value_kind::duration, R"("5m")", second, hour,
     "Time for the client to send one whole command line (RFC 5321 §4.5.3.2: 5 min).",
     MXG_FIELD(server, command_timeout)},
    {"server", "data_timeout", value_kind::duration, R"("10m")", second, 2 * hour,
     "Time for the whole DATA phase, from 354 to the final dot.", MXG_FIELD(server, data_timeout)},
    {"server", "session_timeout", value_kind::duration, R"("30m")", second, day,
     "Time for a whole session, from accept to close.", MXG_FIELD(server, session_timeout)},
    {"server", "greet_pause", value_kind::duration, R"("0s")", 0, minute,
     "Early-talker test: send a `220-` teaser and wait this long; a client that talks before "
     "the greeting is refused (postscreen uses 6s). 0 = off.",
     MXG_FIELD(server, greet_pause)},
    {"server", "banner", value_kind::string, R"("ESMTP mxguard")", 0, 0,
     "Text after the hostname in the 220 greeting.", MXG_FIELD(server, banner)},
    {"server", "add_received_header", value_kind::boolean, "true", 0, 0,
     "Prepend a Received: trace header to relayed mail (RFC 5321 §4.4).",
     MXG_FIELD(server, add_received_header)},
    {"server", "proxy_protocol_from", value_kind::string_list, "[]", 0, 0,
     "Load balancers (CIDR) whose connections start with a PROXY protocol v1/v2 header.",
     MXG_FIELD(server, proxy_protocol_from)},
    {"server", "proxy_protocol_timeout", value_kind::duration, R"("10s")", 100, 10 * minute,
     "Time for a load balancer to send its PROXY header.",
     MXG_FIELD(server, proxy_protocol_timeout)},
    // [tls]
    {"tls", "cert", value_kind::string, R"("")", 0, 0,
     "PEM certificate chain; with `key`, STARTTLS is offered.", MXG_FIELD(tls, cert)},
    {"tls", "key", value_kind::string, R"("")", 0, 0, "PEM private key.", MXG_FIELD(tls, key)},
    {"tls", "handshake_timeout", value_kind::duration, R"("30s")", second, 10 * minute,
     "Time for a TLS handshake, either side.", MXG_FIELD(tls, handshake_timeout)},
    {"tls", "relay_starttls", value_kind::boolean, "true", 0, 0,
     "Use STARTTLS towards a next hop that offers it (opportunistic, not verified).",
     MXG_FIELD(tls, relay_starttls)},
    // [relay]
    {"relay", "domains", value_kind::string_list, "[]", 0, 0,
     "Recipient domains accepted from anyone; `.example.org` = any subdomain.",
     MXG_FIELD(relay, domains)},
    {"relay", "trusted_networks", value_kind::string_list, "[]", 0, 0,
     "Clients (CIDR) that may relay to any domain, via the `*` route.",
     MXG_FIELD(relay, trusted_networks)},
    {"relay", "connect_timeout", value_kind::duration, R"("10s")", 100, 10 * minute,
     "Time to connect to one next hop and read its banner, before trying the next.",
     MXG_FIELD(relay, connect_timeout)},
    {"relay", "command_timeout", value_kind::duration, R"("60s")", 100, hour,
     "Time for a next hop to answer one command.", MXG_FIELD(relay, command_timeout)},
    {"relay", "data_timeout", value_kind::duration, R"("5m")", second, hour,
     "Time for a next hop to take the message and answer the final dot.",
     MXG_FIELD(relay, data_timeout)},
    {"relay", "helo_name", value_kind::string, R"("")", 0, 0,
     "EHLO name towards next hops; empty = `server.hostname`.", MXG_FIELD(relay, helo_name)},
    // [access]
    {"access", "rules", value_kind::string_list, "[]", 0, 0,
     "Client access rules `ADDRESS[/LEN] OK|REJECT|DEFER [text]`; most specific wins.",
     MXG_FIELD(access, rules)},
    {"access", "file", value_kind::string, R"("")", 0, 0,
     "File with more access rules, one a line, `#` comments; reloaded on SIGHUP.",
     MXG_FIELD(access, file)},
    // [header_rules]
    {"header_rules", "rules", value_kind::string_list, "[]", 0, 0,
     "Ordered `/regex/[flags] REJECT|DISCARD|WARN [text]` over unfolded header lines (RE2).",
     MXG_FIELD(header_rules, rules)},
    {"header_rules", "max_header_size", value_kind::size, "102400", 1024, 1 << 24,
     "A longer unfolded header line is matched on its first this many bytes.",
     MXG_FIELD(header_rules, max_header_size)},
    // [dnsbl]
    {"dnsbl", "resolvers", value_kind::string_list, "[]", 0, 0,
     "DNS resolvers `IP:PORT` for list queries; empty = the nameservers of /etc/resolv.conf.",
     MXG_FIELD(dnsbl, resolvers)},
    {"dnsbl", "sites", value_kind::string_list, "[]", 0, 0,
     "Client lists in postscreen syntax `zone[=filter][*weight]`, queried in parallel at connect.",
     MXG_FIELD(dnsbl, sites)},
    {"dnsbl", "rhsbl_sites", value_kind::string_list, "[]", 0, 0,
     "Domain lists (same syntax) for the sender domain and the HELO name, checked at MAIL.",
     MXG_FIELD(dnsbl, rhsbl_sites)},
    {"dnsbl", "threshold", value_kind::integer, "1", 1, 1000,
     "A client (or domain) whose summed weights reach this is refused.",
     MXG_FIELD(dnsbl, threshold)},
    {"dnsbl", "allowlist_threshold", value_kind::integer, "0", -1000, 0,
     "A client scoring this or lower (negative weights) skips the remaining checks; 0 = off.",
     MXG_FIELD(dnsbl, allowlist_threshold)},
    {"dnsbl", "timeout", value_kind::duration, R"("2s")", 100, minute,
     "Longest wait for the lists at connect; lists that did not answer count as not listed.",
     MXG_FIELD(dnsbl, timeout)},
    {"dnsbl", "query_timeout", value_kind::duration, R"("1s")", 50, minute,
     "Wait for one resolver before asking the next.", MXG_FIELD(dnsbl, query_timeout)},
    {"dnsbl", "attempts", value_kind::integer, "2", 1, 10,
     "Tries per query, rotating over the resolvers.", MXG_FIELD(dnsbl, attempts)},
    {"dnsbl", "min_ttl", value_kind::duration, R"("60s")", 0, day,
     "Shortest time an answer is cached, whatever its TTL.", MXG_FIELD(dnsbl, min_ttl)},
    {"dnsbl", "max_ttl", value_kind::duration, R"("1h")", 0, 7 * day,
     "Longest time an answer is cached.", MXG_FIELD(dnsbl, max_ttl)},
    {"dnsbl", "cache_size", value_kind::integer, "100000", 16, 100000000,
     "Answers kept in the cache shared by all threads (least recently used go first).",
     MXG_FIELD(dnsbl, cache_size)},
    {"dnsbl", "action", value_kind::string, R"("connect")", 0, 0,
     "`connect`: refuse a listed client at once; `rcpt`: at its first RCPT, after logging "
     "HELO, sender and recipient.",
     MXG_FIELD(dnsbl, action)},
    {"dnsbl", "reply", value_kind::string,
     R"("554 5.7.1 Service unavailable; client [{client}] blocked using {site}")", 0, 0,
     "Reply to a listed client; `{client}` and `{site}` are filled in.", MXG_FIELD(dnsbl, reply)},
    {"dnsbl", "rhsbl_reply", value_kind::string,
     R"("554 5.7.1 Service unavailable; {what} <{domain}> blocked using {site}")", 0, 0,
     "Reply for a listed sender or HELO domain; `{what}`, `{domain}`, `{site}` filled in.",
     MXG_FIELD(dnsbl, rhsbl_reply)},
    {"dnsbl", "reply_txt", value_kind::boolean, "false", 0, 0,
     "Append the list's TXT record to the reply.", MXG_FIELD(dnsbl, reply_txt)},
    {"dnsbl", "health_interval", value_kind::duration, R"("5m")", 0, day,
     "RFC 5782 test of each list (127.0.0.2 listed, 127.0.0.1 not); failing lists do not "
     "count. 0 = off.",
     MXG_FIELD(dnsbl, health_interval)},
    {"dnsbl", "keys", value_kind::string_list, "[]", 0, 0,
     "Query keys `zone=KEY` for lists that want one in the name (KEY.zone).",
     MXG_FIELD(dnsbl, keys)},
    // [bounce]
    {"bounce", "double_bounce", value_kind::string, R"("discard")", 0, 0,
     "A null-sender message to a double-bounce address: `discard` (250, relayed nowhere) or "
     "`reject` (550 at RCPT).",
     MXG_FIELD(bounce, double_bounce)},
    {"bounce", "double_bounce_addresses", value_kind::string_list, "[]", 0, 0,
     "Double-bounce addresses, besides MAILER-DAEMON@ and double-bounce@ any relay domain.",
     MXG_FIELD(bounce, double_bounce_addresses)},
    // [batv]
    {"batv", "domains", value_kind::string_list, "[]", 0, 0,
     "Sender domains whose outbound mail is BATV-signed and whose bounces must carry a valid tag.",
     MXG_FIELD(batv, domains)},
    {"batv", "keys", value_kind::string_list, "[]", 0, 0,
     "Keys `N:secret` (N = 0-9, secret ≥ 16 characters); old keys stay to verify until expiry.",
     MXG_FIELD(batv, keys)},
    {"batv", "sign_key", value_kind::integer, "0", 0, 9, "The key number new tags are made with.",
     MXG_FIELD(batv, sign_key)},
    {"batv", "validity_days", value_kind::integer, "7", 1, 100, "Days a tag stays valid.",
     MXG_FIELD(batv, validity_days)},
    {"batv", "exempt_recipients", value_kind::string_list, "[]", 0, 0,
     "Addresses (or `@domain`) that take untagged bounces anyway; postmaster@ always does.",
     MXG_FIELD(batv, exempt_recipients)},
    {"batv", "exempt_clients", value_kind::string_list, "[]", 0, 0,
     "Clients (CIDR) whose null-sender mail is not checked for tags (e.g. list servers).",
     MXG_FIELD(batv, exempt_clients)},
    // [limits]
    {"limits", "connections_per_ip", value_kind::string, R"("0")", 0, 0,
     "New connections per client (`N/period`, e.g. `30/1m`); past it `421 4.7.0`. 0 = no limit.",
     MXG_FIELD(limits, connections_per_ip)},
    {"limits", "messages_per_ip", value_kind::string, R"("0")", 0, 0,
     "Messages (MAIL commands) per client; past it `452 4.7.1`.",
     MXG_FIELD(limits, messages_per_ip)},
    {"limits", "recipients_per_ip", value_kind::string, R"("0")", 0, 0,
     "Recipients per client; past it `452 4.7.1`.", MXG_FIELD(limits, recipients_per_ip)},
    {"limits", "null_sender_per_ip", value_kind::string, R"("0")", 0, 0,
     "Null-sender messages (bounces) per client; past it `452 4.7.1`.",
     MXG_FIELD(limits, null_sender_per_ip)},
    {"limits", "messages_per_sender", value_kind::string, R"("0")", 0, 0,
     "Messages per envelope sender address, whatever the client; past it `452 4.7.1`.",
     MXG_FIELD(limits, messages_per_sender)},
    {"limits", "refused_recipients_per_ip", value_kind::string, R"("0")", 0, 0,
     "Refused (unknown) recipients per client, a directory-harvest signal; past it `421 4.7.0`.",
     MXG_FIELD(limits, refused_recipients_per_ip)},
    {"limits", "concurrent_per_ip", value_kind::integer, "0", 0, 1000000,
     "Concurrent sessions per client across every gateway sharing the store (leases that "
     "expire with a crashed instance); past it `421 4.7.0`. 0 = off.",
     MXG_FIELD(limits, concurrent_per_ip)},
    {"limits", "lease_ttl", value_kind::duration, R"("2m")", second, hour,
     "How long the leases of an instance that stopped (crashed) keep counting.",
     MXG_FIELD(limits, lease_ttl)},
    {"limits", "ipv4_prefix", value_kind::integer, "32", 8, 32,
     "Prefix an IPv4 client is counted under.", MXG_FIELD(limits, ipv4_prefix)},
    {"limits", "ipv6_prefix", value_kind::integer, "64", 32, 128,
     "Prefix an IPv6 client is counted under.", MXG_FIELD(limits, ipv6_prefix)},
    {"limits", "max_keys", value_kind::integer, "1000000", 1000, 100000000,
     "Counters the embedded store keeps (least recently used go first).",
     MXG_FIELD(limits, max_keys)},
    // [redis]
    {"redis", "url", value_kind::string, R"("")", 0, 0,
     "`redis://[[user]:password@]host[:port][/db]` or `unix:///path[?db=N]`: share limits and "
     "greylisting with the other gateways; empty = the embedded store.",
     MXG_FIELD(redis, url)},
    {"redis", "failure", value_kind::string, R"("local")", 0, 0,
     "While Redis does not answer: `local` (decide in process), `open` (allow), `tempfail` (451).",
     MXG_FIELD(redis, failure)},
    {"redis", "timeout", value_kind::duration, R"("200ms")", 10, minute,
     "Longest wait for Redis in a session; then the failure policy decides.",
     MXG_FIELD(redis, timeout)},
    {"redis", "prefix", value_kind::string, R"("mxg:")", 0, 0,
     "Prefix of every key mxguard writes (share one Redis between deployments).",
     MXG_FIELD(redis, prefix)},
    // [greylist]
    {"greylist", "enabled", value_kind::boolean, "false", 0, 0,
     "Greylist (client network, sender, recipient) triplets at RCPT with `451 4.7.1`.",
     MXG_FIELD(greylist, enabled)},
    {"greylist", "delay", value_kind::duration, R"("25m")", 0, day,
     "A triplet's first retry is accepted this long after its first attempt.",
     MXG_FIELD(greylist, delay)},
    {"greylist", "retry_window", value_kind::duration, R"("4h")", second, 7 * day,
     "After the delay, a retry must come within this, or the triplet starts over.",
     MXG_FIELD(greylist, retry_window)},
    {"greylist", "lifetime", value_kind::duration, R"("36d")", minute, 365 * day,
     "A passed triplet (and a client's pass count) is remembered this long after its last use.",
     MXG_FIELD(greylist, lifetime)},
    {"greylist", "auto_allowlist_after", value_kind::integer, "5", 0, 1000000,
     "A client network that passed this many triplets is not greylisted any more; 0 = never.",
     MXG_FIELD(greylist, auto_allowlist_after)},
    {"greylist", "allowlist_networks", value_kind::string_list, "[]", 0, 0,
     "Clients (CIDR) never greylisted.", MXG_FIELD(greylist, allowlist_networks)},
    {"greylist", "allowlist_sender_domains", value_kind::string_list, "[]", 0, 0,
     "Sender domains (`.x` = subdomains) never greylisted.",
     MXG_FIELD(greylist, allowlist_sender_domains)},
    {"greylist", "ipv4_prefix", value_kind::integer, "24", 8, 32,
     "Client network of a triplet: senders retry from other addresses of their pool.",
     MXG_FIELD(greylist, ipv4_prefix)},
    {"greylist", "ipv6_prefix", value_kind::integer, "64", 32, 128, "The same for IPv6.",
     MXG_FIELD(greylist, ipv6_prefix)},
    // [log]
    {"log", "format", value_kind::string, R"("kv")", 0, 0,
     "`kv` (key=value) or `json`, one line per event; `--log-format` overrides.",
     MXG_FIELD(log, format)},
};

#undef MXG_FIELD

}  // namespace

std::span<const setting_spec> settings_table() {
  return table;
}

}  // namespace mxguard::guard
