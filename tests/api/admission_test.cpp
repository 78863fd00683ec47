// SPDX-License-Identifier: MIT OR Apache-2.0
// Connection admission without sockets (unit tier): pools, per-client caps, eviction of the
// longest-waiting connection, the reserve, stopping.
#include "admission.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

namespace ayaflow::api::detail {
namespace {

class FakeConnection : public Connection {
 public:
  void closeFromServer() override { ++closed; }
  int closed = 0;
};

PeerKey peer(std::uint8_t last) {
  PeerKey key{};
  key[15] = last;
  return key;
}

/// Admits connections and keeps them alive, as the listener's sessions would be.
struct Harness {
  explicit Harness(AdmissionLimits limits) : admission(limits) {}

  Pool admit(const PeerKey& from, std::shared_ptr<Connection>* victim = nullptr) {
    auto conn = std::make_shared<FakeConnection>();
    std::shared_ptr<Connection> evicted;
    const Pool pool = admission.admit(conn.get(), conn, from, evicted);
    if (victim != nullptr) *victim = evicted;
    conns.push_back(conn);
    // Distinct admission times, so that "longest waiting" is well defined.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return pool;
  }

  Admission admission;
  std::vector<std::shared_ptr<FakeConnection>> conns;
};

TEST(Admission, ReserveIsAtMostAQuarterOfTheConnections) {
  EXPECT_EQ(Admission({8, 0, 16}).reserveCapacity(), 2u);
  EXPECT_EQ(Admission({8, 0, 16}).generalCapacity(), 6u);
  EXPECT_EQ(Admission({100, 0, 3}).reserveCapacity(), 3u);
  EXPECT_EQ(Admission({100, 0, 3}).generalCapacity(), 97u);
  EXPECT_EQ(Admission({1, 0, 1}).generalCapacity(), 1u);
}

TEST(Admission, FullGeneralPoolEvictsTheLongestWaiting) {
  Harness h({4, 0, 0});
  for (std::uint8_t i = 0; i < 4; ++i) EXPECT_EQ(h.admit(peer(i)), Pool::kGeneral);
  // The first is busy: the second has waited longest.
  h.admission.setState(h.conns[0].get(), ConnState::kBusy);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  h.admission.setState(h.conns[2].get(), ConnState::kWaiting);  // restarts its clock
  std::shared_ptr<Connection> victim;
  EXPECT_EQ(h.admit(peer(9), &victim), Pool::kGeneral);
  EXPECT_EQ(victim, h.conns[1]);
  EXPECT_EQ(h.admission.evicted(), 1u);
  // The victim stopped counting at once but stays registered until it goes away.
  EXPECT_EQ(h.admission.activeCount(), 5u);
  h.admission.unregisterSession(h.conns[1].get());
  EXPECT_EQ(h.admission.activeCount(), 4u);
}

TEST(Admission, BusyConnectionsGoToTheReserveThenAreRejected) {
  Harness h({8, 0, 2});  // general 6, reserve 2
  for (std::uint8_t i = 0; i < 6; ++i) {
    ASSERT_EQ(h.admit(peer(i)), Pool::kGeneral);
    h.admission.setState(h.conns.back().get(), ConnState::kBusy);
  }
  EXPECT_EQ(h.admit(peer(7)), Pool::kReserve);
  EXPECT_EQ(h.admit(peer(7)), Pool::kReserve);
  EXPECT_EQ(h.admit(peer(7)), Pool::kRejected);
  EXPECT_EQ(h.admission.evicted(), 0u);
  // A reserve slot that is released makes room in the reserve only.
  h.admission.unregisterSession(h.conns[6].get());
  EXPECT_EQ(h.admit(peer(7)), Pool::kReserve);
}

TEST(Admission, ClientOverItsCapPaysWithItsOwnOldest) {
  Harness h({100, 2, 0});
  EXPECT_EQ(h.admit(peer(1)), Pool::kGeneral);
  EXPECT_EQ(h.admit(peer(2)), Pool::kGeneral);
  EXPECT_EQ(h.admit(peer(1)), Pool::kGeneral);
  std::shared_ptr<Connection> victim;
  EXPECT_EQ(h.admit(peer(1), &victim), Pool::kGeneral);
  EXPECT_EQ(victim, h.conns[0]);  // peer 1's oldest, not peer 2's
  // When all of the client's connections are busy it gets no general slot.
  for (const auto& c : h.conns) h.admission.setState(c.get(), ConnState::kBusy);
  victim.reset();
  EXPECT_EQ(h.admit(peer(1), &victim), Pool::kRejected);  // no reserve configured
  EXPECT_EQ(victim, nullptr);
}

TEST(Admission, PinnedWebSocketsAreNeverEvicted) {
  Harness h({2, 0, 0});
  ASSERT_EQ(h.admit(peer(1)), Pool::kGeneral);
  ASSERT_EQ(h.admit(peer(2)), Pool::kGeneral);
  auto ws = std::make_shared<FakeConnection>();
  ASSERT_TRUE(h.admission.transfer(h.conns[0].get(), ws.get(), ws));
  h.admission.unregisterSession(h.conns[0].get());  // the HTTP session's slot moved: no-op
  EXPECT_EQ(h.admission.activeCount(), 2u);
  std::shared_ptr<Connection> victim;
  EXPECT_EQ(h.admit(peer(3), &victim), Pool::kGeneral);
  EXPECT_EQ(victim, h.conns[1]);
}

TEST(Admission, StoppingRefusesAdmissionAndTransfer) {
  Harness h({4, 0, 1});
  ASSERT_EQ(h.admit(peer(1)), Pool::kGeneral);
  h.admission.setStopping();
  EXPECT_EQ(h.admit(peer(1)), Pool::kStopping);
  auto ws = std::make_shared<FakeConnection>();
  EXPECT_FALSE(h.admission.transfer(h.conns[0].get(), ws.get(), ws));
  EXPECT_EQ(h.admission.liveSessions().size(), 1u);
}

TEST(Admission, LiveSessionsSkipsConnectionsAlreadyGone) {
  Harness h({4, 0, 0});
  ASSERT_EQ(h.admit(peer(1)), Pool::kGeneral);
  ASSERT_EQ(h.admit(peer(1)), Pool::kGeneral);
  h.conns.pop_back();  // destroyed without unregistering yet
  EXPECT_EQ(h.admission.liveSessions().size(), 1u);
  EXPECT_EQ(h.admission.activeCount(), 2u);
}

}  // namespace
}  // namespace ayaflow::api::detail
