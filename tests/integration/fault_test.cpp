// Faults under load (issue #9): Redis killed and restarted, a Sentinel
// failover, DNS black-holed, the next hop down, stalled mid-DATA and
// refusing, mxguard itself killed mid-DATA. Each test drives several
// concurrent clients, records every reply, and checks against what the next
// hop received what the design promises: every 250 has exactly one copy at
// the next hop, no copy is there twice, no bounce is made, and a fault of
// ours is answered with a 4xx (or, where mxguard dies, a dropped
// connection), never a 5xx and never a hang.
#include <condition_variable>
#include <csignal>
#include <mutex>

#include <fmt/format.h>

#include "common.hpp"
#include "dns_servers.hpp"
#include "load.hpp"

namespace mxguard::test {
namespace {

std::chrono::milliseconds since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t);
}

// The promises, for any fault.
void expect_nothing_lost_or_doubled(const load_result& load, const delivery_report& report) {
  EXPECT_EQ(report.lost, 0u) << report.summary() << "\n" << load.summary();
  EXPECT_EQ(report.duplicated, 0u) << report.summary();
  EXPECT_EQ(report.bounces, 0u) << report.summary();
}

// Every message that was not accepted got a 4xx, at whatever step.
void expect_only_temporary_failures(const load_result& load) {
  for (const auto& a : load.attempts) {
    if (a.accepted()) continue;
    EXPECT_GE(a.code, 400) << a.subject << " at " << a.failed_at << "\n" << load.summary();
    EXPECT_LT(a.code, 500) << a.subject << " at " << a.failed_at << "\n" << load.summary();
  }
}

std::chrono::milliseconds slowest_reply(const load_result& load) {
  std::chrono::milliseconds worst{0};
  for (const auto& a : load.attempts) worst = std::max(worst, a.slowest_step);
  return worst;
}

std::size_t count_code(const load_result& load, const std::string& step, int code) {
  std::size_t n = 0;
  for (const auto& a : load.attempts) n += a.failed_at == step && a.code == code;
  return n;
}

// RecordProperty for the test report, and a line on stdout for the log.
void report(const std::string& label, const load_result& load, const delivery_report& delivery) {
  std::cout << "[ fault    ] " << label << ": " << load.summary() << "\n  " << delivery.summary()
            << "\n";
}

// --- Redis ---------------------------------------------------------------------------

std::string redis_guard_config(const smtp_sink& sink, const std::string& redis,
                               const std::string& policy) {
  return base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n",
                     "\n[limits]\nconnections_per_ip = \"100000/1m\"\n"
                     "messages_per_ip = \"100000/1m\"\nrecipients_per_ip = \"100000/1m\"\n"
                     "\n[redis]\n" +
                         redis + "failure = " + quoted(policy) + "\ntimeout = \"200ms\"\n");
}

