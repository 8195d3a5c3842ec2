// The four feeders: each turns a plan into one program run (or one file) via
// the pure builders in firewall_batch.cpp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "mxguard/ops/firewall_feeder.hpp"
#include "mxguard/ops/process.hpp"

namespace mxguard::ops {

namespace {

void require_absolute(std::string_view what, const std::string& path) {
  if (path.empty() || path.front() != '/')
    throw std::invalid_argument(fmt::format("firewall: {} must be an absolute path", what));
}

void check(const command_options& c) {
  if (!c.prefix.empty()) require_absolute("command prefix program", c.prefix.front());
  if (c.timeout.count() <= 0)
    throw std::invalid_argument("firewall: command timeout must be positive");
}

std::vector<std::string> command(const command_options& c,
                                 std::initializer_list<std::string> args) {
  std::vector<std::string> argv = c.prefix;
  argv.insert(argv.end(), args);
  return argv;
}

std::string run(const command_options& c, std::vector<std::string> argv, std::string_view input,
                std::string* out = nullptr) {
  auto r = run_program(argv, input, c.timeout);
  if (out != nullptr) *out = std::move(r.out);
  return r.ok() ? std::string() : r.describe();
}

// Specs are normally made by parse()/make(), but the options are plain
// structs: names are checked again so that no path around the checks exists.
void check(const nft_set_spec& s) {
  if (s.family != "ip" && s.family != "ip6" && s.family != "inet")
    throw std::invalid_argument("firewall: nft family must be ip, ip6 or inet");
  if (!valid_object_name(s.table)) throw std::invalid_argument("firewall: bad nft table name");
  if (s.set4.empty() && s.set6.empty()) throw std::invalid_argument("firewall: nft needs a set");
  if ((s.family == "ip6" && !s.set4.empty()) || (s.family == "ip" && !s.set6.empty()))
    throw std::invalid_argument("firewall: nft set of the wrong family");
  for (const auto* n : {&s.set4, &s.set6, &s.drop_chain})
    if (!n->empty() && !valid_object_name(*n))
      throw std::invalid_argument("firewall: bad nft set or chain name");
}

}  // namespace

// ---- nft ----

nft_feeder::nft_feeder(options o) : o_(std::move(o)) {
  check(o_.spec);
  require_absolute("nft", o_.nft);
  check(o_.command);
  limits_ = nft_limits(o_.spec, o_.max_timeout);
  validate(limits_);
}

std::string nft_feeder::apply(const batch_plan& plan) {
  return run(o_.command, command(o_.command, {o_.nft, "-f", "-"}), build_nft_batch(o_.spec, plan));
}

// ---- ipset ----

ipset_feeder::ipset_feeder(options o) : o_(std::move(o)) {
  const auto hashsize = o_.spec.hashsize;
  o_.spec = ipset_spec::make(o_.spec.set4, o_.spec.set6, o_.spec.maxelem);
  if (hashsize == 0) throw std::invalid_argument("firewall: ipset hashsize must be positive");
  o_.spec.hashsize = hashsize;
  require_absolute("ipset", o_.ipset);
  check(o_.command);
  limits_ = ipset_limits(o_.spec, o_.max_timeout);
  validate(limits_);
}

std::string ipset_feeder::apply(const batch_plan& plan) {
  std::vector<std::string> existing;
  if (plan.full) {
    std::string names;
    if (auto err = run(o_.command, command(o_.command, {o_.ipset, "list", "-n"}), {}, &names);
        !err.empty())
      return err;
    std::size_t start = 0;
    while (start < names.size()) {
      auto end = names.find('\n', start);
      if (end == std::string::npos) end = names.size();
      if (end > start) existing.emplace_back(names.substr(start, end - start));
      start = end + 1;
    }
  }
  auto text = build_ipset_restore(o_.spec, plan, existing);
  if (text.empty()) return {};
  return run(o_.command, command(o_.command, {o_.ipset, "restore"}), text);
}

// ---- file ----

file_feeder::file_feeder(file_spec spec) : spec_(std::move(spec)) {
  spec_ = file_spec::make(spec_.path, spec_.format, spec_.v4, spec_.v6, spec_.chain, spec_.target);
}

feeder_limits file_feeder::limits() const {
  feeder_limits l;
  l.accept_v4 = spec_.v4;
  l.accept_v6 = spec_.v6;
  return l;
}

std::string file_feeder::apply(const batch_plan& plan) {
  const auto text = build_file(spec_, plan.effective);
  const auto tmp = fmt::format("{}.tmp.{}", spec_.path, ::getpid());
  auto fail = [&tmp](std::string_view what) {
    auto msg = fmt::format("{} {}: {}", what, tmp, std::strerror(errno));
    ::unlink(tmp.c_str());
    return msg;
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return fail("open");
  std::size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto msg = fail("write");
      ::close(fd);
      return msg;
    }
    done += static_cast<std::size_t>(n);
  }
  // fsync before rename: otherwise a crash can leave the new name on an empty file.
  if (::fsync(fd) != 0) {
    auto msg = fail("fsync");
    ::close(fd);
    return msg;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), spec_.path.c_str()) != 0) return fail("rename");
  return {};
}

// ---- exec ----

exec_feeder::exec_feeder(options o) : o_(std::move(o)) {
  require_absolute("exec hook program", o_.program);
  if (o_.timeout.count() <= 0)
    throw std::invalid_argument("firewall: hook timeout must be positive");
}

std::string exec_feeder::apply(const batch_plan& plan) {
  std::string first_error;
  auto call = [&](exec_action a, const block_entry& e) {
    auto r = run_program(build_exec_argv(o_.program, a, e), {}, o_.timeout);
    if (!r.ok() && first_error.empty())
      first_error = fmt::format("{} {}: {}", a == exec_action::add ? "add" : "del",
                                e.prefix.to_string(), r.describe());
  };
  for (const auto& e : plan.removes) call(exec_action::del, e);
  for (const auto& t : plan.updates) call(exec_action::add, t.entry);
  for (const auto& t : plan.adds) call(exec_action::add, t.entry);
  return first_error;
}

}  // namespace mxguard::ops
