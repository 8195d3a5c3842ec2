// mxguard: the daemon's entry point. Parses the command line, loads and
// validates the configuration, starts the workers and handles signals:
// SIGHUP reloads (a bad file is refused and the old one stays in force),
// SIGTERM/SIGINT stop.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "config.hpp"
#include "control_server.hpp"
#include "mxguard/dnsbl/zone.hpp"
#include "mxguard/ops/firewall_feeder.hpp"
#include "mxguard/ops/http_endpoint.hpp"
#include "mxguard/ops/log.hpp"
#include "mxguard/ops/stats.hpp"
#include "mxguard/ratelimit/redis_stats.hpp"
#include "runtime.hpp"
#include "server.hpp"

namespace {

using namespace mxguard;
using namespace mxguard::guard;

int check_config(const std::string& file) {
  try {
    auto cfg = load_config(file);
    make_snapshot(cfg);  // loads TLS files too
    std::cout << describe(*cfg);
    if (cfg->signatures) {
      std::string error;
      auto engine = scan::engine::load(cfg->signatures->directory, cfg->signatures->limits, error);
      if (!engine) {
        std::cerr << "mxguard: scan.signatures: " << error << "\n";
        return 1;
      }
      std::cout << "# scan: " << engine->signatures() << " signatures loaded from "
                << cfg->signatures->directory << " (" << engine->description() << ")\n";
    }
    return 0;
  } catch (const config_error& e) {
    std::cerr << "mxguard: " << e.what() << "\n";
    return 1;
  }
}

void apply_log_format(const std::string& cli_format, const config& cfg) {
  const std::string& f = cli_format.empty() ? cfg.values.log.format : cli_format;
  ops::set_log_format(f == "json" ? ops::log_format::json : ops::log_format::kv);
}

void start_health_checks(boost::asio::io_context& control, const runtime_snapshot& snapshot) {
  if (!snapshot.dnsbl) return;
  boost::asio::co_spawn(control, dnsbl_health_loop(snapshot.dnsbl), [](std::exception_ptr e) {
    if (e) ops::log_message(ops::severity::error, "DNSBL", "health check loop ended by exception");
  });
}

// Prints each list's answer, filter match, weight and the total for one IP or
// domain, with the lists of the configuration file (a postmaster's "why").
int check_listing(const std::string& config_file, const std::string& subject, bool is_ip) {
  std::shared_ptr<const config> cfg;
  try {
    cfg = load_config(config_file);
  } catch (const config_error& e) {
    std::cerr << "mxguard: " << e.what() << "\n";
    return 1;
  }
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(subject, ec);
  if (is_ip && ec) {
    std::cerr << "mxguard: '" << subject << "' is not an IP address\n";
    return 2;
  }
  auto engine = std::make_shared<dnsbl::engine>(cfg->dnsbl);
  boost::asio::io_context io;
  dnsbl::score result;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        // (Not a ?: of two co_awaits: GCC 12 miscompiles that.)
        if (is_ip)
          result = co_await engine->score_client(address);
        else
          result = co_await engine->score_domain(subject);
      },
      boost::asio::detached);
  io.run();
  const auto& sites = is_ip ? cfg->dnsbl.sites : cfg->dnsbl.rhsbl_sites;
  if (sites.empty())
    std::cout << "no " << (is_ip ? "dnsbl.sites" : "dnsbl.rhsbl_sites") << " configured\n";
  for (const auto& r : result.sites) {
    std::string codes;
    for (const auto& c : r.codes) codes += (codes.empty() ? "" : ",") + c.to_string();
    const char* kind = r.kind == dnsbl::verdict_kind::listed       ? "listed"
                       : r.kind == dnsbl::verdict_kind::not_listed ? "not listed"
                       : r.kind == dnsbl::verdict_kind::timeout    ? "timeout"
                                                                   : "error";
    std::cout << r.which->spec << ": " << kind << (codes.empty() ? "" : " answer=" + codes)
              << " weight=" << (r.counted() ? r.which->weight : 0)
              << (r.error.empty() ? "" : " (" + r.error + ")")
              << (r.txt.empty() ? "" : " txt=\"" + r.txt + "\"") << "\n";
  }
  std::cout << "total=" << result.total << " threshold=" << cfg->dnsbl.threshold << " verdict="
            << (result.allowlisted ? "allowlisted"
                : result.listed    ? "refused"
                                   : "passes")
            << "\n";
  return result.listed ? 3 : 0;
}

