// mxguard-scan-bench: virus-scan throughput and latency, mxguard's in-process
// pool (mxguard::scan::scanner) vs a clamd on a local socket (bench/scan.sh
// starts the clamd; this program is only its client).
//
// Subcommands:
//   corpus      writes a deterministic message corpus (.eml) with a given size mix
//   signatures  writes a synthetic signature directory (.hdb/.hsb/.ndb/.ldb + EICAR)
//   mxguard     scans the corpus from memory on a scanner with N workers
//   instream    scans the corpus through clamd's INSTREAM command, from memory
//   latency     one message at a time, mxguard and clamd INSTREAM alternating
//   ping        waits until a clamd answers PING (start-up time)
// Every measuring subcommand prints one human line on stderr and one JSON line
// on stdout. Everything is bounded: --seconds caps a pass, every socket
// operation has a timeout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "mxguard/scan/engine.hpp"
#include "mxguard/scan/scanner.hpp"

extern char** environ;

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace scan = mxguard::scan;
using clock_type = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------- helpers

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void write_file(const fs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The EICAR test file, assembled at run time (as in tests/integration).
std::string eicar() {
  return std::string("X5O!P%@AP[4\\PZX54(P^)7CC)7}$") + "EICAR-STANDARD-ANTIVIRUS-" +
         "TEST-FILE!$H+H*";
}
constexpr const char* eicar_md5 = "44d88612fea8a8f36de82e1278abb02f";

std::string hex(std::string_view s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string base64(std::string_view data) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve(data.size() * 4 / 3 + data.size() / 38 + 8);
  std::size_t line = 0;
  auto put = [&](char c) {
    out.push_back(c);
    if (++line == 76) {
      out += "\r\n";
      line = 0;
    }
  };
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(data[i]) << 16) |
                 (static_cast<unsigned char>(data[i + 1]) << 8) |
                 static_cast<unsigned char>(data[i + 2]);
    for (int k = 3; k >= 0; --k) put(alphabet[(v >> (6 * k)) & 63]);
  }
  if (i < data.size()) {
    unsigned v = static_cast<unsigned char>(data[i]) << 16;
    if (i + 1 < data.size()) v |= static_cast<unsigned char>(data[i + 1]) << 8;
    put(alphabet[(v >> 18) & 63]);
    put(alphabet[(v >> 12) & 63]);
    put(i + 1 < data.size() ? alphabet[(v >> 6) & 63] : '=');
    put('=');
  }
  if (line != 0) out += "\r\n";
  return out;
}

// Size classes of the report; the bounds are KiB/MiB.
constexpr std::array<const char*, 4> class_names{"<10 KB", "10-100 KB", "100 KB-1 MB", "1-5 MB"};
int size_class(std::size_t n) {
  if (n < 10 * 1024) return 0;
  if (n < 100 * 1024) return 1;
  if (n < 1024 * 1024) return 2;
  return 3;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];  // nearest rank
}

// ---------------------------------------------------------------- text

const std::vector<std::string>& vocabulary() {
  static const std::vector<std::string> words = [] {
    std::istringstream in(
        "the of and to in is that for it as was with be by on not he this are or his from at "
        "which but have an they you were her she there been one all we their has would when "
        "who will more no if out so what up its about into than them can only other new some "
        "could time these two may then do first any my now such like our over man me even most "
        "made after also did many before must through back years where much your way well down "
        "should because each just those people how too little state good very make world still "
        "own see men work long get here between both life being under never day same another "
        "know while last might us great old year off come since against go came right used take "
        "three students course lecture exam seminar library faculty department research "
        "project deadline meeting schedule thesis grant budget invoice payment account "
        "password server network printer campus office room building semester registration "
        "committee minutes agenda draft review attached please regards thanks best kind "
        "university professor assistant report results data analysis figure table version "
        "update request approval conference paper submission journal reviewer comments");
    std::vector<std::string> w;
    for (std::string s; in >> s;) w.push_back(s);
    return w;
  }();
  return words;
}

// Text of exactly `n` bytes (n >= 2): lines of words up to 72 columns, CRLF.
std::string text_of(std::mt19937_64& rng, std::size_t n) {
  const auto& words = vocabulary();
  std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
  std::string out;
  out.reserve(n + 80);
  std::size_t column = 0;
  while (out.size() + 2 < n) {
    const auto& w = words[pick(rng)];
    if (column + w.size() + 1 > 72) {
      out += "\r\n";
      column = 0;
    } else if (column != 0) {
      out.push_back(' ');
      ++column;
    }
    out += w;
    column += w.size();
  }
  out.resize(n >= 2 ? n - 2 : 0);
  out += "\r\n";
  return out;
}

