// Bounded concurrent SMTP load for fault tests, and the check of what the
// next hop received against what the clients were told.
//
// `smtp_load` runs `clients` threads, each sending `messages` messages with a
// unique Subject and Message-ID (one connection per message), and records
// every reply. `check_delivery` reads the next hop's dumps (smtp-sink; their
// order is not arrival order, so copies are found by Subject) and counts
// what the design promises never happens: a 250 without a copy at the next
// hop (lost), two copies (duplicated), a bounce, a 5xx for a fault of ours.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace mxguard::test {

struct load_options {
  int port = 0;
  int clients = 10;
  int messages = 5;  // per client (at most: stop() ends the load sooner)
  // Prefix of every Subject and Message-ID: unique per load in a test.
  std::string run = "load";
  std::chrono::milliseconds pause{0};  // between two messages of one client
  std::chrono::milliseconds reply_timeout{10s};
  std::string to = "user@example.org";
  int body_lines = 20;
  // Filler bytes in the first half of the body of client i's messages
  // (a big message stalls a next hop's full socket buffers); 0 = none.
  std::function<std::size_t(int client)> padding;
  // Source address of a client's message (e.g. 127.0.2.i); empty = the kernel's choice.
  std::function<std::string(int client, int message)> source;
  // Called after DATA's 354 and half of the message, before the rest and
  // the final dot; may block (a test holds the clients mid-DATA there).
  std::function<void(int client, int message)> mid_data;
};

// One step of a session: connect, banner, EHLO, MAIL, RCPT, DATA, dot, QUIT.
struct load_step {
  std::string name;
  smtp_reply reply;
  std::chrono::milliseconds waited{0};  // for the reply
};

// One message: the replies of its session, step by step.
struct attempt {
  int client = 0, index = 0;
  std::string subject;
  std::vector<load_step> steps;
  std::string failed_at;  // the step that did not succeed; empty when accepted
  int code = 0;           // that step's reply code (the final one when accepted); 0 = none
  bool no_reply = false;  // 0 because nothing came within reply_timeout (not a close)
  std::chrono::milliseconds took{0};          // connect to the last reply
  std::chrono::milliseconds slowest_step{0};  // longest wait for one reply
  bool accepted() const { return failed_at.empty() && code == 250; }
  // The reply of the step that failed (or of the final dot).
  const smtp_reply& last_reply() const;
  // The reply to QUIT after the message; code 0 when the session was gone.
  int quit_code() const {
    return !steps.empty() && steps.back().name == "QUIT" ? steps.back().reply.code : 0;
  }
  std::chrono::milliseconds waited_at(const std::string& step) const;
};

struct load_result {
  std::vector<attempt> attempts;
  std::size_t accepted() const;
  // "RCPT 451 4.4.1 Next hop not reachable" → count, "dot dropped" → count, ...
  std::map<std::string, std::size_t> outcomes() const;
  std::string summary() const;
};

class smtp_load {
 public:
  explicit smtp_load(load_options options) : options_(std::move(options)) {}
  ~smtp_load();
  smtp_load(const smtp_load&) = delete;
  smtp_load& operator=(const smtp_load&) = delete;

  void start();
  // Waits for every client to finish.
  load_result wait();
  load_result run() {
    start();
    return wait();
  }
  // Each client ends after the message it is sending.
  void stop() { stop_ = true; }
  // Messages finished (accepted or not) so far.
  std::size_t done() const { return done_.load(); }
  // Waits until at least n messages are done; false on timeout.
  bool wait_done(std::size_t n, std::chrono::milliseconds timeout) const;

 private:
  void client(int id);
  attempt one_message(int id, int index);

  load_options options_;
  std::vector<std::thread> threads_;
  std::vector<std::vector<attempt>> per_client_;
  std::atomic<std::size_t> done_{0};
  std::atomic<bool> stop_{false};
};

// The message the load sends as message `index` of client `client`.
std::string load_subject(const std::string& run, int client, int index);

struct delivery_report {
  std::size_t attempts = 0;
  std::size_t accepted = 0;     // 250 after the final dot
  std::size_t copies = 0;       // complete copies of this load's messages at the next hop
  std::size_t lost = 0;         // 250 given, no copy at the next hop
  std::size_t duplicated = 0;   // messages with more than one copy
  std::size_t bounces = 0;      // copies with the null sender or from MAILER-DAEMON
  std::size_t unconfirmed = 0;  // a copy arrived but the client got no 250 (its retry duplicates)
  std::size_t permanent = 0;    // 5xx replies given to clients
  std::vector<std::string> problems;  // one line per lost, duplicated or bounced message
  std::string summary() const;
};

// `dumps` are smtp_sink::messages() (possibly of several sinks together).
delivery_report check_delivery(const load_result& load, const std::vector<std::string>& dumps);

}  // namespace mxguard::test
