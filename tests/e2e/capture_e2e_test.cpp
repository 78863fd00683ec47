// SPDX-License-Identifier: MIT OR Apache-2.0
// End to end as root: the real agent attached to the host end of a veth
// pair, known traffic through it, exact counts from its HTTP API checked
// against the packets an AF_PACKET socket saw on the same link.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>
#include <vector>

#include "agent_checks.h"
#include "agent_process.h"
#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/bpf/tc_attachment.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

LinkCounter::Count linkCount(const std::map<LinkCounter::Key, LinkCounter::Count>& counts,
                             const std::string& src, std::uint16_t sport, const std::string& dst,
                             std::uint16_t dport, std::uint8_t proto) {
  auto it = counts.find(LinkCounter::Key{src, dst, sport, dport, proto});
  return it == counts.end() ? LinkCounter::Count{} : it->second;
}

/// The /api/live entry for a connection, or null.
json liveEntry(AgentProcess& agent, const std::string& connection) {
  const json live = json::parse(agent.get("/api/live").body);
  for (const auto& c : live.at("connections")) {
    if (c.at("connection") == connection) {
      return c.at("stats");
    }
  }
  return nullptr;
}

json waitForLive(AgentProcess& agent, const std::string& connection, std::uint64_t packets) {
  json entry;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    entry = liveEntry(agent, connection);
    if (!entry.is_null() && entry.at("packets_count").get<std::uint64_t>() >= packets) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return entry;
}

/// Copies of our programs on an interface: TCX links plus legacy tc filters
/// (all handles, from `tc filter show`).
int copiesAttached(int ifindex, const std::string& ifname, bool ingress) {
  int n = 0;
  for (const auto& p : bpf::listHookPrograms(ifindex, ingress)) {
    if (p.tcx && p.name.rfind("ayaflow_", 0) == 0) ++n;
  }
  // One line per filter; it names the program twice ("ayaflow_x:[id] ... name ayaflow_x").
  const std::string out = shOutput("tc filter show dev " + ifname +
                                   (ingress ? " ingress" : " egress") + " 2>/dev/null");
  std::size_t begin = 0;
  while (begin < out.size()) {
    std::size_t end = out.find('\n', begin);
    if (end == std::string::npos) end = out.size();
    if (out.substr(begin, end - begin).find("ayaflow_") != std::string::npos) ++n;
    begin = end + 1;
  }
  return n;
}

int copiesAttached(const VethPair& link, bool ingress) {
  return copiesAttached(link.hostIfindex(), link.host(), ingress);
}

class CaptureE2E : public ::testing::Test {
 protected:
  void SetUp() override { AYAFLOW_REQUIRE_ROOT(); }
};

TEST_F(CaptureE2E, UdpBothWaysExactPerConnectionAndTotals) {
  VethPair link(1);
  LinkCounter counter(link, false);
  AgentProcess agent({"--interface", link.host()});
  agent.waitReady();

  constexpr int kOut = 200, kBack = 120;
  constexpr std::size_t kOutPayload = 172, kBackPayload = 1000;
  udpExchange(link, false, 40001, 5001, kOut, kOutPayload, kBack, kBackPayload);

  const std::string conn = endpoint(link.hostV4(), 40001) + " -> " + endpoint(link.peerV4(), 5001);
  const json entry = waitForLive(agent, conn, kOut + kBack);
  ASSERT_FALSE(entry.is_null()) << agent.get("/api/live").body;
  EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), std::uint64_t{kOut + kBack});
  EXPECT_EQ(entry.at("bytes_sent").get<std::uint64_t>(), kOut * (20 + 8 + kOutPayload));
  EXPECT_EQ(entry.at("bytes_received").get<std::uint64_t>(), kBack * (20 + 8 + kBackPayload));

  const auto seen = counter.stop();
  const Totals truth = linkTotals(seen);
  EXPECT_EQ(linkCount(seen, link.hostV4(), 40001, link.peerV4(), 5001, 17).packets,
            std::uint64_t{kOut});
  const json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
  // /metrics reads the same kernel counters: its totals agree exactly.
  const HttpResult metrics = agent.get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metricValue(metrics.body, "ayaflow_packets_total"), truth.packets);
  EXPECT_EQ(metricValue(metrics.body, "ayaflow_bytes_total"), truth.bytes);
  EXPECT_EQ(metricValue(metrics.body, "ayaflow_events_read_total"), truth.packets);
  EXPECT_EQ(
      metricValue(metrics.body, "ayaflow_interface_packets_total{interface=\"" + link.host() +
                                    "\",direction=\"egress\",protocol=\"udp\",family=\"ipv4\"}"),
      [&] {
        std::uint64_t egress_udp = 0;  // every UDP packet the host end sent
        for (const auto& [key, c] : seen) {
          if (key.src == link.hostV4() && key.proto == 17) egress_udp += c.packets;
        }
        return egress_udp;
      }());
  const json health = json::parse(agent.get("/api/health").body);
  EXPECT_EQ(health.at("status"), "ok");
  EXPECT_EQ(health.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_GE(health.at("active_connections").get<std::uint64_t>(), 1u);

  agent.signal(SIGINT);  // Ctrl-C behaves like SIGTERM
  EXPECT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  // Nothing was lost, so the shutdown summary reports zero loss.
  EXPECT_NE(agent.log().find("0 lost in the ring buffer"), std::string::npos) << agent.log();
}

TEST_F(CaptureE2E, TcpExchangeMatchesTheWire) {
  VethPair link(2);
  LinkCounter counter(link, false);
  AgentProcess agent({"--interface", link.host(), "--quiet"});
  agent.waitReady();

  constexpr std::size_t kRequest = 5000, kResponse = 3000;
  int listen_fd = -1;
  link.inNamespace([&] {
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(8080);
    inet_pton(AF_INET, link.peerV4().c_str(), &a.sin_addr);
    ASSERT_EQ(bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(listen(listen_fd, 4), 0);
  });
  std::thread server([&] {
    int c = accept(listen_fd, nullptr, nullptr);
    std::string buf(kRequest, '\0');
    std::size_t got = 0;
    while (got < kRequest) {
      ssize_t r = recv(c, buf.data() + got, kRequest - got, 0);
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    std::string reply(kResponse, 'r');
    send(c, reply.data(), reply.size(), 0);
    shutdown(c, SHUT_WR);
    char tmp[64];
    while (recv(c, tmp, sizeof(tmp), 0) > 0) {
    }
    close(c);
  });
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(41000);
  inet_pton(AF_INET, link.hostV4().c_str(), &local.sin_addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)), 0);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(8080);
  inet_pton(AF_INET, link.peerV4().c_str(), &remote.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)), 0);
  std::string request(kRequest, 'q');
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(kRequest));
  std::size_t received = 0;
  char buf[4096];
  for (ssize_t r; (r = recv(fd, buf, sizeof(buf), 0)) > 0;) received += static_cast<std::size_t>(r);
  EXPECT_EQ(received, kResponse);
  close(fd);
  server.join();
  close(listen_fd);
  std::this_thread::sleep_for(300ms);  // the final ACK

  const auto seen = counter.stop();
  const auto out = linkCount(seen, link.hostV4(), 41000, link.peerV4(), 8080, 6);
  const auto back = linkCount(seen, link.peerV4(), 8080, link.hostV4(), 41000, 6);
  ASSERT_GE(out.packets, 4u);  // SYN, ACK, data, FIN at least
  ASSERT_GE(out.bytes, kRequest);
  ASSERT_GE(back.bytes, kResponse);
  const std::string conn = endpoint(link.hostV4(), 41000) + " -> " + endpoint(link.peerV4(), 8080);
  const json entry = waitForLive(agent, conn, out.packets + back.packets);
  ASSERT_FALSE(entry.is_null());
  EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), out.packets + back.packets);
  EXPECT_EQ(entry.at("bytes_sent").get<std::uint64_t>(), out.bytes);
  EXPECT_EQ(entry.at("bytes_received").get<std::uint64_t>(), back.bytes);
  const Totals truth = linkTotals(seen);
  const json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
}

