#include "access_list.hpp"
#include "text.hpp"

#include <algorithm>
#include <cctype>

namespace mxguard::guard {

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<access_entry> access_list::parse_line(std::string_view line, std::string& error) {
  line = trim(line);
  auto space = line.find_first_of(" \t");
  if (space == std::string_view::npos) {
    error = "expected 'ADDRESS[/LEN] OK|REJECT|DEFER [text]'";
    return std::nullopt;
  }
  auto network = ip_prefix::parse(line.substr(0, space));
  if (!network) {
    error = "bad address or prefix '" + std::string(line.substr(0, space)) + "'";
    return std::nullopt;
  }
  auto rest = trim(line.substr(space));
  auto word_end = rest.find_first_of(" \t");
  auto word = upper(rest.substr(0, word_end));
  access_entry entry;
  entry.network = *network;
  if (word == "OK" || word == "PERMIT")
    entry.what = access_action::ok;
  else if (word == "REJECT")
    entry.what = access_action::reject;
  else if (word == "DEFER")
    entry.what = access_action::defer;
  else {
    error = "unknown action '" + std::string(rest.substr(0, word_end)) + "' (OK, REJECT, DEFER)";
    return std::nullopt;
  }
  if (word_end != std::string_view::npos) entry.text = std::string(trim(rest.substr(word_end)));
  // The text goes into an SMTP reply: keep it to printable ASCII.
  if (!printable_ascii(entry.text)) {
    error = "reply text must be printable ASCII";
    return std::nullopt;
  }
  return entry;
}

void access_list::add(access_entry entry) {
  auto& table = entry.network.is_v4() ? v4_ : v6_;
  auto& bucket = table[static_cast<int>(entry.network.length())];
  auto key = entry.network;
  if (bucket.insert_or_assign(key, std::move(entry)).second) ++count_;
}

const access_entry* access_list::find(const boost::asio::ip::address& raw) const {
  const auto client = normalize(raw);
  const auto& table = client.is_v4() ? v4_ : v6_;
  for (const auto& [length, bucket] : table) {
    auto it = bucket.find(ip_prefix(client, static_cast<unsigned>(length)));
    if (it != bucket.end()) return &it->second;
  }
  return nullptr;
}

verdict access_list::check(const boost::asio::ip::address& client) const {
  const access_entry* entry = find(client);
  if (!entry) return verdict::pass();
  verdict v;
  v.rule = "access:" + entry->network.to_string();
  switch (entry->what) {
    case access_action::ok:
      v.what = action::accept;
      break;
    case access_action::reject:
      v.what = action::reject;
      v.reply = "554 5.7.1 " + (entry->text.empty() ? std::string("Access denied") : entry->text);
      break;
    case access_action::defer:
      v.what = action::defer;
      v.reply = "421 4.7.0 " + (entry->text.empty()
                                    ? std::string("Access temporarily denied, try again later")
                                    : entry->text);
      break;
  }
  return v;
}

}  // namespace mxguard::guard
