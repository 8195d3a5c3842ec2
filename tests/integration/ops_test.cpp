// Operations end to end: the metrics endpoint scraped over HTTP after a
// scripted mix of sessions, every mxguardctl command against a running
// daemon, drain, and statistics that survive a restart. Real peers:
// smtp-sink, rbldnsd, libclamav with a signature written here.
#include <csignal>

#include <map>
#include <regex>

#include "common.hpp"
#include "dns_servers.hpp"

namespace mxguard::test {
namespace {

const std::string virus_marker = "MXGUARD-OPS-TEST-VIRUS-MARKER";

struct ops_setup {
  int metrics_port = free_port();
  fs::path socket;
  fs::path stats;
  fs::path sigs;
};

std::string ops_config(const temp_dir& dir, const smtp_sink& sink, const rbldnsd& dns,
                       ops_setup& s) {
  s.socket = dir / "control.sock";
  s.stats = dir / "stats.json";
  s.sigs = dir / "sigs";
  fs::create_directories(s.sigs);
  write_file(s.sigs / "test.ndb", "Mxguard.Test.Marker:0:*:" + hex(virus_marker) + "\n");
  return base_config(quoted(sink.address()), "max_sessions_per_ip = 50\n",
                     "\n[dnsbl]\nresolvers = [" + quoted(dns.resolver()) +
                         "]\nsites = [\"bl.test=127.0.0.[2..11]\"]\nhealth_interval = \"0s\"\n"
                         "\n[limits]\nconnections_per_ip = \"2/1h\"\n"
                         "\n[scan]\nsignatures = " +
                         quoted(s.sigs.string()) +
                         "\n"
                         "\n[metrics]\nlisten = \"127.0.0.1:" +
                         std::to_string(s.metrics_port) +
                         "\"\n"
                         "\n[stats]\nfile = " +
                         quoted(s.stats.string()) +
                         "\nflush_interval = \"200ms\"\n"
                         "\n[control]\nsocket = " +
                         quoted(s.socket.string()) + "\n");
}

struct ctl_result {
  int status = -1;
  std::string output;
};

ctl_result mxguardctl(const temp_dir& dir, const ops_setup& s, std::vector<std::string> args) {
  static int n = 0;
  auto log = dir / ("ctl-" + std::to_string(++n) + ".out");
  std::vector<std::string> argv{MXGUARDCTL_BINARY, "-s", s.socket.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  child ctl(argv, log);
  auto status = ctl.wait_exit(30s);
  return {status.value_or(-1), read_file(log)};
}

smtp_reply connect_and_greet(smtp_client& c, const std::string& source, int port) {
  if (!c.connect_from(source, port)) return {};
  return c.read_reply();
}

// The scripted mix: what the metrics and the statistics must then show.
//   127.0.0.20: one relayed message, one relay-refused recipient, one virus
//   127.0.0.10: listed on bl.test, refused at connect
//   127.0.0.21: three connections, the third past connections_per_ip 2/1h
void run_mix(const guard& mx) {
  smtp_client a;
  ASSERT_EQ(connect_and_greet(a, "127.0.0.20", mx.port()).code, 220);
  ASSERT_EQ(a.start_transaction("alice@remote.example", "user@example.org").code, 250);
  ASSERT_EQ(a.send_message(make_message("fine", "hello\r\n")).code, 250);
  ASSERT_EQ(a.command("MAIL FROM:<alice@remote.example>").code, 250);
  EXPECT_EQ(a.command("RCPT TO:<x@foreign.example>").code, 554);
  ASSERT_EQ(a.command("RCPT TO:<user@example.org>").code, 250);
  auto virus = a.send_message(make_message("infected", "x " + virus_marker + " x\r\n"));
  EXPECT_EQ(virus.code, 554) << virus.text;
  a.command("QUIT");

  smtp_client listed;
  EXPECT_EQ(connect_and_greet(listed, "127.0.0.10", mx.port()).code, 554);
  listed.command("QUIT");

  for (int i = 0; i < 3; ++i) {
    smtp_client c;
    auto greeting = connect_and_greet(c, "127.0.0.21", mx.port());
    EXPECT_EQ(greeting.code, i < 2 ? 220 : 421) << i << ": " << greeting.text;
    if (greeting.code == 220) c.command("QUIT");
  }
}

}  // namespace

TEST(Ops, MetricsShowExactlyTheScriptedMix) {
  temp_dir dir;
  smtp_sink sink(dir);
  rbldnsd dns(dir);
  ops_setup s;
  guard mx(dir, ops_config(dir, sink, dns, s));
  // The harness's own readiness probes are connections too: count from here.
  const auto before = http_get(s.metrics_port, "/metrics");
  run_mix(mx);
  ASSERT_TRUE(sink.wait_messages(1));
  // The last sessions' counters land as they close: wait for the last
  // refusal and for every session to have ended. (Fix: only the refusal was
  // waited for, and a slow daemon — the sanitized build — still had the
  // session before it open.)
  std::string text;
  for (int i = 0; i < 200; ++i) {
    text = http_get(s.metrics_port, "/metrics");
    if (metric(text, "mxguard_connections_total{outcome=\"refused\"}") -
                std::max(0.0, metric(before, "mxguard_connections_total{outcome=\"refused\"}")) ==
            2 &&
        metric(text, "mxguard_sessions_open") == 0)
      break;
    std::this_thread::sleep_for(50ms);
  }
  const std::map<std::string, double> want{
      {"mxguard_connections_total{outcome=\"accepted\"}", 3},
      {"mxguard_connections_total{outcome=\"refused\"}", 2},
      {"mxguard_refusals_total{stage=\"rcpt\",rule=\"relay\"}", 1},
      {"mxguard_refusals_total{stage=\"connect\",rule=\"dnsbl:bl.test\"}", 1},
      {"mxguard_refusals_total{stage=\"connect\",rule=\"limits:connections_per_ip\"}", 1},
      {"mxguard_refusals_total{stage=\"end_of_data\",rule=\"virus\"}", 1},
      {"mxguard_transactions_total{outcome=\"relayed\"}", 1},
      {"mxguard_transactions_total{outcome=\"virus\"}", 1},
      {"mxguard_viruses_total", 1},
      {"mxguard_next_hop_replies_total{class=\"2xx\"}", 1},
      {"mxguard_scan_seconds_count{outcome=\"clean\"}", 1},
      {"mxguard_scan_seconds_count{outcome=\"virus\"}", 1},
      {"mxguard_scan_signatures", 1},
      {"mxguard_sessions_open", 0},
  };
  for (const auto& [series, value] : want) {
    const bool gauge = series == "mxguard_scan_signatures" || series == "mxguard_sessions_open";
    const double base = gauge ? 0 : std::max(0.0, metric(before, series));
    EXPECT_EQ(metric(text, series) - base, value) << series;
  }
  // Nothing else was refused.
  std::regex refusal("^mxguard_refusals_total\\{[^}]*\\} ([0-9]+)$");
  double refusals = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, refusal)) refusals += std::stod(m[1]);
  }
  EXPECT_EQ(refusals, 4) << text;
  EXPECT_GT(metric(text, "mxguard_dnsbl_queries_total"), 0);
  EXPECT_GT(metric(text, "process_resident_memory_bytes"), 0);

  int status = 0;
  EXPECT_EQ(http_get(s.metrics_port, "/healthz", &status), "ok\n");
  EXPECT_EQ(status, 200);
  http_get(s.metrics_port, "/readyz", &status);
  EXPECT_EQ(status, 200);
}