std::string html_of(std::mt19937_64& rng, std::size_t n) {
  const auto& words = vocabulary();
  std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
  std::uniform_int_distribution<int> shape(0, 9);
  auto phrase = [&](int count) {
    std::string s;
    for (int i = 0; i < count; ++i) s += (i ? " " : "") + words[pick(rng)];
    return s;
  };
  std::string out = "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>" + phrase(4) +
                    "</title>\r\n<style>body{font-family:Arial,sans-serif}p{margin:0 0 8px}"
                    ".f{color:#666;font-size:11px}</style></head>\r\n<body>\r\n";
  const std::string tail = "<p class=\"f\">" + phrase(6) + "</p>\r\n</body></html>\r\n";
  int counter = 0;
  while (out.size() + tail.size() < n) {
    switch (shape(rng)) {
      case 0:
        out += "<table width=\"100%\" cellpadding=\"4\"><tr><td><b>" + phrase(2) + "</b></td><td>" +
               phrase(5) + "</td></tr><tr><td>" + phrase(1) + "</td><td>" + phrase(7) +
               "</td></tr></table>\r\n";
        break;
      case 1:
        out += "<p><a href=\"https://www.example.edu/" + words[pick(rng)] + "/" +
               std::to_string(++counter) + "?utm_source=newsletter\">" + phrase(4) + "</a></p>\r\n";
        break;
      case 2:
        out += "<div><img src=\"https://img.example.edu/i/" + std::to_string(++counter) +
               ".png\" alt=\"" + phrase(2) + "\" width=\"600\" height=\"120\"></div>\r\n";
        break;
      default:
        out += "<p>" + phrase(12) + " <span style=\"color:#036\">" + phrase(3) + "</span> " +
               phrase(10) + ".</p>\r\n";
    }
  }
  out += tail;
  return out;
}

std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string out(n, '\0');
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    auto v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng() & 0xff);
  return out;
}

// ---------------------------------------------------------------- zip

// Zips `members` (name → content) with /usr/bin/zip in `work` (fixed mtimes and
// -X: the same input gives the same bytes).
std::string make_zip(const fs::path& work,
                     const std::vector<std::pair<std::string, std::string>>& members) {
  fs::remove_all(work);
  fs::create_directories(work);
  std::vector<std::string> args{"/usr/bin/zip", "-q", "-j", "-X", (work / "out.zip").string()};
  for (const auto& [name, content] : members) {
    auto p = work / name;
    write_file(p, content);
    struct timeval times[2] = {{1700000000, 0}, {1700000000, 0}};
    ::utimes(p.c_str(), times);
    args.push_back(p.string());
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0)
    throw std::runtime_error("cannot run /usr/bin/zip");
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("/usr/bin/zip failed");
  return read_file(work / "out.zip");
}

// ---------------------------------------------------------------- corpus

struct part {
  std::string headers;  // without the blank line
  std::string body;
};

std::string multipart(const std::string& boundary, const std::vector<part>& parts) {
  std::string out = "This is a multi-part message in MIME format.\r\n";
  for (const auto& p : parts) out += "\r\n--" + boundary + "\r\n" + p.headers + "\r\n\r\n" + p.body;
  out += "\r\n--" + boundary + "--\r\n";
  return out;
}

part text_part(std::string text) {
  return {"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit",
          std::move(text)};
}

part attachment(const std::string& type, const std::string& name, std::string_view data) {
  return {"Content-Type: " + type + "; name=\"" + name +
              "\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; "
              "filename=\"" +
              name + "\"",
          base64(data)};
}

struct corpus_maker {
  std::mt19937_64 rng;
  fs::path work;
  std::size_t zips = 0;

  std::string headers(std::size_t i, const std::string& content_type) {
    const auto& words = vocabulary();
    std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
    std::uniform_int_distribution<int> octet(1, 254);
    std::string subject = words[pick(rng)] + " " + words[pick(rng)] + " " + words[pick(rng)];
    return fmt::format(
        "Return-Path: <sender{0}@mail{1}.example.com>\r\n"
        "Received: from mail{1}.example.com (mail{1}.example.com [198.51.100.{2}])\r\n"
        "\tby relay.example.com (Postfix) with ESMTPS id 4Xb{0:06}\r\n"
        "\tfor <user{3}@example.edu>; Mon, 23 Nov 2026 09:{4:02}:{5:02} +0100\r\n"
        "From: Sender {0} <sender{0}@mail{1}.example.com>\r\n"
        "To: <user{3}@example.edu>\r\n"
        "Subject: {6}\r\n"
        "Date: Mon, 23 Nov 2026 09:{4:02}:{5:02} +0100\r\n"
        "Message-ID: <{0}.{2}@mail{1}.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: {7}\r\n"
        "\r\n",
        i, i % 97, octet(rng), i % 1013, i % 60, (i * 7) % 60, subject, content_type);
  }

  // One attachment of about `raw` bytes (before base64).
  part some_attachment(std::size_t i, std::size_t raw, bool allow_zip) {
    std::uniform_int_distribution<int> kind_d(0, 99);
    int kind = kind_d(rng);
    if (!allow_zip && kind >= 60 && kind < 85) kind = 0;
    std::string n = std::to_string(i);
    if (kind < 35) {  // a PDF-looking file: header, random streams, trailer
      std::string d = "%PDF-1.5\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length " + std::to_string(raw) +
                      " /Filter /FlateDecode >>\nstream\n";
      d += random_bytes(rng, raw > d.size() + 64 ? raw - d.size() - 64 : 16);
      d += "\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
      return attachment("application/pdf", "document" + n + ".pdf", d);
    }
    if (kind < 60) {  // a JPEG-looking file
      std::string d =
          std::string("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01", 20) +
          random_bytes(rng, raw > 24 ? raw - 22 : 2) + "\xff\xd9";
      return attachment("image/jpeg", "photo" + n + ".jpg", d);
    }
    if (kind < 85) {  // a zip of text files and a compressed-looking binary
      ++zips;
      std::vector<std::pair<std::string, std::string>> members;
      std::size_t text_bytes = raw / 3;
      members.emplace_back("notes.txt", text_of(rng, std::max<std::size_t>(text_bytes, 64)));
      members.emplace_back("table.csv", text_of(rng, std::max<std::size_t>(text_bytes / 2, 64)));
      members.emplace_back("data.bin", random_bytes(rng, std::max<std::size_t>(raw / 2, 64)));
      return attachment("application/zip", "archive" + n + ".zip", make_zip(work, members));
    }
    if (kind < 95)
      return attachment("application/octet-stream", "file" + n + ".bin", random_bytes(rng, raw));
    return attachment("text/csv", "export" + n + ".csv",
                      text_of(rng, std::max<std::size_t>(raw, 8)));
  }