TEST_F(CaptureE2E, Ipv6IgnoredWithoutTheFlag) {
  VethPair link(3);
  LinkCounter counter(link, false);  // counts IPv4 only: what the agent should count
  AgentProcess agent({"--interface", link.host(), "--quiet"});
  agent.waitReady();
  udpExchange(link, true, 40003, 5003, 50, 100, 50, 100);
  udpExchange(link, false, 40004, 5004, 10, 100, 0, 0);
  const std::string v4conn =
      endpoint(link.hostV4(), 40004) + " -> " + endpoint(link.peerV4(), 5004);
  ASSERT_FALSE(waitForLive(agent, v4conn, 10).is_null());
  const Totals truth = linkTotals(counter.stop());
  const json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
  EXPECT_TRUE(
      liveEntry(agent, endpoint(link.hostV6(), 40003) + " -> " + endpoint(link.peerV6(), 5003))
          .is_null());
}

TEST_F(CaptureE2E, Ipv6ExactWithTheFlag) {
  VethPair link(4);
  LinkCounter counter(link, true);
  AgentProcess agent({"--interface", link.host(), "--enable-ipv6", "--quiet"});
  agent.waitReady();
  constexpr int kOut = 64, kBack = 32;
  udpExchange(link, true, 40005, 5005, kOut, 300, kBack, 700);
  const std::string conn = endpoint(link.hostV6(), 40005) + " -> " + endpoint(link.peerV6(), 5005);
  const json entry = waitForLive(agent, conn, kOut + kBack);
  ASSERT_FALSE(entry.is_null()) << agent.get("/api/live").body;
  EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), std::uint64_t{kOut + kBack});
  EXPECT_EQ(entry.at("bytes_sent").get<std::uint64_t>(), kOut * (40u + 8u + 300u));
  EXPECT_EQ(entry.at("bytes_received").get<std::uint64_t>(), kBack * (40u + 8u + 700u));
  const Totals truth = linkTotals(counter.stop());
  const json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
}

TEST_F(CaptureE2E, TwoInterfacesAtOnce) {
  VethPair a(5), b(6);
  LinkCounter ca(a, false), cb(b, false);
  AgentProcess agent({"--interface", a.host() + "," + b.host(), "--quiet"});
  agent.waitReady();
  udpExchange(a, false, 40006, 5006, 30, 50, 20, 60);
  udpExchange(b, false, 40007, 5007, 40, 70, 10, 80);
  const json ea =
      waitForLive(agent, endpoint(a.hostV4(), 40006) + " -> " + endpoint(a.peerV4(), 5006), 50);
  const json eb =
      waitForLive(agent, endpoint(b.hostV4(), 40007) + " -> " + endpoint(b.peerV4(), 5007), 50);
  ASSERT_FALSE(ea.is_null());
  ASSERT_FALSE(eb.is_null());
  EXPECT_EQ(ea.at("packets_count").get<std::uint64_t>(), 50u);
  EXPECT_EQ(ea.at("bytes_sent").get<std::uint64_t>(), 30u * 78u);
  EXPECT_EQ(ea.at("bytes_received").get<std::uint64_t>(), 20u * 88u);
  EXPECT_EQ(eb.at("packets_count").get<std::uint64_t>(), 50u);
  EXPECT_EQ(eb.at("bytes_sent").get<std::uint64_t>(), 40u * 98u);
  EXPECT_EQ(eb.at("bytes_received").get<std::uint64_t>(), 10u * 108u);
  // Each connection names the interface its packets were seen on.
  const json live = json::parse(agent.get("/api/live").body);
  for (const auto& c : live.at("connections")) {
    const std::string conn = c.at("connection");
    if (conn.rfind(a.hostV4(), 0) == 0) {
      EXPECT_EQ(c.at("interface"), a.host()) << conn;
    }
    if (conn.rfind(b.hostV4(), 0) == 0) {
      EXPECT_EQ(c.at("interface"), b.host()) << conn;
    }
  }
  const Totals ta = linkTotals(ca.stop()), tb = linkTotals(cb.stop());
  const json stats = waitForStats(agent, ta.packets + tb.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), ta.packets + tb.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), ta.bytes + tb.bytes);
}

TEST_F(CaptureE2E, RingBufferOverflowIsCountedAndTotalsStayExact) {
  VethPair link(9);
  LinkCounter counter(link, false);
  // The smallest ring buffer holds 56 events. With the agent stopped, a
  // burst of 4000 overflows it for certain; the kernel keeps counting.
  AgentProcess agent({"--interface", link.host(), "--ring-buffer-size", "4096"});
  agent.waitReady();
  constexpr int kBurst = 4000;
  agent.signal(SIGSTOP);
  udpExchange(link, false, 40010, 5010, kBurst, 16, 0, 0);
  agent.signal(SIGCONT);
  const Totals truth = linkTotals(counter.stop());
  const json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
  const std::string conn = endpoint(link.hostV4(), 40010) + " -> " + endpoint(link.peerV4(), 5010);
  std::this_thread::sleep_for(200ms);  // let the reader drain what fitted
  const json entry = liveEntry(agent, conn);
  ASSERT_FALSE(entry.is_null());
  const auto recorded = entry.at("packets_count").get<std::uint64_t>();
  EXPECT_LE(recorded, 56u);

  agent.signal(SIGTERM);
  ASSERT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  // The shutdown summary accounts for every packet: read + lost == total.
  const std::string log = agent.log();
  unsigned long long packets = 0, bytes = 0, read = 0, last = 0, lost = 0, malformed = 0;
  const auto pos = log.find("stopped: ");
  ASSERT_NE(pos, std::string::npos) << log;
  ASSERT_EQ(std::sscanf(log.c_str() + pos,
                        "stopped: %llu packets, %llu bytes, %llu events read (%llu in the final "
                        "drain), %llu lost in the ring buffer, %llu malformed",
                        &packets, &bytes, &read, &last, &lost, &malformed),
            6)
      << log;
  EXPECT_EQ(packets, truth.packets);
  EXPECT_GT(lost, 0u);
  EXPECT_EQ(read + lost, packets);
  EXPECT_EQ(malformed, 0u);
  EXPECT_EQ(recorded, read);  // this flow is the only traffic that was read
}

