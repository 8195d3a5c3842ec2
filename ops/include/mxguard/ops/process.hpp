// mxguard::ops child processes: run a program with an argument vector, feed
// it stdin, collect its output, and kill it by PID when it overruns.
//
// For the firewall feeders (nft -f -, ipset restore, the exec hook) and their
// tests. posix_spawn with an argv, never a shell: no byte of an argument is
// ever interpreted. Blocking; call it from a worker thread, never an I/O
// thread. Thread-safe (each call is independent).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace mxguard::ops {

struct process_result {
  int exit_code = -1;  // when it exited; -1 otherwise
  int signal = 0;      // when a signal ended it (SIGKILL after a timeout)
  bool timed_out = false;
  std::string out, err;     // each truncated to `output_limit`
  std::string spawn_error;  // non-empty when it never started
  bool ok() const { return spawn_error.empty() && !timed_out && signal == 0 && exit_code == 0; }
  // One line for a log: the error, the exit status and stderr, trimmed.
  std::string describe() const;
};

inline constexpr std::size_t output_limit = 64 * 1024;

// Runs argv[0] (an absolute path; PATH is not searched) with argv as given,
// `input` on its stdin, a fixed minimal environment (PATH, LC_ALL=C) and no
// inherited descriptors beyond 0-2. Past `timeout` the child gets SIGKILL.
process_result run_program(const std::vector<std::string>& argv, std::string_view input,
                           std::chrono::milliseconds timeout);

}  // namespace mxguard::ops