  // The message `i` of size class `cls`, about `target` bytes.
  std::string message(std::size_t i, int cls, std::size_t target, bool infected) {
    std::uniform_int_distribution<int> percent(0, 99);
    int p = percent(rng);
    // Shape by class: small mail is mostly text, large mail carries attachments.
    enum { plain, html, attached } shape;
    if (cls == 0)
      shape = p < 55 ? plain : (p < 85 ? html : attached);
    else if (cls == 1)
      shape = p < 15 ? plain : (p < 45 ? html : attached);
    else
      shape = attached;
    if (infected) shape = attached;
    std::string boundary = fmt::format("=_bench_{:08x}", static_cast<unsigned>(rng()));
    std::string alt_boundary = boundary + "_alt";
    if (shape == plain) {
      std::string h = headers(i, "text/plain; charset=utf-8");
      return h + text_of(rng, target > h.size() + 64 ? target - h.size() : 64);
    }
    auto alternative = [&](std::size_t budget) {
      std::size_t text_size = std::max<std::size_t>(budget / 3, 64);
      std::size_t html_size =
          std::max<std::size_t>(budget > text_size ? budget - text_size : 0, 256);
      return part{"Content-Type: multipart/alternative; boundary=\"" + alt_boundary + "\"",
                  multipart(alt_boundary, {text_part(text_of(rng, text_size)),
                                           {"Content-Type: text/html; charset=utf-8\r\n"
                                            "Content-Transfer-Encoding: 7bit",
                                            html_of(rng, html_size)}})};
    };
    if (shape == html) {
      std::string h = headers(i, "multipart/alternative; boundary=\"" + alt_boundary + "\"");
      auto alt = alternative(target > h.size() + 600 ? target - h.size() - 400 : 200);
      return h + alt.body;
    }
    // multipart/mixed: a text (or alternative) part and 1-3 attachments taking
    // ~85% of the size; the text part is sized last to land near `target`.
    std::string h = headers(i, "multipart/mixed; boundary=\"" + boundary + "\"");
    std::vector<part> attachments;
    std::uniform_int_distribution<int> count_d(1, cls == 0 ? 1 : 3);
    int count = count_d(rng);
    std::size_t budget = target > h.size() + 1200 ? target - h.size() - 1200 : 256;
    std::size_t raw_total = budget * 85 / 100 * 57 / 78;  // base64 + CRLF expansion
    for (int k = 0; k < count; ++k)
      attachments.push_back(some_attachment(i * 10 + static_cast<std::size_t>(k),
                                            std::max<std::size_t>(raw_total / count, 64),
                                            cls > 0 || k == 0));
    if (infected) {
      if ((i / 200) % 2 == 0)
        attachments.push_back(attachment("application/octet-stream", "setup.com", eicar()));
      else
        attachments.push_back(attachment("application/zip", "invoice.zip",
                                         make_zip(work, {{"invoice.com", eicar()}})));
    }
    std::size_t used = h.size() + 400;
    for (const auto& a : attachments) used += a.headers.size() + a.body.size() + 64;
    std::size_t rest = target > used + 128 ? target - used : 128;
    std::vector<part> parts;
    if (percent(rng) < 50)
      parts.push_back(text_part(text_of(rng, rest)));
    else
      parts.push_back(alternative(rest));
    for (auto& a : attachments) parts.push_back(std::move(a));
    return h + multipart(boundary, parts);
  }
};

