// Unit tests for guard/smtp_framing.hpp: command lines, the DATA phase
// (end of data, dot-unstuffing, size limit, SMTP smuggling) and dot-stuffing.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "smtp_framing.hpp"

namespace mxguard::guard {
namespace {

using lstatus = line_buffer::status;

struct got_line {
  lstatus state;
  std::string text;
  friend bool operator==(const got_line&, const got_line&) = default;
};

void PrintTo(const got_line& l, std::ostream* os) {
  *os << (l.state == lstatus::ok        ? "ok"
          : l.state == lstatus::bare_lf ? "bare_lf"
                                        : "too_long")
      << " \"" << l.text << "\"";
}

// Copies `bytes` into the buffer through its write area, as a socket read would.
void feed(line_buffer& buffer, std::string_view bytes) {
  while (!bytes.empty()) {
    std::size_t room = 0;
    char* area = buffer.write_area(room);
    const std::size_t n = std::min(room, bytes.size());
    std::memcpy(area, bytes.data(), n);
    buffer.commit(n);
    bytes.remove_prefix(n);
  }
}

// Feeds each piece in turn, taking every complete line after each read.
std::vector<got_line> read_lines(std::size_t max_line, const std::vector<std::string>& reads) {
  line_buffer buffer(max_line);
  std::vector<got_line> out;
  for (const auto& r : reads) {
    feed(buffer, r);
    while (auto l = buffer.next()) out.push_back({l->state, std::string(l->text)});
  }
  return out;
}

TEST(line_buffer, lines) {
  struct row {
    const char* label;
    std::vector<std::string> reads;
    std::vector<got_line> want;
  };
  // max_line counts the whole line with its CRLF, as RFC 5321 §4.5.3.1.4 does.
  const std::string fits(14, 'x');      // 14 + CRLF = 16 bytes
  const std::string one_over(15, 'y');  // 15 + CRLF = 17 bytes
  const std::string very_long(100, 'z');
  const row rows[] = {
      {"one line", {"HELO a\r\n"}, {{lstatus::ok, "HELO a"}}},
      {"empty line", {"\r\n"}, {{lstatus::ok, ""}}},
      {"incomplete line waits", {"HELO a"}, {}},
      {"incomplete CR waits", {"HELO a\r"}, {}},
      {"pipelined in one read",
       {"MAIL FROM:<>\r\nRCPT TO:<c@d>\r\nDATA\r\n"},
       {{lstatus::ok, "MAIL FROM:<>"}, {lstatus::ok, "RCPT TO:<c@d>"}, {lstatus::ok, "DATA"}}},
      {"split across reads",
       {"HE", "LO a", "\r", "\nNO", "OP\r\n"},
       {{lstatus::ok, "HELO a"}, {lstatus::ok, "NOOP"}}},
      {"bare LF flagged",
       {"HELO a\nNOOP\r\n"},
       {{lstatus::bare_lf, "HELO a"}, {lstatus::ok, "NOOP"}}},
      {"bare LF alone", {"\n"}, {{lstatus::bare_lf, ""}}},
      {"bare CR stays in the line", {"HELO a\rb\r\n"}, {{lstatus::ok, "HELO a\rb"}}},
      {"line of exactly the limit", {fits + "\r\n"}, {{lstatus::ok, fits}}},
      {"line one byte over the limit",
       {one_over + "\r\nNOOP\r\n"},
       {{lstatus::too_long, ""}, {lstatus::ok, "NOOP"}}},
      {"over-long line in one read",
       {very_long + "\r\nNOOP\r\n"},
       {{lstatus::too_long, ""}, {lstatus::ok, "NOOP"}}},
      {"over-long line over several reads is reported once",
       {very_long, very_long, very_long + "\r", "\nNOOP\r\nQUIT\r\n"},
       {{lstatus::too_long, ""}, {lstatus::ok, "NOOP"}, {lstatus::ok, "QUIT"}}},
      {"over-long line ended by a bare LF",
       {very_long, "abc\nNOOP\r\n"},
       {{lstatus::too_long, ""}, {lstatus::ok, "NOOP"}}},
      {"partial line of the limit without its LF waits",
       {std::string(13, 'x') + "\r", "\n"},
       {{lstatus::ok, std::string(13, 'x')}}},
      {"limit reached without LF starts discarding",
       {one_over + "\r", "\nNOOP\r\n"},
       {{lstatus::too_long, ""}, {lstatus::ok, "NOOP"}}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(read_lines(16, r.reads), r.want);
  }
}

TEST(line_buffer, pending_and_release) {
  line_buffer buffer(512);
  EXPECT_TRUE(buffer.empty());
  feed(buffer, "DATA\r\nSubject: x\r\n");
  auto l = buffer.next();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->text, "DATA");
  // What follows DATA is handed to the next phase untouched.
  EXPECT_EQ(buffer.pending(), "Subject: x\r\n");
  EXPECT_EQ(buffer.buffered(), 12u);
  buffer.consume(buffer.buffered());
  EXPECT_TRUE(buffer.empty());
  buffer.release_if_empty();
  EXPECT_FALSE(buffer.next());
  feed(buffer, "QUIT\r\n");
  l = buffer.next();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->text, "QUIT");
  feed(buffer, "STARTTLS\r\nEHLO injected\r\n");
  buffer.clear();
  EXPECT_FALSE(buffer.next());
}

// The observable result of reading one DATA phase.
struct data_result {
  std::size_t consumed = 0;
  bool done = false;
  bool too_big = false;
  std::size_t size = 0;
  std::string message;
  std::size_t bare_lf = 0;
  std::size_t bare_cr = 0;
  friend bool operator==(const data_result&, const data_result&) = default;
};

void PrintTo(const data_result& r, std::ostream* os) {
  *os << "{consumed=" << r.consumed << " done=" << r.done << " too_big=" << r.too_big
      << " size=" << r.size << " bare_lf=" << r.bare_lf << " bare_cr=" << r.bare_cr
      << " message=" << testing::PrintToString(r.message) << "}";
}

// Feeds `input` in pieces of `step` bytes (0: all at once) until done.
data_result read_data(std::string_view input, std::size_t max_size, std::size_t step = 0) {
  data_reader reader(max_size);
  data_result r;
  while (r.consumed < input.size() && !reader.done()) {
    auto piece = input.substr(r.consumed, step == 0 ? std::string_view::npos : step);
    auto n = reader.feed(piece);
    EXPECT_LE(n, piece.size());
    r.consumed += n;
    if (n < piece.size()) {
      EXPECT_TRUE(reader.done()) << "stopped early without reaching the end";
      break;
    }
  }
  r.done = reader.done();
  r.too_big = reader.too_big();
  r.size = reader.size();
  r.message = reader.message();
  r.bare_lf = reader.bare_lf();
  r.bare_cr = reader.bare_cr();
  return r;
}

struct data_row {
  const char* label;
  std::string input;
  std::size_t max_size;
  data_result want;
};

data_result ended(std::size_t consumed, std::string message, std::size_t bare_lf = 0,
                  std::size_t bare_cr = 0) {
  data_result r;
  r.consumed = consumed;
  r.done = true;
  r.size = message.size();
  r.message = std::move(message);
  r.bare_lf = bare_lf;
  r.bare_cr = bare_cr;
  return r;
}

void check_data_rows(const std::vector<data_row>& rows) {
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    EXPECT_EQ(read_data(r.input, r.max_size), r.want);
    // Any split of the same bytes gives the same result.
    for (std::size_t step : {1u, 2u, 3u, 7u}) {
      SCOPED_TRACE("in pieces of " + std::to_string(step));
      EXPECT_EQ(read_data(r.input, r.max_size, step), r.want);
    }
  }
}

