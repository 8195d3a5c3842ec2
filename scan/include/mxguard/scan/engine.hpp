// One loaded libclamav engine: the signatures of a directory, compiled, and
// the limits it scans under. Immutable once loaded, so any number of worker
// threads scan with it at once (libclamav allows concurrent scans on a
// compiled engine); a reload builds a new one and the old one is freed when
// its last scan ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct cl_engine;  // libclamav's, kept out of this header

namespace mxguard::scan {

struct engine_limits {
  std::uint64_t max_file_size = 25u << 20;   // larger files (or archive members) are not scanned
  std::uint64_t max_scan_size = 100u << 20;  // bytes scanned per message, archives unpacked
  std::uint32_t max_recursion = 16;          // nesting of archives and MIME parts
  std::uint32_t max_files = 10000;           // archive members per message
  std::chrono::milliseconds max_scan_time{120000};
  std::string temp_dir = "/tmp";  // where libclamav unpacks what it must put on disk
  friend bool operator==(const engine_limits&, const engine_limits&) = default;
};

enum class outcome {
  clean,
  virus,       // a signature matched: `name` holds it
  encrypted,   // an encrypted archive or document: its content could not be checked
  over_limit,  // a limit above stopped the scan: part of the message was not checked
  error,       // libclamav failed: `name` holds its message
  overloaded,  // the pool's queue was full: not scanned
  timeout,     // no result within the pool's timeout: not scanned
};
const char* to_string(outcome o);

struct result {
  outcome what = outcome::clean;
  std::string name;
  std::chrono::microseconds took{0};  // time spent scanning (not queued)
  std::uint64_t scanned_bytes = 0;
};

class engine {
 public:
  // Loads every signature file libclamav accepts from `directory` (.cvd,
  // .cld, .cud, .hdb, .ndb, .ldb, ...) and compiles them. Returns nullptr and
  // sets `error` (naming the file where libclamav does) on failure.
  static std::shared_ptr<const engine> load(const std::string& directory,
                                            const engine_limits& limits, std::string& error);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Scans `head` followed by `body` as one file, from memory: the guard's
  // own Received line and the client's message without joining them.
  result scan(std::string_view head, std::string_view body) const;
  // Scans an open file (messages above the in-memory threshold).
  result scan_fd(int fd) const;

  const std::string& directory() const { return directory_; }
  unsigned signatures() const { return signatures_; }
  unsigned database_version() const { return db_version_; }  // daily.cvd's, 0 without one
  // "ClamAV 1.4.6/27460" for the X-Virus-Scanned header: version/database
  // (or the signature count where there is no official database).
  const std::string& description() const { return description_; }

 private:
  engine() = default;
  ::cl_engine* handle_ = nullptr;
  std::string directory_;
  unsigned signatures_ = 0;
  unsigned db_version_ = 0;
  std::string description_;
};

// libclamav's own version, e.g. "1.4.6".
std::string clamav_version();

}  // namespace mxguard::scan
