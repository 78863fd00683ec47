// SPDX-License-Identifier: MIT OR Apache-2.0
// End to end as root: bulk TCP (a real iperf3) through a veth pair with TSO off, so the
// agent's egress hook sees GSO super-packets that the kernel segments in software before
// the packets reach the wire; and the other way, with GRO on the host end, its ingress hook
// sees the peer's segments merged again. The agent must count the packets and bytes of the
// wire, as an AF_PACKET socket on the peer end sees them (the segments), exactly.
#include <gtest/gtest.h>
#include <linux/ethtool.h>
#include <net/if.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "agent_checks.h"
#include "agent_process.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

/// iperf3 -s -1 in the link's namespace, killed by PID on destruction.
class IperfServer {
 public:
  IperfServer(const VethPair& link, const std::string& bind) {
    const std::string pid_file = "/tmp/ayaflow-gso-e2e-" + std::to_string(getpid()) + ".pid";
    sh("ip netns exec " + link.ns() + " sh -c 'iperf3 -s -1 -B " + bind +
       " >/dev/null 2>&1 & echo $! > " + pid_file + "'");
    pid_ = std::stoi(shOutput("cat " + pid_file));
    shOutput("rm -f " + pid_file);
    // Listening once `ss` in the namespace shows the port.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (shOutput("ip netns exec " + link.ns() + " ss -Htln 'sport = :5201'").empty() &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
  }
  ~IperfServer() {
    if (pid_ > 0) kill(pid_, SIGKILL);
  }
  IperfServer(const IperfServer&) = delete;
  IperfServer& operator=(const IperfServer&) = delete;

 private:
  int pid_ = -1;
};

/// `ethtool -K dev gro on` (root namespace) without the tool: on a veth this also turns on
/// its NAPI receive path, so segments from the peer are merged before the ingress hook.
void groOn(const std::string& dev) { ethtoolSet(dev, ETHTOOL_SGRO, 1); }

/// Every connection of /api/live by its "a -> b" string.
std::map<std::string, json> liveConnections(AgentProcess& agent) {
  std::map<std::string, json> out;
  const json live = json::parse(agent.get("/api/live").body);
  for (const auto& c : live.at("connections")) {
    out[c.at("connection").get<std::string>()] = c.at("stats");
  }
  return out;
}

struct Wire {
  Totals sent, received;  // host -> peer, peer -> host
};

