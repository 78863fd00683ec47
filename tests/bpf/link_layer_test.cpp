// SPDX-License-Identifier: MIT OR Apache-2.0
// Which program variant an interface gets: by its kernel link type (ARPHRD_*).
#include "ayaflow/bpf/link_layer.h"

#include <net/if_arp.h>

#include <gtest/gtest.h>

#include "ayaflow/common/system_error.h"

namespace ayaflow::bpf {
namespace {

TEST(LinkLayer, EthernetAndLoopbackCarryAnEthernetHeader) {
  EXPECT_EQ(linkLayerForType("eth0", ARPHRD_ETHER), LinkLayer::kEthernet);
  EXPECT_EQ(linkLayerForType("lo", ARPHRD_LOOPBACK), LinkLayer::kEthernet);
}

TEST(LinkLayer, TunnelsAndPointToPointLinksStartAtTheIpHeader) {
  for (const std::uint16_t type :
       {ARPHRD_NONE, ARPHRD_RAWIP, ARPHRD_PPP, ARPHRD_TUNNEL, ARPHRD_TUNNEL6, ARPHRD_SIT}) {
    EXPECT_EQ(linkLayerForType("wg0", type), LinkLayer::kIpOnly) << type;
  }
}

TEST(LinkLayer, OtherTypesAreRefusedNamingTheInterfaceAndType) {
  for (const std::uint16_t type : {ARPHRD_IPGRE, ARPHRD_INFINIBAND, ARPHRD_IEEE80211_RADIOTAP}) {
    try {
      linkLayerForType("odd0", type);
      ADD_FAILURE() << "type " << type << " accepted";
    } catch (const SystemError& e) {
      EXPECT_EQ(e.code().value(), EPROTONOSUPPORT);
      const std::string what = e.what();
      EXPECT_NE(what.find("--interface odd0: link type " + std::to_string(type)), std::string::npos)
          << what;
    }
  }
}

TEST(LinkLayer, OfTheLoopbackInterface) { EXPECT_EQ(linkLayerOf("lo"), LinkLayer::kEthernet); }

TEST(LinkLayer, MissingOrInvalidNamesAreNoSuchInterface) {
  for (const std::string name : {"ayf-no-such0", "", "a-name-longer-than-ifnamsiz"}) {
    try {
      linkLayerOf(name);
      ADD_FAILURE() << "'" << name << "' accepted";
    } catch (const SystemError& e) {
      EXPECT_EQ(e.code().value(), ENODEV) << name;
      EXPECT_NE(std::string(e.what()).find("no interface named '" + name + "'"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace ayaflow::bpf