int make_corpus(const fs::path& dir, std::size_t count, std::uint64_t seed,
                const std::array<double, 4>& mix) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  corpus_maker maker{std::mt19937_64(seed), dir / ".zipwork"};
  // Exact class counts from the mix, then a deterministic shuffle.
  std::vector<int> classes;
  std::size_t assigned = 0;
  for (int c = 3; c >= 1; --c) {
    auto n = static_cast<std::size_t>(std::llround(mix[c] / 100.0 * static_cast<double>(count)));
    classes.insert(classes.end(), n, c);
    assigned += n;
  }
  classes.insert(classes.end(), count - std::min(count, assigned), 0);
  std::shuffle(classes.begin(), classes.end(), maker.rng);
  // Log-uniform sizes inside each class (bytes).
  const std::array<std::pair<double, double>, 4> bounds{{{1536, 10 * 1024 - 512},
                                                         {10 * 1024 + 512, 100 * 1024 - 2048},
                                                         {100 * 1024 + 4096, 1024 * 1024 - 32768},
                                                         {1024 * 1024 + 65536, 5 * 1024 * 1024}}};
  std::array<std::size_t, 4> n_class{}, bytes_class{};
  std::size_t infected_count = 0;
  for (std::size_t i = 0; i < count; ++i) {
    int cls = classes[i];
    std::uniform_real_distribution<double> u(std::log(bounds[cls].first),
                                             std::log(bounds[cls].second));
    auto target = static_cast<std::size_t>(std::exp(u(maker.rng)));
    bool infected = i % 200 == 99;  // 0.5% carry EICAR (as a file or in a zip)
    infected_count += infected;
    std::string m = maker.message(i, cls, target, infected);
    write_file(dir / fmt::format("msg{:05}.eml", i), m);
    ++n_class[size_class(m.size())];
    bytes_class[size_class(m.size())] += m.size();
  }
  fs::remove_all(maker.work);
  std::size_t total = 0;
  for (auto b : bytes_class) total += b;
  fmt::print(stderr, "corpus: {} messages, {:.1f} MB, {} zip attachments, {} with EICAR\n", count,
             total / 1e6, maker.zips, infected_count);
  fmt::print("{{\"messages\":{},\"bytes\":{},\"zips\":{},\"infected\":{},\"classes\":[", count,
             total, maker.zips, infected_count);
  for (int c = 0; c < 4; ++c)
    fmt::print("{}{{\"class\":\"{}\",\"messages\":{},\"bytes\":{}}}", c ? "," : "", class_names[c],
               n_class[c], bytes_class[c]);
  fmt::print("]}}\n");
  return 0;
}

// ---------------------------------------------------------------- signatures

// Strings real signatures are built around: some occur in the corpus (HTML,
// MIME, PDF, JPEG and zip markers: candidates the matcher must verify), some
// do not (script and executable markers).
std::string indicator(std::mt19937_64& rng) {
  static const std::array<std::string, 24> list{"<html",
                                                "<table",
                                                "href=\"https://",
                                                "Content-Type: ",
                                                "Content-Disposition: attachment",
                                                "%PDF-",
                                                "JFIF",
                                                std::string("PK\x03\x04", 4),
                                                "/FlateDecode",
                                                "<img src=",
                                                "stream",
                                                "base64",
                                                "<script",
                                                "eval(",
                                                "document.write(",
                                                "unescape(",
                                                "fromCharCode",
                                                "ActiveXObject",
                                                "WScript.Shell",
                                                "powershell -e",
                                                "cmd.exe /c",
                                                "CreateObject(",
                                                "<iframe",
                                                "This program cannot be run in DOS mode"};
  return list[rng() % list.size()];
}

// A hex signature body with wildcards of the kinds ClamAV's .ndb/.ldb allow:
// `??`, `{n-m}`, `*`, `(aa|bb)`; every fixed run is at least 4 bytes.
std::string hex_with_wildcards(std::mt19937_64& rng, bool ascii) {
  const auto& words = vocabulary();
  std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
  std::uniform_int_distribution<int> d100(0, 99);
  bool first = true;
  auto fixed = [&]() {
    bool lead = first;
    first = false;
    if (!ascii) return hex(random_bytes(rng, 4 + rng() % 6));
    if (lead && rng() % 2 == 0) return hex(indicator(rng));
    return hex(words[pick(rng)] + " " + words[pick(rng)] + " ");
  };
  // A token no corpus text contains, so that no signature matches clean mail.
  auto rare = [&]() {
    std::string s;
    for (int k = 0; k < 6; ++k) s.push_back(static_cast<char>('a' + rng() % 26));
    return hex("x" + s + "q");
  };
  std::string sig = fixed();
  int pieces = 1 + static_cast<int>(rng() % 3);
  for (int k = 0; k < pieces; ++k) {
    int w = d100(rng);
    if (w < 30)
      sig += "??";
    else if (w < 55)
      sig += fmt::format("{{{}-{}}}", rng() % 4, 4 + rng() % 24);
    else if (w < 75)
      sig += "*";
    else
      sig += fmt::format("({:02x}|{:02x})", static_cast<unsigned>(rng() & 0xff),
                         static_cast<unsigned>(rng() & 0xff));
    sig += fixed();
  }
  return sig + rare();
}