TEST(Fault, RedisKilledAndRestartedUnderLoad) {
  struct row {
    const char* policy;
    bool all_accepted;  // while Redis is away: local and open decide, tempfail answers 451
  } rows[] = {{"local", true}, {"open", true}, {"tempfail", false}};
  for (const auto& r : rows) {
    SCOPED_TRACE(r.policy);
    temp_dir dir;
    redis_server redis(dir);
    smtp_sink sink(dir);
    guard mx(dir, redis_guard_config(sink, "url = " + quoted(redis.url()) + "\n", r.policy));
    load_options o;
    o.port = mx.port();
    o.clients = 10;
    o.messages = 400;  // stopped below
    o.pause = 30ms;
    o.run = std::string("redis-") + r.policy;
    smtp_load load(o);
    load.start();
    ASSERT_TRUE(load.wait_done(30, 20s));
    redis.kill();
    const auto killed_at = load.done();
    std::this_thread::sleep_for(800ms);
    const auto during_outage = load.done() - killed_at;
    redis.restart();
    const auto restarted = std::chrono::steady_clock::now();
    // Until decisions go to the new Redis process again, then a little more.
    bool recovered = false;
    for (int i = 0; i < 200 && !recovered; ++i) {
      std::this_thread::sleep_for(50ms);
      recovered = redis.cli("--scan --pattern 'mxg:m:*'").find("mxg:m:") != std::string::npos;
    }
    const auto recovery = since(restarted);
    const auto recovered_at = load.done();
    load.wait_done(recovered_at + 30, 20s);
    load.stop();
    auto result = load.wait();
    EXPECT_TRUE(recovered) << mx.log();
    EXPECT_GT(during_outage, 10u) << "the load stalled while Redis was away";
    sink.wait_messages(result.accepted(), 5s);
    auto delivery = check_delivery(result, sink.messages());
    report(fmt::format("redis killed for 800 ms, failure={} (deciding again {} ms after the "
                       "restart)",
                       r.policy, recovery.count()),
           result, delivery);
    expect_nothing_lost_or_doubled(result, delivery);
    EXPECT_EQ(delivery.unconfirmed, 0u) << delivery.summary();
    expect_only_temporary_failures(result);
    // Each session was answered within redis.timeout (200 ms) plus slack.
    EXPECT_LT(slowest_reply(result), 1500ms) << result.summary();
    if (r.all_accepted) {
      EXPECT_EQ(result.accepted(), result.attempts.size()) << result.summary();
    } else {
      // The policy's 4xx (where a limit is asked: connect, MAIL, RCPT).
      EXPECT_LT(result.accepted(), result.attempts.size()) << result.summary();
      for (const auto& a : result.attempts) {
        if (a.accepted()) continue;
        EXPECT_NE(a.last_reply().text.find("4.3.0 Error: temporary failure"), std::string::npos)
            << a.failed_at << ": " << a.last_reply().text;
        // In place of the greeting only 421 is a temporary refusal.
        if (a.failed_at == "banner") {
          EXPECT_EQ(a.code, 421) << a.last_reply().text;
        }
      }
    }
    auto log = mx.log();
    EXPECT_NE(log.find("REDIS severity=warning state=down"), std::string::npos) << log;
    EXPECT_NE(log.find("REDIS state=up"), std::string::npos) << log;
  }
}

// --- Sentinel ---------------------------------------------------------------------------

