// SPDX-License-Identifier: MIT OR Apache-2.0
// docs/configuration.md stays true to the code: every flag that --help
// lists, and every environment variable it names, is documented.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "ayaflow/app/config.h"

namespace ayaflow::app {
namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ConfigDocs, EveryFlagAndVariableIsDocumented) {
  const char* argv[] = {"ayaflow", "--help"};
  const ParseOutcome help = parseConfig(2, argv, [](const char*) { return std::nullopt; });
  ASSERT_TRUE(help.exit_now);
  const std::string doc = readFile(AYAFLOW_SOURCE_DIR "/docs/configuration.md");
  ASSERT_FALSE(doc.empty());
  std::set<std::string> names;
  const std::regex pattern("(--[a-z0-9-]+|AYAFLOW_[A-Z0-9_]+)");
  for (std::sregex_iterator it(help.output.begin(), help.output.end(), pattern), end; it != end;
       ++it) {
    names.insert(it->str());
  }
  EXPECT_GE(names.size(), 30u);  // 17 flags + 15 variables
  for (const std::string& name : names) {
    EXPECT_NE(doc.find(name + "`"), std::string::npos) << name << " is not in configuration.md";
  }
}

}  // namespace
}  // namespace ayaflow::app