/// A device without a link-layer header (tun; WireGuard, ipip and PPP look the same at the
/// TC hooks): the agent attaches the IP-only programs and counts both directions exactly.
void ipOnlyDeviceCountsExactly(int n, const std::vector<std::string>& extra_args) {
  TunDevice tun(n);
  std::vector<std::string> args = {"--interface", tun.name(), "--enable-ipv6"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  AgentProcess agent(args);
  agent.waitReady();
  EXPECT_NE(agent.log().find(tun.name() + " has no link-layer header"), std::string::npos)
      << agent.log();

  constexpr int kOut = 120, kBack = 80;
  constexpr std::size_t kOutPayload = 100, kBackPayload = 300;
  const auto local_port = static_cast<std::uint16_t>(41000 + n);
  const auto peer_port = static_cast<std::uint16_t>(5100 + n);
  for (const bool v6 : {false, true}) {
    const std::string local = v6 ? tun.localV6() : tun.localV4();
    const std::string peer = v6 ? tun.peerV6() : tun.peerV4();
    const int fd = udpSocket(local, local_port);
    for (int i = 0; i < kOut; ++i) {
      udpSend(fd, peer, peer_port, kOutPayload);
      tun.readSent(1);  // as it comes: the device queue is short
    }
    for (int i = 0; i < kBack; ++i) {
      tun.inject(udpPacket(peer, peer_port, local, local_port, kBackPayload));
    }
    udpReceive(fd, kBack);  // the host's stack took every injected packet
    close(fd);

    const std::string conn = endpoint(local, local_port) + " -> " + endpoint(peer, peer_port);
    const json entry = waitForLive(agent, conn, kOut + kBack);
    ASSERT_FALSE(entry.is_null()) << agent.get("/api/live").body;
    const std::uint64_t ip_udp = v6 ? 48 : 28;
    EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), std::uint64_t{kOut + kBack});
    EXPECT_EQ(entry.at("bytes_sent").get<std::uint64_t>(), kOut * (ip_udp + kOutPayload));
    EXPECT_EQ(entry.at("bytes_received").get<std::uint64_t>(), kBack * (ip_udp + kBackPayload));
  }

  const Totals truth = linkTotals(tun.counts());
  EXPECT_EQ(truth.packets, 2u * (kOut + kBack));  // no other TCP/UDP crossed the device
  const json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
  const std::string metrics = agent.get("/metrics").body;
  for (const char* family : {"ipv4", "ipv6"}) {
    const std::string labels = "{interface=\"" + tun.name() + "\",direction=\"";
    const std::string tail = "\",protocol=\"udp\",family=\"" + std::string(family) + "\"}";
    EXPECT_EQ(metricValue(metrics, "ayaflow_interface_packets_total" + labels + "egress" + tail),
              std::uint64_t{kOut});
    EXPECT_EQ(metricValue(metrics, "ayaflow_interface_packets_total" + labels + "ingress" + tail),
              std::uint64_t{kBack});
  }
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
}

TEST_F(CaptureE2E, IpOnlyDeviceExactBothWays) { ipOnlyDeviceCountsExactly(21, {}); }

TEST_F(CaptureE2E, IpOnlyDeviceExactInAggregatedMode) {
  ipOnlyDeviceCountsExactly(22, {"--aggregation-window", "1"});
}

/// An interface deleted and created again under its name (a VPN link restarted): the agent
/// says it is gone, attaches again when it is back, and counts both lives exactly.
void followsARecreatedInterface(int n, const char* mode) {
  auto tun = std::make_unique<TunDevice>(n);
  const std::string name = tun->name();
  AgentProcess agent({"--interface", name, "--attach-mode", mode});
  agent.waitReady();
  const auto exchange = [&](int out, int back) {
    const int fd = udpSocket(tun->localV4(), 40030);
    for (int i = 0; i < out; ++i) {
      udpSend(fd, tun->peerV4(), 5030, 50);
      tun->readSent(1);
    }
    for (int i = 0; i < back; ++i) {
      tun->inject(udpPacket(tun->peerV4(), 5030, tun->localV4(), 40030, 70));
    }
    udpReceive(fd, back);
    close(fd);
  };
  exchange(10, 5);
  const Totals first = linkTotals(tun->counts());
  EXPECT_EQ(waitForStats(agent, first.packets).at("total_packets").get<std::uint64_t>(),
            first.packets);

  tun.reset();  // the kernel deletes the device with its programs
  EXPECT_EQ(waitForMetric(agent, "ayaflow_interfaces_attached", 0), 0u);
  EXPECT_EQ(metricValue(agent.get("/metrics").body, "ayaflow_interfaces_configured"), 1u);
  EXPECT_NE(agent.log().find(name + " (ifindex "), std::string::npos) << agent.log();
  EXPECT_NE(agent.log().find("is gone: not capturing on it"), std::string::npos) << agent.log();

  tun = std::make_unique<TunDevice>(n);  // same name, a new ifindex
  ASSERT_EQ(waitForMetric(agent, "ayaflow_interfaces_attached", 1), 1u) << agent.log();
  exchange(20, 15);
  const Totals second = linkTotals(tun->counts());
  EXPECT_EQ(second.packets, 35u);
  const json stats = waitForStats(agent, first.packets + second.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), first.packets + second.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), first.bytes + second.bytes);
  const std::string conn = endpoint(tun->localV4(), 40030) + " -> " + endpoint(tun->peerV4(), 5030);
  const json entry = waitForLive(agent, conn, 50);
  ASSERT_FALSE(entry.is_null()) << agent.get("/api/live").body;
  EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), 50u);
  EXPECT_EQ(entry.at("bytes_sent").get<std::uint64_t>(), 30u * 78u);
  EXPECT_EQ(entry.at("bytes_received").get<std::uint64_t>(), 20u * 98u);

  agent.signal(SIGTERM);
  EXPECT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  const int ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  EXPECT_TRUE(bpf::listHookPrograms(ifindex, true).empty());  // detached from the new one
  EXPECT_TRUE(bpf::listHookPrograms(ifindex, false).empty());
}

TEST_F(CaptureE2E, RecreatedInterfaceIsFollowedWithTcx) {
  if (!bpf::kernelHasTcx()) {
    if (inCi()) GTEST_FAIL() << "CI kernel has no TCX";
    GTEST_SKIP() << "kernel has no TCX (< 6.6)";
  }
  followsARecreatedInterface(25, "tcx");
}

