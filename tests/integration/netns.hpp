// Network namespaces for the integration tests that need a kernel of their
// own (firewall sets, a resolver pointed at mxguard): a server and a client
// namespace joined by a veth pair, deleted however the test ends.
#pragma once

#include <unistd.h>

#include <string>
#include <vector>

#include "harness.hpp"

namespace mxguard::test {

// Runs a program (argument vector, no shell); its exit status, output in `out`.
inline int run_program(const temp_dir& dir, std::vector<std::string> argv,
                       std::string* out = nullptr, std::chrono::milliseconds timeout = 20s) {
  static int n = 0;
  auto log = dir / ("program-" + std::to_string(++n) + ".out");
  child c(argv, log);
  auto status = c.wait_exit(timeout);
  if (out) *out = read_file(log);
  return status.value_or(-1);
}

class veth_pair {
 public:
  // `tag` keeps names of concurrent tests apart (interface names are at most
  // 15 bytes); the server gets `net`.1/24, the clients `client_addresses`.
  veth_pair(const temp_dir& dir, const std::string& tag, const std::string& net,
            std::vector<std::string> client_addresses)
      : clients(std::move(client_addresses)), dir_(dir) {
    const auto id = std::to_string(::getpid() % 100000);
    server_ns = "mxg-" + tag + "s-" + id;
    client_ns = "mxg-" + tag + "c-" + id;
    server_address = net + ".1";
    std::string out;
    for (auto* ns : {&server_ns, &client_ns}) {
      if (run_program(dir, {"/usr/sbin/ip", "netns", "add", *ns}, &out) != 0) {
        problem = "ip netns add failed: " + out;
        return;
      }
      created_.push_back(*ns);
    }
    const std::string vs = "v" + tag + "s" + id, vc = "v" + tag + "c" + id;
    std::vector<std::vector<std::string>> steps{
        {"/usr/sbin/ip", "link", "add", vs, "netns", server_ns, "type", "veth", "peer", "name", vc,
         "netns", client_ns},
        {"/usr/sbin/ip", "-n", server_ns, "addr", "add", server_address + "/24", "dev", vs}};
    for (const auto& c : clients)
      steps.push_back({"/usr/sbin/ip", "-n", client_ns, "addr", "add", c + "/24", "dev", vc});
    for (const auto& [ns, dev] : {std::pair{server_ns, vs}, std::pair{client_ns, vc}}) {
      steps.push_back({"/usr/sbin/ip", "-n", ns, "link", "set", dev, "up"});
      steps.push_back({"/usr/sbin/ip", "-n", ns, "link", "set", "lo", "up"});
    }
    for (const auto& step : steps)
      if (run_program(dir, step, &out) != 0) {
        problem = "network setup failed: " + out;
        return;
      }
  }
  ~veth_pair() {
    for (const auto& ns : created_) run_program(dir_, {"/usr/sbin/ip", "netns", "del", ns});
  }
  veth_pair(const veth_pair&) = delete;
  veth_pair& operator=(const veth_pair&) = delete;

  std::string server_ns, client_ns, server_address, problem;
  std::vector<std::string> clients;

 private:
  const temp_dir& dir_;
  std::vector<std::string> created_;
};

}  // namespace mxguard::test