// Empty on success, else why the new configuration was refused.
std::string reload(daemon_state& state, boost::asio::io_context& control, const std::string& file,
                   const std::string& cli_format) {
  try {
    auto cfg = load_config(file);
    auto old = state.current();
    auto snapshot = make_snapshot(cfg, old, state.store);
    if (snapshot->dnsbl != old->dnsbl) start_health_checks(control, *snapshot);
    if (auto kept = restart_only_changes(old->cfg->values, cfg->values); !kept.empty())
      ops::log_message(
          ops::severity::warning, "RELOAD",
          fmt::format("{} change only on restart; the running values stay", fmt::join(kept, ", ")));
    if (cfg->signatures && state.scanner) {
      state.scanner->watch(*cfg->signatures);
      state.scanner->reload();  // SIGHUP also means "read the signatures again"
    } else if (cfg->signatures) {
      ops::log_message(ops::severity::warning, "RELOAD",
                       "scanning was off at start: scan.signatures takes effect on restart");
    }
    apply_log_format(cli_format, *cfg);
    state.blocks().set_policy(cfg->blocklist);
    state.install(std::move(snapshot));
    ops::event("RELOAD").add("config", file).add("result", "ok").emit();
    return {};
  } catch (const std::exception& e) {
    ops::event("RELOAD", ops::severity::error)
        .add("config", file)
        .add("result", "refused, previous configuration stays in force")
        .add("error", e.what())
        .emit();
    return e.what();
  }
}

// Switches to `user` and its groups for good; why not, or "".
std::string drop_privileges(const std::string& user) {
  const passwd* pw = ::getpwnam(user.c_str());
  if (pw == nullptr) return "no user '" + user + "'";
  if (::initgroups(pw->pw_name, pw->pw_gid) != 0 || ::setgid(pw->pw_gid) != 0 ||
      ::setuid(pw->pw_uid) != 0)
    return std::string("cannot switch to '") + user + "': " + std::strerror(errno);
  if (pw->pw_uid != 0 && ::setuid(0) == 0) return "could regain root after switching";
  return {};
}

// Feeders from [blocklist], the import file, the auto-block rules and the
// sync loop that keeps this instance's copy of the shared list current.
void start_blocklist(daemon_state& state, boost::asio::io_context& control, const config& cfg) {
  const auto& b = cfg.values.blocklist;
  auto& blocks = state.blocks();
  if (!b.nft_set.empty()) {
    ops::nft_feeder::options o;
    o.spec = ops::nft_set_spec::parse(b.nft_set, b.nft_set6, b.nft_drop_chain);
    blocks.add_feeder(
        std::make_unique<ops::feeder_runner>(std::make_unique<ops::nft_feeder>(std::move(o))));
  }
  if (!b.ipset_set.empty()) {
    ops::ipset_feeder::options o;
    o.spec =
        ops::ipset_spec::make(b.ipset_set, b.ipset_set6, static_cast<std::size_t>(b.ipset_maxelem));
    blocks.add_feeder(
        std::make_unique<ops::feeder_runner>(std::make_unique<ops::ipset_feeder>(std::move(o))));
  }
  auto add_file_feeder = [&blocks](const std::string& path, ops::file_format format, bool v4,
                                   bool v6) {
    blocks.add_feeder(std::make_unique<ops::feeder_runner>(
        std::make_unique<ops::file_feeder>(ops::file_spec::make(path, format, v4, v6))));
  };
  // An iptables-restore fragment holds one family: IPv4 in `file`, IPv6 in `file6`.
  if (b.file_format == "iptables") {
    if (!b.file.empty()) add_file_feeder(b.file, ops::file_format::iptables_restore, true, false);
    if (!b.file6.empty()) add_file_feeder(b.file6, ops::file_format::iptables_restore, false, true);
  } else if (!b.file.empty()) {
    add_file_feeder(b.file, ops::file_format::cidr_list, true, true);
  }
  if (!b.exec.empty())
    blocks.add_feeder(std::make_unique<ops::feeder_runner>(std::make_unique<ops::exec_feeder>(
        ops::exec_feeder::options{b.exec, std::chrono::seconds(5)})));
  std::vector<const ops::feeder_runner*> runners;
  for (const auto& f : blocks.feeders()) runners.push_back(f.get());
  if (!runners.empty()) ops::register_feeder_metrics(state.metrics(), runners);
  blocks.attach(control, state.store, cfg.blocklist);

  std::vector<ratelimit::block_record> imported;
  if (!b.import_file.empty()) {
    std::ifstream in(b.import_file);
    if (!in) throw std::runtime_error("blocklist.import_file: cannot read " + b.import_file);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
      std::istringstream words(line);
      std::string prefix;
      if (!(words >> prefix)) continue;
      if (!ip_prefix::parse(prefix))
        throw std::runtime_error(fmt::format("{}:{}: '{}' is not an address or CIDR prefix",
                                             b.import_file, number, prefix));
      std::string reason;
      std::getline(words >> std::ws, reason);
      ratelimit::block_record r;
      r.prefix = prefix;
      r.rule = "import";
      r.reason = ops::escape_client_text(reason.empty() ? "imported" : reason, 200);
      imported.push_back(std::move(r));
    }
  }
  boost::asio::co_spawn(
      control,
      [&state, imported = std::move(imported),
       interval = b.sync_interval]() mutable -> boost::asio::awaitable<void> {
        for (auto& r : imported) co_await state.blocks().block(*state.store, std::move(r));
        co_await state.blocks().sync_loop(state.store, interval);
      },
      [](std::exception_ptr e) {
        if (e) ops::log_message(ops::severity::error, "BLOCKLIST", "sync loop ended by exception");
      });
}