TEST(Ops, ReadinessFollowsTheNextHop) {
  temp_dir dir;
  int metrics_port = free_port();
  guard mx(dir, base_config(
                    quoted("127.0.0.1:" + std::to_string(free_port())), "",
                    "\n[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n"));
  int status = 0;
  http_get(metrics_port, "/readyz", &status);
  EXPECT_EQ(status, 200);
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  EXPECT_EQ(c.start_transaction("a@remote.example", "user@example.org").code, 451);
  auto body = http_get(metrics_port, "/readyz", &status);
  EXPECT_EQ(status, 503);
  EXPECT_NE(body.find("next-hop"), std::string::npos) << body;
}

TEST(Ops, EveryControlCommandAgainstARunningDaemon) {
  temp_dir dir;
  smtp_sink sink(dir);
  rbldnsd dns(dir);
  ops_setup s;
  auto config = ops_config(dir, sink, dns, s);
  guard mx(dir, config);
  run_mix(mx);

  auto status = mxguardctl(dir, s, {"status"});
  EXPECT_EQ(status.status, 0) << status.output;
  EXPECT_NE(status.output.find("version: 0.1.0"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("signatures"), std::string::npos) << status.output;
  auto json_status = mxguardctl(dir, s, {"--json", "status"});
  EXPECT_EQ(json_status.status, 0);
  EXPECT_NE(json_status.output.find("\"sessions\": 0"), std::string::npos) << json_status.output;

  auto config_out = mxguardctl(dir, s, {"config"});
  EXPECT_EQ(config_out.status, 0);
  EXPECT_NE(config_out.output.find("[scan]"), std::string::npos) << config_out.output;

  auto listed = mxguardctl(dir, s, {"check", "127.0.0.10"});
  EXPECT_EQ(listed.status, 4) << listed.output;
  EXPECT_NE(listed.output.find("bl.test=127.0.0.[2..11]: listed answer=127.0.0.2"),
            std::string::npos)
      << listed.output;
  auto clean = mxguardctl(dir, s, {"check", "127.0.0.20"});
  EXPECT_EQ(clean.status, 0) << clean.output;
  EXPECT_NE(clean.output.find("passes"), std::string::npos) << clean.output;

  auto stats = mxguardctl(dir, s, {"stats", "--days", "1"});
  EXPECT_EQ(stats.status, 0) << stats.output;
  // accepted 1, refused 2 (relay, dnsbl), tempfailed 1 (connections_per_ip: 421), virus 1
  std::regex row("\\d{4}-\\d{2}-\\d{2} +1 +0 +2 +1 +0 +1");
  EXPECT_TRUE(std::regex_search(stats.output, row)) << stats.output;

  auto report_file = dir / "report.html";
  auto report =
      mxguardctl(dir, s, {"report", "--days", "7", "--format", "html", "-o", report_file.string()});
  EXPECT_EQ(report.status, 0) << report.output;
  auto html = read_file(report_file);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Mxguard.Test.Marker"), std::string::npos) << "viruses by name";

  auto reloaded = mxguardctl(dir, s, {"reload"});
  EXPECT_EQ(reloaded.status, 0) << reloaded.output;
  write_file(mx.config_path(), "[server]\nworkers = \"many\"\n");
  auto refused = mxguardctl(dir, s, {"reload"});
  EXPECT_EQ(refused.status, 1) << refused.output;
  EXPECT_NE(refused.output.find("previous configuration stays"), std::string::npos)
      << refused.output;

  auto unknown = mxguardctl(dir, s, {"--json", "status", "extra"});
  EXPECT_EQ(unknown.status, 2) << "a usage error: " << unknown.output;
  child offline({MXGUARDCTL_BINARY, "-s", (dir / "nobody.sock").string(), "status"},
                dir / "offline.out");
  EXPECT_EQ(offline.wait_exit(10s).value_or(-1), 3) << read_file(dir / "offline.out");
}

TEST(Ops, ACommandThatFailsSaysWhyInsteadOfClosingTheSocket) {
  temp_dir dir;
  smtp_sink sink(dir);
  rbldnsd dns(dir);
  ops_setup s;
  auto config = ops_config(dir, sink, dns, s);
  fs::create_directories(s.stats);  // a statistics "file" that cannot be read
  guard mx(dir, config);
  auto stats = mxguardctl(dir, s, {"stats", "--days", "1"});
  EXPECT_EQ(stats.status, 1) << "1 = the daemon said no; 3 = cannot reach: " << stats.output;
  EXPECT_NE(stats.output.find("the command failed"), std::string::npos) << stats.output;
  EXPECT_EQ(mxguardctl(dir, s, {"status"}).status, 0) << "the control socket still answers";
}

TEST(Ops, DrainFinishesOpenSessionsRefusesNewOnesAndExitsZero) {
  temp_dir dir;
  smtp_sink sink(dir);
  rbldnsd dns(dir);
  ops_setup s;
  guard mx(dir, ops_config(dir, sink, dns, s));
  smtp_client open_session;
  ASSERT_EQ(connect_and_greet(open_session, "127.0.0.20", mx.port()).code, 220);
  ASSERT_EQ(open_session.start_transaction("a@remote.example", "user@example.org").code, 250);
  smtp_client idle_session;
  ASSERT_EQ(connect_and_greet(idle_session, "127.0.0.21", mx.port()).code, 220);
  ASSERT_EQ(idle_session.command("EHLO idle.test").code, 250);

  auto drain = mxguardctl(dir, s, {"drain", "--wait", "0"});
  EXPECT_EQ(drain.status, 0) << drain.output;
  EXPECT_NE(drain.output.find("draining 2 sessions"), std::string::npos) << drain.output;
  std::this_thread::sleep_for(200ms);
  smtp_client late;
  EXPECT_FALSE(late.connect(mx.port()) && late.read_reply(2s).code == 220)
      << "a new connection is refused while draining";

  // A session between transactions ends at its next command; one inside a
  // transaction finishes it first.
  auto idle_next = idle_session.command("NOOP");
  EXPECT_EQ(idle_next.code, 421) << idle_next.text;
  EXPECT_NE(idle_next.text.find("shutting down"), std::string::npos) << idle_next.text;
  EXPECT_TRUE(idle_session.closed_by_peer());
  EXPECT_EQ(open_session.send_message(make_message("last", "finishing\r\n")).code, 250);
  EXPECT_EQ(open_session.command("NOOP").code, 421);
  auto exit_status = mx.process().wait_exit(10s);
  ASSERT_TRUE(exit_status.has_value()) << "mxguard did not exit after draining";
  EXPECT_EQ(*exit_status, 0);
  EXPECT_NE(mx.log().find("STOP reason=drained"), std::string::npos) << mx.log();
  ASSERT_TRUE(sink.wait_messages(1));
}

TEST(Ops, DrainTellsSilentSessionsAtOnceInsteadOfWaitingForTheirTimeout) {
  temp_dir dir;
  ASSERT_TRUE(make_certificate(dir));
  smtp_sink sink(dir);
  rbldnsd dns(dir);
  ops_setup s;
  // command_timeout stays at its 5 minutes: a drain that waited for these
  // sessions' next command would not end within the test. openssl s_client
  // cannot choose its source address: 127.0.0.1 needs more than 2
  // connections (the harness's port probe is one).
  auto config = ops_config(dir, sink, dns, s);
  config.replace(config.find("\"2/1h\""), 6, "\"20/1h\"");
  guard mx(dir, config + "\n[tls]\ncert = " + quoted((dir / "cert.pem").string()) +
                    "\nkey = " + quoted((dir / "key.pem").string()) + "\n");
  // Plain TCP, silent after a delivered message (it waits in the idle wait).
  smtp_client plain;
  ASSERT_EQ(connect_and_greet(plain, "127.0.0.20", mx.port()).code, 220);
  ASSERT_EQ(plain.start_transaction("a@remote.example", "user@example.org").code, 250);
  ASSERT_EQ(plain.send_message(make_message("before drain", "hi\r\n")).code, 250);
  // Over TLS, silent after the handshake (it waits in a read).
  child tls({"/usr/bin/openssl", "s_client", "-starttls", "smtp", "-connect",
             "127.0.0.1:" + std::to_string(mx.port()), "-ign_eof", "-quiet"},
            dir / "s_client.out");
  for (int i = 0; i < 100 && mx.log().find("cipher=") == std::string::npos; ++i)
    std::this_thread::sleep_for(100ms);
  ASSERT_NE(mx.log().find("cipher="), std::string::npos) << mx.log();

  auto drain = mxguardctl(dir, s, {"drain", "--wait", "0"});
  EXPECT_EQ(drain.status, 0) << drain.output;
  auto told = plain.read_reply(5s);
  EXPECT_EQ(told.code, 421) << "told unasked: " << told.text;
  EXPECT_NE(told.text.find("4.3.2"), std::string::npos) << told.text;
  EXPECT_TRUE(plain.closed_by_peer());
  EXPECT_TRUE(tls.wait_exit(5s).has_value()) << "the TLS session was not closed";
  EXPECT_NE(read_file(dir / "s_client.out").find("421 4.3.2"), std::string::npos)
      << read_file(dir / "s_client.out");
  auto exit_status = mx.process().wait_exit(10s);
  ASSERT_TRUE(exit_status.has_value()) << "mxguard waited for its silent sessions";
  EXPECT_EQ(*exit_status, 0);
  EXPECT_NE(mx.log().find("STOP reason=drained"), std::string::npos) << mx.log();
}

TEST(Ops, StatisticsSurviveARestart) {
  temp_dir dir;
  smtp_sink sink(dir);
  rbldnsd dns(dir);
  ops_setup s;
  auto config = ops_config(dir, sink, dns, s);
  {
    guard first(dir, config, "first");
    run_mix(first);
  }  // SIGTERM: the pending counts are written as it stops
  guard second(dir, config, "second");
  smtp_client c;
  ASSERT_EQ(connect_and_greet(c, "127.0.0.22", second.port()).code, 220);
  ASSERT_EQ(c.start_transaction("b@remote.example", "user@example.org").code, 250);
  ASSERT_EQ(c.send_message(make_message("after restart", "hi\r\n")).code, 250);
  c.command("QUIT");
  auto stats = mxguardctl(dir, s, {"--json", "stats", "--days", "1"});
  ASSERT_EQ(stats.status, 0) << stats.output;
  EXPECT_NE(stats.output.find("\"outcome:accepted\": 2"), std::string::npos) << stats.output;
  EXPECT_NE(stats.output.find("\"outcome:refused\": 2"), std::string::npos) << stats.output;
  EXPECT_NE(stats.output.find("\"outcome:tempfailed\": 1"), std::string::npos) << stats.output;
  EXPECT_NE(stats.output.find("\"outcome:virus\": 1"), std::string::npos) << stats.output;
  EXPECT_NE(stats.output.find("\"virus:Mxguard.Test.Marker"), std::string::npos) << stats.output;
}

}  // namespace mxguard::test

