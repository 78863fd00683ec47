// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/interface_selector.h"

#include <gtest/gtest.h>

namespace ayaflow::capture {
namespace {

TEST(InterfaceSelector, NamesMatchExactly) {
  const InterfaceSelector s{{"eth0", "eth1"}, {}};
  EXPECT_TRUE(s.matches("eth0"));
  EXPECT_TRUE(s.matches("eth1"));
  EXPECT_FALSE(s.matches("eth10"));
  EXPECT_FALSE(s.matches("eth"));
  EXPECT_EQ(s.names(), (std::vector<std::string>{"eth0", "eth1"}));
}

TEST(InterfaceSelector, ShellPatternsMatchLikeFnmatch) {
  const InterfaceSelector s{{"veth*", "cali?", "lxc[0-9]", "eth0"}, {}};
  EXPECT_TRUE(s.matches("veth"));
  EXPECT_TRUE(s.matches("veth1a2b3c"));
  EXPECT_TRUE(s.matches("cali1"));
  EXPECT_FALSE(s.matches("cali12"));
  EXPECT_TRUE(s.matches("lxc7"));
  EXPECT_FALSE(s.matches("lxca"));
  EXPECT_FALSE(s.matches("aveth0"));
  EXPECT_EQ(s.names(), std::vector<std::string>{"eth0"});
}

TEST(InterfaceSelector, ExclusionsWinOverInclusions) {
  const InterfaceSelector s{{"*"}, {"lo", "docker*"}};
  EXPECT_TRUE(s.matches("eth0"));
  EXPECT_FALSE(s.matches("lo"));
  EXPECT_FALSE(s.matches("docker0"));
  const InterfaceSelector named{{"eth0"}, {"eth*"}};
  EXPECT_FALSE(named.matches("eth0"));  // even a name is excluded
}

TEST(InterfaceSelector, WildcardCharactersMakeAPattern) {
  EXPECT_TRUE(InterfaceSelector::isPattern("veth*"));
  EXPECT_TRUE(InterfaceSelector::isPattern("eth?"));
  EXPECT_TRUE(InterfaceSelector::isPattern("eth[01]"));
  EXPECT_FALSE(InterfaceSelector::isPattern("eth0"));
  EXPECT_FALSE(InterfaceSelector{}.matches("eth0"));  // nothing included
}

}  // namespace
}  // namespace ayaflow::capture