bool eventually(const std::function<bool()>& what, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!what()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

TEST(Fault, SentinelFailoverIsFollowedToTheNewPrimary) {
  temp_dir dir;
  // (No 5 s wait for more replicas before a full sync.)
  redis_server primary(dir, "", 0, {"--repl-diskless-sync-delay", "0"});
  redis_server replica(dir, "", 0,
                       {"--replicaof", "127.0.0.1", std::to_string(primary.port()),
                        "--repl-diskless-sync-delay", "0"});
  ASSERT_TRUE(eventually(
      [&] {
        return replica.cli("INFO replication").find("master_link_status:up") != std::string::npos;
      },
      10s));
  // Three sentinels, quorum 2, quick to act.
  std::vector<std::unique_ptr<redis_sentinel>> sentinels;
  for (int i = 0; i < 3; ++i)
    sentinels.push_back(
        std::make_unique<redis_sentinel>(dir, primary.port(), "mymaster", 2, 1000ms, 2000ms));
  // Each knows the replica and the two others before the primary is killed.
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& s : sentinels) {
          if (s->replicas() != 1) return false;
          if (s->cli("SENTINEL master mymaster").find("num-other-sentinels\n2\n") ==
              std::string::npos)
            return false;
        }
        return true;
      },
      20s));
  smtp_sink sink(dir);
  // The first sentinel mxguard is told about is not there: it asks the next.
  const std::string sentinel_list =
      quoted("127.0.0.1:" + std::to_string(free_port())) + ", " + quoted(sentinels[0]->address()) +
      ", " + quoted(sentinels[1]->address()) + ", " + quoted(sentinels[2]->address());
  guard mx(dir, base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n",
                            "\n[limits]\nmessages_per_ip = \"100000/1m\"\n"
                            "messages_per_sender = \"3/1m\"\n"
                            "\n[redis]\nsentinels = [" +
                                sentinel_list +
                                "]\nsentinel_master = \"mymaster\"\nfailure = \"tempfail\"\n"
                                "timeout = \"300ms\"\n"));
  // Before: decisions on the primary (every sender of the load is new: the
  // per-sender limit of 3 is for the probe below).
  load_options o;
  o.port = mx.port();
  o.clients = 10;
  o.messages = 400;
  o.pause = 50ms;
  o.run = "sentinel";
  smtp_load load(o);
  load.start();
  ASSERT_TRUE(load.wait_done(20, 20s));
  EXPECT_NE(primary.cli("--scan --pattern 'mxg:m:*'").find("mxg:m:{127.0.0.1/32}127.0.0.1/32"),
            std::string::npos);
  const auto killed = std::chrono::steady_clock::now();
  primary.kill();
  ASSERT_TRUE(eventually([&] { return sentinels[1]->primary_port() == replica.port(); }, 30s))
      << read_file(dir / ("sentinel-" + std::to_string(sentinels[1]->port()) + ".log"));
  const auto promoted = since(killed);
  // mxguard follows: decisions are made on the new primary again.
  const std::string followed = "REDIS state=up primary=127.0.0.1:" + std::to_string(replica.port());
  EXPECT_TRUE(eventually([&] { return mx.log().find(followed) != std::string::npos; }, 20s))
      << mx.log();
  const auto following = since(killed);
  const auto before = load.done();
  ASSERT_TRUE(load.wait_done(before + 40, 30s));
  load.stop();
  auto result = load.wait();
  sink.wait_messages(result.accepted(), 5s);
  auto delivery = check_delivery(result, sink.messages());
  report(fmt::format("sentinel failover, primary killed (promoted after {} ms, followed after "
                     "{} ms)",
                     promoted.count(), following.count()),
         result, delivery);
  expect_nothing_lost_or_doubled(result, delivery);
  EXPECT_EQ(delivery.unconfirmed, 0u) << delivery.summary();
  expect_only_temporary_failures(result);
  // Sessions kept being answered within redis.timeout (300 ms) plus slack.
  EXPECT_LT(slowest_reply(result), 1500ms) << result.summary();
  // The last messages of every client went through the new primary.
  std::size_t accepted_at_end = 0;
  for (int c = 0; c < o.clients; ++c)
    for (auto it = result.attempts.rbegin(); it != result.attempts.rend(); ++it)
      if (it->client == c) {
        accepted_at_end += it->accepted();
        break;
      }
  EXPECT_EQ(accepted_at_end, static_cast<std::size_t>(o.clients)) << result.summary();
  EXPECT_GT(count_code(result, "MAIL", 451), 0u) << result.summary();

  // Limits are enforced against the new primary: the 4th message of one
  // sender in a minute is refused, and its counter is there.
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  ASSERT_EQ(c.read_reply().code, 220);
  ASSERT_EQ(c.command("EHLO probe.test").code, 250);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.command("MAIL FROM:<probe@remote.example>").code, 250) << i;
    EXPECT_EQ(c.command("RSET").code, 250);
  }
  auto fourth = c.command("MAIL FROM:<probe@remote.example>");
  EXPECT_EQ(fourth.code, 452) << fourth.text;
  EXPECT_NE(replica.cli("--scan --pattern 'mxg:s:*'").find("mxg:s:probe@remote.example"),
            std::string::npos);
  c.command("QUIT");

  // A graceful switch back (SENTINEL FAILOVER) while mxguard is connected:
  // the old primary, restarted, is made a replica by the sentinels and then
  // promoted; the primary mxguard uses is demoted under it.
  primary.restart();
  ASSERT_TRUE(eventually(
      [&] {
        return primary.cli("INFO replication").find("master_link_status:up") != std::string::npos &&
               sentinels[0]->replicas() == 1;
      },
      30s));
  o.run = "sentinel-switch";
  smtp_load switching(o);
  switching.start();
  ASSERT_TRUE(switching.wait_done(20, 20s));
  const auto asked = std::chrono::steady_clock::now();
  // Asked again when refused (-BUSY/-NOGOODSLAVE while the sentinels still
  // settle) and when a failover the sentinels accepted does not happen: they
  // abort one whose replica they do not yet judge good enough (seen once
  // under the sanitizer run's load, the switch never came in 30 s).
  ASSERT_TRUE(eventually(
      [&] {
        if (sentinels[2]->primary_port() == primary.port()) return true;
        if (!sentinels[0]->cli("SENTINEL FAILOVER mymaster").starts_with("OK")) return false;
        return eventually([&] { return sentinels[2]->primary_port() == primary.port(); }, 15s);
      },
      60s));
  const auto switched = since(asked);
  // (Followed with or without a failure: "state=up primary=..." or "primary=... previous=...".)
  const std::string back = "primary=127.0.0.1:" + std::to_string(primary.port());
  EXPECT_TRUE(eventually([&] { return mx.log().find(back) != std::string::npos; }, 20s))
      << mx.log();
  const auto followed_back = since(asked);
  ASSERT_TRUE(switching.wait_done(switching.done() + 40, 30s));
  switching.stop();
  auto switch_result = switching.wait();
  sink.wait_messages(result.accepted() + switch_result.accepted(), 5s);
  auto both = result;
  both.attempts.insert(both.attempts.end(), switch_result.attempts.begin(),
                       switch_result.attempts.end());
  auto switch_delivery = check_delivery(both, sink.messages());
  report(fmt::format("sentinel failover, graceful (switched after {} ms, followed after {} ms)",
                     switched.count(), followed_back.count()),
         switch_result, switch_delivery);
  expect_nothing_lost_or_doubled(both, switch_delivery);
  EXPECT_EQ(switch_delivery.unconfirmed, 0u) << switch_delivery.summary();
  expect_only_temporary_failures(switch_result);
  EXPECT_LT(slowest_reply(switch_result), 1500ms) << switch_result.summary();
  EXPECT_TRUE(switch_result.attempts.back().accepted()) << switch_result.summary();
  // Writes go to the new primary (the old one is a read-only replica now).
  smtp_client probe;
  ASSERT_TRUE(probe.connect(mx.port()));
  ASSERT_EQ(probe.read_reply().code, 220);
  ASSERT_EQ(probe.command("EHLO probe.test").code, 250);
  EXPECT_EQ(probe.command("MAIL FROM:<after-switch@remote.example>").code, 250);
  EXPECT_NE(primary.cli("--scan --pattern 'mxg:s:*'").find("mxg:s:after-switch@remote.example"),
            std::string::npos);
}