class GsoE2E : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    if (shOutput("command -v iperf3").empty()) GTEST_SKIP() << "iperf3 not installed";
  }

  /// iperf3 from the host end to the peer for 2 s over IPv4 or IPv6 (`v6`), or from the
  /// peer to the host end (`reverse`: GRO on the host end merges the segments again before
  /// its ingress hook); the agent's per-connection and total figures must equal the capture's.
  void transfer(int n, bool v6, const std::vector<std::string>& agent_args, bool reverse = false) {
    // TSO off, GSO on at both ends (VethPair): the host's egress hook sees super-packets,
    // and the capture on the peer end sees the segments that cross the link.
    VethPair link(n);
    if (reverse) groOn(link.host());
    std::vector<std::string> args = {"--interface", link.host(), "--quiet"};
    if (v6) args.push_back("--enable-ipv6");
    args.insert(args.end(), agent_args.begin(), agent_args.end());
    AgentProcess agent(args);
    agent.waitReady();
    const std::string peer = v6 ? link.peerV6() : link.peerV4();
    const std::string host = v6 ? link.hostV6() : link.hostV4();
    IperfServer server(link, peer);
    LinkCounter counter(link, v6);
    // A bounded rate keeps the capture (one recv per frame) from dropping frames; TCP still
    // builds super-packets of many segments from each 128 KiB write.
    sh("timeout 20 iperf3 -c " + peer + " -B " + host + " -t 2 -b 400M" + (v6 ? " -6" : " -4") +
       (reverse ? " -R" : ""));
    std::this_thread::sleep_for(200ms);  // the last ACKs
    const auto seen = counter.stop();
    const Totals truth = linkTotals(seen);
    ASSERT_GT(truth.packets, 10000u);

    // Per connection (iperf3's control and data connections), both directions.
    std::map<std::string, Wire> wire;
    for (const auto& [key, c] : seen) {
      const bool out = key.src == host;
      const std::string conn =
          out ? endpoint(key.src, key.sport) + " -> " + endpoint(key.dst, key.dport)
              : endpoint(key.dst, key.dport) + " -> " + endpoint(key.src, key.sport);
      Totals& t = out ? wire[conn].sent : wire[conn].received;
      t.packets += c.packets;
      t.bytes += c.bytes;
    }

    const json stats = waitForStats(agent, truth.packets);
    EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
    EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);

    std::map<std::string, json> live;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    const auto caughtUp = [&] {
      for (const auto& [conn, w] : wire) {
        auto it = live.find(conn);
        if (it == live.end() || it->second.at("packets_count").get<std::uint64_t>() <
                                    w.sent.packets + w.received.packets) {
          return false;
        }
      }
      return true;
    };
    do {
      live = liveConnections(agent);
      if (caughtUp()) break;
      std::this_thread::sleep_for(50ms);
    } while (std::chrono::steady_clock::now() < deadline);

    std::uint64_t data_packets = 0;
    for (const auto& [conn, w] : wire) {
      ASSERT_TRUE(live.count(conn)) << conn << " not in " << agent.get("/api/live").body;
      const json& s = live.at(conn);
      EXPECT_EQ(s.at("packets_count").get<std::uint64_t>(), w.sent.packets + w.received.packets)
          << conn;
      EXPECT_EQ(s.at("bytes_sent").get<std::uint64_t>(), w.sent.bytes) << conn;
      EXPECT_EQ(s.at("bytes_received").get<std::uint64_t>(), w.received.bytes) << conn;
      data_packets = std::max(data_packets, reverse ? w.received.packets : w.sent.packets);
      std::printf("%s: wire %llu+%llu packets, %llu+%llu bytes\n", conn.c_str(),
                  static_cast<unsigned long long>(w.sent.packets),
                  static_cast<unsigned long long>(w.received.packets),
                  static_cast<unsigned long long>(w.sent.bytes),
                  static_cast<unsigned long long>(w.received.bytes));
    }

    // The hook did see super-packets (egress) or GRO-merged packets (ingress): far fewer than
    // the segments they stood for.
    const std::string metrics = agent.get("/metrics").body;
    const std::string family = v6 ? "ipv6" : "ipv4";
    const std::uint64_t supers =
        metricValue(metrics, "ayaflow_interface_super_packets_total{interface=\"" + link.host() +
                                 "\",direction=\"" + (reverse ? "ingress" : "egress") +
                                 "\",protocol=\"tcp\",family=\"" + family + "\"}");
    std::printf("capture: %llu packets, %llu bytes; super-packets at %s: %llu\n",
                static_cast<unsigned long long>(truth.packets),
                static_cast<unsigned long long>(truth.bytes), reverse ? "ingress" : "egress",
                static_cast<unsigned long long>(supers));
    EXPECT_GT(supers, 0u);
    EXPECT_LT(supers, data_packets / 2);
    EXPECT_EQ(metricValue(metrics, "ayaflow_packets_total"), truth.packets);
    EXPECT_EQ(metricValue(metrics, "ayaflow_bytes_total"), truth.bytes);

    // The stored rows (raw: one per skb with packet_count = its segments; aggregated: per
    // flow and window) sum to the wire too, once a clean stop has flushed them.
    agent.signal(SIGTERM);
    ASSERT_EQ(agent.waitExit(10s), std::optional<int>(0)) << agent.log();
    const auto stored =
        queryRow(agent.dbPath(), "SELECT SUM(packet_count), SUM(length) FROM packets");
    ASSERT_EQ(stored.size(), 2u);
    EXPECT_EQ(stored[0], std::to_string(truth.packets));
    EXPECT_EQ(stored[1], std::to_string(truth.bytes));
  }
};

TEST_P(GsoE2E, IperfOverIpv4CountsWirePacketsExactly) {
  transfer(GetParam() ? 41 : 40, false,
           GetParam() ? std::vector<std::string>{"--aggregation-window", "1"}
                      : std::vector<std::string>{});
}

TEST_P(GsoE2E, IperfOverIpv6CountsWirePacketsExactly) {
  transfer(GetParam() ? 43 : 42, true,
           GetParam() ? std::vector<std::string>{"--aggregation-window", "1"}
                      : std::vector<std::string>{});
}

TEST_P(GsoE2E, GroMergedIperfOverIpv4CountsWirePacketsExactly) {
  transfer(GetParam() ? 45 : 44, false,
           GetParam() ? std::vector<std::string>{"--aggregation-window", "1"}
                      : std::vector<std::string>{},
           true);
}

TEST_P(GsoE2E, GroMergedIperfOverIpv6CountsWirePacketsExactly) {
  transfer(GetParam() ? 47 : 46, true,
           GetParam() ? std::vector<std::string>{"--aggregation-window", "1"}
                      : std::vector<std::string>{},
           true);
}

INSTANTIATE_TEST_SUITE_P(Modes, GsoE2E, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("Aggregated") : std::string("Events");
                         });

}  // namespace
}  // namespace ayaflow::test
