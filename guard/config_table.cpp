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
    {"server", "user", value_kind::string, R"("")", 0, 0,
     "Switch to this user (and its groups) once every socket is bound, when started as root; "
     "empty = stay. Under systemd use `User=` with ambient capabilities instead (the firewall "
     "feeders need CAP_NET_ADMIN, which a switch drops).",
     MXG_FIELD(server, user)},
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
    {"server", "refused_session_time", value_kind::duration, R"("10s")", 100, minute,
     "A client refused at connect (a `554` greeting: access list, DNS lists, early talker) is "
     "answered `503` to up to five commands and `221` to QUIT for this long, then closed "
     "(RFC 5321 3.1); its session slot is free again.",
     MXG_FIELD(server, refused_session_time)},
    {"server", "banner", value_kind::string, R"("ESMTP mxguard")", 0, 0,
     "Text after the hostname in the 220 greeting.", MXG_FIELD(server, banner)},
    {"server", "add_received_header", value_kind::boolean, "true", 0, 0,
     "Prepend a Received: trace header to relayed mail (RFC 5321 §4.4).",
     MXG_FIELD(server, add_received_header)},
    {"server", "proxy_protocol_from", value_kind::string_list, "[]", 0, 0,
     "Load balancers (CIDR) whose connections start with a PROXY protocol v1/v2 header (v2 "
     "TLVs up to 64 KiB are skipped). A header naming no client (v2 `LOCAL` health checks, "
     "`UNKNOWN`) stands for the balancer itself: counted, never trusted.",
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
    {"relay", "connection_cache_time", value_kind::duration, R"("2s")", 0, 5 * minute,
     "How long a next-hop connection, its transaction done, waits for the next session to the "
     "same next hops on its I/O thread (checked before use, QUIT when unused; Postfix's "
     "`smtp_connection_cache_time_limit`); 0 = each session opens its own and says QUIT.",
     MXG_FIELD(relay, connection_cache_time)},
    {"relay", "connection_reuse_time", value_kind::duration, R"("300s")", second, day,
     "No reuse of a next-hop connection older than this (Postfix's "
     "`smtp_connection_reuse_time_limit`).",
     MXG_FIELD(relay, connection_reuse_time)},
    {"relay", "connection_cache_size", value_kind::integer, "16", 0, 10000,
     "Idle next-hop connections kept per I/O thread at most. Each holds a session (for "
     "Postfix an smtpd process) at the next hop: keep `workers` times this well under its "
     "process limit.",
     MXG_FIELD(relay, connection_cache_size)},
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
    {"header_rules", "max_header_lines", value_kind::integer, "10000", 100, 10000000,
     "With header rules set, a message with more (unfolded) header lines is refused with "
     "`552 5.3.4`: each line is matched against every rule on an I/O thread.",
     MXG_FIELD(header_rules, max_header_lines)},
    {"header_rules", "body_rules", value_kind::string_list, "[]", 0, 0,
     "The same rules over the body's lines (Postfix body_checks); a rule counts once a message.",
     MXG_FIELD(header_rules, body_rules)},
    {"header_rules", "body_size_limit", value_kind::size, "262144", 0, 1 << 30,
     "Body rules look at the first this many bytes of the body.",
     MXG_FIELD(header_rules, body_size_limit)},
    // [scan]
    {"scan", "signatures", value_kind::string, R"("")", 0, 0,
     "Directory of ClamAV signatures (.cvd/.cld/.hdb/.ndb/.ldb, what `cl_load` takes); empty = "
     "no virus scanning.",
     MXG_FIELD(scan, signatures)},
    {"scan", "workers", value_kind::integer, "2", 1, 64,
     "Scan threads (off the I/O threads); a restart applies a change.", MXG_FIELD(scan, workers)},
    {"scan", "queue_size", value_kind::integer, "64", 0, 100000,
     "Messages waiting for a scan thread; past it the message is `overload_action`'s.",
     MXG_FIELD(scan, queue_size)},
    {"scan", "timeout", value_kind::duration, R"("30s")", 10, 10 * minute,
     "Longest wait for a scan result, queue included; past it `overload_action`.",
     MXG_FIELD(scan, timeout)},
    {"scan", "virus_action", value_kind::string, R"("reject")", 0, 0,
     "`reject` (`554 5.7.1 Virus found: NAME`), `discard` (250, nothing relayed), `pass` "
     "(relayed with `X-Virus-Status: Infected`) or `tempfail` (`451 4.7.1`, for a trial "
     "period: the sender keeps the message).",
     MXG_FIELD(scan, virus_action)},
    {"scan", "error_action", value_kind::string, R"("tempfail")", 0, 0,
     "A libclamav error: `tempfail` (`451 4.7.0`), `reject` or `pass` (with `X-Virus-Status`).",
     MXG_FIELD(scan, error_action)},
    {"scan", "encrypted_action", value_kind::string, R"("pass")", 0, 0,
     "An encrypted archive or document: `pass` (with `X-Virus-Status`), `reject` or `tempfail`.",
     MXG_FIELD(scan, encrypted_action)},
    {"scan", "limits_action", value_kind::string, R"("pass")", 0, 0,
     "A message past a scan limit below: `pass` (with `X-Virus-Status`), `reject` or `tempfail`.",
     MXG_FIELD(scan, limits_action)},
    {"scan", "overload_action", value_kind::string, R"("tempfail")", 0, 0,
     "Queue full or `timeout` passed: `tempfail` (`451 4.7.0`) or `pass` (with "
     "`X-Virus-Status: Unscanned`).",
     MXG_FIELD(scan, overload_action)},
    // The message itself is the outermost file: at the same size as
    // max_message_size, a message padded to the limit would pass unscanned.
    {"scan", "max_file_size", value_kind::size, "31457280", 1024, 1ll << 32,
     "Largest file (or archive member) scanned. The message itself is one: keep it above "
     "`server.max_message_size`, or a message near that size goes to `limits_action`.",
     MXG_FIELD(scan, max_file_size)},
    {"scan", "max_scan_size", value_kind::size, "104857600", 1024, 1ll << 34,
     "Most bytes scanned per message, archives unpacked.", MXG_FIELD(scan, max_scan_size)},
    {"scan", "max_recursion", value_kind::integer, "16", 1, 100,
     "Deepest nesting of archives and MIME parts.", MXG_FIELD(scan, max_recursion)},
    {"scan", "max_files", value_kind::integer, "10000", 1, 1000000,
     "Most archive members per message.", MXG_FIELD(scan, max_files)},
    {"scan", "max_scan_time", value_kind::duration, R"("30s")", second, hour,
     "libclamav's own limit on one scan. Longer than `scan.timeout` is work no session waits "
     "for, holding a scan thread.",
     MXG_FIELD(scan, max_scan_time)},
    {"scan", "temp_file_above", value_kind::size, "33554432", 0, 1ll << 40,
     "Larger messages are scanned from an unlinked temporary file, smaller ones from memory.",
     MXG_FIELD(scan, temp_file_above)},
    {"scan", "temp_dir", value_kind::string, R"("/tmp")", 0, 0,
     "Where those files and libclamav's unpacked archive members go.", MXG_FIELD(scan, temp_dir)},
    {"scan", "reload_check_interval", value_kind::duration, R"("60s")", 0, day,
     "How often the signature directory is checked for changes (freshclam); 0 = SIGHUP only.",
     MXG_FIELD(scan, reload_check_interval)},
    // [score]
    {"score", "enabled", value_kind::boolean, "false", 0, 0,
     "Score messages (DNSBL score + WARN rule scores) and tag or refuse them by the levels below.",
     MXG_FIELD(score, enabled)},
    {"score", "tag_level", value_kind::number, "-999", -1000, 1000,
     "From this score `X-Spam-Status: No|Yes, score=...` is added; -999 = on every message.",
     MXG_FIELD(score, tag_level)},
    {"score", "tag2_level", value_kind::number, "6.31", -1000, 1000,
     "From this score the message is spam: `X-Spam-Status: Yes` and the Subject prefixed.",
     MXG_FIELD(score, tag2_level)},
    {"score", "kill_level", value_kind::number, "999", -1000, 1000,
     "From this score the message is refused (`554 5.7.1`); 999 = never.",
     MXG_FIELD(score, kill_level)},
    {"score", "subject_tag", value_kind::string, R"("[SPAM] ")", 0, 0,
     "Prefix for the Subject of spam; empty = leave the Subject alone.",
     MXG_FIELD(score, subject_tag)},
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
    {"limits", "pass_cache_ttl", value_kind::duration, R"("0s")", 0, 30 * day,
     "A client that passed the DNS lists and the early-talker test is not tested again for "
     "this long, on every gateway sharing the state store (postscreen keeps its cache per "
     "host; it uses 1h for lists, 1d for the greeting); 0 = always test.",
     MXG_FIELD(limits, pass_cache_ttl)},
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
    {"limits", "per_prefix", value_kind::string_list, "[]", 0, 0,
     "More counters for the client's wider network, each `COUNTER FAMILY/LENGTH N/period` "
     "with COUNTER one of connections, messages, recipients, null_sender, refused_recipients "
     "and FAMILY ipv4 or ipv6, e.g. `[\"connections ipv4/24 150/1m\", \"messages ipv6/48 "
     "500/1m\"]`; all of a client's counters are checked at once, replies as for the "
     "`*_per_ip` limits.",
     MXG_FIELD(limits, per_prefix)},
    {"limits", "max_keys", value_kind::integer, "1000000", 1000, 100000000,
     "Keys the embedded store keeps. When full, the least recently used rate counters and "
     "pass marks go first; greylist state may hold three quarters, of which triplets still "
     "waiting for their retry go before passed triplets and auto-allowlist counts.",
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
     "Longest wait for Redis in one check (a rate check, a greylist step, a lease), a script "
     "reload included; then the failure policy decides.",
     MXG_FIELD(redis, timeout)},
    {"redis", "prefix", value_kind::string, R"("mxg:")", 0, 0,
     "Prefix of every key mxguard writes (share one Redis between deployments); no `{` or `}` "
     "(keys carry Redis Cluster hash tags).",
     MXG_FIELD(redis, prefix)},
    {"redis", "sentinels", value_kind::string_list, "[]", 0, 0,
     "Redis Sentinels `host:port` (port 26379 when left out), asked in turn on every (re)connect "
     "for the primary of `sentinel_master`; `url`'s host is then not used (its password and "
     "database are). Empty = no Sentinel.",
     MXG_FIELD(redis, sentinels)},
    {"redis", "sentinel_master", value_kind::string, R"("")", 0, 0,
     "The name the sentinels monitor the primary under (`sentinel monitor NAME ...`); needed "
     "with `sentinels`.",
     MXG_FIELD(redis, sentinel_master)},
    {"redis", "sentinel_password", value_kind::string, R"("")", 0, 0,
     "Password the sentinels want (their `requirepass`); empty = none.",
     MXG_FIELD(redis, sentinel_password)},
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
    {"greylist", "fcrdns", value_kind::boolean, "true", 0, 0,
     "A client with a forward-confirmed reverse name that is not generic (no address or "
     "dsl/dynamic/pool... in it) is known by the name's registrable domain instead of its "
     "network, so a provider whose pool rotates addresses is not delayed again; asks the "
     "`dnsbl.resolvers`.",
     MXG_FIELD(greylist, fcrdns)},
    // [blocklist]
    {"blocklist", "sync_interval", value_kind::duration, R"("250ms")", 50, minute,
     "How often the shared blocklist is read from the state store (a block on one gateway holds "
     "on the other within this).",
     MXG_FIELD(blocklist, sync_interval)},
    {"blocklist", "import_file", value_kind::string, R"("")", 0, 0,
     "File of `CIDR [reason]` lines added (permanently, rule `import`) at start.",
     MXG_FIELD(blocklist, import_file)},
    {"blocklist", "auto_block", value_kind::string_list,
     R"(["message 300/1m", "limits:* 30/1m", "recipient_list 20/10m", "relay 20/10m", "virus 3/1h 1d", "pregreet 3/1h"])",
     0, 0,
     "Auto-block rules `EVENT COUNT/WINDOW [BAN]`: a client (IPv4 /32, IPv6 `server.ipv6_prefix`) "
     "with COUNT events in WINDOW is blocked. EVENT: a refusal's rule (`*` at the end matches the "
     "rest) or `message` (a relayed message). Counted in the state store, so pair-wide.",
     MXG_FIELD(blocklist, auto_block)},
    {"blocklist", "never_block", value_kind::string_list, R"(["127.0.0.0/8", "::1/128"])", 0, 0,
     "Networks auto-block never blocks (allowlisted and trusted clients are never counted either).",
     MXG_FIELD(blocklist, never_block)},
    {"blocklist", "ban_time", value_kind::duration, R"("1h")", second, 365 * day,
     "First auto-block of a client; each repeat doubles it.", MXG_FIELD(blocklist, ban_time)},
    {"blocklist", "max_ban_time", value_kind::duration, R"("30d")", second, 365 * day,
     "Longest auto-block.", MXG_FIELD(blocklist, max_ban_time)},
    // An address sprayer (an IPv6 /48 holds 65,536 /64s) must not grow the
    // list, its pair-wide sync and the firewall sets without end.
    {"blocklist", "max_entries", value_kind::integer, "50000", 1, 10000000,
     "Auto-block adds nothing while the list holds this many entries (logged once as "
     "`BLOCKLIST_FULL`, counted in `mxguard_auto_blocks_skipped_total`); manual blocks and the "
     "import file are not capped. Keep it below `ipset_maxelem` when feeding an ipset.",
     MXG_FIELD(blocklist, max_entries)},
    {"blocklist", "reply", value_kind::string,
     R"("554 5.7.1 Service unavailable; client blocked for abuse")", 0, 0,
     "What a blocked client is told before the connection is closed.", MXG_FIELD(blocklist, reply)},
    {"blocklist", "nft_set", value_kind::string, R"("")", 0, 0,
     "nftables `family table set` kept equal to the blocklist (e.g. `inet mxguard blocked`; the "
     "IPv6 set is `<set>6` for `inet`); empty = none.",
     MXG_FIELD(blocklist, nft_set)},
    {"blocklist", "nft_set6", value_kind::string, R"("")", 0, 0,
     "Name of the IPv6 set instead of `<set>6`.", MXG_FIELD(blocklist, nft_set6)},
    {"blocklist", "nft_drop_chain", value_kind::string, R"("")", 0, 0,
     "When set, an input chain of this name is kept that drops the sets' addresses.",
     MXG_FIELD(blocklist, nft_drop_chain)},
    {"blocklist", "ipset_set", value_kind::string, R"("")", 0, 0,
     "ipset (hash:net) kept equal to the blocklist's IPv4 part; empty = none.",
     MXG_FIELD(blocklist, ipset_set)},
    {"blocklist", "ipset_set6", value_kind::string, R"("")", 0, 0, "ipset for the IPv6 part.",
     MXG_FIELD(blocklist, ipset_set6)},
    {"blocklist", "ipset_maxelem", value_kind::integer, "65536", 16, 1 << 26,
     "ipset size; when full, the entries closest to expiry stay out.",
     MXG_FIELD(blocklist, ipset_maxelem)},
    {"blocklist", "file", value_kind::string, R"("")", 0, 0,
     "A file rewritten (atomically) with the blocklist; empty = none.", MXG_FIELD(blocklist, file)},
    {"blocklist", "file_format", value_kind::string, R"("cidr")", 0, 0,
     "`cidr` (one prefix a line, both families) or `iptables` (an iptables-restore fragment: "
     "IPv4 only, IPv6 goes to `file6`).",
     MXG_FIELD(blocklist, file_format)},
    {"blocklist", "file6", value_kind::string, R"("")", 0, 0,
     "With `file_format = \"iptables\"`: the ip6tables-restore fragment for IPv6 entries; empty = "
     "IPv6 entries are not written.",
     MXG_FIELD(blocklist, file6)},
    {"blocklist", "exec", value_kind::string, R"("")", 0, 0,
     "Program run as `PROGRAM add|del CIDR EXPIRES REASON RULE` (no shell); empty = none.",
     MXG_FIELD(blocklist, exec)},
    // [dnsbl_zone]
    {"dnsbl_zone", "listen", value_kind::string_list, "[]", 0, 0,
     "Addresses (UDP and TCP) to answer DNS queries for `dnsbl_zone.zone` from the blocklist; "
     "empty = none.",
     MXG_FIELD(dnsbl_zone, listen)},
    {"dnsbl_zone", "zone", value_kind::string, R"("")", 0, 0,
     "The zone served, e.g. `bl.example.org`.", MXG_FIELD(dnsbl_zone, zone)},
    {"dnsbl_zone", "ttl", value_kind::duration, R"("5m")", second, day, "TTL of listed answers.",
     MXG_FIELD(dnsbl_zone, ttl)},
    {"dnsbl_zone", "txt", value_kind::string, R"("Blocked by mxguard: {reason}")", 0, 0,
     "TXT answer; `{reason}` and `{address}` are filled in.", MXG_FIELD(dnsbl_zone, txt)},
    // [metrics]
    {"metrics", "listen", value_kind::string, R"("")", 0, 0,
     "`addr:port` of the Prometheus endpoint (`/metrics`, `/healthz`, `/readyz`), e.g. "
     "`127.0.0.1:9125`; empty = none. Keep it on loopback or a management network.",
     MXG_FIELD(metrics, listen)},
    // [stats]
    {"stats", "store", value_kind::string, R"("file")", 0, 0,
     "`file` (`stats.file`, this gateway) or `redis` (the [redis] server: both gateways of a pair "
     "count into the same days).",
     MXG_FIELD(stats, store)},
    {"stats", "file", value_kind::string, R"("")", 0, 0,
     "Per-day statistics file (JSON), kept across restarts; empty (with `store = \"file\"`) = "
     "no statistics.",
     MXG_FIELD(stats, file)},
    {"stats", "flush_interval", value_kind::duration, R"("60s")", 100, hour,
     "How often counted decisions are written out.", MXG_FIELD(stats, flush_interval)},
    {"stats", "retention_days", value_kind::integer, "400", 1, 10000, "Days kept in the file.",
     MXG_FIELD(stats, retention_days)},
    {"stats", "max_names_per_day", value_kind::integer, "2000", 10, 1000000,
     "Distinct clients, sender domains and virus names counted per day; the rest count as "
     "`other`.",
     MXG_FIELD(stats, max_names_per_day)},
    // [control]
    {"control", "socket", value_kind::string, R"("")", 0, 0,
     "Unix socket for `mxguardctl`, e.g. `/run/mxguard/control.sock`; empty = none.",
     MXG_FIELD(control, socket)},
    {"control", "group", value_kind::string, R"("")", 0, 0,
     "Group that may use the socket besides the daemon's user and root (mode 0660; the daemon "
     "must be a member: `SupplementaryGroups=` in systemd); empty = the daemon's user and root "
     "only (0600).",
     MXG_FIELD(control, group)},
    // [log]
    {"log", "format", value_kind::string, R"("kv")", 0, 0,
     "`kv` (key=value) or `json`, one line per event; `--log-format` overrides.",
     MXG_FIELD(log, format)},
    {"log", "file", value_kind::string, R"("")", 0, 0,
     "Append the log to this file instead of stderr; SIGUSR1 reopens it (after logrotate). "
     "Takes effect at start.",
     MXG_FIELD(log, file)},
    {"log", "syslog", value_kind::boolean, "false", 0, 0,
     "Log through syslog(3) (facility mail, ident mxguard) instead of stderr; at start.",
     MXG_FIELD(log, syslog)},
};

#undef MXG_FIELD

}  // namespace

std::span<const setting_spec> settings_table() {
  return table;
}

}  // namespace mxguard::guard
