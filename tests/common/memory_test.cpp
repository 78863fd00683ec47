// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/memory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <regex>
#include <string>
#include <vector>

namespace ayaflow::common {
namespace {

// Code that runs after the release must still work: the pages come back on use.
std::string exerciseLibraries() {
  std::map<std::string, int> m;
  for (int i = 0; i < 1000; ++i) m[std::to_string(i)] = i;
  std::vector<int> v(1000);
  std::iota(v.begin(), v.end(), 0);
  std::sort(v.rbegin(), v.rend());
  const std::regex re("([0-9]+)-([a-z]+)");
  std::smatch match;
  const std::string text = "42-abc";
  std::regex_match(text, match, re);
  return std::to_string(m.size()) + ":" + std::to_string(v.front()) + ":" + match[2].str();
}

TEST(ReleaseStartupPages, AdvisesCodeMappingsAndEverythingStillRuns) {
  const std::string before = exerciseLibraries();
  EXPECT_GT(residentBytes(), 0u);
  const PageRelease r = releaseStartupPages();
  ASSERT_TRUE(r.supported) << "MADV_PAGEOUT needs Linux 5.4 or later";
  EXPECT_GT(r.mappings, 2u);  // the executable and at least libc and libstdc++
  EXPECT_GT(r.rss_before, 0u);
  EXPECT_GT(r.rss_after, 0u);
  EXPECT_EQ(exerciseLibraries(), before);
  EXPECT_EQ(before, "1000:999:abc");
  // Calling it again is harmless.
  EXPECT_TRUE(releaseStartupPages().supported);
  EXPECT_EQ(exerciseLibraries(), before);
}

}  // namespace
}  // namespace ayaflow::common
