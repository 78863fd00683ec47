// SPDX-License-Identifier: MIT OR Apache-2.0
// NameTable: which pod, or the node, an address names at a given time (unit tier).
#include "ayaflow/k8s/name_table.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ayaflow::k8s {
namespace {

flow::IpAddress ip(const char* text) { return *flow::IpAddress::parse(text); }

std::shared_ptr<const enrich::PodName> pod(const std::string& ns, const std::string& name) {
  return std::make_shared<const enrich::PodName>(enrich::PodName{ns, name, name, "Pod"});
}

flow::FlowKey key(const char* local, const char* remote) {
  flow::FlowKey k;
  k.local = ip(local);
  k.remote = ip(remote);
  k.local_port = 40000;
  k.remote_port = 80;
  k.protocol = 6;
  return k;
}

TEST(NameTable, NamesNothingBeforeAnIndexIsPublished) {
  NameTable table;
  enrich::ConnectionNames names;
  table.enrich(key("10.1.0.2", "10.1.0.3"), 1000, names);
  EXPECT_TRUE(names.empty());
}

TEST(NameTable, NamesBothEndsByPodAndTheNodeByItsAddresses) {
  auto index = std::make_shared<NameIndex>();
  const auto web = pod("shop", "web-0");
  const auto db = pod("shop", "db-0");
  index->pods[ip("10.1.0.2")].push_back({web, 1000});
  index->pods[ip("fd00::2")].push_back({web, 1000});
  index->pods[ip("10.1.0.3")].push_back({db, 1000});
  index->node_addresses.insert(ip("192.168.1.10"));
  index->node = std::make_shared<const std::string>("node-a");
  NameTable table;
  table.publish(index);

  enrich::ConnectionNames names;
  table.enrich(key("10.1.0.2", "10.1.0.3"), 5000, names);
  ASSERT_TRUE(names.local.pod && names.remote.pod);
  EXPECT_EQ(names.local.pod->pod, "web-0");
  EXPECT_EQ(names.remote.pod->pod, "db-0");
  EXPECT_FALSE(names.local.node);

  enrich::ConnectionNames v6;
  table.enrich(key("fd00::2", "192.168.1.10"), 5000, v6);
  ASSERT_TRUE(v6.local.pod);
  EXPECT_EQ(v6.local.pod.get(), web.get());  // shared, not copied
  EXPECT_FALSE(v6.remote.pod);
  ASSERT_TRUE(v6.remote.node);
  EXPECT_EQ(*v6.remote.node, "node-a");

  enrich::ConnectionNames elsewhere;  // another node's pod, the internet: never guessed
  table.enrich(key("10.2.0.7", "93.184.216.34"), 5000, elsewhere);
  EXPECT_TRUE(elsewhere.empty());
}

TEST(NameTable, AReusedAddressNamesEachConnectionByThePodOfItsTime) {
  auto index = std::make_shared<NameIndex>();
  const auto old_pod = pod("shop", "web-0");
  const auto new_pod = pod("shop", "web-1");
  index->pods[ip("10.1.0.2")].push_back({old_pod, 10'000, 20'000});
  index->pods[ip("10.1.0.2")].push_back({new_pod, 21'000});
  NameTable table;
  table.publish(index);
  const auto at = [&](std::int64_t ms) {
    enrich::ConnectionNames names;
    table.enrich(key("10.1.0.2", "10.1.0.9"), ms, names);
    return names.local.pod ? names.local.pod->pod : std::string("-");
  };
  EXPECT_EQ(at(15'000), "web-0");  // the old pod's connection keeps its name
  EXPECT_EQ(at(20'000), "web-0");  // until the watcher saw it gone
  EXPECT_EQ(at(20'500), "web-1");  // no pod held it: the one created within the clock slack
  EXPECT_EQ(at(30'000), "web-1");
  EXPECT_EQ(at(8'000), "-");  // before any pod held it
  EXPECT_EQ(at(0), "web-1");  // time unknown: the latest
}

TEST(NameTable, AnEndAlreadyNamedBySourceEarlierInTheChainKeepsItsName) {
  auto index = std::make_shared<NameIndex>();
  index->pods[ip("10.1.0.2")].push_back({pod("shop", "web-0"), 0});
  NameTable table;
  table.publish(index);
  enrich::ConnectionNames names;
  const auto earlier = pod("other", "x");
  names.local.pod = earlier;
  table.enrich(key("10.1.0.2", "10.1.0.3"), 100, names);
  EXPECT_EQ(names.local.pod.get(), earlier.get());
}

}  // namespace
}  // namespace ayaflow::k8s