TEST_F(CaptureE2E, RecreatedInterfaceIsFollowedWithTc) { followsARecreatedInterface(26, "tc"); }

TEST_F(CaptureE2E, UnsupportedLinkTypeFailsWithOneLineAndAttachesNothing) {
  constexpr int kArphrdIpGre = 778;  // GRE with a header of its own: neither kind we parse
  TunDevice odd(23, kArphrdIpGre);
  AgentProcess agent({"--interface", odd.name(), "--quiet"});
  const auto code = agent.waitExit(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  const std::string log = agent.log();
  EXPECT_NE(log.find("ayaflow: error: --interface " + odd.name() + ": link type 778"),
            std::string::npos)
      << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  const int ifindex = static_cast<int>(if_nametoindex(odd.name().c_str()));
  EXPECT_TRUE(bpf::listHookPrograms(ifindex, true).empty());
  EXPECT_TRUE(bpf::listHookPrograms(ifindex, false).empty());
}

TEST_F(CaptureE2E, PortInUseFailsWithOneLineAndLeavesNothingAttached) {
  VethPair link(10);
  AgentProcess first({"--interface", link.host(), "--quiet"});
  first.waitReady();
  // A second agent on the same port: clear error, non-zero exit, and it
  // must not leave its programs behind on the way out.
  AgentProcess second(
      {"--interface", link.host(), "--quiet", "--port", std::to_string(first.port())});
  const auto code = second.waitExit(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  const std::string log = second.log();
  EXPECT_NE(log.find("ayaflow: error: "), std::string::npos) << log;
  EXPECT_NE(log.find(std::to_string(first.port())), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  EXPECT_EQ(copiesAttached(link, true), 1);
  EXPECT_EQ(copiesAttached(link, false), 1);
}

/// Rows of the agent's database for one flow and direction:
/// {rows, sum(packet_count), sum(length)}, and whether every row had the
/// expected fields.
struct StoredFlow {
  std::uint64_t rows = 0, packets = 0, bytes = 0, bad_rows = 0;
};

StoredFlow storedFlow(const std::string& db_path, const std::string& src, std::uint16_t sport,
                      const std::string& dst, std::uint16_t dport, const char* protocol,
                      const char* direction, std::int64_t expected_length) {
  sqlite3* db = nullptr;
  StoredFlow out;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "open " << db_path << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
    return out;
  }
  sqlite3_stmt* st = nullptr;
  const char* sql =
      "SELECT packet_count, length, protocol, direction, timestamp FROM packets "
      "WHERE src_ip = ? AND src_port = ? AND dst_ip = ? AND dst_port = ? AND direction = ?";
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_bind_text(st, 1, src.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 2, sport);
  sqlite3_bind_text(st, 3, dst.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 4, dport);
  sqlite3_bind_text(st, 5, direction, -1, SQLITE_TRANSIENT);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  while (sqlite3_step(st) == SQLITE_ROW) {
    const auto count = static_cast<std::uint64_t>(sqlite3_column_int64(st, 0));
    const auto length = static_cast<std::uint64_t>(sqlite3_column_int64(st, 1));
    const std::string proto = reinterpret_cast<const char*>(sqlite3_column_text(st, 2));
    const std::int64_t ts = sqlite3_column_int64(st, 4);
    out.rows += 1;
    out.packets += count;
    out.bytes += length;
    const bool fields_ok =
        proto == protocol && ts > now_ms - 120000 && ts <= now_ms &&
        (expected_length < 0 || length == count * static_cast<std::uint64_t>(expected_length));
    out.bad_rows += fields_ok ? 0 : 1;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

TEST_F(CaptureE2E, RawHistoryStoresExactlyOneRowPerPacket) {
  VethPair link(11);
  LinkCounter counter(link, false);
  AgentProcess agent({"--interface", link.host(), "--quiet"});
  agent.waitReady();
  constexpr int kOut = 300, kBack = 120;
  udpExchange(link, false, 40011, 5011, kOut, 100, kBack, 200);
  // The history route sees them too, newest first: one row per packet with its timestamp,
  // direction, protocol, addresses, ports and IP length.
  json rows;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    std::this_thread::sleep_for(200ms);
    rows = json::parse(agent.get("/api/history?port=5011&limit=1000").body);
  } while (rows.size() < std::size_t{kOut + kBack} && std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(rows.size(), std::size_t{kOut + kBack});
  EXPECT_GE(rows.front().at("timestamp").get<std::int64_t>(),
            rows.back().at("timestamp").get<std::int64_t>());
  std::size_t egress = 0;
  for (const auto& r : rows) {
    EXPECT_EQ(r.at("protocol"), "UDP");
    EXPECT_EQ(r.at("packet_count"), 1);
    if (r.at("direction") == "egress") {
      ++egress;
      EXPECT_EQ(r.at("src_ip"), link.hostV4());
      EXPECT_EQ(r.at("src_port"), 40011);
      EXPECT_EQ(r.at("dst_ip"), link.peerV4());
      EXPECT_EQ(r.at("length"), 128);
    } else {
      EXPECT_EQ(r.at("direction"), "ingress");
      EXPECT_EQ(r.at("src_ip"), link.peerV4());
      EXPECT_EQ(r.at("dst_port"), 40011);
      EXPECT_EQ(r.at("length"), 228);
    }
  }
  EXPECT_EQ(egress, std::size_t{kOut});

  const Totals truth = linkTotals(counter.stop());
  agent.signal(SIGTERM);
  ASSERT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  const StoredFlow out =
      storedFlow(agent.dbPath(), link.hostV4(), 40011, link.peerV4(), 5011, "UDP", "egress", 128);
  const StoredFlow back =
      storedFlow(agent.dbPath(), link.peerV4(), 5011, link.hostV4(), 40011, "UDP", "ingress", 228);
  EXPECT_EQ(out.rows, std::uint64_t{kOut});
  EXPECT_EQ(out.packets, std::uint64_t{kOut});
  EXPECT_EQ(out.bad_rows, 0u);
  EXPECT_EQ(back.rows, std::uint64_t{kBack});
  EXPECT_EQ(back.bad_rows, 0u);
  // Every packet the kernel counted is a row: nothing dropped on the way.
  EXPECT_EQ(queryRow(agent.dbPath(), "SELECT COUNT(*), SUM(length) FROM packets"),
            (std::vector<std::string>{std::to_string(truth.packets), std::to_string(truth.bytes)}));
}

TEST_F(CaptureE2E, AggregatedHistoryKeepsExactTotals) {
  VethPair link(12);
  LinkCounter counter(link, false);
  AgentProcess agent({"--interface", link.host(), "--quiet", "--aggregation-window", "1"});
  agent.waitReady();
  constexpr int kOut = 500, kBack = 250;
  udpExchange(link, false, 40012, 5012, kOut, 60, kBack, 90);

  // Aggregated mode counts flows in the kernel and collects them once a second:
  // the live view is exact without a single per-packet event.
  const std::string conn = endpoint(link.hostV4(), 40012) + " -> " + endpoint(link.peerV4(), 5012);
  const json entry = waitForLive(agent, conn, kOut + kBack);
  ASSERT_FALSE(entry.is_null()) << agent.get("/api/live").body;
  EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), std::uint64_t{kOut + kBack});
  EXPECT_EQ(entry.at("bytes_sent").get<std::uint64_t>(), kOut * 88u);
  EXPECT_EQ(entry.at("bytes_received").get<std::uint64_t>(), kBack * 118u);
  const Totals truth = linkTotals(counter.stop());
  waitForStats(agent, truth.packets);
  std::string metrics;
  for (int i = 0; i < 50; ++i) {  // the flow table is collected once a second
    metrics = agent.get("/metrics").body;
    if (metricValue(metrics, "ayaflow_flow_table_packets_total") == truth.packets) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(metricValue(metrics, "ayaflow_flow_table_packets_total"), truth.packets);
  EXPECT_EQ(metricValue(metrics, "ayaflow_packets_total"), truth.packets);
  EXPECT_EQ(metricValue(metrics, "ayaflow_events_read_total"), 0u);
  EXPECT_EQ(metricValue(metrics, "ayaflow_flow_table_overflow_total"), 0u);

  agent.signal(SIGTERM);  // closes the open windows
  ASSERT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  const StoredFlow out =
      storedFlow(agent.dbPath(), link.hostV4(), 40012, link.peerV4(), 5012, "UDP", "egress", 88);
  const StoredFlow back =
      storedFlow(agent.dbPath(), link.peerV4(), 5012, link.hostV4(), 40012, "UDP", "ingress", 118);
  EXPECT_EQ(out.packets, std::uint64_t{kOut});
  EXPECT_EQ(out.bytes, std::uint64_t{kOut} * 88u);
  EXPECT_EQ(back.packets, std::uint64_t{kBack});
  EXPECT_EQ(back.bytes, std::uint64_t{kBack} * 118u);
  EXPECT_EQ(out.bad_rows + back.bad_rows, 0u);
  // One row per flow per one-second window: far fewer rows than packets.
  EXPECT_GE(out.rows, 1u);
  EXPECT_LE(out.rows, 10u);
}

/// A background process started in a namespace (dnsmasq, openssl s_server);
/// killed by PID on destruction.
class NsProcess {
 public:
  NsProcess(const VethPair& link, const std::string& command) {
    const std::string pid_file =
        "/tmp/ayaflow-e2e-" + std::to_string(getpid()) + "-" + std::to_string(counter_++) + ".pid";
    sh("ip netns exec " + link.ns() + " sh -c '" + command + " >/dev/null 2>&1 & echo $! > " +
       pid_file + "'");
    pid_ = std::stoi(shOutput("cat " + pid_file));
    shOutput("rm -f " + pid_file);
  }
  ~NsProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
    }
  }

 private:
  static inline int counter_ = 0;
  int pid_ = -1;
};

/// Connects from the host end to peer:port (a listener in the namespace),
/// sends `bytes`, closes.
void tcpSend(const VethPair& link, std::uint16_t port, std::size_t bytes) {
  int listen_fd = -1;
  link.inNamespace([&] {
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, link.peerV4().c_str(), &a.sin_addr);
    if (bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        listen(listen_fd, 1) != 0) {
      throw std::runtime_error("listen in namespace");
    }
  });
  std::thread server([&] {
    int c = accept(listen_fd, nullptr, nullptr);
    char buf[4096];
    while (recv(c, buf, sizeof(buf), 0) > 0) {
    }
    close(c);
  });
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(port);
  inet_pton(AF_INET, link.peerV4().c_str(), &remote.sin_addr);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)), 0);
  const std::string data(bytes, 'd');
  EXPECT_EQ(send(fd, data.data(), data.size(), 0), static_cast<ssize_t>(bytes));
  close(fd);
  server.join();
  close(listen_fd);
}

