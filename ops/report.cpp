#include "mxguard/ops/report.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "mxguard/ops/log.hpp"

namespace mxguard::ops {

namespace {

using namespace std::chrono;

// Shown in this order everywhere: what got through first, refusals last, so
// the stacked bars read bottom-up from delivered to turned away.
constexpr std::array<outcome, 6> display_order = {outcome::accepted,   outcome::spam,
                                                  outcome::virus,      outcome::discarded,
                                                  outcome::tempfailed, outcome::refused};

struct outcome_style {
  char bar;           // text charts
  const char* color;  // HTML charts
};
outcome_style style(outcome o) {
  switch (o) {
    case outcome::accepted:
      return {'#', "#2e7d32"};
    case outcome::refused:
      return {'x', "#c62828"};
    case outcome::tempfailed:
      return {'t', "#f9a825"};
    case outcome::discarded:
      return {'d', "#6d4c41"};
    case outcome::spam:
      return {'s', "#ef6c00"};
    case outcome::virus:
      return {'v', "#6a1b9a"};
  }
  return {'?', "#000000"};
}

const char* weekday_name(weekday w) {
  static constexpr const char* names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  return names[w.c_encoding()];
}

std::optional<outcome> outcome_from(std::string_view name) {
  for (auto o : all_outcomes)
    if (name == to_string(o)) return o;
  return std::nullopt;
}

name_counts ranked(const std::map<std::string, std::int64_t, std::less<>>& counts,
                   std::size_t limit) {
  name_counts out(counts.begin(), counts.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::string percent(double ratio) {
  return fmt::format("{:.1f}%", ratio * 100.0);
}

// Text output stays printable even if the statistics file was edited by hand.
std::string printable(std::string_view name) {
  return escape_client_text(name, 200);
}

// 1, 2 or 5 times a power of ten, so axis labels are round numbers.
double nice_ceiling(double v) {
  if (v <= 1) return 1;
  double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= v) return m * p;
  return 10 * p;
}

// ---- text ----

void text_bar(std::string& out, const outcome_counts& c, double scale_max, int width,
              double divisor = 1) {
  // Segment ends are rounded cumulatively so the bar's total length is right.
  double cum = 0;
  int drawn = 0;
  for (auto o : display_order) {
    cum += static_cast<double>(c[o]) / divisor;
    int end = scale_max > 0 ? static_cast<int>(std::lround(cum * width / scale_max)) : 0;
    out.append(static_cast<std::size_t>(std::max(0, end - drawn)), style(o).bar);
    drawn = std::max(drawn, end);
  }
}

std::string text_legend() {
  std::string out;
  for (auto o : display_order) out += fmt::format("  {} {}", style(o).bar, to_string(o));
  return out;
}

void text_names(std::string& out, std::string_view heading, std::string_view column,
                const name_counts& rows, std::int64_t other) {
  out += fmt::format("\n{}\n{:>10}  {}\n", heading, "count", column);
  if (rows.empty()) out += "      (none)\n";
  for (const auto& [name, n] : rows) out += fmt::format("{:>10}  {}\n", n, printable(name));
  if (other > 0) out += fmt::format("{:>10}  (names past the daily cap)\n", other);
}

// ---- HTML ----

struct chart_bar {
  std::string label;               // under the bar; empty for none
  std::string tooltip;             // unescaped
  std::array<double, 6> values{};  // by display_order
};

std::string svg_chart(const std::vector<chart_bar>& bars, std::string_view caption, int width,
                      int height) {
  constexpr int left = 70, right = 10, top = 34, bottom = 28;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  double max_sum = 0;
  for (const auto& b : bars) {
    double sum = 0;
    for (double v : b.values) sum += v;
    max_sum = std::max(max_sum, sum);
  }
  const double y_max = nice_ceiling(max_sum);
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" role=\"img\" aria-label=\"{2}\">\n",
      width, height, html_escape(caption));
  out += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", width,
                     height);
  double lx = left;
  for (auto o : display_order) {
    out += fmt::format(
        "<rect x=\"{:.1f}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{}\"/>"
        "<text x=\"{:.1f}\" y=\"18\" class=\"legend\">{}</text>\n",
        lx, style(o).color, lx + 16, to_string(o));
    lx += 110;
  }
  for (int i = 0; i <= 4; ++i) {
    double value = y_max * i / 4;
    double y = top + plot_h - plot_h * i / 4;
    out += fmt::format(
        "<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" class=\"grid\"/>"
        "<text x=\"{}\" y=\"{:.1f}\" class=\"axis\" text-anchor=\"end\">{}</text>\n",
        left, y, width - right, y, left - 6, y + 4,
        fmt::format("{:.{}f}", value, y_max < 4 ? 1 : 0));
  }
  if (bars.empty()) return out + "</svg>\n";
  const double step = plot_w / static_cast<double>(bars.size());
  const double bar_w = std::max(1.0, step * 0.8);
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const auto& b = bars[i];
    double x = left + step * static_cast<double>(i) + (step - bar_w) / 2;
    double y = top + plot_h;
    out += fmt::format("<g><title>{}</title>", html_escape(b.tooltip));
    for (std::size_t k = 0; k < display_order.size(); ++k) {
      double h = b.values[k] / y_max * plot_h;
      if (h <= 0) continue;
      y -= h;
      out += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>", x, y,
          bar_w, h, style(display_order[k]).color);
    }
    out += "</g>\n";
    if (!b.label.empty())
      out += fmt::format(
          "<text x=\"{:.1f}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>\n",
          x + bar_w / 2, height - bottom + 16, html_escape(b.label));
  }
  return out + "</svg>\n";
}

