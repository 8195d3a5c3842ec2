// SMTP framing over a byte stream: command lines and the DATA phase.
//
// Pure state machines fed with bytes as they arrive; the session owns the
// socket. Both are fuzzed (tests/fuzz/smtp_command, tests/fuzz/data_reader).
//
// Deliberate choices, documented in the README ("Line endings and odd bytes"):
//  - A command line ends with CRLF. A bare LF ends it too but the line is
//    refused (500 5.5.2), so a client cannot smuggle a command past a proxy
//    that splits on CRLF only; a line over the limit is refused whole.
//  - DATA ends only at CRLF "." CRLF. Bare LF and bare CR inside the message
//    are normalised to CRLF (RFC 5322 allows neither alone), and a "." line
//    that was not framed by genuine CRLFs stays message content. Because the
//    stored message is re-dot-stuffed on the way out, none of the known
//    end-of-data variants ("\n.\n", "\r.\r\n", "\n.\r\n", "\r\n.\n") can end
//    the message early here or at the next hop (SMTP smuggling).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mxguard::guard {

// Accumulates incoming bytes and hands out complete command lines.
class line_buffer {
 public:
  enum class status { ok, bare_lf, too_long };
  struct line {
    status state = status::ok;
    std::string_view text;  // without CRLF; valid until the next call
  };

  explicit line_buffer(std::size_t max_line) : max_line_(max_line) {}

  // Room to read into; grows on demand up to max_line + slack.
  char* write_area(std::size_t& size);
  void commit(std::size_t n) { end_ += n; }

  // The next complete line, if one is buffered.
  std::optional<line> next();

  bool empty() const { return begin_ == end_ && !discarding_; }
  std::size_t buffered() const { return end_ - begin_; }
  // Unconsumed bytes (used to hand bytes after DATA/'.' to the next phase).
  std::string_view pending() const { return {storage_.data() + begin_, end_ - begin_}; }
  void consume(std::size_t n) { begin_ += n; }
  // Drops buffered input (after STARTTLS: plaintext sent ahead is an attack, RFC 3207 §5).
  void clear() { begin_ = end_ = 0; }
  // Frees memory when idle, so an idle session holds no buffer.
  void release_if_empty();

 private:
  std::string storage_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::size_t max_line_;
  bool discarding_ = false;  // skipping the rest of an over-long line
};

// Receives the DATA phase: finds the end, undoes dot-stuffing, normalises
// line ends and enforces the size limit while reading.
class data_reader {
 public:
  explicit data_reader(std::size_t max_size) : max_size_(max_size) {}

  // Consumes bytes up to and including the end-of-data line. Returns how many
  // were consumed; bytes after the end (pipelined commands) are left.
  std::size_t feed(std::string_view bytes);

  bool done() const { return done_; }
  bool too_big() const { return too_big_; }
  std::size_t size() const { return size_; }  // bytes of content seen, even past the limit
  // The message (CRLF lines, unstuffed); empty once too_big.
  std::string& message() { return message_; }
  // Memory the reader holds (capacities), for the bounded-memory tests.
  std::size_t held_bytes() const { return message_.capacity() + line_.capacity(); }
  std::size_t bare_lf() const { return bare_lf_; }
  std::size_t bare_cr() const { return bare_cr_; }

 private:
  void end_line(bool crlf);
  void count(std::size_t n);

  std::string message_;
  std::string line_;  // the current line until its end is seen
  std::size_t max_size_;
  std::size_t size_ = 0;
  std::size_t bare_lf_ = 0;
  std::size_t bare_cr_ = 0;
  bool pending_cr_ = false;
  bool clean_start_ = true;  // the previous line ended with a genuine CRLF
  bool done_ = false;
  bool too_big_ = false;
};

// Produces `message` (CRLF lines) in SMTP DATA wire form, chunk by chunk:
// dot-stuffed and ending with CRLF "." CRLF. Chunked so that sending a large
// message needs one chunk of extra memory, not a second copy.
class dot_stuffer {
 public:
  explicit dot_stuffer(std::string_view message) : message_(message) {}
  // Replaces `out` with the next chunk of about `chunk` bytes; false when done.
  bool next(std::string& out, std::size_t chunk);

 private:
  std::string_view message_;
  std::size_t pos_ = 0;
  bool line_start_ = true;
  bool finished_ = false;
};

}  // namespace mxguard::guard
