// The README's configuration reference must be the settings table itself, so
// that no setting goes undocumented and no default in the README is stale.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "config.hpp"

namespace mxguard::guard {
namespace {

TEST(Readme, ListsEverySettingWithItsDefault) {
  std::ifstream in(std::string(MXGUARD_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md not found";
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  std::istringstream rows(settings_reference_markdown());
  std::string row;
  while (std::getline(rows, row)) {
    SCOPED_TRACE(row);
    EXPECT_NE(readme.find(row), std::string::npos)
        << "README.md is out of date: run `mxguard --print-settings-table`";
  }
}

TEST(Readme, EverySettingHasHelpAndSaneBounds) {
  for (const auto& spec : settings_table()) {
    SCOPED_TRACE(std::string(spec.section) + "." + std::string(spec.name));
    EXPECT_FALSE(spec.help.empty());
    EXPECT_LE(spec.min, spec.max);
  }
}

}  // namespace
}  // namespace mxguard::guard
