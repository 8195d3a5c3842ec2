#include "load.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <set>
#include <sstream>

namespace mxguard::test {

namespace {

using clock = std::chrono::steady_clock;

std::chrono::milliseconds since(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t);
}

std::string first_line(const std::string& text) {
  return text.substr(0, text.find("\r\n"));
}

}  // namespace

std::string load_subject(const std::string& run, int client, int index) {
  return fmt::format("{} c{} m{}", run, client, index);
}

// --- the load -------------------------------------------------------------------------

smtp_load::~smtp_load() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void smtp_load::start() {
  per_client_.assign(static_cast<std::size_t>(options_.clients), {});
  for (int i = 0; i < options_.clients; ++i) threads_.emplace_back([this, i] { client(i); });
}

load_result smtp_load::wait() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  load_result out;
  for (auto& v : per_client_)
    for (auto& a : v) out.attempts.push_back(std::move(a));
  per_client_.clear();
  return out;
}

bool smtp_load::wait_done(std::size_t n, std::chrono::milliseconds timeout) const {
  const auto until = clock::now() + timeout;
  while (done_.load() < n) {
    if (clock::now() >= until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

void smtp_load::client(int id) {
  for (int m = 0; m < options_.messages && !stop_; ++m) {
    if (m > 0 && options_.pause.count() > 0) std::this_thread::sleep_for(options_.pause);
    per_client_[static_cast<std::size_t>(id)].push_back(one_message(id, m));
    done_.fetch_add(1);
  }
}

attempt smtp_load::one_message(int id, int index) {
  attempt a;
  a.client = id;
  a.index = index;
  a.subject = load_subject(options_.run, id, index);
  const auto started = clock::now();
  smtp_client c;
  // Records one step; true when its reply has the wanted code.
  auto step = [&](const std::string& name, int want, const std::function<smtp_reply()>& io) {
    const auto t0 = clock::now();
    smtp_reply r = io();
    const auto waited = since(t0);
    a.slowest_step = std::max(a.slowest_step, waited);
    a.took = since(started);
    a.steps.push_back({name, r, waited});
    if (r.code == want) return true;
    a.failed_at = name;
    a.code = r.code;
    a.no_reply = r.code == 0 && waited >= options_.reply_timeout - 100ms;
    return false;
  };
  const auto timeout = options_.reply_timeout;
  const std::string source = options_.source ? options_.source(id, index) : std::string();
  if (!c.connect_from(source, options_.port)) {
    a.failed_at = "connect";
    a.steps.push_back({"connect", smtp_reply{}, since(started)});
    a.took = since(started);
    return a;
  }
  const std::string sender = fmt::format("c{}-m{}@remote.example", id, index);
  bool ok =
      step("banner", 220, [&] { return c.read_reply(timeout); }) &&
      step("EHLO", 250, [&] { return c.command("EHLO load.test", timeout); }) &&
      step("MAIL", 250, [&] { return c.command("MAIL FROM:<" + sender + ">", timeout); }) &&
      step("RCPT", 250, [&] { return c.command("RCPT TO:<" + options_.to + ">", timeout); }) &&
      step("DATA", 354, [&] { return c.command("DATA", timeout); });
  if (ok) {
    std::string head = fmt::format(
        "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMessage-ID: <{}.c{}.m{}@load.test>\r\n\r\n",
        sender, options_.to, a.subject, options_.run, id, index);
    std::string first, second;
    for (int i = 0; i < options_.body_lines; ++i)
      (i < options_.body_lines / 2 ? first : second) +=
          fmt::format("line {} of message {} of client {}, some text to carry\r\n", i, index, id);
    if (options_.padding) {
      const std::string filler = std::string(76, 'x') + "\r\n";
      for (std::size_t n = options_.padding(id); n >= filler.size(); n -= filler.size())
        first += filler;
    }
    second += "end of " + a.subject + "\r\n.\r\n";
    c.send(head + first);
    if (options_.mid_data) options_.mid_data(id, index);
    c.send(second);
    ok = step("dot", 250, [&] { return c.read_reply(timeout); });
    if (ok) a.code = 250;
  }
  // A polite end when the server still talks; its reply shows whether the
  // session outlived a failed transaction.
  if (a.code != 0) a.steps.push_back({"QUIT", c.command("QUIT", 2s), {}});
  return a;
}

// --- results --------------------------------------------------------------------------

const smtp_reply& attempt::last_reply() const {
  for (auto it = steps.rbegin(); it != steps.rend(); ++it)
    if (it->name == (failed_at.empty() ? "dot" : failed_at)) return it->reply;
  return steps.back().reply;
}

std::chrono::milliseconds attempt::waited_at(const std::string& step) const {
  for (const auto& s : steps)
    if (s.name == step) return s.waited;
  return std::chrono::milliseconds{0};
}

std::size_t load_result::accepted() const {
  return static_cast<std::size_t>(std::count_if(attempts.begin(), attempts.end(),
                                                [](const attempt& a) { return a.accepted(); }));
}

std::map<std::string, std::size_t> load_result::outcomes() const {
  std::map<std::string, std::size_t> out;
  for (const auto& a : attempts) {
    std::string key;
    if (a.accepted()) {
      key = "250 after the dot";
    } else if (a.code == 0) {
      key = a.failed_at + (a.failed_at == "connect" ? " failed"
                           : a.no_reply             ? ": no reply"
                                                    : ": connection dropped");
    } else {
      // The reply's first line, without the part that names the client.
      std::string text = first_line(a.last_reply().text);
      if (auto bracket = text.find(" ["); bracket != std::string::npos) text.resize(bracket);
      if (auto in = text.find(" in "); in != std::string::npos) text.resize(in);
      key = a.failed_at + " " + text;
    }
    ++out[key];
  }
  return out;
}

std::string load_result::summary() const {
  std::string out = fmt::format("{} messages:", attempts.size());
  for (const auto& [what, n] : outcomes()) out += fmt::format("\n  {:4} x {}", n, what);
  return out;
}

// --- the next hop's copies --------------------------------------------------------------

namespace {

struct copy {
  std::string subject;
  bool complete = false;
  bool bounce = false;
};

copy parse_dump(const std::string& dump) {
  copy c;
  std::istringstream in(dump);
  std::string line;
  bool headers = true;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with("X-Mail-Args: <>")) c.bounce = true;
    if (headers) {
      if (line.empty()) {
        // The first empty line after smtp-sink's own and our Received lines
        // ends the message header.
        if (!c.subject.empty()) headers = false;
        continue;
      }
      if (line.starts_with("Subject: ")) c.subject = line.substr(9);
      if (line.starts_with("From:")) {
        std::string lower = line;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        if (lower.find("mailer-daemon") != std::string::npos) c.bounce = true;
      }
      continue;
    }
    if (line == "end of " + c.subject) c.complete = true;
  }
  return c;
}

}  // namespace

delivery_report check_delivery(const load_result& load, const std::vector<std::string>& dumps) {
  delivery_report r;
  std::map<std::string, std::size_t> copies;  // subject → complete copies
  for (const auto& d : dumps) {
    auto c = parse_dump(d);
    if (c.bounce) {
      ++r.bounces;
      r.problems.push_back("BOUNCE at the next hop: " + c.subject);
    }
    if (c.complete) ++copies[c.subject];
  }
  std::set<std::string> ours;
  for (const auto& a : load.attempts) {
    ++r.attempts;
    ours.insert(a.subject);
    const auto n = copies.count(a.subject) ? copies[a.subject] : 0;
    r.copies += n;
    if (a.accepted()) {
      ++r.accepted;
      if (n == 0) {
        ++r.lost;
        r.problems.push_back("LOST (250 given, no copy): " + a.subject);
      }
    } else if (n > 0) {
      ++r.unconfirmed;
    }
    if (n > 1) {
      ++r.duplicated;
      r.problems.push_back(fmt::format("DUPLICATED ({} copies): {}", n, a.subject));
    }
    if (a.code >= 500) {
      ++r.permanent;
      r.problems.push_back(fmt::format("5xx at {}: {}: {}", a.failed_at, a.subject,
                                       first_line(a.last_reply().text)));
    }
  }
  return r;
}

std::string delivery_report::summary() const {
  std::string out = fmt::format(
      "{} messages, {} accepted (250), {} copies at the next hop; lost {}, duplicated {}, "
      "bounces {}, copies without a 250 {}, 5xx {}",
      attempts, accepted, copies, lost, duplicated, bounces, unconfirmed, permanent);
  for (const auto& p : problems) out += "\n  " + p;
  return out;
}

}  // namespace mxguard::test