/// Domain of a live connection whose string contains `needle`, or "".
std::string liveDomain(AgentProcess& agent, const std::string& needle) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    const json live = json::parse(agent.get("/api/live").body);
    for (const auto& c : live.at("connections")) {
      if (c.at("connection").get<std::string>().find(needle) != std::string::npos &&
          c.contains("domain")) {
        return c.at("domain").get<std::string>();
      }
    }
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return "";
}

/// Deep inspection with real clients and servers in the namespace.
class DeepInspectE2E : public CaptureE2E {
 protected:
  void startTlsServer(const VethPair& link) {
    dir_ = shOutput("mktemp -d /tmp/ayaflow-tls-XXXXXX");
    dir_.erase(dir_.find_last_not_of('\n') + 1);
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=example.test -keyout " + dir_ +
       "/key.pem -out " + dir_ + "/cert.pem");
    server_ = std::make_unique<NsProcess>(link, "exec openssl s_server -quiet -accept " +
                                                    link.peerV4() + ":443 -cert " + dir_ +
                                                    "/cert.pem -key " + dir_ + "/key.pem -www");
    std::this_thread::sleep_for(500ms);
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) shOutput("rm -rf " + dir_);
  }
  /// A real TLS handshake from the host end with SNI `name`.
  void tlsClient(const VethPair& link, const std::string& name, const std::string& extra = "") {
    shOutput("echo | timeout 10 openssl s_client -connect " + link.peerV4() + ":443 -servername " +
             name + " " + extra + " 2>&1");
  }
  std::string dir_;
  std::unique_ptr<NsProcess> server_;
};

TEST_F(DeepInspectE2E, DnsAnswerNamesALaterTcpConnection) {
  VethPair link(13);
  NsProcess dns(link,
                "exec dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces "
                "--listen-address=" +
                    link.peerV4() + " --address=/shop.example.test/" + link.peerV4());
  AgentProcess agent({"--interface", link.host(), "--quiet", "--deep-inspect"});
  agent.waitReady();
  std::this_thread::sleep_for(300ms);  // dnsmasq up
  const std::string answer =
      shOutput("dig +short +time=2 +tries=3 @" + link.peerV4() + " shop.example.test");
  ASSERT_EQ(answer, link.peerV4() + "\n");
  tcpSend(link, 8080, 1000);
  EXPECT_EQ(liveDomain(agent, "-> " + link.peerV4() + ":8080"), "shop.example.test");
  // /api/history shows it on the stored rows (written within the 2 s batch interval).
  json rows;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    std::this_thread::sleep_for(200ms);
    rows = json::parse(agent.get("/api/history?port=8080&direction=egress").body);
  } while (rows.empty() && std::chrono::steady_clock::now() < deadline);
  ASSERT_FALSE(rows.empty());
  for (const auto& r : rows) {
    EXPECT_EQ(r.value("domain", ""), "shop.example.test") << r.dump();
  }
  const std::string metrics_text = agent.get("/metrics").body;
  EXPECT_GE(metricValue(metrics_text, "ayaflow_domains_resolved_total"), 1u);
  EXPECT_GE(metricValue(metrics_text, "ayaflow_deep_inspect_packets_total"), 2u);
  EXPECT_EQ(metricValue(metrics_text, "ayaflow_deep_inspect_events_lost_total"), 0u);
  agent.signal(SIGTERM);
  ASSERT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  // The stored rows of that connection carry the name too.
  const auto named = queryRow(agent.dbPath(),
                              "SELECT COUNT(*), COUNT(domain), MIN(domain) FROM packets WHERE "
                              "dst_port = 8080 AND direction = 'egress'");
  ASSERT_EQ(named.size(), 3u);
  EXPECT_GT(std::stoi(named[0]), 0);
  EXPECT_EQ(named[0], named[1]);  // every row has a domain
  EXPECT_EQ(named[2], "shop.example.test");
}