int make_signatures(const fs::path& dir, std::uint64_t seed, int hdb, int hsb, int ndb, int ldb) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::mt19937_64 rng(seed);
  auto random_hex = [&](int bytes) {
    return hex(random_bytes(rng, static_cast<std::size_t>(bytes)));
  };
  // Sizes of the hashed files: log-uniform 1 KB..5 MB, as the malware samples
  // whose hashes the official main/daily databases list.
  std::uniform_real_distribution<double> size_d(std::log(1024.0), std::log(5.0 * 1024 * 1024));
  std::string out;
  for (int i = 0; i < hdb; ++i)
    out += fmt::format("{}:{}:Bench.Hdb.{}\n", random_hex(16),
                       static_cast<long>(std::exp(size_d(rng))), i);
  if (!out.empty()) write_file(dir / "bench.hdb", out);  // libclamav refuses empty files
  out.clear();
  for (int i = 0; i < hsb; ++i)
    out += fmt::format("{}:{}:Bench.Hsb.{}\n", random_hex(32),
                       static_cast<long>(std::exp(size_d(rng))), i);
  if (!out.empty()) write_file(dir / "bench.hsb", out);  // libclamav refuses empty files
  out.clear();
  // Body signatures; targets 0 any file, 3 HTML (normalised), 4 mail, 7 text.
  const std::array<int, 4> targets{0, 3, 4, 7};
  for (int i = 0; i < ndb; ++i) {
    int target = targets[rng() % 4];
    // A third of them text (words), the rest bytes: text prefixes are common
    // in mail and make the matcher verify many candidates.
    bool ascii = (target == 3 || target == 7) ? rng() % 2 == 0 : rng() % 4 == 0;
    std::string offset = rng() % 10 == 0 ? "0" : "*";
    if (offset == "0") ascii = false;
    out +=
        fmt::format("Bench.Ndb.{}:{}:{}:{}\n", i, target, offset, hex_with_wildcards(rng, ascii));
  }
  if (!out.empty()) write_file(dir / "bench.ndb", out);  // libclamav refuses empty files
  out.clear();
  // Logical signatures: 2-4 subsignatures, the first an indicator string
  // (often present: the logical matcher then has to track it), the last one
  // rare and always required.
  for (int i = 0; i < ldb; ++i) {
    int target = targets[rng() % 4];
    int subs = 2 + static_cast<int>(rng() % 3);
    std::vector<std::string> sub;
    for (int k = 0; k + 1 < subs; ++k)
      sub.push_back(k == 0 ? hex(indicator(rng)) : hex_with_wildcards(rng, rng() % 2 == 0));
    sub.push_back(hex_with_wildcards(rng, true));
    std::string expr;
    if (subs == 2)
      expr = "0&1";
    else if (subs == 3)
      expr = "(0|1)&2";
    else
      expr = "0&(1|2)&3";
    out += fmt::format("Bench.Ldb.{};Engine:51-255,Target:{};{}", i, target, expr);
    for (const auto& s : sub) out += ";" + s;
    out += "\n";
  }
  if (!out.empty()) write_file(dir / "bench.ldb", out);  // libclamav refuses empty files
  write_file(dir / "eicar.hdb", std::string(eicar_md5) + ":68:Bench.EICAR.MD5\n");
  write_file(dir / "eicar.ndb",
             "Bench.EICAR.Body:0:*:" + hex("EICAR-STANDARD-ANTIVIRUS-TEST-FILE") + "\n");
  fmt::print(stderr, "signatures: {} hdb, {} hsb, {} ndb, {} ldb, 2 EICAR in {}\n", hdb, hsb, ndb,
             ldb, dir.string());
  return 0;
}

// ---------------------------------------------------------------- corpus in memory

struct corpus {
  std::vector<std::string> names;
  std::vector<std::string> bodies;
  std::size_t bytes = 0;
};

std::shared_ptr<corpus> load_corpus(const fs::path& dir, std::size_t limit) {
  auto c = std::make_shared<corpus>();
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".eml") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (limit != 0 && files.size() > limit) files.resize(limit);
  for (const auto& f : files) {
    c->names.push_back(f.filename().string());
    c->bodies.push_back(read_file(f));
    c->bytes += c->bodies.back().size();
  }
  if (c->bodies.empty()) throw std::runtime_error("no .eml files in " + dir.string());
  return c;
}

// The guard's own Received line, which it scans in front of the message.
std::string guard_head(std::size_t i) {
  return fmt::format(
      "Received: from mail{0}.example.com (mail{0}.example.com [198.51.100.{1}])\r\n"
      "\tby mx.example.edu (mxguard) with ESMTP id mxg{2:08x}\r\n"
      "\tfor <user@example.edu>; Mon, 23 Nov 2026 09:00:00 +0100\r\n",
      i % 97, 1 + i % 250, i);
}

// ---------------------------------------------------------------- clamd client

class socket_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

int connect_unix(const std::string& path, int timeout_ms) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw socket_error(std::string("socket: ") + std::strerror(errno));
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) throw socket_error("socket path too long");
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    throw socket_error(std::string("connect ") + path + ": " + std::strerror(e));
  }
  return fd;
}