TEST(data_reader, end_of_data_and_unstuffing) {
  const std::string after = "QUIT\r\n";
  data_result unfinished;
  unfinished.consumed = 14;
  unfinished.size = 14;
  unfinished.message = "Subject: x\r\n\r\n";
  std::vector<data_row> rows = {
      {"dot as the very first line", ".\r\n" + after, 1000, ended(3, "")},
      {"simple message", "Subject: x\r\n\r\nbody\r\n.\r\n" + after, 1000,
       ended(23, "Subject: x\r\n\r\nbody\r\n")},
      {"bytes after the end are left", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 1000, ended(6, "a\r\n")},
      {"stuffed dot is removed", "..\r\n.\r\n", 1000, ended(7, ".\r\n")},
      {"stuffed text line", "..hidden\r\n...\r\n.\r\n", 1000, ended(18, ".hidden\r\n..\r\n")},
      {"dot inside a line is content", "a.\r\n. b\r\n.\r\n", 1000, ended(12, "a.\r\n b\r\n")},
      {"no end yet", "Subject: x\r\n\r\n", 1000, unfinished},
      {"empty line before the end", "\r\n.\r\n", 1000, ended(5, "\r\n")},
      {"CR CR LF is a bare CR then a line end", "a\r\r\n.\r\n", 1000, ended(7, "a\r\n\r\n", 0, 1)},
  };
  check_data_rows(rows);
}