namespace mxguard::test {

TEST(Ops, LogFileIsReopenedOnSigusr1AfterRotation) {
  temp_dir dir;
  smtp_sink sink(dir);
  auto log = dir / "mail.log";
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[log]\nfile = " + quoted(log.string()) + "\n"));
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  c.command("QUIT");
  std::this_thread::sleep_for(100ms);
  EXPECT_NE(read_file(log).find("CONNECT"), std::string::npos);
  fs::rename(log, dir / "mail.log.1");  // what logrotate does
  mx.process().signal(SIGUSR1);
  std::string reopened;
  for (int i = 0; i < 50 && reopened.find("LOG_REOPENED") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
    if (fs::exists(log)) reopened = read_file(log);
  }
  EXPECT_NE(reopened.find("LOG_REOPENED"), std::string::npos);
  smtp_client after;
  ASSERT_TRUE(after.connect(mx.port()));
  after.read_reply();
  after.command("QUIT");
  std::this_thread::sleep_for(100ms);
  EXPECT_NE(read_file(log).find("DISCONNECT"), std::string::npos) << "new lines go to the new file";
  EXPECT_EQ(read_file(dir / "mail.log.1").find("LOG_REOPENED"), std::string::npos);
}

}  // namespace mxguard::test

namespace mxguard::test {

// Statistics are read with blocking I/O off the control thread: a Redis
// that answers nothing holds `mxguardctl stats` for its timeouts, not
// /metrics and the rest of the control thread's work.
TEST(Ops, HungStatisticsStoreDoesNotHoldTheControlThread) {
  temp_dir dir;
  redis_server redis(dir);
  smtp_sink sink(dir);
  const int metrics_port = free_port();
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[redis]\nurl = " + quoted(redis.url()) +
                                "\n\n[stats]\nstore = \"redis\"\n\n[control]\nsocket = " +
                                quoted((dir / "mx.sock").string()) +
                                "\n\n[metrics]\nlisten = \"127.0.0.1:" +
                                std::to_string(metrics_port) + "\"\n"));
  ASSERT_NE(http_get(metrics_port, "/metrics").find("mxguard_"), std::string::npos);
  redis.pause();
  const auto asked = std::chrono::steady_clock::now();
  child ctl({MXGUARDCTL_BINARY, "-s", (dir / "mx.sock").string(), "stats"}, dir / "ctl.out");
  std::this_thread::sleep_for(300ms);  // being served: each Redis call waits 1 s
  const auto start = std::chrono::steady_clock::now();
  const auto metrics = http_get(metrics_port, "/metrics");
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_NE(metrics.find("mxguard_"), std::string::npos);
  EXPECT_LT(took, 500ms);
  ASSERT_TRUE(ctl.wait_exit(20s).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - asked, 1s) << "the store was really in the way";
  redis.resume();
}

