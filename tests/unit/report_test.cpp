// Reports: month and weekday aggregation on a hand-made period across a month
// boundary, the text tables, HTML escaping of names from mail, and the HTML
// rendered by headless Chromium into a screenshot that must not be blank.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <png.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "mxguard/ops/report.hpp"

namespace mxguard::ops {
namespace {

using namespace std::chrono;

// 2024-01-27 (Sat) .. 2024-02-05 (Mon): five days of January, five of February.
stats_days hand_made() {
  return {
      {"2024-01-26", {{"outcome:accepted", 1000}}},  // before the period: ignored
      {"2024-01-27",
       {{"outcome:accepted", 10},
        {"outcome:refused", 5},
        {"outcome:spam", 2},
        {"refused:connect:dnsbl", 5},
        {"client:192.0.2.1", 3},
        {"client:192.0.2.2", 2},
        {"sender_domain:spam.example", 5}}},
      {"2024-01-29",
       {{"outcome:accepted", 20},
        {"outcome:refused", 10},
        {"outcome:tempfailed", 1},
        {"outcome:virus", 2},
        {"virus:Eicar-Test-Signature", 2},
        {"refused:rcpt:relay", 10},
        {"client:192.0.2.1", 10},
        {"sender_domain:spam.example", 4},
        {"sender_domain:other", 6}}},
      {"2024-01-31",
       {{"outcome:accepted", 30},
        {"outcome:discarded", 3},
        {"outcome:spam", 5},
        {"outcome:refused", 5},
        {"refused:connect:dnsbl", 5},
        {"client:other", 5}}},
      {"2024-02-01",
       {{"outcome:accepted", 40},
        {"outcome:refused", 20},
        {"outcome:virus", 1},
        {"virus:Worm.X", 1},
        {"refused:connect:dnsbl", 20},
        {"client:192.0.2.3", 20}}},
      {"2024-02-05",
       {{"outcome:accepted", 50},
        {"outcome:refused", 10},
        {"outcome:spam", 10},
        {"outcome:virus", 3},
        {"virus:Eicar-Test-Signature", 3},
        {"refused:mail:rhsbl", 10},
        {"client:192.0.2.1", 10}}},
      {"2024-02-06", {{"outcome:accepted", 1000}}},  // after the period: ignored
  };
}

report_options hand_made_options() {
  report_options o;
  o.last_day = sys_days{year{2024} / 2 / 5};
  o.days = 10;
  o.title = "gw1.example.edu";
  return o;
}

std::vector<std::string> tokens(std::string_view line) {
  std::istringstream in{std::string(line)};
  std::vector<std::string> out;
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

// The text report's line that starts with `prefix`.
std::string line_starting(const std::string& text, std::string_view prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(prefix)) return line;
  return {};
}

TEST(ReportSummary, MonthsAcrossTheBoundary) {
  auto data = summarize(hand_made(), hand_made_options());
  EXPECT_EQ(data.first_day, "2024-01-27");
  EXPECT_EQ(data.last_day, "2024-02-05");
  ASSERT_EQ(data.per_day.size(), 10u);
  ASSERT_EQ(data.per_month.size(), 2u);

  const auto& jan = data.per_month[0];
  EXPECT_EQ(jan.month, "2024-01");
  EXPECT_EQ(jan.days, 5);
  EXPECT_EQ(jan.counts[outcome::accepted], 60);
  EXPECT_EQ(jan.counts[outcome::refused], 20);
  EXPECT_EQ(jan.counts[outcome::tempfailed], 1);
  EXPECT_EQ(jan.counts[outcome::discarded], 3);
  EXPECT_EQ(jan.counts[outcome::spam], 7);
  EXPECT_EQ(jan.counts[outcome::virus], 2);
  EXPECT_EQ(jan.counts.received(), 93);
  EXPECT_DOUBLE_EQ(jan.counts.refused_ratio(), 20.0 / 93);
  EXPECT_DOUBLE_EQ(jan.counts.spam_ratio(), 7.0 / 93);
  EXPECT_EQ(jan.viruses, (name_counts{{"Eicar-Test-Signature", 2}}));

  const auto& feb = data.per_month[1];
  EXPECT_EQ(feb.month, "2024-02");
  EXPECT_EQ(feb.days, 5);
  EXPECT_EQ(feb.counts.received(), 134);
  EXPECT_EQ(feb.counts[outcome::refused], 30);
  EXPECT_EQ(feb.viruses, (name_counts{{"Eicar-Test-Signature", 3}, {"Worm.X", 1}}));

  EXPECT_EQ(data.total.received(), 227);
  EXPECT_EQ(data.top_clients,
            (name_counts{{"192.0.2.1", 23}, {"192.0.2.3", 20}, {"192.0.2.2", 2}}));
  EXPECT_EQ(data.other_clients, 5);
  EXPECT_EQ(data.top_sender_domains, (name_counts{{"spam.example", 9}}));
  EXPECT_EQ(data.other_sender_domains, 6);
  EXPECT_EQ(data.top_refusal_rules,
            (name_counts{{"connect:dnsbl", 30}, {"mail:rhsbl", 10}, {"rcpt:relay", 10}}));
}

TEST(ReportSummary, Weekdays) {
  auto data = summarize(hand_made(), hand_made_options());
  struct row {
    weekday w;
    int days;
    std::int64_t received;
  } rows[] = {
      {Monday, 2, 33 + 73}, {Tuesday, 1, 0},   {Wednesday, 1, 43}, {Thursday, 1, 61},
      {Friday, 1, 0},       {Saturday, 2, 17}, {Sunday, 2, 0},
  };
  for (std::size_t i = 0; i < 7; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(data.per_weekday[i].weekday, rows[i].w);
    EXPECT_EQ(data.per_weekday[i].days, rows[i].days);
    EXPECT_EQ(data.per_weekday[i].total.received(), rows[i].received);
  }
  EXPECT_EQ(data.per_weekday[0].total[outcome::virus], 5);
}

TEST(ReportSummary, TopIsBounded) {
  stats_days days;
  for (int i = 0; i < 50; ++i) days["2024-02-05"]["client:192.0.2." + std::to_string(i)] = i + 1;
  auto opts = hand_made_options();
  opts.top = 5;
  auto data = summarize(days, opts);
  ASSERT_EQ(data.top_clients.size(), 5u);
  EXPECT_EQ(data.top_clients.front(), (std::pair<std::string, std::int64_t>{"192.0.2.49", 50}));
}

TEST(ReportText, Content) {
  auto text = render_report(hand_made(), hand_made_options(), report_format::text);
  EXPECT_TRUE(text.starts_with("gw1.example.edu\nPeriod: 2024-01-27 .. 2024-02-05 (10 days, UTC)"))
      << text;
  // month days received refused refused% spam% accepted spam virus discarded tempfailed
  EXPECT_EQ(tokens(line_starting(text, "2024-01 ")),
            (std::vector<std::string>{"2024-01", "5", "93", "20", "21.5%", "7.5%", "60", "7", "2",
                                      "3", "1"}));
  EXPECT_EQ(tokens(line_starting(text, "2024-02 ")),
            (std::vector<std::string>{"2024-02", "5", "134", "30", "22.4%", "7.5%", "90", "10", "4",
                                      "0", "0"}));
  EXPECT_EQ(tokens(line_starting(text, "total ")),
            (std::vector<std::string>{"total", "10", "227", "50", "22.0%", "7.5%", "150", "17", "6",
                                      "3", "1"}));
  EXPECT_NE(text.find("2024-02           3  Eicar-Test-Signature\n"), std::string::npos) << text;
  EXPECT_NE(text.find("        23  192.0.2.1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("         5  (names past the daily cap)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("         9  spam.example\n"), std::string::npos) << text;
  EXPECT_NE(text.find("        30  connect:dnsbl\n"), std::string::npos) << text;

  // The busiest day's bar is the full 50 columns: 50 accepted of 73 -> 34 '#'.
  auto busiest = line_starting(text, "2024-02-05 Mon");
  auto bar = busiest.substr(busiest.find('|') + 1);
  EXPECT_EQ(bar.size(), 50u) << busiest;
  EXPECT_EQ(bar.find_first_not_of('#'), 34u) << busiest;
  EXPECT_EQ(bar.back(), 'x') << busiest;
  EXPECT_EQ(tokens(line_starting(text, "2024-01-28 Sun")),
            (std::vector<std::string>{"2024-01-28", "Sun", "0", "|"}));
  // Weekdays: the average per day. Monday's 33 and 73 average to 53, less
  // than Thursday's single 61, which gets the full bar: 53/61 of 50 -> 43.
  auto monday = tokens(line_starting(text, "Mon ("));
  ASSERT_EQ(monday.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(monday.begin(), monday.begin() + 5),
            (std::vector<std::string>{"Mon", "(", "2", "days)", "53.0"}));
  EXPECT_EQ(monday[5].size(), 1u + 43u);
  auto thursday = tokens(line_starting(text, "Thu ("));
  ASSERT_EQ(thursday.size(), 6u);
  EXPECT_EQ(thursday[4], "61.0");
  EXPECT_EQ(thursday[5].size(), 1u + 50u);
  EXPECT_EQ(tokens(line_starting(text, "Sun (")).size(), 6u);
}

TEST(ReportHtml, EscapesNamesFromMail) {
  // Through the recorder, so the names take the same path as in the daemon.
  auto hostile_virus = std::string("<script>alert(\"x\")</script>'&");
  auto hostile_domain = std::string("evil.example\"><img src=x onerror=alert(1)>");
  stats_days days;
  {
    struct null_backend final : stats_backend {
      void add(std::string_view, const stats_fields&) override {}
      stats_days load(std::string_view, std::string_view) override { return {}; }
    };
    stats_recorder rec(std::make_shared<null_backend>(), {},
                       [] { return sys_days{year{2024} / 2 / 5} + hours{9}; });
    rec.record(outcome::virus, {}, {}, {}, {}, hostile_virus);
    rec.record(outcome::refused, "mail", "rhsbl", "192.0.2.7", hostile_domain);
    days = rec.pending();
  }
  auto opts = hand_made_options();
  opts.title = "<b>gw</b>";
  auto html = render_report(days, opts, report_format::html);
  for (const char* forbidden : {"<script", "<img", "<b>", "src=\"", "href=\"", "url(", "@import",
                                "<link", "<iframe", "<object"})
    EXPECT_EQ(html.find(forbidden), std::string::npos) << forbidden;
  EXPECT_NE(html.find("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&amp;"),
            std::string::npos);
  EXPECT_NE(html.find("evil.example&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            std::string::npos);
  // Self-contained: the only URLs are the SVG namespace of the two charts.
  std::size_t urls = 0;
  for (auto p = html.find("http"); p != std::string::npos; p = html.find("http", p + 1)) {
    EXPECT_EQ(html.compare(p, 26, "http://www.w3.org/2000/svg"), 0);
    ++urls;
  }
  EXPECT_EQ(urls, 2u);
  EXPECT_EQ(html_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

// ---- headless Chromium ----

// A month of plausible traffic with a weekly rhythm, so every chart has bars.
stats_days month_of_traffic(sys_days last) {
  stats_days days;
  for (int i = 0; i < 30; ++i) {
    sys_days d = last - std::chrono::days{i};
    bool weekend = weekday{d} == Saturday || weekday{d} == Sunday;
    auto& f = days[format_day(d)];
    f["outcome:accepted"] = (weekend ? 900 : 2500) + 37 * (i % 7);
    f["outcome:refused"] = 1400 + 53 * (i % 5);
    f["outcome:spam"] = 300 + 11 * (i % 3);
    f["outcome:tempfailed"] = 120;
    f["outcome:discarded"] = 40;
    f["outcome:virus"] = 15 + i % 4;
    f["virus:Eicar-Test-Signature"] = 10;
    f["virus:Win.Trojan.Agent<x>"] = 5 + i % 4;
    f["client:192.0.2." + std::to_string(i % 9)] = 200;
    f["sender_domain:spam" + std::to_string(i % 4) + ".example"] = 150;
    f["refused:connect:dnsbl"] = 1000;
    f["refused:rcpt:relay"] = 400 + 53 * (i % 5);
  }
  return days;
}

struct run_result {
  bool started = false, timed_out = false;
  int status = 0;
};

// fork/exec with an argument vector (no shell), its own process group so the
// browser's helper processes go with it, output to `log`, bounded by `timeout`.
run_result run_bounded(const std::vector<std::string>& args, const std::filesystem::path& log,
                       std::chrono::milliseconds timeout) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_t pid = ::fork();
  if (pid < 0) {
    if (log_fd >= 0) ::close(log_fd);
    return {};
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the kill below cannot race the child's own call
  if (log_fd >= 0) ::close(log_fd);
  run_result result{.started = true};
  // A pidfd turns "exited or timed out" into one poll(), without a sleep loop.
  // Called through syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C".
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  bool exited = false;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int rc;
    do rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    while (rc < 0 && errno == EINTR);
    exited = rc > 0;
    ::close(pidfd);
  }
  if (!exited) {
    result.timed_out = true;
    ::kill(-pid, SIGKILL);
  }
  ::waitpid(pid, &result.status, 0);
  ::kill(-pid, SIGKILL);  // helpers left behind by the browser, if any
  return result;
}

struct rgb {
  int r, g, b;
};
rgb parse_color(const char* hex) {
  auto v = std::strtol(hex + 1, nullptr, 16);
  return {static_cast<int>(v >> 16) & 0xff, static_cast<int>(v >> 8) & 0xff,
          static_cast<int>(v) & 0xff};
}

TEST(ReportHtml, ChromiumScreenshotNotBlank) {
  const std::filesystem::path build = MXGUARD_BUILD_DIR;
  const std::filesystem::path chromium = "/usr/bin/chromium";
  ASSERT_EQ(::access(chromium.c_str(), X_OK), 0)
      << chromium << " is missing: this test needs Debian's chromium package "
      << "(ops/install-deps.sh installs it; or apt-get install chromium)";

  auto work = build / "report-test";
  std::filesystem::create_directories(work);
  auto html_path = work / "report.html";
  auto png_path = build / "report.png";
  auto log_path = work / "chromium.log";
  std::filesystem::remove(png_path);

  report_options opts;
  opts.last_day = sys_days{year{2024} / 2 / 5};
  opts.days = 30;
  opts.title = "mxguard statistics: gw1.example.edu";
  auto days = month_of_traffic(opts.last_day);
  std::ofstream(html_path) << render_report(days, opts, report_format::html);
  std::ofstream(work / "report.txt") << render_report(days, opts, report_format::text);

  auto result = run_bounded(
      {chromium.string(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
       "--no-first-run", "--hide-scrollbars", "--user-data-dir=" + (work / "profile").string(),
       "--screenshot=" + png_path.string(), "--window-size=1280,1600",
       "file://" + html_path.string()},
      log_path, std::chrono::seconds(120));
  ASSERT_TRUE(result.started) << "fork failed: " << std::strerror(errno);
  ASSERT_FALSE(result.timed_out) << "chromium did not finish in 120 s; see " << log_path;
  ASSERT_TRUE(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0)
      << "chromium failed (status " << result.status << "); see " << log_path;
  ASSERT_TRUE(std::filesystem::exists(png_path)) << "no screenshot; see " << log_path;

  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  ASSERT_NE(png_image_begin_read_from_file(&image, png_path.c_str()), 0) << image.message;
  image.format = PNG_FORMAT_RGB;
  std::vector<unsigned char> pixels(PNG_IMAGE_SIZE(image));
  ASSERT_NE(png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr), 0) << image.message;
  EXPECT_EQ(image.width, 1280u);
  EXPECT_EQ(image.height, 1600u);

  const std::size_t total = std::size_t(image.width) * image.height;
  const rgb background{pixels[0], pixels[1], pixels[2]};
  auto near = [](const unsigned char* p, rgb c) {
    return std::abs(p[0] - c.r) <= 8 && std::abs(p[1] - c.g) <= 8 && std::abs(p[2] - c.b) <= 8;
  };
  std::size_t foreground = 0, accepted = 0, refused = 0, virus = 0;
  std::set<std::uint32_t> colors;
  for (std::size_t i = 0; i < total; ++i) {
    const unsigned char* p = &pixels[i * 3];
    if (!near(p, background)) ++foreground;
    if (colors.size() < 1000) colors.insert(std::uint32_t(p[0]) << 16 | p[1] << 8 | p[2]);
    accepted += near(p, parse_color("#2e7d32"));
    refused += near(p, parse_color("#c62828"));
    virus += near(p, parse_color("#6a1b9a"));
  }
  EXPECT_GT(foreground, total / 20) << "mostly background: the report did not render";
  EXPECT_GE(colors.size(), 8u);
  // The stacked bars themselves: the chart colours of the main outcomes.
  EXPECT_GT(accepted, 20000u);
  EXPECT_GT(refused, 10000u);
  EXPECT_GT(virus, 100u);
}

}  // namespace
}  // namespace mxguard::ops
