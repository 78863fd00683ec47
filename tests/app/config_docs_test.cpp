// SPDX-License-Identifier: MIT OR Apache-2.0
// docs/configuration.md stays true to the code: every flag that --help
// lists, and every environment variable it names, is documented.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

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

TEST(ConfigDocs, EveryDefaultIsTheOneTheCodeUses) {
  const std::string doc = readFile(AYAFLOW_SOURCE_DIR "/docs/configuration.md");
  std::istringstream lines(doc);
  std::vector<std::string> table;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| `", 0) == 0) table.push_back(line);
  }
  const std::vector<SettingDoc> settings = settingDocs();
  EXPECT_GE(settings.size(), 16u);
  for (const SettingDoc& s : settings) {
    // The first cell holds the flag: `--port` or `-p, --port`.
    const std::string* row = nullptr;
    for (const std::string& line : table) {
      const std::string first = line.substr(0, line.find('|', 1));
      if (first.find(" " + s.flag + "`") != std::string::npos ||
          first.find("`" + s.flag + "`") != std::string::npos) {
        row = &line;
      }
    }
    ASSERT_NE(row, nullptr) << s.flag << " has no row in configuration.md";
    EXPECT_NE(row->find("`" + s.env + "`"), std::string::npos) << *row;
    EXPECT_NE(row->find("`" + s.yaml + "`"), std::string::npos) << *row;
    // The last cell is the default, in backquotes unless it is words.
    const std::string cell = row->substr(row->rfind('|', row->size() - 2) + 1);
    const std::string expected = " `" + s.default_value + "` |";
    const std::string words = " " + s.default_value + " |";
    EXPECT_TRUE(cell == expected || cell == words)
        << s.flag << ": docs say '" << cell << "', the code '" << s.default_value << "'";
  }
}

}  // namespace
}  // namespace ayaflow::app