// --- DNS ---------------------------------------------------------------------------------

TEST(Fault, DnsBlackHoledSessionsServedWithinTheTimeout) {
  temp_dir dir;
  rbldnsd dns(dir);
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n",
                            "\n[dnsbl]\nresolvers = [" + quoted(dns.resolver()) +
                                "]\nsites = [\"bl.test=127.0.0.[2..11]\", \"w1.test\"]\n"
                                "timeout = \"500ms\"\nquery_timeout = \"200ms\"\nattempts = 2\n"
                                "health_interval = \"0s\"\n"));
  // Every message from an address of its own (none of them listed), so
  // every session asks the lists.
  auto run_load = [&](const std::string& name, int net) {
    load_options o;
    o.port = mx.port();
    o.clients = 10;
    o.messages = 4;
    o.run = name;
    o.source = [net](int client, int message) {
      return "127." + std::to_string(net) + "." + std::to_string(message + 1) + "." +
             std::to_string(client + 1);
    };
    smtp_load load(o);
    return load.run();
  };
  auto answered = run_load("dns-answering", 40);
  EXPECT_EQ(answered.accepted(), answered.attempts.size()) << answered.summary();
  EXPECT_LT(slowest_reply(answered), 400ms) << answered.summary();

  dns.pause();  // black-holed: queries are taken, never answered
  auto holed = run_load("dns-black-holed", 41);
  dns.resume();
  auto all = holed;
  all.attempts.insert(all.attempts.end(), answered.attempts.begin(), answered.attempts.end());
  sink.wait_messages(all.accepted(), 5s);
  auto delivery = check_delivery(all, sink.messages());
  report("dns black-holed", holed, delivery);
  EXPECT_EQ(holed.accepted(), holed.attempts.size()) << holed.summary();
  expect_nothing_lost_or_doubled(all, delivery);
  EXPECT_EQ(delivery.unconfirmed, 0u);
  // The banner waited for the lists, at most dnsbl.timeout (500 ms).
  std::chrono::milliseconds slowest_banner{0};
  for (const auto& a : holed.attempts)
    slowest_banner = std::max(slowest_banner, a.waited_at("banner"));
  EXPECT_GE(slowest_banner, 400ms) << holed.summary();
  EXPECT_LT(slowest_reply(holed), 1200ms) << holed.summary();
  auto log = mx.log();
  EXPECT_NE(log.find("client=127.41.1.1 score=0 listed=\"\" timeouts=2"), std::string::npos) << log;
}

