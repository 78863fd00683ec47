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

TEST(InterfaceSelector, AutoSelectsPodInterfacesAndUplinks) {
  const InterfaceSelector s{{"auto"}, {"veth-skip*"}};
  EXPECT_TRUE(s.hasAuto());
  EXPECT_TRUE(s.names().empty());       // `auto` is not an interface name
  EXPECT_FALSE(s.matches("veth1234"));  // by name alone, `auto` selects nothing
  EXPECT_TRUE(s.selects(Link(5, "veth1234", "veth")));
  EXPECT_TRUE(s.selects(Link(6, "cali0a1b2c", "veth")));
  EXPECT_TRUE(s.selects(Link(7, "lxc12ab", "veth")));
  EXPECT_TRUE(s.selects(Link(2, "ens5", "", 0, true)));  // the uplink: a default route
  EXPECT_TRUE(s.selects(Link(3, "bond0", "bond", 0, true)));
  EXPECT_FALSE(s.selects(Link(4, "ens6", "")));  // a NIC without a default route
  EXPECT_FALSE(s.selects(Link(8, "cni0", "bridge")));
  EXPECT_FALSE(s.selects(Link(9, "flannel.1", "vxlan")));
  EXPECT_FALSE(s.selects(Link(10, "vethbr", "bridge")));    // a bridge, whatever its name
  EXPECT_FALSE(s.selects(Link(11, "veth-skip1", "veth")));  // excluded
  Link lo(1, "lo", "", 0, true);
  lo.loopback = true;
  EXPECT_FALSE(s.selects(lo));
}

TEST(InterfaceSelector, AutoAndNamesCombine) {
  const InterfaceSelector s{{"auto", "cni0"}, {}};
  EXPECT_TRUE(s.selects(Link(8, "cni0", "bridge")));  // named explicitly
  EXPECT_EQ(s.names(), std::vector<std::string>{"cni0"});
}

}  // namespace
}  // namespace ayaflow::capture
