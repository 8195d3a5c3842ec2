// The shared pass cache: a client that passed the DNS lists and the
// early-talker test on one gateway is not tested again on its pair (real
// redis-server, real rbldnsd).
#include "common.hpp"
#include "dns_servers.hpp"

namespace mxguard::test {

TEST(PassCache, PassedOnAIsNotTestedAgainOnB) {
  temp_dir dir;
  redis_server redis(dir);
  rbldnsd dns(dir);
  smtp_sink sink(dir);
  auto config = base_config(quoted(sink.address()), "greet_pause = \"1s\"\n",
                            "\n[dnsbl]\nresolvers = [" + quoted(dns.resolver()) +
                                "]\nsites = [\"bl.test\"]\nhealth_interval = \"0s\"\n"
                                "\n[limits]\npass_cache_ttl = \"1h\"\n"
                                "\n[redis]\nurl = " +
                                quoted(redis.url()) + "\n");
  guard a(dir, config, "a");
  guard b(dir, config, "b");
  auto greet = [](int port, std::chrono::milliseconds* took) {
    smtp_client c;
    const auto started = std::chrono::steady_clock::now();
    if (!c.connect_from("127.0.0.50", port)) return smtp_reply{};
    auto r = c.read_reply(5s);  // the teaser and the greeting: one multi-line reply
    *took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started);
    c.command("QUIT");
    return r;
  };
  std::chrono::milliseconds first{0}, second{0};
  EXPECT_EQ(greet(a.port(), &first).code, 220);
  EXPECT_GE(first, 900ms) << "the first visit waits out the greet pause";
  const auto queries = dns.queries_for("50.0.0.127.bl.test");
  EXPECT_EQ(queries, 1u);
  EXPECT_EQ(greet(b.port(), &second).code, 220);
  EXPECT_LT(second, 500ms) << "B knows the client passed on A: no pause";
  EXPECT_EQ(dns.queries_for("50.0.0.127.bl.test"), queries) << "and no DNS list query";
  EXPECT_NE(redis.cli("--scan --pattern 'mxg:pass:*'").find("mxg:pass:127.0.0.50/32"),
            std::string::npos);
}

}  // namespace mxguard::test