TEST_F(DeepInspectE2E, TlsSniFromOpenSslClients) {
  VethPair link(14);
  startTlsServer(link);
  AgentProcess agent({"--interface", link.host(), "--quiet", "--deep-inspect"});
  agent.waitReady();
  tlsClient(link, "www.example.test");
  EXPECT_EQ(liveDomain(agent, "-> " + link.peerV4() + ":443"), "www.example.test");
}

TEST_F(DeepInspectE2E, InterleavedConnectionsToOneServerEachKeepTheirOwnSni) {
  VethPair link(57);
  startTlsServer(link);
  AgentProcess agent({"--interface", link.host(), "--quiet", "--deep-inspect"});
  agent.waitReady();
  // Three connections from fixed ports to one address:443, all open at once: each hello
  // is seen while the earlier connections are still live, and each connection's
  // closing packets come after every hello.
  const std::vector<std::pair<std::uint16_t, std::string>> clients = {
      {41001, "a.example.test"}, {41002, "b.example.test"}, {41003, "c.example.test"}};
  std::vector<std::thread> running;
  for (const auto& [port, name] : clients) {
    running.emplace_back([&link, port = port, name = name] {
      shOutput("sleep 3 | timeout 10 openssl s_client -bind " + link.hostV4() + ":" +
               std::to_string(port) + " -connect " + link.peerV4() + ":443 -servername " + name +
               " 2>&1");
    });
    const std::string connection = link.hostV4() + ":" + std::to_string(port) + " -> ";
    EXPECT_EQ(liveDomain(agent, connection), name);  // named before the next one starts
  }
  for (const auto& [port, name] : clients) {
    EXPECT_EQ(liveDomain(agent, link.hostV4() + ":" + std::to_string(port) + " -> "), name);
  }
  for (auto& t : running) t.join();
  for (const auto& [port, name] : clients) {  // still after they all closed
    EXPECT_EQ(liveDomain(agent, link.hostV4() + ":" + std::to_string(port) + " -> "), name);
  }
  agent.signal(SIGTERM);
  ASSERT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  // Every stored row of each connection, both directions, carries its own SNI, except rows
  // handed to the database before the ClientHello was seen (the SYN's, if a batch was handed
  // over in the millisecond between them): those are earlier than every named row.
  for (const auto& [port, name] : clients) {
    const std::string p = std::to_string(port);
    const std::string conn = "((src_port = " + p + " AND dst_port = 443) OR (src_port = 443 AND " +
                             "dst_port = " + p + "))";
    const auto named = queryRow(
        agent.dbPath(),
        "SELECT COUNT(*), COUNT(domain), MIN(domain), MAX(domain), (SELECT COUNT(*) FROM packets "
        "WHERE " +
            conn +
            " AND domain IS NULL AND timestamp >= (SELECT MIN(timestamp) FROM "
            "packets WHERE " +
            conn + " AND domain IS NOT NULL)) FROM packets WHERE " + conn);
    ASSERT_EQ(named.size(), 5u);
    EXPECT_GE(std::stoi(named[0]), 6) << port;  // handshake, data and close both ways
    EXPECT_GE(std::stoi(named[1]), std::stoi(named[0]) - 2) << port;  // all but the SYN's
    EXPECT_EQ(named[2], name);
    EXPECT_EQ(named[3], name);
    EXPECT_EQ(named[4], "0") << port << ": a row after the hello without its name";
  }
}

TEST_F(DeepInspectE2E, EachClientGetsTheNameItsOwnLookupReturned) {
  VethPair link(58);
  const std::string prefix = link.hostV4().substr(0, link.hostV4().rfind('.') + 1);
  const std::string one = link.hostV4(), two = prefix + "3", three = prefix + "4";
  sh("ip addr add " + two + "/24 dev " + link.host());
  sh("ip addr add " + three + "/24 dev " + link.host());
  NsProcess dns(link,
                "exec dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces "
                "--listen-address=" +
                    link.peerV4() + " --address=/one.example.test/" + link.peerV4() +
                    " --address=/two.example.test/" + link.peerV4());
  startTlsServer(link);  // a listener on :443; the clients below send no hello
  AgentProcess agent({"--interface", link.host(), "--quiet", "--deep-inspect"});
  agent.waitReady();
  // Two clients ask for different names of one address.
  ASSERT_EQ(shOutput("dig +short +time=2 +tries=3 -b " + one + " @" + link.peerV4() +
                     " one.example.test"),
            link.peerV4() + "\n");
  ASSERT_EQ(shOutput("dig +short +time=2 +tries=3 -b " + two + " @" + link.peerV4() +
                     " two.example.test"),
            link.peerV4() + "\n");
  // Plain TCP connections (no ClientHello) from each client and from one that asked nothing.
  for (const auto& [from, port] :
       std::vector<std::pair<std::string, int>>{{one, 42001}, {two, 42002}, {three, 42003}}) {
    shOutput("timeout 5 curl -s --max-time 1 --interface " + from + " --local-port " +
             std::to_string(port) + " telnet://" + link.peerV4() + ":443 </dev/null 2>&1");
  }
  EXPECT_EQ(liveDomain(agent, one + ":42001 -> "), "one.example.test");
  EXPECT_EQ(liveDomain(agent, two + ":42002 -> "), "two.example.test");
  EXPECT_EQ(liveDomain(agent, three + ":42003 -> "), "two.example.test");  // the latest answer
}

TEST_F(DeepInspectE2E, SniPastByte256) {
  VethPair link(15);
  startTlsServer(link);
  AgentProcess agent({"--interface", link.host(), "--quiet", "--deep-inspect"});
  agent.waitReady();
  // Every cipher suite: the server_name extension starts past byte 256.
  tlsClient(link, "big.example.test", "-cipher 'ALL:@SECLEVEL=0'");
  EXPECT_EQ(liveDomain(agent, "-> " + link.peerV4() + ":443"), "big.example.test");
}

