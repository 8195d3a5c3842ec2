// Batch builders: plans printed as nft, ipset restore, file and argv text.
//
// Only three kinds of value reach the output: names checked when the spec was
// made, prefixes printed from ip_prefix, and numbers. Reasons and rules appear
// only in the file's comments and the exec hook's argv, through sanitize_text.
#include <algorithm>
#include <ctime>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

#include "mxguard/ops/firewall.hpp"

namespace mxguard::ops {

namespace {

// Elements per `add element` statement: keeps lines short enough to read in an
// error message, while a 10,000-entry reconcile is still one transaction.
constexpr std::size_t nft_chunk = 256;

void require_name(std::string_view what, std::string_view name) {
  if (!valid_object_name(name))
    throw std::invalid_argument(
        fmt::format("firewall: {} name must match ^[A-Za-z_][A-Za-z0-9_.-]{{0,31}}$", what));
}

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    auto start = i;
    while (i < s.size() && s[i] != ' ') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

// Prints `header { e1, e2 }` statements for the elements of one family.
template <class Item, class Print>
void nft_elements(std::string& out, std::string_view verb, const nft_set_spec& spec, bool v4,
                  const std::vector<Item>& items, Print print) {
  const auto& set = v4 ? spec.set4 : spec.set6;
  std::size_t in_line = 0;
  for (const auto& item : items) {
    const block_entry& e = print.entry(item);
    if (e.prefix.is_v4() != v4) continue;
    if (in_line == 0)
      fmt::format_to(std::back_inserter(out), "{} element {} {} {} {{ ", verb, spec.family,
                     spec.table, set);
    else
      out.append(", ");
    print(out, item);
    if (++in_line == nft_chunk) {
      out.append(" }\n");
      in_line = 0;
    }
  }
  if (in_line > 0) out.append(" }\n");
}

struct print_bare {
  const block_entry& entry(const block_entry& e) const { return e; }
  const block_entry& entry(const timed_entry& t) const { return t.entry; }
  template <class Item>
  void operator()(std::string& out, const Item& item) const {
    out.append(entry(item).prefix.to_string());
  }
};

struct print_timed {
  const block_entry& entry(const timed_entry& t) const { return t.entry; }
  void operator()(std::string& out, const timed_entry& t) const {
    out.append(t.entry.prefix.to_string());
    if (t.timeout.count() > 0)
      fmt::format_to(std::back_inserter(out), " timeout {}s", t.timeout.count());
  }
};

std::string iso_time(sys_clock::time_point t) {
  if (t == sys_clock::time_point::max()) return "never";
  const std::time_t secs = sys_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

// ---- nftables ----

nft_set_spec nft_set_spec::parse(std::string_view text, std::string_view set6,
                                 std::string_view drop_chain) {
  auto words = split_words(text);
  if (words.size() != 3)
    throw std::invalid_argument("firewall: nft set must be \"family table set\"");
  nft_set_spec s;
  s.family = std::string(words[0]);
  if (s.family != "ip" && s.family != "ip6" && s.family != "inet")
    throw std::invalid_argument("firewall: nft family must be ip, ip6 or inet");
  require_name("nft table", words[1]);
  require_name("nft set", words[2]);
  s.table = std::string(words[1]);
  if (s.family == "ip6") {
    if (!set6.empty()) throw std::invalid_argument("firewall: family ip6 has only one set");
    s.set6 = std::string(words[2]);
  } else {
    s.set4 = std::string(words[2]);
    if (s.family == "inet") {
      s.set6 = set6.empty() ? s.set4 + "6" : std::string(set6);
      require_name("nft IPv6 set", s.set6);
      if (s.set6 == s.set4) throw std::invalid_argument("firewall: IPv4 and IPv6 sets must differ");
    } else if (!set6.empty()) {
      throw std::invalid_argument("firewall: family ip has no IPv6 set");
    }
  }
  if (!drop_chain.empty()) {
    require_name("nft chain", drop_chain);
    s.drop_chain = std::string(drop_chain);
  }
  return s;
}

feeder_limits nft_limits(const nft_set_spec& spec, std::chrono::seconds max_timeout) {
  feeder_limits l;
  l.max_timeout = max_timeout;
  if (max_timeout.count() > 0) l.refresh_margin = std::min(l.refresh_margin, max_timeout / 4);
  l.collapse_covered = true;
  l.accept_v4 = !spec.set4.empty();
  l.accept_v6 = !spec.set6.empty();
  return l;
}

std::string build_nft_batch(const nft_set_spec& spec, const batch_plan& plan) {
  std::string out;
  auto line = [&out]<class... A>(fmt::format_string<A...> f, A&&... args) {
    fmt::format_to(std::back_inserter(out), f, std::forward<A>(args)...);
    out.push_back('\n');
  };
  // Every batch (re)declares the table and sets: `add` is idempotent, and a
  // table deleted by hand is back with the next batch instead of failing it.
  line("add table {} {}", spec.family, spec.table);
  if (!spec.set4.empty())
    line("add set {} {} {} {{ type ipv4_addr; flags interval,timeout; }}", spec.family, spec.table,
         spec.set4);
  if (!spec.set6.empty())
    line("add set {} {} {} {{ type ipv6_addr; flags interval,timeout; }}", spec.family, spec.table,
         spec.set6);
  if (plan.full) {
    if (!spec.set4.empty()) line("flush set {} {} {}", spec.family, spec.table, spec.set4);
    if (!spec.set6.empty()) line("flush set {} {} {}", spec.family, spec.table, spec.set6);
    if (!spec.drop_chain.empty()) {
      // Flushed and refilled, so a restart never stacks duplicate rules.
      line("add chain {} {} {} {{ type filter hook input priority -10; policy accept; }}",
           spec.family, spec.table, spec.drop_chain);
      line("flush chain {} {} {}", spec.family, spec.table, spec.drop_chain);
      if (!spec.set4.empty())
        line("add rule {} {} {} ip saddr @{} drop", spec.family, spec.table, spec.drop_chain,
             spec.set4);
      if (!spec.set6.empty())
        line("add rule {} {} {} ip6 saddr @{} drop", spec.family, spec.table, spec.drop_chain,
             spec.set6);
    }
    for (bool v4 : {true, false}) nft_elements(out, "add", spec, v4, plan.effective, print_timed{});
    return out;
  }
  // nft 1.0.6 has no `destroy element`, and deleting an element the kernel has
  // timed out already fails the whole transaction; adding it first makes the
  // delete always succeed. The same pair drops an element before its refresh.
  for (bool v4 : {true, false}) {
    nft_elements(out, "add", spec, v4, plan.removes, print_bare{});
    nft_elements(out, "add", spec, v4, plan.updates, print_bare{});
  }
  for (bool v4 : {true, false}) {
    nft_elements(out, "delete", spec, v4, plan.removes, print_bare{});
    nft_elements(out, "delete", spec, v4, plan.updates, print_bare{});
  }
  for (bool v4 : {true, false}) {
    nft_elements(out, "add", spec, v4, plan.updates, print_timed{});
    nft_elements(out, "add", spec, v4, plan.adds, print_timed{});
  }
  return out;
}

// ---- ipset ----

ipset_spec ipset_spec::make(std::string_view set4, std::string_view set6, std::size_t maxelem) {
  ipset_spec s;
  if (set4.empty() && set6.empty()) throw std::invalid_argument("firewall: ipset needs a set");
  for (auto name : {set4, set6}) {
    if (name.empty()) continue;
    require_name("ipset", name);
    if (name.size() > 27)
      throw std::invalid_argument("firewall: ipset name longer than 27 characters");
  }
  if (set4 == set6) throw std::invalid_argument("firewall: IPv4 and IPv6 sets must differ");
  if (maxelem == 0) throw std::invalid_argument("firewall: ipset maxelem must be positive");
  s.set4 = std::string(set4);
  s.set6 = std::string(set6);
  s.maxelem = maxelem;
  return s;
}

feeder_limits ipset_limits(const ipset_spec& spec, std::chrono::seconds max_timeout) {
  feeder_limits l;
  if (max_timeout.count() <= 0 || max_timeout > ipset_max_timeout) max_timeout = ipset_max_timeout;
  l.max_timeout = max_timeout;
  l.refresh_margin = std::min(l.refresh_margin, max_timeout / 4);
  l.maxelem = spec.maxelem;
  l.accept_v4 = !spec.set4.empty();
  l.accept_v6 = !spec.set6.empty();
  return l;
}

std::string build_ipset_restore(const ipset_spec& spec, const batch_plan& plan,
                                const std::vector<std::string>& existing) {
  std::string out;
  auto exists = [&existing](const std::string& name) {
    return std::find(existing.begin(), existing.end(), name) != existing.end();
  };
  auto add_line = [&out](const std::string& set, const timed_entry& t) {
    fmt::format_to(std::back_inserter(out), "add {} {} timeout {} -exist\n", set,
                   t.entry.prefix.to_string(), t.timeout.count());
  };
  for (bool v4 : {true, false}) {
    const auto& set = v4 ? spec.set4 : spec.set6;
    if (set.empty()) continue;
    const char* family = v4 ? "inet" : "inet6";
    // `timeout 0` enables per-element timeouts with "never" as the default.
    auto create = [&](const std::string& name) {
      fmt::format_to(std::back_inserter(out),
                     "create {} hash:net family {} hashsize {} maxelem {} timeout 0 -exist\n", name,
                     family, spec.hashsize, spec.maxelem);
    };
    if (plan.full) {
      const auto fresh = set + ".new";
      if (!exists(set)) create(set);
      if (exists(fresh)) fmt::format_to(std::back_inserter(out), "destroy {}\n", fresh);
      create(fresh);
      for (const auto& t : plan.effective)
        if (t.entry.prefix.is_v4() == v4) add_line(fresh, t);
      fmt::format_to(std::back_inserter(out), "swap {} {}\ndestroy {}\n", fresh, set, fresh);
      continue;
    }
    // Removes first: they make room under maxelem for the adds.
    for (const auto& e : plan.removes)
      if (e.prefix.is_v4() == v4)
        fmt::format_to(std::back_inserter(out), "del {} {} -exist\n", set, e.prefix.to_string());
    // `add -exist` on an element present sets its new timeout: that is the refresh.
    for (const auto& t : plan.updates)
      if (t.entry.prefix.is_v4() == v4) add_line(set, t);
    for (const auto& t : plan.adds)
      if (t.entry.prefix.is_v4() == v4) add_line(set, t);
  }
  return out;
}

// ---- plain file ----

file_spec file_spec::make(std::string path, file_format format, bool v4, bool v6,
                          std::string_view chain, std::string_view target) {
  file_spec s;
  if (path.empty() || path.front() != '/')
    throw std::invalid_argument("firewall: file feeder path must be absolute");
  if (!v4 && !v6) throw std::invalid_argument("firewall: file feeder needs a family");
  if (format == file_format::iptables_restore) {
    if (v4 && v6)
      throw std::invalid_argument(
          "firewall: an iptables-restore fragment holds one family (iptables or ip6tables)");
    require_name("iptables chain", chain);
    if (chain.size() > 28) throw std::invalid_argument("firewall: iptables chain name too long");
    if (target != "DROP" && target != "REJECT")
      throw std::invalid_argument("firewall: iptables target must be DROP or REJECT");
  }
  s.path = std::move(path);
  s.format = format;
  s.v4 = v4;
  s.v6 = v6;
  s.chain = std::string(chain);
  s.target = std::string(target);
  return s;
}

std::string build_file(const file_spec& spec, const std::vector<timed_entry>& effective) {
  std::string out;
  const bool ipt = spec.format == file_format::iptables_restore;
  if (ipt)
    fmt::format_to(std::back_inserter(out), "*filter\n:{0} - [0:0]\n-F {0}\n", spec.chain);
  else
    out.append("# mxguard blocklist: one CIDR per line; generated, do not edit\n");
  for (const auto& t : effective) {
    const auto& e = t.entry;
    if (e.prefix.is_v4() ? !spec.v4 : !spec.v6) continue;
    if (ipt) {
      fmt::format_to(std::back_inserter(out), "-A {} -s {} -j {}\n", spec.chain,
                     e.prefix.to_string(), spec.target);
    } else {
      fmt::format_to(std::back_inserter(out), "{} # expires={} rule={} reason={}\n",
                     e.prefix.to_string(), iso_time(e.expires), sanitize_text(e.rule, 64),
                     sanitize_text(e.reason));
    }
  }
  if (ipt) out.append("COMMIT\n");
  return out;
}

// ---- exec hook ----

std::vector<std::string> build_exec_argv(const std::string& program, exec_action action,
                                         const block_entry& e) {
  const auto expires =
      e.expires == sys_clock::time_point::max()
          ? std::int64_t{0}
          : std::chrono::duration_cast<std::chrono::seconds>(e.expires.time_since_epoch()).count();
  return {program,
          action == exec_action::add ? "add" : "del",
          e.prefix.to_string(),
          std::to_string(expires),
          sanitize_text(e.reason),
          sanitize_text(e.rule, 64)};
}

}  // namespace mxguard::ops