TEST(data_reader, smuggling_variants_do_not_end_the_data) {
  // Each variant would end the message at a server that accepts sloppy
  // line ends; here it stays content, normalised to a CRLF "." line, and the
  // smuggled command after it stays message text.
  const std::string smuggled = "MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\n";
  const std::string want = "Hello\r\n.\r\n" + smuggled;
  struct variant {
    const char* label;
    std::string separator;  // replaces "\r\n.\r\n" after "Hello"
    std::size_t bare_lf;
    std::size_t bare_cr;
  };
  const variant variants[] = {
      {"\\n.\\n", "\n.\n", 2, 0},           {"\\r.\\r\\n", "\r.\r\n", 0, 1},
      {"\\n.\\r\\n", "\n.\r\n", 1, 0},      {"\\r\\n.\\n", "\r\n.\n", 1, 0},
      {"\\r\\n.\\r", "\r\n.\r", 0, 1},      {"\\r.\\n", "\r.\n", 1, 1},
      {"\\r\\n.\\n\\r", "\r\n.\n\r", 1, 1},
  };
  std::vector<data_row> rows;
  for (const auto& v : variants) {
    const std::string input = "Hello" + v.separator + smuggled + ".\r\n" + "QUIT\r\n";
    std::string message = want;
    // "\r\n.\n\r" leaves an empty line (the bare CR) before the smuggled text.
    if (v.separator == "\r\n.\n\r") message = "Hello\r\n.\r\n\r\n" + smuggled;
    rows.push_back({v.label, input, 1000,
                    ended(input.size() - std::strlen("QUIT\r\n"), message, v.bare_lf, v.bare_cr)});
  }
  // Smuggling variants right at the start of the DATA phase.
  rows.push_back({"\\n.\\n first", ".\n" + smuggled + ".\r\n", 1000,
                  ended(3 + smuggled.size() + 2, ".\r\n" + smuggled, 1, 0)});
  rows.push_back({"\\r.\\r\\n first", "\r.\r\n.\r\n", 1000, ended(7, "\r\n.\r\n", 0, 1)});
  check_data_rows(rows);
}