void write_all(int fd, iovec* iov, int count) {
  while (count > 0) {
    ssize_t n = ::writev(fd, iov, count);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw socket_error(std::string("write: ") + std::strerror(errno));
    auto left = static_cast<std::size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
}

// Reads a NUL-terminated reply (z-commands) or until the peer closes.
std::string read_reply(int fd) {
  std::string reply;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw socket_error(std::string("read: ") + std::strerror(errno));
    if (n == 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
    if (reply.find('\0') != std::string::npos) break;
  }
  if (auto z = reply.find('\0'); z != std::string::npos) reply.resize(z);
  return reply;
}

class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() { ::close(fd_); }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// clamd's INSTREAM: "zINSTREAM\0", then chunks of <4-byte big-endian length>
// <data>, a zero length, and one reply: "stream: OK" or "stream: NAME FOUND".
std::string instream(const std::string& socket_path, std::string_view head, std::string_view body,
                     std::size_t chunk, int timeout_ms) {
  fd_guard fd(connect_unix(socket_path, timeout_ms));
  static const char command[] = "zINSTREAM";
  iovec first{const_cast<char*>(command), sizeof command};  // with its NUL
  write_all(fd.get(), &first, 1);
  for (std::string_view part : {head, body}) {
    while (!part.empty()) {
      std::size_t n = std::min(chunk, part.size());
      std::uint32_t len = htonl(static_cast<std::uint32_t>(n));
      iovec iov[2] = {{&len, 4}, {const_cast<char*>(part.data()), n}};
      write_all(fd.get(), iov, 2);
      part.remove_prefix(n);
    }
  }
  std::uint32_t zero = 0;
  iovec end{&zero, 4};
  write_all(fd.get(), &end, 1);
  return read_reply(fd.get());
}

struct tally {
  std::size_t clean = 0, virus = 0, other = 0;
  std::map<std::string, std::size_t> other_kinds;
  void add_clamd(const std::string& reply) {
    if (reply.ends_with(" OK"))
      ++clean;
    else if (reply.ends_with(" FOUND") && reply.find("Heuristics.") == std::string::npos)
      ++virus;
    else {
      ++other;
      ++other_kinds[reply.substr(0, 80)];
    }
  }
  void add_mxguard(const scan::result& r) {
    if (r.what == scan::outcome::clean)
      ++clean;
    else if (r.what == scan::outcome::virus)
      ++virus;
    else {
      ++other;
      ++other_kinds[std::string(scan::to_string(r.what)) + ": " + r.name.substr(0, 60)];
    }
  }
  std::string others() const {
    std::string s;
    for (const auto& [k, n] : other_kinds)
      s += fmt::format("{}{} x{}", s.empty() ? "" : "; ", k, n);
    return s;
  }
};

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += {'\\', c};
    else if (static_cast<unsigned char>(c) < 0x20)
      out += ' ';
    else
      out.push_back(c);
  }
  return out;
}

void print_throughput(const char* side, unsigned workers, std::size_t window, double load_ms,
                      unsigned signatures, std::size_t messages, std::size_t bytes, double elapsed,
                      const tally& t, double cpu_s) {
  double mb_s = static_cast<double>(bytes) / 1e6 / elapsed;
  double msg_s = static_cast<double>(messages) / elapsed;
  fmt::print(stderr,
             "{} workers {}: {} messages, {:.1f} MB in {:.2f} s = {:.1f} MB/s, {:.1f} msg/s; "
             "clean {} virus {} other {}{}{}\n",
             side, workers, messages, bytes / 1e6, elapsed, mb_s, msg_s, t.clean, t.virus, t.other,
             t.other ? ": " : "", t.others());
  fmt::print(
      "{{\"side\":\"{}\",\"workers\":{},\"in_flight\":{},\"load_ms\":{:.1f},\"signatures\":{},"
      "\"messages\":{},\"bytes\":{},\"seconds\":{:.3f},\"mb_per_s\":{:.2f},\"msg_per_s\":{:.1f},"
      "\"clean\":{},\"virus\":{},\"other\":{},\"others\":\"{}\",\"client_cpu_s\":{:.2f}}}\n",
      side, workers, window, load_ms, signatures, messages, bytes, elapsed, mb_s, msg_s, t.clean,
      t.virus, t.other, json_escape(t.others()), cpu_s);
}

double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

scan::signature_source source_for(const std::string& signatures, const std::string& temp_dir) {
  scan::signature_source source;
  source.directory = signatures;
  source.limits.temp_dir = temp_dir;  // the other limits: engine_limits' defaults (scan.sh
                                      // gives clamd the same values)
  source.check_interval = std::chrono::milliseconds(0);
  return source;
}

scan::pool_settings pool_for(unsigned workers, const std::string& temp_dir, double seconds) {
  scan::pool_settings settings;
  settings.workers = workers;
  settings.queue_size = 256;
  settings.timeout = std::chrono::milliseconds(static_cast<long>(seconds * 1000));
  settings.temp_dir = temp_dir;
  return settings;
}

// ---------------------------------------------------------------- mxguard pass

int run_mxguard(const corpus& c, std::shared_ptr<corpus> owner, unsigned workers,
                std::size_t window, const std::string& signatures, const std::string& temp_dir,
                double seconds) {
  scan::scanner pool(pool_for(workers, temp_dir, seconds));
  std::string error;
  auto load_start = clock_type::now();
  if (!pool.load_now(source_for(signatures, temp_dir), error)) {
    fmt::print(stderr, "loading signatures failed: {}\n", error);
    return 1;
  }
  double load_ms = seconds_since(load_start) * 1000;
  unsigned signature_count = pool.current()->signatures();

  asio::io_context io;
  std::size_t next = 0, done = 0, bytes = 0;
  tally t;
  const auto stop_at = clock_type::now() + std::chrono::duration<double>(seconds);
  const double cpu0 = process_cpu_seconds();
  const auto start = clock_type::now();
  for (std::size_t w = 0; w < window; ++w)
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          while (next < c.bodies.size() && clock_type::now() < stop_at) {
            std::size_t i = next++;
            std::string head = guard_head(i);
            std::shared_ptr<const std::string> body(owner, &c.bodies[i]);  // no copy
            bytes += head.size() + body->size();
            auto r = co_await pool.scan(std::move(head), std::move(body));
            t.add_mxguard(r);
            ++done;
          }
        },
        asio::detached);
  io.run();
  const double elapsed = seconds_since(start);
  // The client side of this pass is the pool's workers themselves.
  const double cpu = process_cpu_seconds() - cpu0;
  pool.stop();
  print_throughput("mxguard", workers, window, load_ms, signature_count, done, bytes, elapsed, t,
                   cpu);
  return done == c.bodies.size() && t.other == 0 ? 0 : 1;
}