TEST_F(DeepInspectE2E, ClientHelloSplitOverTwoSegments) {
  VethPair link(16);
  // MTU 1280 and one segment per skb: a 1.4 KB ClientHello (an 8192-bit
  // FFDHE key share) leaves the host as two TCP segments.
  sh("ip link set " + link.host() + " mtu 1280 gso_max_segs 1");
  sh("ip -n " + link.ns() + " link set " + link.peer() + " mtu 1280 gso_max_segs 1");
  startTlsServer(link);
  LinkCounter counter(link, false);
  AgentProcess agent({"--interface", link.host(), "--quiet", "--deep-inspect"});
  agent.waitReady();
  tlsClient(link, "split.example.test", "-groups ffdhe8192");
  EXPECT_EQ(liveDomain(agent, "-> " + link.peerV4() + ":443"), "split.example.test");
  // The hello really crossed as more than one data segment: the client sent
  // over 1400 bytes before the server's first flight in packets <= 1280.
  std::uint64_t client_packets = 0, client_bytes = 0;
  for (const auto& [key, c] : counter.stop()) {
    if (key.dport == 443 && key.src == link.hostV4()) {
      client_packets += c.packets;
      client_bytes += c.bytes;
    }
  }
  EXPECT_GE(client_bytes, 1400u);
  EXPECT_GE(client_packets, 4u);  // SYN, ACK, >= 2 hello segments
}

TEST_F(DeepInspectE2E, ReverseDnsNamesLiveEntriesAndStoredRows) {
  VethPair link(17);
  // A DNS server with a PTR record for the peer, used by the agent only: it
  // runs in its own mount namespace with a resolv.conf pointing there.
  NsProcess dns(link,
                "exec dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces "
                "--listen-address=" +
                    link.peerV4() +
                    " --ptr-record=2.17.213.10.in-addr.arpa,"
                    "peer.example.test");
  dir_ = shOutput("mktemp -d /tmp/ayaflow-rdns-XXXXXX");
  dir_.erase(dir_.find_last_not_of('\n') + 1);
  sh("echo 'nameserver " + link.peerV4() + "' > " + dir_ + "/resolv.conf");
  AgentProcess agent(
      {"--interface", link.host(), "--quiet", "--resolve-dns"},
      {"unshare", "-m", "sh", "-c",
       "mount --bind " + dir_ + "/resolv.conf /etc/resolv.conf && exec \"$0\" \"$@\""});
  agent.waitReady();
  std::this_thread::sleep_for(300ms);
  udpExchange(link, false, 40017, 5017, 5, 10, 0, 0);
  // The first look at the connection starts the lookup; a later one has it.
  std::string hostname;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (hostname.empty() && std::chrono::steady_clock::now() < deadline) {
    const json live = json::parse(agent.get("/api/live").body);
    for (const auto& c : live.at("connections")) {
      if (c.contains("remote_hostname")) hostname = c.at("remote_hostname").get<std::string>();
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(hostname, "peer.example.test");
  udpExchange(link, false, 40018, 5018, 5, 10, 0, 0);  // rows written after the lookup
  agent.signal(SIGTERM);
  ASSERT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  EXPECT_EQ(queryRow(agent.dbPath(),
                     "SELECT COUNT(*) FROM packets WHERE src_port = 40018 AND "
                     "dst_hostname = 'peer.example.test'"),
            std::vector<std::string>{"5"});
}

TEST_F(DeepInspectE2E, StuckReverseLookupDoesNotHoldUpTheExit) {
  VethPair link(24);
  // A DNS server that takes queries and never answers: a UDP socket nobody reads.
  int silent = -1;
  link.inNamespace([&] { silent = udpSocket(link.peerV4(), 53); });
  dir_ = shOutput("mktemp -d /tmp/ayaflow-rdns-XXXXXX");
  dir_.erase(dir_.find_last_not_of('\n') + 1);
  sh("printf 'nameserver " + link.peerV4() + "\\noptions timeout:30 attempts:1\\n' > " + dir_ +
     "/resolv.conf");
  AgentProcess agent(
      {"--interface", link.host(), "--resolve-dns"},
      {"unshare", "-m", "sh", "-c",
       "mount --bind " + dir_ + "/resolv.conf /etc/resolv.conf && exec \"$0\" \"$@\""});
  agent.waitReady();
  udpExchange(link, false, 40024, 5024, 3, 10, 0, 0);
  // The first look at the connection starts the lookup; its query reaching the silent
  // server means a worker now waits 30 s for the system resolver.
  const std::string conn = endpoint(link.hostV4(), 40024) + " -> " + endpoint(link.peerV4(), 5024);
  ASSERT_FALSE(waitForLive(agent, conn, 3).is_null());
  pollfd query{silent, POLLIN, 0};
  ASSERT_EQ(poll(&query, 1, 10000), 1) << "no DNS query reached the server";

  agent.signal(SIGTERM);
  ASSERT_EQ(agent.waitExit(5s), std::optional<int>(0)) << agent.log();
  EXPECT_NE(agent.log().find("reverse DNS: a lookup is still waiting for the system resolver"),
            std::string::npos)
      << agent.log();
  EXPECT_EQ(queryRow(agent.dbPath(), "SELECT COUNT(*) FROM packets WHERE src_port = 40024"),
            std::vector<std::string>{"3"});
  close(silent);
}

/// Parameter: attach mode, optionally with "+caps": the agent then runs with
/// only the capabilities the DaemonSet grants (BPF, NET_ADMIN, PERFMON).
class AttachLifecycle : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    if (mode() == "tcx" && !bpf::kernelHasTcx()) {
      if (inCi()) GTEST_FAIL() << "CI kernel has no TCX";
      GTEST_SKIP() << "kernel has no TCX (< 6.6)";
    }
  }
  std::string mode() const {
    const std::string p = GetParam();
    return p.substr(0, p.find('+'));
  }
  std::vector<std::string> args(const VethPair& link) const {
    return {"--interface", link.host(), "--attach-mode", mode(), "--quiet"};
  }
  std::vector<std::string> prefix() const {
    if (std::string(GetParam()).find("+caps") == std::string::npos) return {};
    return {"setpriv",    "--bounding-set", "-all,+bpf,+net_admin,+perfmon",
            "--inh-caps", "-all",           "--"};
  }
};