TEST(data_reader, size_limit) {
  const std::string line(16, 'x');
  data_result big;
  big.consumed = 16 + 2 + 3;
  big.done = true;
  big.too_big = true;
  big.size = 18;  // all content bytes seen, although none are kept
  data_result big_stuffed = big;
  big_stuffed.consumed = 1 + 16 + 2 + 3;  // the stuffing dot is not content
  data_result big_many = big;
  big_many.consumed = 3 * 18 + 3;
  big_many.size = 3 * 18;
  data_result stuffed_over;
  stuffed_over.consumed = 11;
  stuffed_over.done = true;
  stuffed_over.too_big = true;
  stuffed_over.size = 7;
  data_result big_partial;
  big_partial.consumed = 18 + 6;
  big_partial.too_big = true;
  big_partial.size = 18 + 6;
  data_result partial_stuffed;
  partial_stuffed.consumed = 4;
  partial_stuffed.size = 3;
  data_result big_unfinished;
  big_unfinished.consumed = 18 + 4;
  big_unfinished.too_big = true;
  big_unfinished.size = 18 + 3;  // ".x" is unstuffed to "x"
  const std::vector<data_row> rows = {
      {"exactly the limit", line + "\r\n.\r\n", 18, ended(21, line + "\r\n")},
      {"stuffed line, exactly the limit", "..abc\r\n.\r\n", 6, ended(10, ".abc\r\n")},
      {"stuffed line, one byte over", "..abcd\r\n.\r\nQUIT\r\n", 6, stuffed_over},
      {"one line over the limit", line + "\r\n.\r\nQUIT\r\n", 17, big},
      {"one long line, small limit", line + "\r\n.\r\nQUIT\r\n", 4, big},
      {"stuffed long line", "." + line + "\r\n.\r\n", 4, big_stuffed},
      {"several lines over the limit", line + "\r\n" + line + "\r\n" + line + "\r\n.\r\n", 20,
       big_many},
      {"partial line counted, however it was split", line + "\r\nabcdef", 10, big_partial},
      {"partial stuffed line: its dot is not content", "..ab", 1000, partial_stuffed},
      {"too big and not ended: a dot-led long line is not the end", line + "\r\n.x\r\n", 10,
       big_unfinished},
  };
  check_data_rows(rows);
}

// A message of one long line is held once, not twice: the line's buffer
// goes when the line ends (the message is scanned and relayed after).
TEST(data_reader, a_long_line_is_not_held_twice) {
  data_reader reader(8 << 20);
  const std::string line(4 << 20, 'x');
  reader.feed(line);
  reader.feed("\r\n.\r\n");
  ASSERT_TRUE(reader.done());
  EXPECT_EQ(reader.message().size(), line.size() + 2);
  EXPECT_LT(reader.held_bytes(), reader.message().capacity() + 64 * 1024)
      << "the line's buffer is still held beside the message";
}

TEST(data_reader, counts_odd_line_ends) {
  auto r = read_data("a\nb\rc\r\n.\r\n", 1000);
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.message, "a\r\nb\r\nc\r\n");
  EXPECT_EQ(r.bare_lf, 1u);
  EXPECT_EQ(r.bare_cr, 1u);
}

std::string stuff(std::string_view message, std::size_t chunk) {
  dot_stuffer stuffer(message);
  std::string out, piece;
  while (stuffer.next(piece, chunk)) out += piece;
  EXPECT_FALSE(stuffer.next(piece, chunk));
  EXPECT_TRUE(piece.empty());
  return out;
}

TEST(dot_stuffer, wire_form) {
  struct row {
    const char* label;
    std::string input;
    std::string want;
  };
  const row rows[] = {
      {"empty message", "", ".\r\n"},
      {"one line", "a\r\n", "a\r\n.\r\n"},
      {"dot line", ".\r\n", "..\r\n.\r\n"},
      {"dot-led lines", ".a\r\nb\r\n..c\r\n", "..a\r\nb\r\n...c\r\n.\r\n"},
      {"dot inside a line", "a.b\r\n", "a.b\r\n.\r\n"},
      {"no final line end", "a\r\nlast", "a\r\nlast\r\n.\r\n"},
      {"no final line end, dot-led", ".", "..\r\n.\r\n"},
      {"dot after a bare LF is stuffed too", "a\n.\r\n", "a\n..\r\n.\r\n"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    for (std::size_t chunk : {1u, 2u, 5u, 4096u}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk));
      EXPECT_EQ(stuff(r.input, chunk), r.want);
    }
  }
}

TEST(dot_stuffer, chunks_are_bounded_by_lines) {
  std::string message;
  for (int i = 0; i < 1000; ++i) message += "line " + std::to_string(i) + "\r\n";
  dot_stuffer stuffer(message);
  std::string piece;
  std::size_t chunks = 0, total = 0;
  while (stuffer.next(piece, 256)) {
    ++chunks;
    total += piece.size();
    EXPECT_LT(piece.size(), 256u + 16u);  // a chunk ends at the first line end past 256
  }
  EXPECT_EQ(total, message.size() + 3);
  EXPECT_GT(chunks, 10u);
}

