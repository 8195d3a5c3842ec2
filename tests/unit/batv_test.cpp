// BATV tags: creation, verification, day wrap-around and key rotation.
#include <gtest/gtest.h>

#include "batv.hpp"

namespace mxguard::guard {
namespace {

batv_keys keys_with(int sign_key) {
  batv_keys k;
  k.secrets[1] = "0123456789abcdef0123456789abcdef";
  k.secrets[2] = "fedcba9876543210fedcba9876543210";
  k.sign_key = sign_key;
  k.validity_days = 7;
  return k;
}

TEST(Batv, SignedAddressHasTheDraftForm) {
  auto tagged = batv_sign(keys_with(2), "alice@Example.ORG", 20000);
  // prvs=K DDD SSSSSS = local@domain; DDD = (20000 + 7) % 1000 = 007.
  ASSERT_EQ(tagged.size(), std::string("prvs=2007xxxxxx=alice@example.org").size());
  EXPECT_EQ(tagged.substr(0, 9), "prvs=2007");
  EXPECT_EQ(tagged.substr(15), "=alice@example.org");
  for (char c : tagged.substr(9, 6)) EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(c)));
}

TEST(Batv, VerifyTable) {
  const auto keys = keys_with(2);
  const std::int64_t day = 20000;
  const auto good = batv_sign(keys, "alice@example.org", day);
  std::string forged = good;
  forged[10] = forged[10] == '0' ? '1' : '0';
  struct row {
    const char* label;
    std::string address;
    std::int64_t today;
    batv_status want;
  } rows[] = {
      {"fresh", good, day, batv_status::valid},
      {"last valid day", good, day + 7, batv_status::valid},
      {"one day late", good, day + 8, batv_status::expired},
      {"long expired", good, day + 400, batv_status::expired},
      {"upper-case tag and domain", "PRVS=" + good.substr(5, 11) + "alice@EXAMPLE.org", day,
       batv_status::valid},
      {"forged signature", forged, day, batv_status::bad_signature},
      {"other local part", good.substr(0, 16) + "bob@example.org", day, batv_status::bad_signature},
      {"unknown key", "prvs=7007abcdef=alice@example.org", day, batv_status::unknown_key},
      {"not digits", "prvs=2a07abcdef=alice@example.org", day, batv_status::malformed},
      {"short tag", "prvs=2007abc=alice@example.org", day, batv_status::malformed},
      {"untagged", "alice@example.org", day, batv_status::untagged},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.label);
    auto check = batv_verify(keys, r.address, r.today);
    EXPECT_EQ(to_string(check.status), std::string(to_string(r.want)));
    if (r.want == batv_status::valid) {
      // The address as it came, minus the tag (domains compare case-insensitively).
      std::string original = check.original;
      for (auto& c : original) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      EXPECT_EQ(original, "alice@example.org");
    }
  }
}

TEST(Batv, DayWrapsAroundAThousand) {
  const auto keys = keys_with(1);
  // Signed on day 996: expires on day 1003, written as 003.
  auto tagged = batv_sign(keys, "a@example.org", 996);
  EXPECT_EQ(tagged.substr(5, 4), "1003");
  EXPECT_EQ(batv_verify(keys, tagged, 996).status, batv_status::valid);
  EXPECT_EQ(batv_verify(keys, tagged, 999).status, batv_status::valid);
  EXPECT_EQ(batv_verify(keys, tagged, 1000).status, batv_status::valid);
  EXPECT_EQ(batv_verify(keys, tagged, 1003).status, batv_status::valid);
  EXPECT_EQ(batv_verify(keys, tagged, 1004).status, batv_status::expired);
  // A tag from 1000 days earlier has the same DDD but is long expired; it
  // would pass only if replayed exactly 1000 days later, which the draft accepts.
  EXPECT_EQ(batv_verify(keys, tagged, 1500).status, batv_status::expired);
}

TEST(Batv, RotationKeepsOldKeyValidUntilItsTagsExpire) {
  auto old_keys = keys_with(1);
  auto tagged_old = batv_sign(old_keys, "a@example.org", 5000);
  auto new_keys = keys_with(2);  // signing moved to key 2, key 1 still known
  EXPECT_EQ(batv_verify(new_keys, tagged_old, 5003).status, batv_status::valid);
  auto tagged_new = batv_sign(new_keys, "a@example.org", 5003);
  EXPECT_EQ(tagged_new.substr(5, 1), "2");
  EXPECT_EQ(batv_verify(new_keys, tagged_new, 5003).status, batv_status::valid);
  new_keys.secrets.erase(1);  // key 1 retired
  EXPECT_EQ(batv_verify(new_keys, tagged_old, 5003).status, batv_status::unknown_key);
}

TEST(Batv, KeyParsing) {
  std::string error;
  EXPECT_TRUE(parse_batv_key("3:0123456789abcdef", error).has_value());
  EXPECT_FALSE(parse_batv_key("10:0123456789abcdef", error).has_value());
  EXPECT_FALSE(parse_batv_key("x:0123456789abcdef", error).has_value());
  EXPECT_FALSE(parse_batv_key("3:short", error).has_value());
  EXPECT_NE(error.find("16"), std::string::npos);
}

}  // namespace
}  // namespace mxguard::guard
