// Listeners and admission: the I/O threads, their SO_REUSEPORT acceptors,
// and the checks that run before a session is allocated.
//
// Each worker thread runs its own io_context with its own acceptor per listen
// address, so a session lives on one thread from accept to close and needs
// no locks. Admission, in order: PROXY header (from configured balancers
// only), access list, global cap, per-client cap; a refused client gets one
// reply line written without suspending and is closed.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "runtime.hpp"

namespace mxguard::guard {

class server {
 public:
  explicit server(daemon_state& state);
  ~server();

  // Binds every listen address on every worker; throws std::system_error
  // naming the address on failure (port in use, no permission).
  void start(unsigned workers);
  // Closes the listeners; sessions in progress go on (drain).
  void stop_accepting();
  // Stops accepting and ends all sessions; returns when the threads are gone.
  void stop();

 private:
  struct worker;
  daemon_state& state_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<std::thread> threads_;
};

}  // namespace mxguard::guard