// Greylisting by confirmed name asks DNS once per session: with DNS
// black-holed, a message to several recipients waits dnsbl.timeout once,
// not once per recipient.
TEST(Fault, DnsBlackHoledGreylistLooksUpTheClientOncePerSession) {
  temp_dir dir;
  rbldnsd dns(dir);
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "",
                            "\n[dnsbl]\nresolvers = [" + quoted(dns.resolver()) +
                                "]\ntimeout = \"400ms\"\nquery_timeout = \"200ms\"\n"
                                "health_interval = \"0s\"\n"
                                "\n[greylist]\nenabled = true\nfcrdns = true\n"));
  dns.pause();
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  c.read_reply();
  ASSERT_EQ(c.command("EHLO client.test").code, 250);
  ASSERT_EQ(c.command("MAIL FROM:<a@remote.example>").code, 250);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {
    auto r = c.command("RCPT TO:<user" + std::to_string(i) + "@example.org>");
    EXPECT_EQ(r.code, 451) << r.text;
    EXPECT_NE(r.text.find("greylisted"), std::string::npos) << r.text;
  }
  const auto took = std::chrono::steady_clock::now() - start;
  dns.resume();
  EXPECT_GE(took, 350ms) << "the first recipient waited for DNS";
  EXPECT_LT(took, 1000ms) << "the others did not";
}

// --- the next hop ---------------------------------------------------------------------------

// `cfg` with `keys` added to its [relay] section.
std::string with_relay(std::string cfg, const std::string& keys) {
  const std::string section = "\n[relay]\n";
  cfg.insert(cfg.find(section) + section.size(), keys);
  return cfg;
}

TEST(Fault, NextHopDownRefusedThenBack) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n"));
  load_options o;
  o.port = mx.port();
  o.clients = 10;
  o.messages = 400;
  o.pause = 20ms;
  o.run = "hop-down";
  smtp_load load(o);
  load.start();
  ASSERT_TRUE(load.wait_done(30, 20s));
  sink.kill();  // connections refused from now on
  const auto killed_at = load.done();
  std::this_thread::sleep_for(700ms);
  const auto during_outage = load.done() - killed_at;
  sink.restart();
  const auto back_at = load.done();
  ASSERT_TRUE(load.wait_done(back_at + 40, 20s));
  load.stop();
  auto result = load.wait();
  sink.wait_messages(result.accepted(), 5s);
  auto delivery = check_delivery(result, sink.messages());
  report("next hop down", result, delivery);
  expect_nothing_lost_or_doubled(result, delivery);
  // (A copy without a 250 needs smtp-sink killed between writing its dump
  // and answering the dot: possible, and what SMTP's retry then duplicates.)
  expect_only_temporary_failures(result);
  EXPECT_GT(during_outage, 10u);
  EXPECT_GT(count_code(result, "RCPT", 451), 0u) << result.summary();
  // Refused connections say 4.4.1; a session whose next-hop connection the
  // kill cut between its greeting and the RCPT says 4.4.2. (Fix: only 4.4.1
  // was expected, and 2 to 4 runs in 10 had such a session, 2 in 3 under
  // the sanitizers.)
  for (const auto& a : result.attempts) {
    if (a.failed_at != "RCPT") continue;
    const auto& text = a.last_reply().text;
    EXPECT_TRUE(text.find("4.4.1 Next hop not reachable") != std::string::npos ||
                text.find("4.4.2 Next hop connection lost") != std::string::npos)
        << text;
  }
  EXPECT_LT(slowest_reply(result), 2500ms) << result.summary();  // relay.connect_timeout 2 s
  // And deliveries resumed.
  EXPECT_TRUE(result.attempts.back().accepted() || result.accepted() > back_at) << result.summary();
}