// Checks that `message` consists of CRLF-terminated lines with no bare CR or LF.
void expect_crlf_lines(std::string_view message) {
  for (std::size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\r') {
      ASSERT_TRUE(i + 1 < message.size() && message[i + 1] == '\n') << "bare CR at " << i;
    } else if (message[i] == '\n') {
      ASSERT_TRUE(i > 0 && message[i - 1] == '\r') << "bare LF at " << i;
    }
  }
  if (!message.empty()) {
    EXPECT_TRUE(message.ends_with("\r\n"));
  }
}

// Random bytes rich in the characters that matter: dots, CR, LF.
std::string random_text(std::mt19937& rng, std::size_t max_len) {
  static constexpr char alphabet[] = {'.', '.', '.', '\r', '\r', '\n', '\n', 'a', 'b', ' '};
  std::uniform_int_distribution<std::size_t> len(0, max_len);
  std::uniform_int_distribution<std::size_t> pick(0, sizeof alphabet - 1);
  std::string s(len(rng), ' ');
  for (auto& c : s) c = alphabet[pick(rng)];
  return s;
}

// Reads `wire` in random pieces; the result must not depend on the split.
data_result read_in_random_pieces(std::mt19937& rng, std::string_view wire, std::size_t max) {
  data_reader reader(max);
  data_result r;
  std::uniform_int_distribution<std::size_t> step(1, 9);
  while (r.consumed < wire.size() && !reader.done()) {
    auto piece = wire.substr(r.consumed, step(rng));
    r.consumed += reader.feed(piece);
  }
  r.done = reader.done();
  r.message = reader.message();
  return r;
}

TEST(dot_stuffer, round_trips_through_data_reader) {
  std::mt19937 rng(20240611);  // fixed seed: the same cases on every run
  std::uniform_int_distribution<std::size_t> chunk(1, 64);
  for (int i = 0; i < 3000; ++i) {
    // Arbitrary client bytes, ended properly: what the reader keeps is the message.
    const std::string raw = random_text(rng, 120) + "\r\n.\r\n";
    SCOPED_TRACE(testing::PrintToString(raw));
    auto first = read_data(raw, 1 << 20);
    ASSERT_TRUE(first.done);
    expect_crlf_lines(first.message);
    // Re-stuffed for the next hop, it must read back as the same message,
    // ending exactly at the end of the stuffed form and not before.
    const std::string wire = stuff(first.message, chunk(rng));
    ASSERT_TRUE(wire.ends_with("\r\n.\r\n") || wire == ".\r\n");
    EXPECT_EQ(wire.find("\r\n.\r\n"), wire.size() == 3 ? std::string::npos : wire.size() - 5);
    auto second = read_in_random_pieces(rng, wire, 1 << 20);
    EXPECT_TRUE(second.done);
    EXPECT_EQ(second.consumed, wire.size());
    EXPECT_EQ(second.message, first.message);
  }
}

TEST(dot_stuffer, round_trips_crlf_messages) {
  std::mt19937 rng(4711);
  std::uniform_int_distribution<int> lines(0, 12);
  static const std::string samples[] = {".", "..", "...", ".x", "x.", "", "a b", ". .", "x"};
  std::uniform_int_distribution<std::size_t> pick(0, std::size(samples) - 1);
  for (int i = 0; i < 2000; ++i) {
    std::string message;
    for (int n = lines(rng); n > 0; --n) message += samples[pick(rng)] + "\r\n";
    SCOPED_TRACE(testing::PrintToString(message));
    const std::string wire = stuff(message, 1 + i % 17);
    auto back = read_in_random_pieces(rng, wire + "MAIL FROM:<a@b>\r\n", 1 << 20);
    EXPECT_TRUE(back.done);
    EXPECT_EQ(back.consumed, wire.size());
    EXPECT_EQ(back.message, message);
  }
}

}  // namespace
}  // namespace mxguard::guard
