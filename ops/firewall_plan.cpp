// The planner: desired (blocklist) against installed (what this feeder put in).
//
// A plan is computed from the whole state each time rather than from a change
// log: it is O(n) over sorted maps, a feeder batches every ~100 ms at most, and
// a full recomputation cannot drift from the kernel the way an incremental log
// can when a batch fails halfway (ipset restore is not transactional).
#include <algorithm>
#include <array>
#include <set>
#include <stdexcept>
#include <tuple>

#include "mxguard/ops/firewall.hpp"

namespace mxguard::ops {

namespace {

constexpr auto forever = sys_clock::time_point::max();

bool refused_prefix(const ip_prefix& p, const feeder_limits& l) {
  if (p.length() == 0) return true;
  if (p.is_v4()) return !l.accept_v4 || p.length() < l.min_v4_length;
  return !l.accept_v6 || p.length() < l.min_v6_length;
}

// A prefix as (family, masked bytes, length), cheap to mask to a shorter length.
using prefix_key = std::tuple<bool, std::array<std::uint8_t, 16>, unsigned>;

prefix_key masked(const ip_prefix& p, unsigned length) {
  auto bytes = p.bytes();
  for (unsigned bit = length; bit < 128; ++bit) bytes[bit / 8] &= ~(0x80u >> (bit % 8));
  return {p.is_v4(), bytes, length};
}

// Whether some element of one list contains or equals one of the other.
bool overlapping(const std::vector<block_entry>& removes, const std::vector<timed_entry>& adds) {
  if (removes.empty() || adds.empty()) return false;
  std::set<prefix_key> removed, added;
  for (const auto& e : removes) removed.insert(masked(e.prefix, e.prefix.length()));
  for (const auto& t : adds) added.insert(masked(t.entry.prefix, t.entry.prefix.length()));
  auto covered_by = [](const ip_prefix& p, const std::set<prefix_key>& set) {
    for (unsigned len = 0; len <= p.length(); ++len)
      if (set.contains(masked(p, len))) return true;
    return false;
  };
  for (const auto& t : adds)
    if (covered_by(t.entry.prefix, removed)) return true;
  for (const auto& e : removes)
    if (covered_by(e.prefix, added)) return true;
  return false;
}

}  // namespace

void validate(const feeder_limits& l) {
  if (l.max_timeout.count() < 0 || l.refresh_margin.count() < 0)
    throw std::invalid_argument("firewall feeder: negative timeout");
  if (l.max_timeout.count() > 0 && l.refresh_margin >= l.max_timeout)
    throw std::invalid_argument(
        "firewall feeder: refresh margin must be shorter than the maximum element timeout");
  if (l.min_v4_length > 32 || l.min_v6_length > 128)
    throw std::invalid_argument("firewall feeder: minimum prefix length out of range");
}

feeder_state::feeder_state(feeder_limits limits) : limits_(limits) {
  validate(limits_);
}

void feeder_state::upsert(block_entry e) {
  auto key = e.prefix;
  desired_.insert_or_assign(key, std::move(e));
}

void feeder_state::erase(const ip_prefix& p) {
  desired_.erase(p);
}

void feeder_state::reset(std::vector<block_entry> entries) {
  desired_.clear();
  for (auto& e : entries) upsert(std::move(e));
  full_ = true;
}

std::chrono::seconds feeder_state::timeout_for(const block_entry& e,
                                               sys_clock::time_point now) const {
  if (e.expires == forever) return std::chrono::seconds{0};
  auto left = std::chrono::ceil<std::chrono::seconds>(e.expires - now);
  if (left < std::chrono::seconds{1}) left = std::chrono::seconds{1};
  if (limits_.max_timeout.count() > 0 && left > limits_.max_timeout) left = limits_.max_timeout;
  return left;
}

batch_plan feeder_state::plan(sys_clock::time_point now) {
  batch_plan out;
  out.full = full_;

  std::erase_if(desired_, [now](const auto& kv) { return kv.second.expires <= now; });

  // Sorted by (bytes, length), a prefix comes right before everything it
  // covers, so one pass with the last uncovered prefix per family finds them.
  std::vector<const block_entry*> chosen;
  chosen.reserve(desired_.size());
  const block_entry* cover4 = nullptr;
  const block_entry* cover6 = nullptr;
  for (const auto& [prefix, e] : desired_) {
    if (refused_prefix(prefix, limits_)) {
      ++out.refused;
      continue;
    }
    auto& cover = prefix.is_v4() ? cover4 : cover6;
    if (limits_.collapse_covered && cover != nullptr && cover->prefix.length() <= prefix.length()) {
      // Contained when masking to the cover's length gives the cover.
      if (std::get<1>(masked(prefix, cover->prefix.length())) == cover->prefix.bytes()) continue;
    }
    cover = &e;
    chosen.push_back(&e);
  }

  if (limits_.maxelem > 0) {
    for (bool v4 : {true, false}) {
      std::vector<const block_entry*> fam;
      for (auto* e : chosen)
        if (e->prefix.is_v4() == v4) fam.push_back(e);
      if (fam.size() <= limits_.maxelem) continue;
      // Keep the latest to expire; ties broken by prefix so the choice is stable.
      std::sort(fam.begin(), fam.end(), [](const block_entry* a, const block_entry* b) {
        if (a->expires != b->expires) return a->expires > b->expires;
        return a->prefix < b->prefix;
      });
      std::vector<const block_entry*> dropped(fam.begin() + static_cast<long>(limits_.maxelem),
                                              fam.end());
      std::sort(dropped.begin(), dropped.end());
      out.evicted += dropped.size();
      std::erase_if(chosen, [&dropped](const block_entry* e) {
        return std::binary_search(dropped.begin(), dropped.end(), e);
      });
    }
  }

  pending_kernel_expires_.clear();
  pending_kernel_expires_.reserve(chosen.size());
  out.effective.reserve(chosen.size());
  next_due_ = forever;
  auto due = [this](sys_clock::time_point t) { next_due_ = std::min(next_due_, t); };

  auto inst = installed_.begin();
  for (const auto* e : chosen) {
    while (inst != installed_.end() && inst->first < e->prefix) {
      if (!out.full) out.removes.push_back(inst->second.entry);
      ++inst;
    }
    timed_entry t{*e, timeout_for(*e, now)};
    const auto fresh_expiry = t.timeout.count() == 0 ? forever : now + t.timeout;
    auto kernel_expires = fresh_expiry;
    if (inst != installed_.end() && inst->first == e->prefix) {
      const auto& old = inst->second;
      // Only a capped element needs a refresh; one written with its full
      // remaining time simply expires with the entry.
      const bool refresh =
          old.kernel_expires < e->expires && now >= old.kernel_expires - limits_.refresh_margin;
      if (!out.full) {
        if (old.entry != *e || refresh)
          out.updates.push_back(t);
        else
          kernel_expires = old.kernel_expires;
      }
      ++inst;
    } else if (!out.full) {
      out.adds.push_back(t);
    }
    if (e->expires != forever) due(e->expires);
    if (kernel_expires != forever && kernel_expires < e->expires)
      due(kernel_expires - limits_.refresh_margin);
    pending_kernel_expires_.push_back(kernel_expires);
    out.effective.push_back(std::move(t));
  }
  for (; inst != installed_.end(); ++inst)
    if (!out.full) out.removes.push_back(inst->second.entry);
  if (!out.full && limits_.collapse_covered && overlapping(out.removes, out.adds)) {
    // nft 1.0.6 checks interval overlaps against the set as it was before the
    // transaction, so "delete the cover, add what it covered" fails even in
    // one batch. Flush-and-fill is just as atomic and only needed when a cover
    // comes or goes.
    out.full = true;
    out.removes.clear();
    out.updates.clear();
  }
  if (out.full) out.adds = out.effective;
  return out;
}

void feeder_state::commit(const batch_plan& p) {
  installed_.clear();
  for (std::size_t i = 0; i < p.effective.size(); ++i) {
    const auto& e = p.effective[i].entry;
    installed_.emplace(e.prefix, installed_entry{e, pending_kernel_expires_[i]});
  }
  full_ = false;
}

bool valid_object_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(name[0])) return false;
  for (char c : name.substr(1))
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '.' && c != '-') return false;
  return true;
}

std::string sanitize_text(std::string_view text, std::size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (char c : text) {
    if (out.size() >= max) break;
    const auto u = static_cast<unsigned char>(c);
    const bool bad = u < 0x20 || u >= 0x7f || c == '"' || c == '\'' || c == '`' || c == '\\';
    out.push_back(bad ? '_' : c);
  }
  return out;
}

}  // namespace mxguard::ops