// ---------------------------------------------------------------- clamd INSTREAM pass

int run_instream(const corpus& c, const std::string& socket_path, unsigned workers,
                 std::size_t window, std::size_t chunk, double seconds) {
  std::atomic<std::size_t> next{0}, done{0}, bytes{0};
  std::mutex m;
  tally t;
  std::string first_error;
  const auto stop_at = clock_type::now() + std::chrono::duration<double>(seconds);
  const double cpu0 = process_cpu_seconds();
  const auto start = clock_type::now();
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < window; ++w)
    threads.emplace_back([&] {
      for (;;) {
        std::size_t i = next.fetch_add(1);
        if (i >= c.bodies.size() || clock_type::now() >= stop_at) break;
        std::string head = guard_head(i);
        std::string reply;
        try {
          reply = instream(socket_path, head, c.bodies[i], chunk,
                           static_cast<int>(std::min(seconds, 120.0) * 1000));
        } catch (const std::exception& e) {
          reply = std::string("client error: ") + e.what();
        }
        bytes += head.size() + c.bodies[i].size();
        ++done;
        std::lock_guard lock(m);
        t.add_clamd(reply);
      }
    });
  for (auto& th : threads) th.join();
  const double elapsed = seconds_since(start);
  print_throughput("clamd-instream", workers, window, 0, 0, done, bytes, elapsed, t,
                   process_cpu_seconds() - cpu0);
  return done == c.bodies.size() && t.other == 0 ? 0 : 1;
}

// ---------------------------------------------------------------- latency

int run_latency(const corpus& c, std::shared_ptr<corpus> owner, const std::string& socket_path,
                const std::string& signatures, const std::string& temp_dir, std::size_t chunk,
                double seconds) {
  scan::scanner pool(pool_for(1, temp_dir, seconds));
  std::string error;
  if (!pool.load_now(source_for(signatures, temp_dir), error)) {
    fmt::print(stderr, "loading signatures failed: {}\n", error);
    return 1;
  }
  std::array<std::vector<double>, 4> mx_ms, cd_ms;
  tally mx_t, cd_t;
  std::size_t done = 0;
  const auto stop_at = clock_type::now() + std::chrono::duration<double>(seconds);
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (std::size_t i = 0; i < c.bodies.size() && clock_type::now() < stop_at; ++i) {
          const std::string head = guard_head(i);
          const int cls = size_class(c.bodies[i].size());
          // Alternate which side goes first, so neither always follows the other.
          for (int turn = 0; turn < 2; ++turn) {
            bool mxguard_turn = (turn == 0) == (i % 2 == 0);
            auto t0 = clock_type::now();
            if (mxguard_turn) {
              std::shared_ptr<const std::string> body(owner, &c.bodies[i]);
              auto r = co_await pool.scan(head, std::move(body));
              mx_ms[cls].push_back(seconds_since(t0) * 1000);
              mx_t.add_mxguard(r);
            } else {
              std::string reply;
              try {  // blocks this thread: nothing else runs on it
                reply = instream(socket_path, head, c.bodies[i], chunk, 120000);
              } catch (const std::exception& e) {
                reply = std::string("client error: ") + e.what();
              }
              cd_ms[cls].push_back(seconds_since(t0) * 1000);
              cd_t.add_clamd(reply);
            }
          }
          ++done;
        }
      },
      asio::detached);
  io.run();
  pool.stop();
  fmt::print(stderr,
             "latency: {} messages; mxguard virus {} other {}{}; clamd virus {} other {}{}\n", done,
             mx_t.virus, mx_t.other, mx_t.others(), cd_t.virus, cd_t.other, cd_t.others());
  fmt::print(
      "{{\"side\":\"latency\",\"messages\":{},\"mx_virus\":{},\"cd_virus\":{},"
      "\"mx_other\":{},\"cd_other\":{},\"classes\":[",
      done, mx_t.virus, cd_t.virus, mx_t.other, cd_t.other);
  for (int k = 0; k < 4; ++k) {
    fmt::print(
        stderr,
        "  {:>12}: n {:5}  mxguard p50 {:8.3f} p99 {:8.3f} ms   clamd p50 {:8.3f} p99 {:8.3f} ms\n",
        class_names[k], mx_ms[k].size(), percentile(mx_ms[k], 0.5), percentile(mx_ms[k], 0.99),
        percentile(cd_ms[k], 0.5), percentile(cd_ms[k], 0.99));
    fmt::print(
        "{}{{\"class\":\"{}\",\"n\":{},\"mx_p50\":{:.3f},\"mx_p99\":{:.3f},"
        "\"cd_p50\":{:.3f},\"cd_p99\":{:.3f}}}",
        k ? "," : "", class_names[k], mx_ms[k].size(), percentile(mx_ms[k], 0.5),
        percentile(mx_ms[k], 0.99), percentile(cd_ms[k], 0.5), percentile(cd_ms[k], 0.99));
  }
  fmt::print("]}}\n");
  return done == c.bodies.size() && mx_t.other == 0 && cd_t.other == 0 ? 0 : 1;
}

