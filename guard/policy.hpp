// Policy hook points: one per SMTP stage, where later modules (DNSBL, rate
// limits, greylisting, bounce rules, scanning) plug in their checks.
//
// A check looks at the facts of the session and transaction and returns a
// verdict with its reason; it never touches the socket. The session runs the
// checks of a stage in order: the first decided verdict wins, and `accept`
// (an explicit OK, such as an allowlisted client) skips the rest of that
// stage. Checks may suspend (a DNS or Redis lookup) on the session's executor.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>

#include "mxguard/verdict.hpp"
#include "smtp_syntax.hpp"

namespace mxguard::guard {

enum class stage { connect, helo, mail, rcpt, data, end_of_data };
const char* to_string(stage s);

struct session_facts {
  std::string id;
  boost::asio::ip::address client;
  std::uint16_t client_port = 0;
  std::string helo;
  bool esmtp = false;
  bool tls = false;
  bool trusted = false;      // from relay.trusted_networks
  bool allowlisted = false;  // access OK or a DNS allowlist: later checks may skip
  int dnsbl_score = 0;
  bool passed_before = false;  // in the pass cache: DNS lists and greet pause are skipped
  // Who the client is to greylisting (its network, or its confirmed name's
  // domain): found at the first RCPT that asks, kept for the session, since
  // its DNS lookups may each take dnsbl.timeout when DNS is down.
  mutable std::optional<std::string> greylist_as;
};

struct envelope {
  bool open = false;  // MAIL accepted
  bool null_sender = false;
  mailbox sender;
  std::optional<std::uint64_t> declared_size;
  bool body_8bit = false;
  std::vector<mailbox> recipients;  // accepted so far
  bool discard = false;             // a double bounce taken only to be dropped: nothing is relayed
};

struct check_input {
  const session_facts& session;
  const envelope& transaction;
  const mailbox* recipient = nullptr;  // rcpt stage: the one being decided
  std::string_view message;            // end_of_data stage: the whole message
  std::chrono::system_clock::time_point now;
};

class stage_check {
 public:
  virtual ~stage_check() = default;
  virtual std::string_view name() const = 0;
  virtual bool applies_to(stage s) const = 0;
  virtual boost::asio::awaitable<verdict> evaluate(stage s, const check_input& input) = 0;
};

class policy_chain {
 public:
  void add(std::shared_ptr<stage_check> check) { checks_.push_back(std::move(check)); }
  bool empty_for(stage s) const;
  boost::asio::awaitable<verdict> run(stage s, const check_input& input) const;

 private:
  std::vector<std::shared_ptr<stage_check>> checks_;
};

}  // namespace mxguard::guard
