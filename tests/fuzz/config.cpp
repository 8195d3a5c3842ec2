// Fuzz target: parse_config on arbitrary text.
//
// Any input either yields a configuration or throws config_error whose
// message starts with "FILE:LINE: "; nothing else may escape. A configuration
// that parses describes itself (--check-config) as TOML that parses back to
// the same description.
//
// parse_config reads the files a configuration names (access.file, tls.cert,
// tls.key). So that the fuzzer cannot make it read a device or a pipe
// forever, inputs that could name one are skipped: TOML can spell a path only
// literally unless it uses a backslash escape, so inputs with a backslash or
// with "/dev", "/proc", "/sys" or "/run" are not run.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config.hpp"

namespace {

using namespace mxguard::guard;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

bool unsafe(std::string_view text) {
  if (text.find('\\') != std::string_view::npos) return true;
  for (std::string_view p : {"/dev", "/proc", "/sys", "/run"})
    if (text.find(p) != std::string_view::npos) return true;
  return false;
}

// "NAME:LINE: ..." with a non-empty name and a decimal line number.
bool names_file_and_line(std::string_view message) {
  for (std::size_t colon = message.find(':'); colon != std::string_view::npos;
       colon = message.find(':', colon + 1)) {
    std::size_t i = colon + 1;
    while (i < message.size() && message[i] >= '0' && message[i] <= '9') ++i;
    if (colon > 0 && i > colon + 1 && message.substr(i, 2) == ": ") return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (unsafe(text)) return 0;
  std::shared_ptr<const config> cfg;
  try {
    cfg = parse_config(text, "fuzz.toml");
  } catch (const config_error& e) {
    require(names_file_and_line(e.what()), "a config error names file and line");
    return 0;
  }
  const auto described = describe(*cfg);
  std::shared_ptr<const config> again;
  try {
    again = parse_config(described, "fuzz.toml");
  } catch (const config_error& e) {
    std::fprintf(stderr, "%s\n---\n%s\n", e.what(), described.c_str());
    require(false, "the description of a valid configuration parses");
  }
  require(describe(*again) == described, "the description parses back to itself");
  return 0;
}
