#include "smtp_framing.hpp"

#include <cstring>

namespace mxguard::guard {

namespace {
// Read granularity: enough for a pipelined burst of commands, and for DATA
// chunks large enough that a message needs few reads.
constexpr std::size_t read_chunk = 4096;
}  // namespace

char* line_buffer::write_area(std::size_t& size) {
  if (begin_ == end_) begin_ = end_ = 0;
  if (begin_ > 0 && storage_.size() - end_ < read_chunk) {
    std::memmove(storage_.data(), storage_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (storage_.size() - end_ < read_chunk) storage_.resize(end_ + read_chunk);
  size = storage_.size() - end_;
  return storage_.data() + end_;
}

void line_buffer::release_if_empty() {
  if (begin_ == end_) {
    begin_ = end_ = 0;
    std::string().swap(storage_);
  }
}

std::optional<line_buffer::line> line_buffer::next() {
  std::string_view data(storage_.data() + begin_, end_ - begin_);
  auto lf = data.find('\n');
  if (discarding_) {
    if (lf == std::string_view::npos) {
      begin_ = end_;  // drop what we have, keep discarding
      return std::nullopt;
    }
    begin_ += lf + 1;
    discarding_ = false;
    return line{status::too_long, {}};
  }
  // max_line counts the whole line with its CRLF, as RFC 5321 §4.5.3.1.4
  // counts its 512 octets (and as `server.max_line_length` is documented);
  // comparing `lf` alone let a line one byte longer through.
  if (lf == std::string_view::npos) {
    // Without its LF the line is already at least data.size() + 1 bytes.
    if (data.size() >= max_line_) {
      discarding_ = true;
      begin_ = end_;
    }
    return std::nullopt;
  }
  begin_ += lf + 1;
  if (lf + 1 > max_line_) return line{status::too_long, {}};
  if (lf == 0 || data[lf - 1] != '\r') return line{status::bare_lf, data.substr(0, lf)};
  return line{status::ok, data.substr(0, lf - 1)};
}

// Content is counted as it arrives, partial lines included, so that size()
// never depends on how the input was split into reads; the limit is checked
// on every count, so nothing past it is ever stored.
void data_reader::count(std::size_t n) {
  size_ += n;
  if (!too_big_ && size_ > max_size_) {
    too_big_ = true;
    std::string().swap(message_);
  }
}

void data_reader::end_line(bool crlf) {
  if (crlf && clean_start_ && line_ == ".") {
    done_ = true;
    return;
  }
  std::string_view text(line_);
  // RFC 5321 §4.5.2: a leading dot followed by more text was added by the
  // client. feed() did not count a leading dot; a lone "." that does not end
  // the data is content, so its dot counts now.
  if (text.size() > 1 && text.front() == '.')
    text.remove_prefix(1);
  else if (text == ".")
    count(1);
  count(2);
  if (!too_big_) {
    message_.append(text);
    message_.append("\r\n");
  }
  clean_start_ = crlf;
  // A long line's buffer would stay with the reader while the message is
  // scanned and relayed: a second copy of it.
  if (line_.capacity() > 64 * 1024)
    std::string().swap(line_);
  else
    line_.clear();
}

std::size_t data_reader::feed(std::string_view bytes) {
  std::size_t i = 0;
  while (i < bytes.size() && !done_) {
    if (pending_cr_) {
      pending_cr_ = false;
      if (bytes[i] == '\n') {
        ++i;
        end_line(true);
        continue;
      }
      ++bare_cr_;
      end_line(false);
      continue;
    }
    // Copy the run of ordinary bytes up to the next CR or LF in one go.
    auto stop = bytes.find_first_of("\r\n", i);
    auto run_end = stop == std::string_view::npos ? bytes.size() : stop;
    if (run_end > i) {
      auto run = bytes.substr(i, run_end - i);
      // A line's leading dot is the end-of-data line or a stuffing dot, not
      // content (counting it refused a message of exactly max_size bytes:
      // its final "." tipped it over).
      count(run.size() - (line_.empty() && run.front() == '.' ? 1 : 0));
      if (!too_big_)
        line_.append(run);
      else if (line_.size() < 2)  // past the limit only "is it '.'?" matters
        line_.append(run.substr(0, 2 - line_.size()));
      i = run_end;
      continue;
    }
    char c = bytes[i++];
    if (c == '\r') {
      pending_cr_ = true;
    } else {
      ++bare_lf_;
      end_line(false);
    }
  }
  return i;
}

bool dot_stuffer::next(std::string& out, std::size_t chunk) {
  out.clear();
  if (finished_) return false;
  while (pos_ < message_.size() && out.size() < chunk) {
    if (line_start_ && message_[pos_] == '.') out.push_back('.');
    auto eol = message_.find('\n', pos_);
    auto end = eol == std::string_view::npos ? message_.size() : eol + 1;
    out.append(message_.substr(pos_, end - pos_));
    line_start_ = eol != std::string_view::npos;
    pos_ = end;
  }
  if (pos_ >= message_.size()) {
    if (!line_start_) out.append("\r\n");  // the dot must stand on a line of its own
    out.append(".\r\n");
    finished_ = true;
  }
  return true;
}

}  // namespace mxguard::guard