TEST_P(AttachLifecycle, SigtermDetachesOnlyOurselvesWithinTwoSeconds) {
  VethPair link(7);
  // Someone else's programs on the same hooks (a CNI, say): a TCX link and a
  // legacy tc filter at another handle/priority, held by this test process.
  bpf::installLibbpfLogger(false);
  bpf::BpfProgram foreign(bpf::ProgramOptions{});
  std::optional<bpf::TcAttachment> foreign_tcx;
  if (bpf::kernelHasTcx()) {
    foreign_tcx.emplace(link.host(), foreign.ingressProgramFd(), foreign.egressProgramFd(),
                        bpf::HookMode::kTcx);
  }
  sh("tc qdisc add dev " + link.host() + " clsact");
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = link.hostIfindex(), .attach_point = BPF_TC_INGRESS);
  LIBBPF_OPTS(bpf_tc_opts, other, .prog_fd = foreign.ingressProgramFd(), .handle = 0x77,
              .priority = 7);
  ASSERT_EQ(bpf_tc_attach(&hook, &other), 0);
  const int baseline_in = copiesAttached(link, true);
  const int baseline_out = copiesAttached(link, false);

  AgentProcess agent(args(link), prefix());
  agent.waitReady();
  EXPECT_EQ(copiesAttached(link, true), baseline_in + 1);
  EXPECT_EQ(copiesAttached(link, false), baseline_out + 1);
  udpExchange(link, false, 40008, 5008, 10, 10, 10, 10);

  const auto start = std::chrono::steady_clock::now();
  agent.signal(SIGTERM);
  const auto code = agent.waitExit(5s);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(code, std::optional<int>(0)) << agent.log();
  EXPECT_LT(took, 2s);
  EXPECT_EQ(copiesAttached(link, true), baseline_in);
  EXPECT_EQ(copiesAttached(link, false), baseline_out);
  // The other filter and the qdisc it lives on are still there.
  LIBBPF_OPTS(bpf_tc_opts, query, .handle = 0x77, .priority = 7);
  EXPECT_EQ(bpf_tc_query(&hook, &query), 0);
  EXPECT_NE(shOutput("tc qdisc show dev " + link.host()).find("clsact"), std::string::npos);
  if (foreign_tcx) {
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    ASSERT_EQ(bpf_obj_get_info_by_fd(foreign.ingressProgramFd(), &info, &len), 0);
    bool present = false;
    for (const auto& p : bpf::listHookPrograms(link.hostIfindex(), true)) {
      present |= p.tcx && p.id == info.id;
    }
    EXPECT_TRUE(present) << "the other TCX program was detached";
  }
}

TEST_P(AttachLifecycle, SigkillThenRestartLeavesExactlyOneCopy) {
  VethPair link(8);
  {
    AgentProcess first(args(link), prefix());
    first.waitReady();
    first.signal(SIGKILL);
    EXPECT_EQ(first.waitExit(5s), std::optional<int>(128 + SIGKILL));
  }
  // A TCX link dies with its process; a tc filter outlives it.
  const int orphans = mode() == "tcx" ? 0 : 1;
  EXPECT_EQ(copiesAttached(link, true), orphans);
  EXPECT_EQ(copiesAttached(link, false), orphans);

  LinkCounter counter(link, false);
  AgentProcess second(args(link), prefix());
  second.waitReady();
  EXPECT_EQ(copiesAttached(link, true), 1);
  EXPECT_EQ(copiesAttached(link, false), 1);
  udpExchange(link, false, 40009, 5009, 25, 40, 25, 40);
  const std::string conn = endpoint(link.hostV4(), 40009) + " -> " + endpoint(link.peerV4(), 5009);
  const json entry = waitForLive(second, conn, 50);
  ASSERT_FALSE(entry.is_null());
  EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), 50u);  // one copy: counted once
  const Totals truth = linkTotals(counter.stop());
  const json stats = waitForStats(second, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);

  second.signal(SIGTERM);
  EXPECT_EQ(second.waitExit(5s), std::optional<int>(0)) << second.log();
  EXPECT_EQ(copiesAttached(link, true), 0);
  EXPECT_EQ(copiesAttached(link, false), 0);
}

/// A device without a link-layer header runs the IP-only programs. Killed in tc mode, the
/// agent leaves their filters behind; the restart (in the parameter's mode) must recognise
/// them as ours by the name the kernel kept (at most 15 characters), replace or remove them,
/// and count every packet once.
TEST_P(AttachLifecycle, SigkillOnAnIpOnlyDeviceThenRestartLeavesExactlyOneCopy) {
  TunDevice tun(27);
  const int ifindex = static_cast<int>(if_nametoindex(tun.name().c_str()));
  ASSERT_GT(ifindex, 0);
  {
    AgentProcess first({"--interface", tun.name(), "--attach-mode", "tc", "--quiet"}, prefix());
    first.waitReady();
    first.signal(SIGKILL);
    EXPECT_EQ(first.waitExit(5s), std::optional<int>(128 + SIGKILL));
  }
  EXPECT_EQ(copiesAttached(ifindex, tun.name(), true), 1);  // the orphaned tc filters
  EXPECT_EQ(copiesAttached(ifindex, tun.name(), false), 1);

  AgentProcess second({"--interface", tun.name(), "--attach-mode", mode(), "--quiet"}, prefix());
  second.waitReady();
  EXPECT_EQ(copiesAttached(ifindex, tun.name(), true), 1);
  EXPECT_EQ(copiesAttached(ifindex, tun.name(), false), 1);
  constexpr int kOut = 12, kBack = 8;
  const int fd = udpSocket(tun.localV4(), 40031);
  for (int i = 0; i < kOut; ++i) {
    udpSend(fd, tun.peerV4(), 5031, 50);
    tun.readSent(1);
  }
  for (int i = 0; i < kBack; ++i) {
    tun.inject(udpPacket(tun.peerV4(), 5031, tun.localV4(), 40031, 70));
  }
  udpReceive(fd, kBack);
  close(fd);
  const std::string conn = endpoint(tun.localV4(), 40031) + " -> " + endpoint(tun.peerV4(), 5031);
  const json entry = waitForLive(second, conn, kOut + kBack);
  ASSERT_FALSE(entry.is_null()) << second.get("/api/live").body;
  EXPECT_EQ(entry.at("packets_count").get<std::uint64_t>(), std::uint64_t{kOut + kBack});
  EXPECT_EQ(entry.at("bytes_sent").get<std::uint64_t>(), kOut * 78u);
  EXPECT_EQ(entry.at("bytes_received").get<std::uint64_t>(), kBack * 98u);
  const Totals truth = linkTotals(tun.counts());
  EXPECT_EQ(truth.packets, std::uint64_t{kOut + kBack});
  const json stats = waitForStats(second, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);

  second.signal(SIGTERM);
  EXPECT_EQ(second.waitExit(5s), std::optional<int>(0)) << second.log();
  EXPECT_EQ(copiesAttached(ifindex, tun.name(), true), 0);
  EXPECT_EQ(copiesAttached(ifindex, tun.name(), false), 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, AttachLifecycle,
                         ::testing::Values("tcx", "tc", "tcx+caps", "tc+caps"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '+', '_');
                           return name;
                         });

}  // namespace
}  // namespace ayaflow::test