// The DNS zone that publishes the blocklist ([dnsbl_zone]).
std::unique_ptr<dnsbl::zone_responder> start_zone(daemon_state& state,
                                                  boost::asio::io_context& control,
                                                  const config& cfg) {
  const auto& z = cfg.values.dnsbl_zone;
  if (z.listen.empty()) return nullptr;
  dnsbl::zone_settings settings;
  settings.zone = z.zone;
  settings.listen = z.listen;
  settings.ttl = std::chrono::duration_cast<std::chrono::seconds>(z.ttl);
  settings.txt_template = z.txt;
  if (auto problem = dnsbl::check_zone_settings(settings); !problem.empty())
    throw std::runtime_error("dnsbl_zone." + problem);
  auto responder = std::make_unique<dnsbl::zone_responder>(
      control, settings,
      [&state](const boost::asio::ip::address& address) -> std::optional<dnsbl::listing> {
        auto hit = state.blocks().find(address);
        if (!hit) return std::nullopt;
        return dnsbl::listing{hit->reason};
      });
  responder->start();
  return responder;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mxguard: front-line SMTP guard and before-queue relay"};
  std::string config_file, check_file, log_format;
  bool print_table = false;
  app.add_option("-c,--config", config_file, "Run with this TOML configuration file");
  app.add_option("--check-config", check_file,
                 "Validate FILE, print the effective configuration (defaults marked) and exit");
  app.add_option("--log-format", log_format, "Log line format: kv (default) or json")
      ->check(CLI::IsMember({"kv", "json"}));
  std::string check_ip, check_domain;
  app.add_option("--check-ip", check_ip,
                 "With --config: show how the DNS lists judge this client address, and exit");
  app.add_option("--check-domain", check_domain,
                 "With --config: show how the RHSBL lists judge this domain, and exit");
  app.add_flag("--print-settings-table", print_table,
               "Print the reference table of every setting (Markdown) and exit");
  app.set_version_flag("--version", "mxguard 0.1.0");
  CLI11_PARSE(app, argc, argv);

  if (print_table) {
    std::cout << settings_reference_markdown();
    return 0;
  }
  if (!check_file.empty()) return check_config(check_file);
  if (!check_ip.empty() || !check_domain.empty()) {
    if (config_file.empty()) {
      std::cerr << "mxguard: --check-ip/--check-domain need --config FILE\n";
      return 2;
    }
    return check_listing(config_file, check_ip.empty() ? check_domain : check_ip,
                         !check_ip.empty());
  }
  if (config_file.empty()) {
    std::cerr << "mxguard: --config FILE is required (or --check-config FILE)\n";
    return 2;
  }

  std::signal(SIGPIPE, SIG_IGN);
  daemon_state state;
  std::shared_ptr<const config> cfg;
  try {
    cfg = load_config(config_file);
    state.store =
        ratelimit::make_embedded_store(static_cast<std::size_t>(cfg->values.limits.max_keys));
    // With Redis, the embedded store stays as the fallback of redis.failure = "local".
    // (redis.url changes take effect on restart, like server.listen.)
    if (cfg->redis) state.store = ratelimit::make_redis_store(*cfg->redis, state.store);
    state.install(make_snapshot(cfg, nullptr, state.store));
    if (cfg->signatures) {
      // Like clamd, no mail is taken before the signatures are in.
      state.scanner = std::make_shared<scan::scanner>(cfg->scan_pool);
      std::string error;
      if (!state.scanner->load_now(*cfg->signatures, error))
        throw config_error("scan.signatures: " + error);
      state.scanner->watch(*cfg->signatures);
    }
  } catch (const std::exception& e) {
    std::cerr << "mxguard: " << e.what() << "\n";
    return 1;
  }
  apply_log_format(log_format, *cfg);
  if (cfg->values.log.syslog) {
    ops::log_to_syslog();
  } else if (!cfg->values.log.file.empty()) {
    std::string error;
    if (!ops::log_to_file(cfg->values.log.file, error)) {
      std::cerr << "mxguard: log.file: " << error << "\n";
      return 1;
    }
  }

  // Signals are taken by the main thread's own io_context; block them in the
  // workers so that none of them is interrupted.
  boost::asio::io_context control;
  boost::asio::signal_set signals(control, SIGHUP, SIGTERM, SIGINT);
  signals.add(SIGUSR1);
  unsigned workers = static_cast<unsigned>(cfg->values.server.workers);
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  server srv(state);
  try {
    srv.start(workers);
  } catch (const std::exception& e) {
    std::cerr << "mxguard: " << e.what() << "\n";
    return 1;
  }
  std::string listen;
  for (const auto& l : cfg->values.server.listen) listen += (listen.empty() ? "" : ",") + l;
  ops::event("START")
      .add("version", "0.1.0")
      .add("config", config_file)
      .add("listen", listen)
      .add("workers", workers)
      .emit();

  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int number) {
        if (ec) return;
        if (number == SIGUSR1) {
          ops::reopen_log_file();
          ops::event("LOG_REOPENED").emit();
          signals.async_wait(on_signal);
          return;
        }
        if (number == SIGHUP) {
          reload(state, control, config_file, log_format);
          signals.async_wait(on_signal);
          return;
        }
        ops::event("STOP").add("signal", number).emit();
        control.stop();
      };
  signals.async_wait(on_signal);

  // The blocklist: feeders, auto-block, the shared list's sync, the zone.
  std::unique_ptr<dnsbl::zone_responder> zone;
  try {
    start_blocklist(state, control, *cfg);
    zone = start_zone(state, control, *cfg);
  } catch (const std::exception& e) {
    std::cerr << "mxguard: " << e.what() << "\n";
    if (state.scanner) state.scanner->stop();
    srv.stop();
    return 1;
  }

  // Operations: statistics, the metrics endpoint, the control socket. Their
  // settings take effect at start (a reload keeps them).
  std::shared_ptr<ops::stats_backend> stats_backend;
  std::unique_ptr<ops::http_endpoint> metrics_endpoint;
  std::unique_ptr<control_server> control_socket;
  bool draining = false;
  try {
    const auto& ops_cfg = cfg->values;
    if (ops_cfg.stats.store == "redis" || !ops_cfg.stats.file.empty()) {
      ops::file_stats_backend::options options;
      options.retention_days = static_cast<int>(ops_cfg.stats.retention_days);
      options.max_names_per_day = static_cast<std::size_t>(ops_cfg.stats.max_names_per_day);
      if (ops_cfg.stats.store == "redis")
        stats_backend = ratelimit::make_redis_stats_backend(*cfg->redis, options.retention_days,
                                                            options.max_names_per_day);
      else
        stats_backend = std::make_shared<ops::file_stats_backend>(ops_cfg.stats.file, options);
      ops::stats_recorder_options recorder_options;
      recorder_options.max_names_per_day = options.max_names_per_day;
      recorder_options.flush_interval = ops_cfg.stats.flush_interval;
      auto recorder = std::make_shared<ops::stats_recorder>(stats_backend, recorder_options);
      recorder->start_flusher();
      state.observe().attach_stats(std::move(recorder));
    }
    if (!ops_cfg.metrics.listen.empty()) {
      ops::http_endpoint_settings settings;
      settings.listen = ops_cfg.metrics.listen;
      metrics_endpoint = std::make_unique<ops::http_endpoint>(
          control, settings, state.metrics(), [&state, &draining]() {
            ops::readiness r;
            if (draining) return ops::readiness{false, "draining"};
            if (state.current()->cfg->signatures && (!state.scanner || !state.scanner->current()))
              return ops::readiness{false, "scanner has no signatures loaded"};
            if (!state.next_hop_reachable().load())
              return ops::readiness{false, "the last next-hop connection failed"};
            return r;
          });
      metrics_endpoint->start();
    }
    if (!ops_cfg.control.socket.empty()) {
      control_actions actions;
      actions.config_file = config_file;
      actions.reload = [&] { return reload(state, control, config_file, log_format); };
      actions.draining = [&draining] { return draining; };
      actions.drain = [&] {
        if (draining) return;
        draining = true;
        state.draining().store(true);
        srv.stop_accepting();
        // Sessions silent between transactions hear 421 now, not at their timeout.
        state.sessions().wake_all_for_drain();
        ops::event("DRAIN").add("sessions", state.slots().sessions()).emit();
        // Exit once the last session is done (or session_timeout passed).
        boost::asio::co_spawn(
            control,
            [&]() -> boost::asio::awaitable<void> {
              boost::asio::steady_timer tick(co_await boost::asio::this_coro::executor);
              const auto until = std::chrono::steady_clock::now() +
                                 state.current()->cfg->values.server.session_timeout;
              while (state.slots().sessions() > 0 && std::chrono::steady_clock::now() < until) {
                tick.expires_after(std::chrono::milliseconds(50));
                co_await tick.async_wait(boost::asio::use_awaitable);
              }
              ops::event("STOP").add("reason", "drained").emit();
              control.stop();
            },
            boost::asio::detached);
      };
      actions.load_stats = [&stats_backend](std::string_view first, std::string_view last) {
        return stats_backend ? stats_backend->load(first, last) : ops::stats_days{};
      };
      control_socket = std::make_unique<control_server>(control, state, std::move(actions));
      control_socket->start(ops_cfg.control.socket, ops_cfg.control.group);
    }
  } catch (const std::exception& e) {
    std::cerr << "mxguard: " << e.what() << "\n";
    if (state.scanner) state.scanner->stop();
    srv.stop();
    return 1;
  }
  start_health_checks(control, *state.current());
  // Leases of this instance count while it is alive: say so every lease_ttl/3.
  boost::asio::co_spawn(
      control,
      [&state]() -> boost::asio::awaitable<void> {
        boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
        for (;;) {
          const auto ttl = state.current()->cfg->values.limits.lease_ttl;
          co_await state.store->heartbeat(instance_id(), ttl.count());
          timer.expires_after(ttl / 3);
          auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
          if (ec) co_return;
        }
      },
      [](std::exception_ptr e) {
        // Without the beat other gateways stop counting our sessions after
        // limits.lease_ttl: worth an error line, never silence.
        if (e) ops::log_message(ops::severity::error, "LEASES", "heartbeat ended by exception");
      });
  // Everything is bound: the rest of the life needs no root.
  if (!cfg->values.server.user.empty()) {
    if (auto problem = drop_privileges(cfg->values.server.user); !problem.empty()) {
      std::cerr << "mxguard: server.user: " << problem << "\n";
      if (state.scanner) state.scanner->stop();
      srv.stop();
      return 1;
    }
    ops::event("PRIVILEGES").add("user", cfg->values.server.user).emit();
  }
  control.run();
  if (zone) zone->stop();
  if (control_socket) control_socket->stop();
  if (metrics_endpoint) metrics_endpoint->stop();
  // The pool first: sessions still waiting for a scan get their answer on
  // I/O threads that are still there.
  if (state.scanner) state.scanner->stop();
  srv.stop();
  return 0;
}