int run_ping(const std::string& socket_path, double seconds) {
  const auto start = clock_type::now();
  std::string last;
  while (seconds_since(start) < seconds) {
    try {
      fd_guard fd(connect_unix(socket_path, 2000));
      static const char command[] = "zPING";
      iovec iov{const_cast<char*>(command), sizeof command};
      write_all(fd.get(), &iov, 1);
      if (read_reply(fd.get()) == "PONG") return 0;
    } catch (const std::exception& e) {
      last = e.what();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fmt::print(stderr, "no PONG from {} within {} s: {}\n", socket_path, seconds, last);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mxguard-scan-bench: virus-scan throughput and latency, mxguard vs clamd"};
  app.require_subcommand(1);
  std::string corpus_dir, signatures_dir, socket_path, temp_dir = "/tmp";
  std::size_t messages = 1000, limit = 0, window = 0, chunk = 65536;
  std::uint64_t seed = 20261123;
  unsigned workers = 1;
  double seconds = 300;
  std::vector<double> mix{70, 27, 2, 1};
  int hdb = 20000, hsb = 5000, ndb = 3000, ldb = 500;

  auto* corpus_cmd = app.add_subcommand("corpus", "write the message corpus");
  corpus_cmd->add_option("--dir", corpus_dir, "output directory (emptied)")->required();
  corpus_cmd->add_option("--messages", messages, "messages")->check(CLI::Range(1, 1000000));
  corpus_cmd->add_option("--seed", seed, "random seed");
  corpus_cmd->add_option("--mix", mix, "% <10KB,10-100KB,100KB-1MB,1-5MB")->expected(4);

  auto* sig_cmd = app.add_subcommand("signatures", "write the synthetic signature directory");
  sig_cmd->add_option("--dir", signatures_dir, "output directory (emptied)")->required();
  sig_cmd->add_option("--seed", seed, "random seed");
  sig_cmd->add_option("--hdb", hdb, "MD5 hash signatures")->check(CLI::Range(0, 10000000));
  sig_cmd->add_option("--hsb", hsb, "SHA-256 hash signatures")->check(CLI::Range(0, 10000000));
  sig_cmd->add_option("--ndb", ndb, "body signatures")->check(CLI::Range(0, 1000000));
  sig_cmd->add_option("--ldb", ldb, "logical signatures")->check(CLI::Range(0, 1000000));

  auto common = [&](CLI::App* cmd) {
    cmd->add_option("--corpus", corpus_dir, "corpus directory")->required();
    cmd->add_option("--limit", limit, "use only the first N messages (0: all)");
    cmd->add_option("--seconds", seconds, "time cap of the pass")->check(CLI::Range(1.0, 3600.0));
  };
  auto* mx_cmd = app.add_subcommand("mxguard", "scan the corpus on mxguard's pool");
  common(mx_cmd);
  mx_cmd->add_option("--signatures", signatures_dir, "signature directory")->required();
  mx_cmd->add_option("--workers", workers, "pool workers")->check(CLI::Range(1, 64));
  mx_cmd->add_option("--in-flight", window, "scans in flight (default 2 x workers)");
  mx_cmd->add_option("--temp-dir", temp_dir, "libclamav's temporary directory");

  auto* in_cmd = app.add_subcommand("instream", "scan the corpus through clamd INSTREAM");
  common(in_cmd);
  in_cmd->add_option("--socket", socket_path, "clamd's LocalSocket")->required();
  in_cmd->add_option("--workers", workers, "clamd's MaxThreads (for the report)");
  in_cmd->add_option("--in-flight", window, "connections in flight (default 2 x workers)");
  in_cmd->add_option("--chunk", chunk, "INSTREAM chunk size")->check(CLI::Range(512, 1 << 24));

  auto* lat_cmd = app.add_subcommand("latency", "one at a time, mxguard and clamd alternating");
  common(lat_cmd);
  lat_cmd->add_option("--socket", socket_path, "clamd's LocalSocket")->required();
  lat_cmd->add_option("--signatures", signatures_dir, "signature directory")->required();
  lat_cmd->add_option("--temp-dir", temp_dir, "libclamav's temporary directory");
  lat_cmd->add_option("--chunk", chunk, "INSTREAM chunk size")->check(CLI::Range(512, 1 << 24));

  auto* ping_cmd = app.add_subcommand("ping", "wait until clamd answers PING");
  ping_cmd->add_option("--socket", socket_path, "clamd's LocalSocket")->required();
  ping_cmd->add_option("--seconds", seconds, "give up after")->check(CLI::Range(0.1, 3600.0));

  CLI11_PARSE(app, argc, argv);
  if (window == 0) window = 2 * workers;
  try {
    if (*corpus_cmd) {
      std::array<double, 4> m{mix[0], mix[1], mix[2], mix[3]};
      return make_corpus(corpus_dir, messages, seed, m);
    }
    if (*sig_cmd) return make_signatures(signatures_dir, seed, hdb, hsb, ndb, ldb);
    if (*ping_cmd) return run_ping(socket_path, seconds);
    auto c = load_corpus(corpus_dir, limit);
    if (*mx_cmd) return run_mxguard(*c, c, workers, window, signatures_dir, temp_dir, seconds);
    if (*in_cmd) return run_instream(*c, socket_path, workers, window, chunk, seconds);
    if (*lat_cmd) return run_latency(*c, c, socket_path, signatures_dir, temp_dir, chunk, seconds);
  } catch (const std::exception& e) {
    fmt::print(stderr, "mxguard-scan-bench: {}\n", e.what());
    return 1;
  }
  return 2;
}