std::string tooltip(std::string_view label, const outcome_counts& c, double divisor) {
  std::string out(label);
  out += ":";
  for (auto o : display_order)
    out += fmt::format(" {} {}", to_string(o),
                       divisor == 1 ? fmt::format("{}", c[o])
                                    : fmt::format("{:.1f}", static_cast<double>(c[o]) / divisor));
  return out;
}

void html_names(std::string& out, std::string_view heading, std::string_view column,
                const name_counts& rows, std::int64_t other) {
  out += fmt::format("<h2>{}</h2>\n<table>\n<tr><th>{}</th><th>count</th></tr>\n", heading, column);
  if (rows.empty()) out += "<tr><td colspan=\"2\">(none)</td></tr>\n";
  for (const auto& [name, n] : rows)
    out += fmt::format("<tr><td>{}</td><td class=\"num\">{}</td></tr>\n", html_escape(name), n);
  if (other > 0)
    out += fmt::format(
        "<tr><td><i>names past the daily cap</i></td><td class=\"num\">{}</td></tr>\n", other);
  out += "</table>\n";
}

constexpr const char* html_style =
    R"(body{font-family:sans-serif;margin:24px;color:#212121;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #bdbdbd;padding:3px 8px;text-align:left}
th{background:#eeeeee}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:bold}p.note{font-size:12px;color:#616161}
svg text{font-family:sans-serif}.axis{font-size:10px;fill:#424242}.legend{font-size:12px;fill:#212121}
.grid{stroke:#e0e0e0;stroke-width:1})";

}  // namespace

std::int64_t outcome_counts::received() const {
  std::int64_t sum = 0;
  for (auto v : n) sum += v;
  return sum;
}

double outcome_counts::refused_ratio() const {
  auto r = received();
  return r > 0 ? static_cast<double>((*this)[outcome::refused]) / static_cast<double>(r) : 0.0;
}

double outcome_counts::spam_ratio() const {
  auto r = received();
  return r > 0 ? static_cast<double>((*this)[outcome::spam]) / static_cast<double>(r) : 0.0;
}

outcome_counts& outcome_counts::operator+=(const outcome_counts& other) {
  for (std::size_t i = 0; i < n.size(); ++i) n[i] += other.n[i];
  return *this;
}

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

report_data summarize(const stats_days& days, const report_options& opts) {
  report_data data;
  data.title = opts.title;
  const sys_days first = opts.last_day - std::chrono::days{std::max(opts.days, 1) - 1};
  data.first_day = format_day(first);
  data.last_day = format_day(opts.last_day);
  for (unsigned i = 0; i < 7; ++i) data.per_weekday[i].weekday = weekday{(i + 1) % 7};

  using counter = std::map<std::string, std::int64_t, std::less<>>;
  counter clients, domains, rules;
  std::map<std::string, counter> viruses;  // by month
  for (sys_days d = first; d <= opts.last_day; d += std::chrono::days{1}) {
    report_data::day_row row{format_day(d), weekday{d}, {}};
    std::string month = row.day.substr(0, 7);
    if (auto it = days.find(row.day); it != days.end()) {
      for (const auto& [field, n] : it->second) {
        std::string_view f = field;
        auto rest = [&](std::string_view prefix) { return std::string(f.substr(prefix.size())); };
        if (f.starts_with("outcome:")) {
          if (auto o = outcome_from(f.substr(8))) row.counts[*o] += n;
        } else if (f.starts_with("refused:")) {
          rules[rest("refused:")] += n;
        } else if (f.starts_with("virus:")) {
          viruses[month][rest("virus:")] += n;
        } else if (f.starts_with("client:")) {
          if (f == "client:other")
            data.other_clients += n;
          else
            clients[rest("client:")] += n;
        } else if (f.starts_with("sender_domain:")) {
          if (f == "sender_domain:other")
            data.other_sender_domains += n;
          else
            domains[rest("sender_domain:")] += n;
        }
      }
    }
    if (data.per_month.empty() || data.per_month.back().month != month)
      data.per_month.push_back({month, 0, {}, {}});
    data.per_month.back().days += 1;
    data.per_month.back().counts += row.counts;
    auto& wd = data.per_weekday[row.weekday.iso_encoding() - 1];
    wd.days += 1;
    wd.total += row.counts;
    data.total += row.counts;
    data.per_day.push_back(std::move(row));
  }
  for (auto& m : data.per_month)
    if (auto it = viruses.find(m.month); it != viruses.end())
      m.viruses = ranked(it->second, it->second.size());
  data.top_clients = ranked(clients, opts.top);
  data.top_sender_domains = ranked(domains, opts.top);
  data.top_refusal_rules = ranked(rules, opts.top);
  return data;
}

std::string render_text(const report_data& data) {
  std::string out = fmt::format("{}\nPeriod: {} .. {} ({} days, UTC)\n", printable(data.title),
                                data.first_day, data.last_day, data.per_day.size());

  out += "\nPer month\n";
  out += fmt::format("{:<8} {:>4} {:>10} {:>10} {:>8} {:>8}", "month", "days", "received",
                     "refused", "refused%", "spam%");
  for (auto o : display_order)
    if (o != outcome::refused) out += fmt::format(" {:>10}", to_string(o));
  out += "\n";
  auto month_line = [&](std::string_view label, int days, const outcome_counts& c) {
    out += fmt::format("{:<8} {:>4} {:>10} {:>10} {:>8} {:>8}", label, days, c.received(),
                       c[outcome::refused], percent(c.refused_ratio()), percent(c.spam_ratio()));
    for (auto o : display_order)
      if (o != outcome::refused) out += fmt::format(" {:>10}", c[o]);
    out += "\n";
  };
  for (const auto& m : data.per_month) month_line(m.month, m.days, m.counts);
  month_line("total", static_cast<int>(data.per_day.size()), data.total);
  out += "(received = accepted + spam + refused + tempfailed + discarded + virus)\n";

  out += "\nViruses per month\n";
  bool any_virus = false;
  for (const auto& m : data.per_month)
    for (const auto& [name, n] : m.viruses) {
      out += fmt::format("{:<8} {:>10}  {}\n", m.month, n, printable(name));
      any_virus = true;
    }
  if (!any_virus) out += "      (none)\n";

  text_names(out, "Top refused clients", "client", data.top_clients, data.other_clients);
  text_names(out, "Top refused sender domains", "sender domain", data.top_sender_domains,
             data.other_sender_domains);
  text_names(out, "Refusals by stage and rule", "stage:rule", data.top_refusal_rules, 0);

  constexpr int bar_width = 50;
  out += fmt::format("\nPer day by outcome:{}\n", text_legend());
  double day_max = 0;
  for (const auto& d : data.per_day) day_max = std::max(day_max, double(d.counts.received()));
  for (const auto& d : data.per_day) {
    out += fmt::format("{} {} {:>10} |", d.day, weekday_name(d.weekday), d.counts.received());
    text_bar(out, d.counts, day_max, bar_width);
    out += "\n";
  }

  out += fmt::format("\nPer weekday by outcome, average per day:{}\n", text_legend());
  double wd_max = 0;
  for (const auto& w : data.per_weekday)
    if (w.days > 0) wd_max = std::max(wd_max, double(w.total.received()) / w.days);
  for (const auto& w : data.per_weekday) {
    double avg = w.days > 0 ? double(w.total.received()) / w.days : 0.0;
    out += fmt::format("{} ({:>2} days) {:>10.1f} |", weekday_name(w.weekday), w.days, avg);
    if (w.days > 0) text_bar(out, w.total, wd_max, bar_width, w.days);
    out += "\n";
  }
  return out;
}

std::string render_html(const report_data& data) {
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>{0}</title>\n<style>\n{1}\n</style>\n</head>\n<body>\n<h1>{0}</h1>\n"
      "<p>Period: {2} .. {3} ({4} days, UTC)</p>\n",
      html_escape(data.title), html_style, html_escape(data.first_day), html_escape(data.last_day),
      data.per_day.size());

  out +=
      "<h2>Per month</h2>\n<table>\n<tr><th>month</th><th>days</th><th>received</th>"
      "<th>refused</th><th>refused ratio</th><th>spam ratio</th>";
  for (auto o : display_order)
    if (o != outcome::refused) out += fmt::format("<th>{}</th>", to_string(o));
  out += "</tr>\n";
  auto month_row = [&](std::string_view label, std::size_t days, const outcome_counts& c,
                       bool total) {
    out += fmt::format(
        "<tr{}><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
        total ? " class=\"total\"" : "", html_escape(label), days, c.received(),
        c[outcome::refused], percent(c.refused_ratio()), percent(c.spam_ratio()));
    for (auto o : display_order)
      if (o != outcome::refused) out += fmt::format("<td class=\"num\">{}</td>", c[o]);
    out += "</tr>\n";
  };
  for (const auto& m : data.per_month) month_row(m.month, std::size_t(m.days), m.counts, false);
  month_row("total", data.per_day.size(), data.total, true);
  out +=
      "</table>\n<p class=\"note\">received = accepted + spam + refused + tempfailed + "
      "discarded + virus: every decision, each counted once.</p>\n";

  std::vector<chart_bar> day_bars;
  const std::size_t label_every = std::max<std::size_t>(1, (data.per_day.size() + 14) / 15);
  for (std::size_t i = 0; i < data.per_day.size(); ++i) {
    const auto& d = data.per_day[i];
    chart_bar b;
    if (i % label_every == 0) b.label = d.day.substr(5);
    b.tooltip = tooltip(fmt::format("{} {}", d.day, weekday_name(d.weekday)), d.counts, 1);
    for (std::size_t k = 0; k < display_order.size(); ++k)
      b.values[k] = static_cast<double>(d.counts[display_order[k]]);
    day_bars.push_back(std::move(b));
  }
  out += "<h2>Per day by outcome</h2>\n";
  out += svg_chart(day_bars, "decisions per day by outcome", 1200, 360);

  std::vector<chart_bar> weekday_bars;
  for (const auto& w : data.per_weekday) {
    chart_bar b;
    b.label = weekday_name(w.weekday);
    double divisor = w.days > 0 ? w.days : 1;
    b.tooltip = tooltip(fmt::format("{} (average of {} days)", b.label, w.days), w.total, divisor);
    for (std::size_t k = 0; k < display_order.size(); ++k)
      b.values[k] = static_cast<double>(w.total[display_order[k]]) / divisor;
    weekday_bars.push_back(std::move(b));
  }
  out += "<h2>Per weekday by outcome, average per day</h2>\n";
  out += svg_chart(weekday_bars, "average decisions per weekday by outcome", 700, 300);

  out +=
      "<h2>Viruses per month</h2>\n<table>\n<tr><th>month</th><th>virus</th><th>count</th></tr>\n";
  bool any_virus = false;
  for (const auto& m : data.per_month)
    for (const auto& [name, n] : m.viruses) {
      out += fmt::format("<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>\n",
                         html_escape(m.month), html_escape(name), n);
      any_virus = true;
    }
  if (!any_virus) out += "<tr><td colspan=\"3\">(none)</td></tr>\n";
  out += "</table>\n";

  html_names(out, "Top refused clients", "client", data.top_clients, data.other_clients);
  html_names(out, "Top refused sender domains", "sender domain", data.top_sender_domains,
             data.other_sender_domains);
  html_names(out, "Refusals by stage and rule", "stage:rule", data.top_refusal_rules, 0);
  out += "</body>\n</html>\n";
  return out;
}

std::string render_report(const stats_days& days, const report_options& opts,
                          report_format format) {
  auto data = summarize(days, opts);
  return format == report_format::html ? render_html(data) : render_text(data);
}

}  // namespace mxguard::ops