TEST(Fault, NextHopStalledMidData) {
  temp_dir dir;
  // smtp-sink stops reading after DATA's 354 for an hour: a big message
  // fills the socket buffers and our write stalls; a small one is taken by
  // the kernel and its final dot never answered.
  smtp_sink sink(dir, {"-H", "3600"});
  guard mx(dir, with_relay(base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n"),
                           "data_timeout = \"2s\"\n"));
  load_options o;
  o.port = mx.port();
  o.clients = 8;
  o.messages = 2;
  o.run = "hop-stalled";
  o.padding = [](int client) -> std::size_t { return client % 2 ? 8u << 20 : 0; };
  smtp_load load(o);
  load.start();
  // While the relays hang, a new client is greeted at once.
  std::this_thread::sleep_for(500ms);
  smtp_client fresh;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(fresh.connect(mx.port()));
  EXPECT_EQ(fresh.read_reply(2s).code, 220);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  auto result = load.wait();
  auto delivery = check_delivery(result, sink.messages());
  report("next hop stalled mid-DATA", result, delivery);
  expect_nothing_lost_or_doubled(result, delivery);
  EXPECT_EQ(delivery.copies, 0u);
  EXPECT_EQ(result.accepted(), 0u);
  for (const auto& a : result.attempts) {
    EXPECT_EQ(a.failed_at, "dot") << result.summary();
    EXPECT_EQ(a.code, 451) << result.summary();
    EXPECT_NE(a.last_reply().text.find("4.4.2 Next hop timed out"), std::string::npos)
        << a.last_reply().text;
  }
  // relay.data_timeout (2 s) after the dot, not the client's own patience.
  EXPECT_LT(slowest_reply(result), 3500ms) << result.summary();
}

