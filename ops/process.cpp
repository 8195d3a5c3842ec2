#include "mxguard/ops/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

namespace mxguard::ops {

namespace {

struct fd_pair {
  int r = -1, w = -1;
};

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Writing to a pipe whose reader died raises SIGPIPE, which would end the
// daemon. Blocking it in this thread turns it into EPIPE; a pending one is
// consumed before the old mask comes back.
class sigpipe_guard {
 public:
  sigpipe_guard() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~sigpipe_guard() {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      timespec zero{};
      sigtimedwait(&set, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;

 private:
  sigset_t old_;
};

void append_bounded(std::string& s, const char* p, std::size_t n) {
  if (s.size() < output_limit) s.append(p, std::min(n, output_limit - s.size()));
}

}  // namespace

std::string process_result::describe() const {
  std::string status;
  if (!spawn_error.empty())
    status = "spawn failed: " + spawn_error;
  else if (timed_out)
    status = "timed out, killed";
  else if (signal != 0)
    status = fmt::format("killed by signal {}", signal);
  else
    status = fmt::format("exit {}", exit_code);
  std::string text = err.empty() ? out : err;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 500) text.resize(500);
  return text.empty() ? status : status + ": " + text;
}

process_result run_program(const std::vector<std::string>& argv, std::string_view input,
                           std::chrono::milliseconds timeout) {
  process_result res;
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    res.spawn_error = "program path must be absolute";
    return res;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  fd_pair in, out, err;
  for (auto* p : {&in, &out, &err}) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      res.spawn_error = std::strerror(errno);
      for (auto* q : {&in, &out, &err}) close_fd(q->r), close_fd(q->w);
      return res;
    }
    p->r = fds[0];
    p->w = fds[1];
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.r, 0);
  posix_spawn_file_actions_adddup2(&actions, out.w, 1);
  posix_spawn_file_actions_adddup2(&actions, err.w, 2);
  // Descriptors opened without O_CLOEXEC elsewhere in the daemon (sockets of
  // libraries) must not leak into nft or a hook script.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  // Its own process group: a timeout kills what a hook script started too
  // (a hanging curl would outlive a SIGKILL of the shell and pile up, one per
  // hook call, until the service's task limit stops the daemon's threads).
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char lang_env[] = "LC_ALL=C";
  char* envp[] = {path_env, lang_env, nullptr};

  sigpipe_guard sigpipe;
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close_fd(in.r);
  close_fd(out.w);
  close_fd(err.w);
  if (rc != 0) {
    res.spawn_error = std::strerror(rc);
    close_fd(in.w), close_fd(out.r), close_fd(err.r);
    return res;
  }
  for (int fd : {in.w, out.r, err.r}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

  std::size_t written = 0;
  if (input.empty()) close_fd(in.w);
  char buf[4096];
  while (out.r >= 0 || err.r >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      res.timed_out = true;
      ::kill(-pid, SIGKILL);  // the group
      break;
    }
    pollfd fds[3];
    nfds_t n = 0;
    auto watch = [&](int fd, short ev) {
      if (fd >= 0) fds[n++] = pollfd{fd, ev, 0};
    };
    watch(out.r, POLLIN);
    watch(err.r, POLLIN);
    watch(in.w, POLLOUT);
    const int ready = ::poll(fds, n, static_cast<int>(std::min<long>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n && ready > 0; ++i) {
      if (fds[i].revents == 0) continue;
      const int fd = fds[i].fd;
      if (fd == in.w) {
        auto k = ::write(fd, input.data() + written, input.size() - written);
        if (k > 0) written += static_cast<std::size_t>(k);
        if ((k < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) close_fd(in.w);
        continue;
      }
      auto k = ::read(fd, buf, sizeof buf);
      if (k > 0) {
        append_bounded(fd == out.r ? res.out : res.err, buf, static_cast<std::size_t>(k));
      } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_fd(fd == out.r ? out.r : err.r);
      }
    }
  }
  close_fd(in.w);
  close_fd(out.r);
  close_fd(err.r);

  // A child that closed its output (`exec >log 2>&1`) can still hang: the
  // deadline holds for its exit too.
  int status = 0;
  for (auto pause = std::chrono::milliseconds(1);;) {
    const pid_t done = ::waitpid(pid, &status, res.timed_out ? 0 : WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return res;
    if (done == 0 && std::chrono::steady_clock::now() >= deadline) {
      res.timed_out = true;
      ::kill(-pid, SIGKILL);  // the group
      continue;
    }
    if (done == 0) {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
  }
  if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) res.signal = WTERMSIG(status);
  return res;
}

}  // namespace mxguard::ops
