// SPDX-License-Identifier: MIT OR Apache-2.0
// InterfaceSet with a fake attacher: selection, start-up, hot-plug and failures, no root.
#include "ayaflow/capture/interface_set.h"

#include "ayaflow/abi/event.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <stdexcept>

namespace ayaflow::capture {
namespace {

/// Records what is attached now; refuses names in `refuse_check` / `refuse_attach`.
class FakeAttacher final : public Attacher {
 public:
  class FakeAttachment final : public Attachment {
   public:
    FakeAttachment(FakeAttacher& owner, int ifindex) : owner_(owner), ifindex_(ifindex) {
      owner_.live.insert(ifindex_);
    }
    ~FakeAttachment() override { owner_.live.erase(ifindex_); }

   private:
    FakeAttacher& owner_;
    int ifindex_;
  };

  void check(const Link& link) override {
    ++checks;
    if (refuse_check.count(link.name) != 0) throw std::runtime_error(link.name + ": unsupported");
  }
  std::unique_ptr<Attachment> attach(const Link& link) override {
    ++attaches;
    if (refuse_attach.count(link.name) != 0) throw std::runtime_error(link.name + ": busy");
    return std::make_unique<FakeAttachment>(*this, link.ifindex);
  }

  void setRoles(const std::map<int, std::uint8_t>& r) override { roles = r; }

