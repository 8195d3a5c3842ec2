#include "mxguard/scan/engine.hpp"

#include <clamav.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "mxguard/ops/log.hpp"

namespace mxguard::scan {

namespace {

// libclamav reports load problems (the file and line of a bad signature)
// through one process-wide message callback. While a load runs on a thread,
// its messages are collected there, so the reload error can name the file.
thread_local std::string* load_messages = nullptr;

void on_clamav_message(enum cl_msg severity, const char* fullmsg, const char* msg, void*) {
  std::string_view text = msg ? msg : (fullmsg ? fullmsg : "");
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (severity == CL_MSG_ERROR && load_messages != nullptr) {
    if (!load_messages->empty()) *load_messages += "; ";
    *load_messages += text;
  }
  if (severity == CL_MSG_ERROR || severity == CL_MSG_WARN)
    ops::log_message(severity == CL_MSG_ERROR ? ops::severity::error : ops::severity::warning,
                     "CLAMAV", text);
}

cl_error_t init_once() {
  static std::once_flag once;
  static cl_error_t status = CL_SUCCESS;
  std::call_once(once, [] {
    cl_set_clcb_msg(on_clamav_message);
    status = cl_init(CL_INIT_DEFAULT);
  });
  return status;
}

struct two_segments {
  std::string_view head;
  std::string_view body;
};

// fmap's pread over head+body, so the message is scanned where it lies.
off_t read_two_segments(void* handle, void* buf, size_t count, off_t offset) {
  const auto* s = static_cast<const two_segments*>(handle);
  auto* out = static_cast<char*>(buf);
  std::size_t pos = static_cast<std::size_t>(offset);
  std::size_t done = 0;
  if (pos < s->head.size()) {
    std::size_t n = std::min(count, s->head.size() - pos);
    std::memcpy(out, s->head.data() + pos, n);
    done = n;
    pos += n;
  }
  if (done < count && pos >= s->head.size()) {
    std::size_t body_pos = pos - s->head.size();
    if (body_pos < s->body.size()) {
      std::size_t n = std::min(count - done, s->body.size() - body_pos);
      std::memcpy(out + done, s->body.data() + body_pos, n);
      done += n;
    }
  }
  return static_cast<off_t>(done);
}

cl_scan_options scan_options() {
  cl_scan_options o{};
  o.general = CL_SCAN_GENERAL_HEURISTICS;
  o.parse = ~0u & ~static_cast<unsigned>(CL_SCAN_PARSE_IMAGE_FUZZY_HASH);
  o.heuristic = CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE | CL_SCAN_HEURISTIC_ENCRYPTED_DOC |
                CL_SCAN_HEURISTIC_EXCEEDS_MAX;
  return o;
}

// Heuristic "detections" that mean "could not look inside", not "found
// something": the policy treats them apart from real signatures.
result classify(cl_error_t status, const char* virname, unsigned long scanned) {
  result r;
  r.scanned_bytes = scanned;
  if (status == CL_CLEAN) return r;
  if (status == CL_VIRUS) {
    r.name = virname ? virname : "unknown";
    if (r.name.starts_with("Heuristics.Encrypted"))
      r.what = outcome::encrypted;
    else if (r.name.starts_with("Heuristics.Limits.Exceeded"))
      r.what = outcome::over_limit;
    else
      r.what = outcome::virus;
    return r;
  }
  r.what = status == CL_EMAXSIZE || status == CL_EMAXREC || status == CL_EMAXFILES ||
                   status == CL_ETIMEOUT
               ? outcome::over_limit
               : outcome::error;
  r.name = cl_strerror(status);
  return r;
}

}  // namespace

const char* to_string(outcome o) {
  switch (o) {
    case outcome::clean:
      return "clean";
    case outcome::virus:
      return "virus";
    case outcome::encrypted:
      return "encrypted";
    case outcome::over_limit:
      return "over_limit";
    case outcome::error:
      return "error";
    case outcome::overloaded:
      return "overloaded";
    case outcome::timeout:
      return "timeout";
  }
  return "?";
}

std::string clamav_version() {
  init_once();
  return cl_retver();
}

std::shared_ptr<const engine> engine::load(const std::string& directory,
                                           const engine_limits& limits, std::string& error) {
  if (auto status = init_once(); status != CL_SUCCESS) {
    error = fmt::format("libclamav initialisation failed: {}", cl_strerror(status));
    return nullptr;
  }
  std::shared_ptr<engine> e(new engine());
  e->directory_ = directory;
  e->handle_ = cl_engine_new();
  if (e->handle_ == nullptr) {
    error = "cl_engine_new failed (out of memory?)";
    return nullptr;
  }
  auto set_num = [&](cl_engine_field field, long long value) {
    return cl_engine_set_num(e->handle_, field, value);
  };
  if (set_num(CL_ENGINE_MAX_FILESIZE, static_cast<long long>(limits.max_file_size)) ||
      set_num(CL_ENGINE_MAX_SCANSIZE, static_cast<long long>(limits.max_scan_size)) ||
      set_num(CL_ENGINE_MAX_RECURSION, limits.max_recursion) ||
      set_num(CL_ENGINE_MAX_FILES, limits.max_files) ||
      set_num(CL_ENGINE_MAX_SCANTIME, limits.max_scan_time.count()) ||
      cl_engine_set_str(e->handle_, CL_ENGINE_TMPDIR, limits.temp_dir.c_str())) {
    error = "libclamav refused an engine limit";
    return nullptr;
  }

  std::string messages;
  load_messages = &messages;
  unsigned signatures = 0;
  cl_error_t status = cl_load(directory.c_str(), e->handle_, &signatures, CL_DB_STDOPT);
  if (status == CL_SUCCESS) status = cl_engine_compile(e->handle_);
  load_messages = nullptr;
  if (status != CL_SUCCESS) {
    error = fmt::format("{}: {}{}{}", directory, cl_strerror(status), messages.empty() ? "" : ": ",
                        messages);
    return nullptr;
  }
  e->signatures_ = signatures;
  int err = 0;
  e->db_version_ = static_cast<unsigned>(cl_engine_get_num(e->handle_, CL_ENGINE_DB_VERSION, &err));
  e->description_ = fmt::format("ClamAV {}/{}", cl_retver(),
                                e->db_version_ != 0 ? e->db_version_ : e->signatures_);
  return e;
}

engine::~engine() {
  if (handle_ != nullptr) cl_engine_free(handle_);
}

// Runs one libclamav scan call and times it; `call` gets the out-parameters.
template <typename Call>
result timed_scan(Call&& call) {
  auto started = std::chrono::steady_clock::now();
  const char* virname = nullptr;
  unsigned long scanned = 0;
  auto options = scan_options();
  cl_error_t status = call(&virname, &scanned, &options);  // before virname is read
  auto r = classify(status, virname, scanned);
  r.took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                 started);
  return r;
}

result engine::scan(std::string_view head, std::string_view body) const {
  two_segments segments{head, body};
  cl_fmap_t* map =
      cl_fmap_open_handle(&segments, 0, head.size() + body.size(), read_two_segments, 0);
  if (map == nullptr) return {outcome::error, "cl_fmap_open_handle failed", {}, 0};
  auto r = timed_scan([&](const char** virname, unsigned long* scanned, cl_scan_options* options) {
    return cl_scanmap_callback(map, "message", virname, scanned, handle_, options, nullptr);
  });
  cl_fmap_close(map);
  return r;
}

result engine::scan_fd(int fd) const {
  return timed_scan([&](const char** virname, unsigned long* scanned, cl_scan_options* options) {
    return cl_scandesc_callback(fd, "message", virname, scanned, handle_, options, nullptr);
  });
}

}  // namespace mxguard::scan