TEST(Ops, PairCountsIntoTheSameDaysThroughRedis) {
  temp_dir dir;
  redis_server redis(dir);
  smtp_sink sink(dir);
  auto config = [&](const std::string& name) {
    return base_config(quoted(sink.address()), "",
                       "\n[redis]\nurl = " + quoted(redis.url()) +
                           "\n\n[stats]\nstore = \"redis\"\nflush_interval = \"200ms\"\n"
                           "\n[control]\nsocket = " +
                           quoted((dir / (name + ".sock")).string()) + "\n");
  };
  guard a(dir, config("a"), "a");
  guard b(dir, config("b"), "b");
  for (int port : {a.port(), b.port()}) {
    smtp_client c;
    ASSERT_TRUE(c.connect(port));
    c.read_reply();
    ASSERT_EQ(c.start_transaction("s@remote.example", "user@example.org").code, 250);
    ASSERT_EQ(c.send_message(make_message("pair", "hi\r\n")).code, 250);
    c.command("QUIT");
  }
  std::string out;
  for (int i = 0; i < 50; ++i) {
    auto log = dir / ("pair-" + std::to_string(i) + ".out");
    child ctl(
        {MXGUARDCTL_BINARY, "-s", (dir / "a.sock").string(), "--json", "stats", "--days", "1"},
        log);
    ctl.wait_exit(10s);
    out = read_file(log);
    if (out.find("\"outcome:accepted\": 2") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(out.find("\"outcome:accepted\": 2"), std::string::npos)
      << "A's report counts B's message too: " << out;
  EXPECT_NE(redis.cli("--scan --pattern 'mxg:stats:*'").find("mxg:stats:"), std::string::npos);
}

}  // namespace mxguard::test
