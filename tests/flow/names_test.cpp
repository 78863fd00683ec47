// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/flow/names.h"

#include <gtest/gtest.h>

namespace ayaflow::flow {
namespace {

TEST(Names, Directions) {
  EXPECT_STREQ(directionName(Direction::kIngress), "ingress");
  EXPECT_STREQ(directionName(Direction::kEgress), "egress");
  EXPECT_EQ(parseDirection("Egress"), Direction::kEgress);
  EXPECT_EQ(parseDirection("INGRESS"), Direction::kIngress);
  EXPECT_FALSE(parseDirection("in"));
  EXPECT_FALSE(parseDirection(""));
}

TEST(Names, ProtocolsAsStoredAndAsQueried) {
  EXPECT_EQ(protocolColumn(6), "TCP");
  EXPECT_EQ(protocolColumn(17), "UDP");
  EXPECT_EQ(protocolColumn(1), "IP(1)");
  EXPECT_EQ(protocolColumn(255), "IP(255)");
  char buf[kMaxProtocolText];
  EXPECT_EQ(formatProtocol(132, buf), 7u);
  EXPECT_STREQ(buf, "IP(132)");
  EXPECT_EQ(parseProtocol("tcp"), 6);
  EXPECT_EQ(parseProtocol("UdP"), 17);
  EXPECT_EQ(parseProtocol("6"), 6);
  EXPECT_EQ(parseProtocol("17"), 17);
  EXPECT_FALSE(parseProtocol("icmp"));
  EXPECT_FALSE(parseProtocol("06"));
}

TEST(Names, MetricLabels) {
  EXPECT_STREQ(directionLabel(0), "ingress");
  EXPECT_STREQ(directionLabel(1), "egress");
  EXPECT_STREQ(directionLabel(7), "other");
  EXPECT_STREQ(protocolLabel(6), "tcp");
  EXPECT_STREQ(protocolLabel(17), "udp");
  EXPECT_STREQ(protocolLabel(0), "other");
  EXPECT_STREQ(familyLabel(4), "ipv4");
  EXPECT_STREQ(familyLabel(6), "ipv6");
  EXPECT_STREQ(familyLabel(0), "other");
}

}  // namespace
}  // namespace ayaflow::flow
