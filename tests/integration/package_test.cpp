// Packaging: what `cmake --install` puts where, the systemd unit's hardening,
// `--help` of both binaries, and the switch to an unprivileged user.
#include <fstream>

#include "common.hpp"

namespace mxguard::test {
namespace {

std::string run_capture(const temp_dir& dir, std::vector<std::string> argv, int* status = nullptr) {
  static int n = 0;
  auto out = dir / ("pkg-" + std::to_string(++n) + ".out");
  child c(argv, out);
  auto s = c.wait_exit(60s);
  if (status) *status = s.value_or(-1);
  return read_file(out);
}

}  // namespace

TEST(Package, InstallPutsBinariesConfigUnitAndDocs) {
  temp_dir dir;
  auto prefix = dir / "root";
  int status = -1;
  auto out = run_capture(
      dir, {MXGUARD_CMAKE_COMMAND, "--install", MXGUARD_BINARY_DIR, "--prefix", prefix.string()},
      &status);
  ASSERT_EQ(status, 0) << out;
  for (const char* file : {"sbin/mxguard", "sbin/mxguardctl", "etc/mxguard/mxguard.toml.example",
                           "lib/systemd/system/mxguard.service", "share/doc/mxguard/README.md"})
    EXPECT_TRUE(fs::exists(prefix / file)) << file << "\n" << out;
  auto unit = read_file(prefix / "lib/systemd/system/mxguard.service");
  const std::vector<std::string> wanted{"NoNewPrivileges=yes",
                                        "ProtectSystem=strict",
                                        "User=mxguard",
                                        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN",
                                        "ExecStart=" + (prefix / "sbin/mxguard").string() +
                                            " --config " +
                                            (prefix / "etc/mxguard/mxguard.toml").string(),
                                        "ExecReload=/bin/kill -HUP $MAINPID"};
  for (const auto& line : wanted)
    EXPECT_NE(unit.find(line), std::string::npos) << line << "\n" << unit;
  // The example configuration is valid as installed.
  auto checked = run_capture(dir,
                             {(prefix / "sbin/mxguard").string(), "--check-config",
                              (prefix / "etc/mxguard/mxguard.toml.example").string()},
                             &status);
  EXPECT_EQ(status, 0) << checked;
  if (fs::exists("/usr/bin/systemd-analyze")) {
    auto verified = run_capture(dir,
                                {"/usr/bin/systemd-analyze", "verify",
                                 (prefix / "lib/systemd/system/mxguard.service").string()},
                                &status);
    // Only the unit's own syntax counts here (the binary path is not /usr/sbin).
    EXPECT_EQ(verified.find("Unknown key"), std::string::npos) << verified;
    EXPECT_EQ(verified.find("Unknown section"), std::string::npos) << verified;
  }
}

TEST(Package, HelpDocumentsEveryOption) {
  temp_dir dir;
  auto guard_help = run_capture(dir, {MXGUARD_BINARY, "--help"});
  for (const char* option : {"--config", "--check-config", "--log-format", "--check-ip",
                             "--check-domain", "--print-settings-table", "--version"})
    EXPECT_NE(guard_help.find(option), std::string::npos) << option << "\n" << guard_help;
  auto ctl_help = run_capture(dir, {MXGUARDCTL_BINARY, "--help"});
  for (const char* command : {"status", "config", "reload", "check", "block", "unblock", "blocked",
                              "stats", "report", "drain", "--json", "--socket"})
    EXPECT_NE(ctl_help.find(command), std::string::npos) << command << "\n" << ctl_help;
}

TEST(Package, SwitchesToTheConfiguredUserOnceBound) {
  if (!running_as_root()) GTEST_SKIP() << "needs root to switch users";
  temp_dir dir;
  smtp_sink sink(dir);
  guard mx(dir, base_config(quoted(sink.address()), "user = \"nobody\"\n"));
  std::ifstream status("/proc/" + std::to_string(mx.process().pid()) + "/status");
  std::string line, uid;
  while (std::getline(status, line))
    if (line.starts_with("Uid:")) uid = line;
  EXPECT_NE(uid.find("65534"), std::string::npos) << uid;
  EXPECT_EQ(uid.find("\t0\t"), std::string::npos) << "no root uid left: " << uid;
  smtp_client c;
  ASSERT_TRUE(c.connect(mx.port()));
  EXPECT_EQ(c.read_reply().code, 220);
  EXPECT_NE(mx.log().find("PRIVILEGES user=nobody"), std::string::npos);
}

}  // namespace mxguard::test