  std::set<int> live;  // ifindexes attached now
  std::map<int, std::uint8_t> roles;
  std::set<std::string> refuse_check, refuse_attach;
  int checks = 0, attaches = 0;
};

const std::vector<Link> kNode = {{1, "lo"}, {2, "eth0"}, {5, "veth1"}, {6, "veth2"}, {9, "cni0"}};

TEST(InterfaceSet, AttachesExactlyTheSelectedInterfaces) {
  FakeAttacher attacher;
  InterfaceSet set({{"eth0", "veth*"}, {"veth2"}}, attacher);
  set.start(kNode);
  EXPECT_EQ(attacher.live, (std::set<int>{2, 5}));
  EXPECT_EQ(set.attached(), 2u);
  EXPECT_EQ(set.configured(), 2u);
  ASSERT_EQ(set.attachedLinks().size(), 2u);
  EXPECT_EQ(set.attachedLinks()[1].name, "veth1");
}

TEST(InterfaceSet, AnUnsupportedInterfaceStopsStartUpBeforeAnyAttach) {
  FakeAttacher attacher;
  attacher.refuse_check = {"veth2"};
  InterfaceSet set({{"eth0", "veth*"}, {}}, attacher);
  EXPECT_THROW(set.start(kNode), std::runtime_error);
  EXPECT_EQ(attacher.attaches, 0);
  EXPECT_TRUE(attacher.live.empty());
}

TEST(InterfaceSet, AFailedAttachAtStartUpLeavesNothingAttached) {
  FakeAttacher attacher;
  attacher.refuse_attach = {"veth2"};
  InterfaceSet set({{"eth0", "veth*"}, {}}, attacher);
  EXPECT_THROW(set.start(kNode), std::runtime_error);
  EXPECT_TRUE(attacher.live.empty());
}

TEST(InterfaceSet, FollowsInterfacesThatComeAndGo) {
  FakeAttacher attacher;
  InterfaceSet set({{"veth*"}, {}}, attacher);
  set.start(kNode);
  EXPECT_EQ(attacher.live, (std::set<int>{5, 6}));
  // A pod goes away, another comes.
  set.update({{1, "lo"}, {2, "eth0"}, {6, "veth2"}, {12, "veth3"}});
  EXPECT_EQ(attacher.live, (std::set<int>{6, 12}));
  EXPECT_EQ(set.attached(), 2u);
  // Nothing changed: nothing is attached again.
  const int before = attacher.attaches;
  set.update({{1, "lo"}, {2, "eth0"}, {6, "veth2"}, {12, "veth3"}});
  EXPECT_EQ(attacher.attaches, before);
}

TEST(InterfaceSet, ANamedInterfaceDeletedAndCreatedAgainIsAttachedUnderItsNewIndex) {
  FakeAttacher attacher;
  InterfaceSet set({{"wg0"}, {}}, attacher);
  set.start({{1, "lo"}, {7, "wg0"}});
  EXPECT_EQ(attacher.live, std::set<int>{7});
  set.update({{1, "lo"}});
  EXPECT_TRUE(attacher.live.empty());
  EXPECT_EQ(set.attached(), 0u);
  EXPECT_EQ(set.configured(), 1u);  // named, so missing while gone
  set.update({{1, "lo"}, {8, "wg0"}});
  EXPECT_EQ(attacher.live, std::set<int>{8});
  EXPECT_EQ(set.attached(), 1u);
}

TEST(InterfaceSet, ARenamedInterfaceIsReleased) {
  FakeAttacher attacher;
  InterfaceSet set({{"eth0"}, {}}, attacher);
  set.start({{2, "eth0"}});
  set.update({{2, "eth9"}});
  EXPECT_TRUE(attacher.live.empty());
}

TEST(InterfaceSet, AFailedAttachIsNotRetriedUntilTheInterfaceIsNew) {
  FakeAttacher attacher;
  InterfaceSet set({{"veth*"}, {}}, attacher);
  set.start({{1, "lo"}});
  attacher.refuse_attach = {"veth1"};
  set.update({{1, "lo"}, {5, "veth1"}});
  EXPECT_EQ(attacher.attaches, 1);
  EXPECT_EQ(set.attached(), 0u);
  EXPECT_EQ(set.configured(), 1u);  // selected but not attached: shows as missing
  set.update({{1, "lo"}, {5, "veth1"}});
  EXPECT_EQ(attacher.attaches, 1);  // not again for the same interface
  attacher.refuse_attach.clear();
  set.update({{1, "lo"}, {6, "veth1"}});  // created again
  EXPECT_EQ(attacher.live, std::set<int>{6});
}

TEST(InterfaceSet, DetachAllReleasesEverythingAndStopsFollowing) {
  FakeAttacher attacher;
  InterfaceSet set({{"*"}, {"lo"}}, attacher);
  set.start(kNode);
  EXPECT_EQ(attacher.live.size(), 4u);
  set.detachAll();
  EXPECT_TRUE(attacher.live.empty());
  set.update(kNode);
  EXPECT_TRUE(attacher.live.empty());
  EXPECT_EQ(set.attached(), 0u);
}

TEST(ListLinks, ListsThisNamespacesInterfacesWithLoopback) {
  const std::vector<Link> links = listLinks();
  ASSERT_FALSE(links.empty());
  bool lo = false;
  for (const Link& l : links) lo |= l.name == "lo" && l.ifindex > 0;
  EXPECT_TRUE(lo);
}

TEST(ListAddresses, ListsThisNamespacesAddressesWithLoopbacksOnce) {
  const std::vector<flow::IpAddress> addrs = listAddresses();
  const auto has = [&](const char* text) {
    return std::count(addrs.begin(), addrs.end(), *flow::IpAddress::parse(text));
  };
  EXPECT_EQ(has("127.0.0.1"), 1);
  // Each address once, although IPv4 gives both IFA_ADDRESS and IFA_LOCAL.
  for (const flow::IpAddress& a : addrs) {
    EXPECT_EQ(std::count(addrs.begin(), addrs.end(), a), 1) << a.toString();
  }
}

TEST(CountingRoles, PodsBehindABridgeAndAnOverlayOnTheUplink) {
  // A node: uplink eth0 (default route), bridge cni0 with two pod veths, VXLAN flannel.1.
  const std::vector<Link> links = {Link(1, "lo"),
                                   Link(2, "eth0", "", 0, true),
                                   Link(3, "cni0", "bridge"),
                                   Link(4, "veth1", "veth", 3),
                                   Link(5, "veth2", "veth", 3),
                                   Link(6, "flannel.1", "vxlan"),
                                   Link(7, "docker0", "bridge")};
  const auto roles = countingRoles(links, {2, 4, 5}, true);
  const std::map<int, std::uint8_t> want = {
      {0, AYAFLOW_ROLE_REENTRY},                             // into the tunnel
      {2, AYAFLOW_ROLE_COUNT},   {3, AYAFLOW_ROLE_REENTRY},  // its ports are attached
      {4, AYAFLOW_ROLE_COUNT},   {5, AYAFLOW_ROLE_COUNT},
      {6, AYAFLOW_ROLE_REENTRY}};  // decapsulated on eth0
  EXPECT_EQ(roles, want);
  // Without decapsulation the uplink counts the tunnel's outer packets, and the inner ones
  // count again where they leave the node towards a pod.
  EXPECT_EQ(countingRoles(links, {2, 4, 5}, false).count(6), 0u);
  // Only the pods' veths: the tunnel's packets were counted nowhere before it.
  EXPECT_EQ(countingRoles(links, {4, 5}, true).count(6), 0u);
}

TEST(CountingRoles, ABridgeCountsWhenItIsAllThatIsAttached) {
  const std::vector<Link> links = {Link(2, "eth0", "", 0, true), Link(3, "docker0", "bridge"),
                                   Link(4, "veth1", "veth", 3)};
  EXPECT_EQ(countingRoles(links, {3}, true),
            (std::map<int, std::uint8_t>{{3, AYAFLOW_ROLE_COUNT}}));
  // With its ports attached too, it only passes on what they counted.
  EXPECT_EQ(countingRoles(links, {3, 4}, true),
            (std::map<int, std::uint8_t>{
                {0, AYAFLOW_ROLE_REENTRY}, {3, AYAFLOW_ROLE_OBSERVE}, {4, AYAFLOW_ROLE_COUNT}}));
}

TEST(InterfaceSet, HandsTheAttacherTheRolesAfterEveryChange) {
  FakeAttacher attacher;
  InterfaceSet set(InterfaceSelector{{"auto"}, {}}, attacher);
  set.start({Link(1, "lo"), Link(2, "eth0", "", 0, true), Link(3, "cni0", "bridge"),
             Link(4, "veth1", "veth", 3)});
  EXPECT_EQ(attacher.live, (std::set<int>{2, 4}));
  EXPECT_EQ(attacher.roles, (std::map<int, std::uint8_t>{{0, AYAFLOW_ROLE_REENTRY},
                                                         {2, AYAFLOW_ROLE_COUNT},
                                                         {3, AYAFLOW_ROLE_REENTRY},
                                                         {4, AYAFLOW_ROLE_COUNT}}));
  // The pod goes away: its veth and the bridge's role with it.
  set.update({Link(1, "lo"), Link(2, "eth0", "", 0, true), Link(3, "cni0", "bridge")});
  EXPECT_EQ(attacher.roles, (std::map<int, std::uint8_t>{{2, AYAFLOW_ROLE_COUNT}}));
}

}  // namespace
}  // namespace ayaflow::capture