TEST(Fault, NextHopRefusing) {
  struct row {
    const char* label;
    std::vector<std::string> sink_options;
    const char* step;  // where the client sees it
    int code;
    const char* text;
  } rows[] = {
      {"soft-refuses RCPT", {"-r", "RCPT"}, "RCPT", 450, "450 4.3.0 Error: command failed"},
      {"soft-refuses the dot", {"-r", "."}, "dot", 450, "450 4.3.0 Error: command failed"},
      // 421 ends the next hop's session, not the client's: a 451 with its text.
      {"says 421 at MAIL and hangs up",
       {"-Q", "MAIL"},
       "RCPT",
       451,
       "451 4.0.0 Server closing connection"},
      {"says 421 at the dot and hangs up",
       {"-Q", "."},
       "dot",
       451,
       "451 4.0.0 Server closing connection"},
      {"hangs up at the dot without a word",
       {"-q", "."},
       "dot",
       451,
       "451 4.4.2 Next hop connection lost"},
      {"hard-refuses the dot (its 5xx passed on)",
       {"-f", "."},
       "dot",
       500,
       "500 5.3.0 Error: command failed"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    temp_dir dir;
    smtp_sink sink(dir, r.sink_options);
    guard mx(dir, base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n"));
    load_options o;
    o.port = mx.port();
    o.clients = 5;
    o.messages = 3;
    o.run = std::string("refusing-") + r.sink_options[1];
    smtp_load load(o);
    auto result = load.run();
    auto delivery = check_delivery(result, sink.messages());
    report(std::string("next hop ") + r.label, result, delivery);
    // (smtp-sink dumps every message it read, whatever it then answered:
    // here a copy at the sink is not a delivery, so only 250s are checked.)
    expect_nothing_lost_or_doubled(result, delivery);
    EXPECT_EQ(result.accepted(), 0u);
    for (const auto& a : result.attempts) {
      EXPECT_EQ(a.failed_at, r.step) << result.summary();
      EXPECT_EQ(a.code, r.code) << result.summary();
      EXPECT_TRUE(a.last_reply().text.starts_with(r.text)) << a.last_reply().text;
      // The client's session goes on after a failed transaction.
      EXPECT_EQ(a.quit_code(), 221) << a.subject;
    }
    if (r.code < 500) {
      expect_only_temporary_failures(result);
      EXPECT_EQ(delivery.permanent, 0u);
    }
  }
}

// --- mxguard itself ----------------------------------------------------------------------------

TEST(Fault, GuardKilledMidDataAndRestarted) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n"));
  // Ten clients stop halfway through their message; then mxguard is killed.
  std::mutex m;
  std::condition_variable cv;
  int in_data = 0;
  bool release = false;
  load_options o;
  o.port = mx.port();
  o.clients = 10;
  o.messages = 1;
  o.run = "killed";
  o.mid_data = [&](int, int) {
    std::unique_lock lock(m);
    ++in_data;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  };
  smtp_load load(o);
  load.start();
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 20s, [&] { return in_data == o.clients; }));
  }
  mx.process().signal(SIGKILL);
  mx.process().wait_exit(5s);
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  auto killed = load.wait();
  for (const auto& a : killed.attempts) {
    EXPECT_EQ(a.failed_at, "dot") << killed.summary();
    EXPECT_EQ(a.code, 0) << killed.summary();
    EXPECT_FALSE(a.no_reply) << "the connection hung instead of dropping: " << killed.summary();
  }
  // Restarted on the same port, it delivers again.
  mx.restart();
  load_options again = o;
  again.mid_data = nullptr;
  again.messages = 3;
  again.run = "restarted";
  smtp_load after(again);
  auto result = after.run();
  EXPECT_EQ(result.accepted(), result.attempts.size()) << result.summary();
  auto all = killed;
  all.attempts.insert(all.attempts.end(), result.attempts.begin(), result.attempts.end());
  sink.wait_messages(result.accepted(), 5s);
  std::this_thread::sleep_for(200ms);
  auto delivery = check_delivery(all, sink.messages());
  report("mxguard killed mid-DATA", all, delivery);
  expect_nothing_lost_or_doubled(all, delivery);
  EXPECT_EQ(delivery.unconfirmed, 0u) << delivery.summary();
  EXPECT_EQ(delivery.copies, result.attempts.size());
}

TEST(Fault, GuardKilledAnywhereUnderLoadAndRestarted) {
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "max_sessions_per_ip = 200\n"));
  load_options o;
  o.port = mx.port();
  o.clients = 10;
  o.messages = 400;
  o.pause = 20ms;
  o.reply_timeout = 5s;
  o.run = "killed-anywhere";
  smtp_load load(o);
  load.start();
  ASSERT_TRUE(load.wait_done(40, 20s));
  mx.process().signal(SIGKILL);
  mx.process().wait_exit(5s);
  std::this_thread::sleep_for(300ms);  // connections refused meanwhile
  mx.restart();
  const auto back_at = load.done();
  ASSERT_TRUE(load.wait_done(back_at + 40, 20s));
  load.stop();
  auto result = load.wait();
  sink.wait_messages(result.accepted(), 5s);
  std::this_thread::sleep_for(200ms);
  auto delivery = check_delivery(result, sink.messages());
  report("mxguard killed under load", result, delivery);
  expect_nothing_lost_or_doubled(result, delivery);
  // A session dies with mxguard (a dropped connection, or none while it is
  // down), and is never left hanging. A copy without a 250 needs the kill
  // between the next hop's 250 and ours: SMTP's own duplicate window
  // (RFC 1047), at most one per session in flight.
  EXPECT_LE(delivery.unconfirmed, static_cast<std::size_t>(o.clients)) << delivery.summary();
  for (const auto& a : result.attempts) {
    if (a.accepted()) continue;
    EXPECT_EQ(a.code, 0) << a.subject << " at " << a.failed_at << ": " << a.last_reply().text;
    EXPECT_FALSE(a.no_reply) << a.subject << " hung at " << a.failed_at;
  }
  EXPECT_TRUE(result.attempts.back().accepted() || result.accepted() > back_at) << result.summary();
}

}  // namespace
}  // namespace mxguard::test
