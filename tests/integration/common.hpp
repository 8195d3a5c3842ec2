// Shared pieces of the integration tests: a base configuration and fixtures.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "harness.hpp"

namespace mxguard::test {

// A configuration relaying example.org to `next_hops` (TOML array body),
// with `extra` TOML appended (later keys of a section must not repeat).
inline std::string base_config(const std::string& next_hops, const std::string& server_extra = "",
                               const std::string& extra = "") {
  return "[server]\n"
         "listen = [\"127.0.0.1:@PORT@\"]\n"
         "hostname = \"mx.example.org\"\n"
         "workers = 2\n" +
         server_extra +
         "\n[relay]\n"
         "domains = [\"example.org\", \".example.org\"]\n"
         "connect_timeout = \"2s\"\n"
         "command_timeout = \"5s\"\n"
         "\n[[route]]\n"
         "domain = \"example.org\"\n"
         "next_hops = [" +
         next_hops +
         "]\n"
         "\n[[route]]\n"
         "domain = \".example.org\"\n"
         "next_hops = [" +
         next_hops + "]\n" + extra;
}

inline std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

// The message body a sink copy holds, compared with what the client sent
// (CRLF → LF as smtp-sink writes it).
inline std::string as_dumped(const std::string& message) {
  std::string out;
  for (std::size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\r' && i + 1 < message.size() && message[i + 1] == '\n') continue;
    out.push_back(message[i]);
  }
  if (!out.ends_with("\n")) out.push_back('\n');
  return out;
}

// A self-signed certificate (cert.pem, key.pem in `dir`) for `name`.
inline bool make_certificate(const temp_dir& dir, const std::string& name = "mx.example.org") {
  using namespace std::chrono_literals;
  child openssl({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                 (dir / "key.pem").string(), "-out", (dir / "cert.pem").string(), "-days", "2",
                 "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name},
                dir / "openssl.log");
  return openssl.wait_exit(60s).value_or(-1) == 0;
}

}  // namespace mxguard::test
