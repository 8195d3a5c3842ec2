// One SMTP session: a coroutine that reads like RFC 5321.
//
// Banner → command loop (HELO/EHLO, MAIL, RCPT, DATA, RSET, ...) → QUIT,
// with the before-queue relay driven from RCPT and end-of-DATA. The session
// owns its socket and its admission slot; a second coroutine, the watchdog,
// enforces the deadlines (one whole command line, the whole DATA phase, the
// whole session) by cancelling the socket, which is why the session is
// shared-owned by exactly those two.
#pragma once

#include <optional>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "admission.hpp"
#include "runtime.hpp"

namespace mxguard::guard {

// Starts a session on the socket's executor; returns at once.
// `preset_refusal`: refused already at admission (access REJECT); the
// session only carries out the RFC 5321 §3.1 dialogue of a 554 greeting.
// `client_known`: false when `client` is a balancer's own address (a PROXY
// header that names no client): never trusted.
void start_session(boost::asio::ip::tcp::socket socket, boost::asio::ip::tcp::endpoint client,
                   std::shared_ptr<const runtime_snapshot> snapshot, daemon_state& state,
                   session_slot slot, bool allowlisted,
                   std::optional<verdict> preset_refusal = std::nullopt, bool client_known = true);

}  // namespace mxguard::guard
