// mxguard::ops reports: the tables and charts postmasters kept, from the
// per-day statistics of stats.hpp (what `mxguardctl report` prints or mails).
//
// Definitions, over the days of the period:
//   received       = accepted + spam + refused + tempfailed + discarded + virus,
//                    i.e. every decision (a refused connection or a transaction);
//                    the outcomes are exclusive, so nothing counts twice.
//   refused ratio  = refused / received
//   spam ratio     = spam / received
// Months are calendar months (UTC); a month cut by the period shows only its
// days in the period (the `days` column says how many). The weekday chart shows
// the average per day of that weekday, since a period that is not whole weeks
// holds more Mondays than Sundays, say. Weeks start on Monday.
//
// Text is plain ASCII with text bars; HTML is one self-contained file (inline
// CSS and SVG, no scripts, fonts, images or links) with every string that came
// from mail escaped. Pure functions, thread-safe, no I/O.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mxguard/ops/stats.hpp"

namespace mxguard::ops {

enum class report_format { text, html };

struct outcome_counts {
  std::array<std::int64_t, std::size(all_outcomes)> n{};

  std::int64_t& operator[](outcome o) { return n[static_cast<std::size_t>(o)]; }
  std::int64_t operator[](outcome o) const { return n[static_cast<std::size_t>(o)]; }
  std::int64_t received() const;
  double refused_ratio() const;  // 0 when nothing was received
  double spam_ratio() const;
  outcome_counts& operator+=(const outcome_counts& other);
};

struct report_options {
  std::chrono::sys_days last_day;            // the period's last day, usually today (UTC)
  int days = 30;                             // the period's length, last_day included
  std::size_t top = 20;                      // rows of the top-N tables
  std::string title = "mxguard statistics";  // e.g. with the gateway's name
};

using name_counts = std::vector<std::pair<std::string, std::int64_t>>;

// The numbers behind a report; exposed so they can be tested and sent as JSON.
struct report_data {
  std::string title;
  std::string first_day, last_day;

  struct day_row {
    std::string day;
    std::chrono::weekday weekday;
    outcome_counts counts;
  };
  std::vector<day_row> per_day;  // every day of the period, oldest first

  struct month_row {
    std::string month;  // "YYYY-MM"
    int days = 0;       // of this month inside the period
    outcome_counts counts;
    name_counts viruses;  // by count, descending; "other" = past the daily cap
  };
  std::vector<month_row> per_month;  // oldest first

  struct weekday_row {
    std::chrono::weekday weekday;
    int days = 0;  // how many of this weekday the period holds
    outcome_counts total;
  };
  std::array<weekday_row, 7> per_weekday;  // Monday first

  outcome_counts total;
  // Over the period, by count descending, at most `top` rows. Names past the
  // daily cap are not ranked; their sum is in the *_other counters.
  name_counts top_clients, top_sender_domains, top_refusal_rules;  // rules as "stage:rule"
  std::int64_t other_clients = 0, other_sender_domains = 0;
};

report_data summarize(const stats_days& days, const report_options& opts);

std::string render_text(const report_data& data);
std::string render_html(const report_data& data);
std::string render_report(const stats_days& days, const report_options& opts, report_format format);

// HTML/XML text and attribute escaping (& < > " ').
std::string html_escape(std::string_view text);

}  // namespace mxguard::ops
