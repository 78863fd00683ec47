// SPDX-License-Identifier: MIT OR Apache-2.0
// Why traffic is slow or failing, end to end: the real agent inside namespace a of a link with
// a fixed delay (tests/support/delay_relay.h), attached to a's veth, with every TCP health hook
// on. Connection states, the handshake RTT and the kernel's smoothed RTT through a
// 10 ms-each-way relay; retransmissions under nftables loss against the sender's own
// TcpRetransSegs; refused, reset and unanswered connections; drops with the kernel's reason
// against nftables counters and UdpRcvbufErrors; the same figures in /api/live, the history
// rows and /metrics. Every hook switched off: the figures and their metrics are absent.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "agent_checks.h"
#include "agent_process.h"
#include "delay_relay.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

/// One link and one agent for the suite: starting them costs seconds, each test uses its own
/// ports.
class TcpHealthE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    link_ = new DelayedLink(10ms);
    // No attribution budget: other tests' floods of dropped packets must not take this
    // agent's, or the exact per-flow drop counts below would depend on them.
    agent_ = new AgentProcess({"--interface", link_->devA(), "--aggregation-window", "1",
                               "--connection-timeout", "600", "--drop-flow-budget", "0", "--quiet"},
                              {"ip", "netns", "exec", link_->nsA()}, link_->nsA());
    agent_->waitReady();
  }
  static void TearDownTestSuite() {
    delete agent_;
    agent_ = nullptr;
    delete link_;
    link_ = nullptr;
  }
  void SetUp() override { AYAFLOW_REQUIRE_ROOT(); }

  /// The /api/live stats of a's connection to (or from) b's `b_port`, once `done` holds for
  /// them (polled up to `timeout`); the last seen (or null) otherwise.
  static json waitForConnection(std::uint16_t b_port, const std::function<bool(const json&)>& done,
                                std::chrono::milliseconds timeout = 10s) {
    const std::string remote = " -> " + endpoint(link_->v4B(), b_port);
    const std::string local = endpoint(link_->v4B(), b_port) + " -> ";
    json last;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    do {
      const json live = json::parse(agent_->get("/api/live").body);
      for (const auto& c : live.at("connections")) {
        const std::string name = c.at("connection").get<std::string>();
        if (name.find(remote) == std::string::npos && name.rfind(local, 0) != 0) continue;
        last = c.at("stats");
        if (done(last)) return last;
      }
      std::this_thread::sleep_for(100ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return last;
  }

  static std::uint64_t metric(const std::string& series) {
    return metricValue(agent_->get("/metrics").body, series);
  }

  static inline DelayedLink* link_ = nullptr;
  static inline AgentProcess* agent_ = nullptr;
};

std::uint32_t u32(const json& stats, const char* key) {
  return stats.contains(key) ? stats.at(key).get<std::uint32_t>() : 0;
}

std::string text(const json& stats, const char* key) {
  return stats.contains(key) ? stats.at(key).get<std::string>() : std::string();
}

// Request/response rounds through the relay, so the kernel samples the RTT of both sockets.
void pingPong(int a, int b, int rounds) {
  char byte = 'x';
  for (int i = 0; i < rounds; ++i) {
    ASSERT_EQ(send(a, &byte, 1, 0), 1);
    ASSERT_EQ(recv(b, &byte, 1, MSG_WAITALL), 1);
    ASSERT_EQ(send(b, &byte, 1, 0), 1);
    ASSERT_EQ(recv(a, &byte, 1, MSG_WAITALL), 1);
  }
}

// 10 ms each way through the relay: 20 ms, plus what the relay thread and the stacks add.
void expectAbout20ms(std::uint32_t us, const char* what) {
  EXPECT_GE(us, 19500u) << what;
  EXPECT_LE(us, 26000u) << what;
}

TEST_F(TcpHealthE2E, HandshakeAndSmoothedRttOfOutgoingAndIncomingConnections) {
  const std::uint64_t established = metric("ayaflow_tcp_connections_total{result=\"established\"}");
  // Outgoing: a connects to b (SYN leaves a, SYN-ACK comes back).
  int listener = -1, client = -1;
  link_->inB([&] { listener = tcpListen(link_->v4B(), 7001); });
  link_->inA([&] { client = tcpConnect(link_->v4B(), 7001); });
  const int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  pingPong(client, server, 20);
  json out = waitForConnection(7001, [](const json& s) {
    return text(s, "state") == "established" && u32(s, "handshake_rtt_us") != 0 &&
           u32(s, "srtt_us") != 0;
  });
  std::printf("outgoing: %s\n", out.dump().c_str());
  expectAbout20ms(u32(out, "handshake_rtt_us"), "handshake, outgoing");
  expectAbout20ms(u32(out, "srtt_us"), "smoothed, a's socket");
  EXPECT_EQ(text(out, "rtt_kind"), "smoothed");
  EXPECT_EQ(u32(out, "rtt_us"), u32(out, "srtt_us"));
  EXPECT_EQ(text(out, "tcp_flags_sent").rfind("SYN|", 0), 0u) << out.dump();
  EXPECT_NE(text(out, "tcp_flags_received").find("SYN-ACK"), std::string::npos);
  EXPECT_EQ(u32(out, "retransmits"), 0u);

  // Incoming: b connects to a (SYN-ACK leaves a, the ACK comes back).
  int listener_a = -1, client_b = -1;
  link_->inA([&] { listener_a = tcpListen(link_->v4A(), 7002); });
  link_->inB([&] { client_b = tcpConnect(link_->v4A(), 7002); });
  const int server_a = accept(listener_a, nullptr, nullptr);
  ASSERT_GE(server_a, 0);
  const std::uint16_t b_port = localPort(client_b);
  pingPong(client_b, server_a, 20);
  json in = waitForConnection(b_port, [](const json& s) {
    return u32(s, "handshake_rtt_us") != 0 && u32(s, "srtt_us") != 0;
  });
  std::printf("incoming: %s\n", in.dump().c_str());
  expectAbout20ms(u32(in, "handshake_rtt_us"), "handshake, incoming");
  expectAbout20ms(u32(in, "srtt_us"), "smoothed, a's accepted socket");
  EXPECT_EQ(text(in, "state"), "established");

  // An orderly close: FIN both ways.
  close(client);
  close(server);
  out = waitForConnection(7001, [](const json& s) { return text(s, "state") == "closed"; });
  EXPECT_EQ(text(out, "state"), "closed");
  EXPECT_EQ(metric("ayaflow_tcp_connections_total{result=\"established\"}"), established + 2);
  // Both handshakes in the histogram.
  EXPECT_GE(metric("ayaflow_tcp_rtt_seconds_count{kind=\"handshake\"}"), 2u);
  EXPECT_GE(metric("ayaflow_tcp_rtt_seconds_count{kind=\"smoothed\"}"), 2u);
  close(server_a);
  close(client_b);
  close(listener);
  close(listener_a);
}

TEST_F(TcpHealthE2E, RetransmissionsEqualTheSendersTcpRetransSegs) {
  const std::uint64_t before = snmpCounter(link_->nsA(), "Tcp", "RetransSegs");
  const std::uint64_t before_b = snmpCounter(link_->nsB(), "Tcp", "RetransSegs");
  const std::uint64_t metric_before = metric("ayaflow_tcp_retransmits_total");
  int listener = -1, client = -1;
  link_->inB([&] { listener = tcpListen(link_->v4B(), 7003); });
  link_->inA([&] { client = tcpConnect(link_->v4B(), 7003); });
  const int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  // Loss after the sender's own transmit: b's input drops 3 % of a's data segments (not its
  // pure ACKs, so b never has to retransmit: both sockets are on this node, and a
  // connection's retransmissions are those of its sockets here).
  nftIn(link_->nsB(),
        "table inet ayae2eloss {\n"
        "  counter lost {}\n"
        "  chain input {\n"
        "    type filter hook input priority 0;\n"
        "    tcp dport 7003 ip length > 100 numgen random mod 100 < 3 counter name lost drop\n"
        "  }\n"
        "}\n");
  constexpr std::size_t kTotal = 4u << 20;
  std::thread sender([&] {
    std::vector<char> chunk(64 * 1024, 'y');
    std::size_t left = kTotal;
    while (left > 0) {
      const ssize_t n = send(client, chunk.data(), std::min(left, chunk.size()), 0);
      if (n <= 0) break;
      left -= static_cast<std::size_t>(n);
    }
    shutdown(client, SHUT_WR);
  });
  std::vector<char> buf(256 * 1024);
  std::size_t received = 0;
  for (;;) {
    const ssize_t n = recv(server, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    received += static_cast<std::size_t>(n);
  }
  sender.join();
  ASSERT_EQ(received, kTotal);
  // b's answer acknowledges a's FIN: once a has it, a has nothing left to retransmit.
  char byte = 'z';
  ASSERT_EQ(send(server, &byte, 1, 0), 1);
  ASSERT_EQ(recv(client, &byte, 1, MSG_WAITALL), 1);
  const std::uint64_t kernel = snmpCounter(link_->nsA(), "Tcp", "RetransSegs") - before;
  ASSERT_GT(kernel, 0u) << "3 % loss made no retransmission";
  EXPECT_EQ(snmpCounter(link_->nsB(), "Tcp", "RetransSegs"), before_b);
  const json stats =
      waitForConnection(7003, [&](const json& s) { return u32(s, "retransmits") >= kernel; });
  std::printf(
      "retransmitted segments: agent %u, a's TcpRetransSegs delta %llu, nft lost %llu\n",
      u32(stats, "retransmits"), static_cast<unsigned long long>(kernel),
      static_cast<unsigned long long>(nftCounterPackets(link_->nsB(), "ayae2eloss", "lost")));
  EXPECT_EQ(u32(stats, "retransmits"), kernel);
  // The probe's total is node-wide: at least this connection's.
  EXPECT_GE(metric("ayaflow_tcp_retransmits_total") - metric_before, kernel);
  // The history rows (aggregated per second) sum to the same, once their windows are written.
  const std::string sql =
      "SELECT coalesce(sum(retransmits), 0) FROM packets WHERE protocol = 'TCP' AND "
      "((src_port = 7003 AND dst_ip = '" +
      link_->v4A() + "') OR dst_port = 7003)";
  std::string rows;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    rows = queryRow(agent_->dbPath(), sql).at(0);
    if (rows == std::to_string(kernel)) break;
    std::this_thread::sleep_for(200ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(rows, std::to_string(kernel));
  nftIn(link_->nsB(), "delete table inet ayae2eloss\n");
  close(client);
  close(server);
  close(listener);
}

TEST_F(TcpHealthE2E, RefusedResetAndUnansweredConnections) {
  const auto count = [](const char* result) {
    return metric(std::string("ayaflow_tcp_connections_total{result=\"") + result + "\"}");
  };
  const std::uint64_t refused = count("refused"), reset = count("reset"),
                      unanswered = count("unanswered");
  // Refused: nothing listens on b's port 7010; b answers the SYN with RST.
  link_->inA([&] { EXPECT_THROW(tcpConnect(link_->v4B(), 7010), std::exception); });
  json s = waitForConnection(7010, [](const json& j) { return text(j, "state") == "refused"; });
  EXPECT_EQ(text(s, "state"), "refused") << s.dump();

  // Reset: b's server accepts, then aborts (SO_LINGER 0 sends RST instead of FIN).
  int listener = -1, client = -1;
  link_->inB([&] { listener = tcpListen(link_->v4B(), 7011); });
  link_->inA([&] { client = tcpConnect(link_->v4B(), 7011); });
  const int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  const linger abort_now{1, 0};
  setsockopt(server, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now);
  close(server);
  s = waitForConnection(7011, [](const json& j) { return text(j, "state") == "reset"; });
  EXPECT_EQ(text(s, "state"), "reset") << s.dump();

  // Unanswered: b drops SYNs to port 7012; a retries after a second.
  nftIn(link_->nsB(),
        "table inet ayae2esyn {\n"
        "  chain input {\n"
        "    type filter hook input priority 0;\n"
        "    tcp dport 7012 drop\n"
        "  }\n"
        "}\n");
  int pending = -1;
  link_->inA([&] {
    pending = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(7012);
    inet_pton(AF_INET, link_->v4B().c_str(), &to.sin_addr);
    connect(pending, reinterpret_cast<sockaddr*>(&to), sizeof to);
  });
  s = waitForConnection(7012, [](const json& j) { return text(j, "state") == "unanswered"; });
  EXPECT_EQ(text(s, "state"), "unanswered") << s.dump();
  EXPECT_EQ(u32(s, "handshake_rtt_us"), 0u);

  EXPECT_EQ(count("refused"), refused + 1);
  EXPECT_EQ(count("reset"), reset + 1);
  EXPECT_EQ(count("unanswered"), unanswered + 1);
  // The rows say so too: the history can be filtered by state.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  json rows;
  do {
    rows = json::parse(agent_->get("/api/history?state=refused&port=7010").body);
    if (!rows.empty()) break;
    std::this_thread::sleep_for(200ms);
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_FALSE(rows.empty());
  for (const auto& r : rows) EXPECT_EQ(r.at("state"), "refused");
  EXPECT_EQ(agent_->get("/api/history?state=bogus").status, 400);
  nftIn(link_->nsB(), "delete table inet ayae2esyn\n");
  close(pending);
  close(client);
  close(listener);
}

TEST_F(TcpHealthE2E, DropsWithTheKernelsReasonMatchNftablesAndUdpRcvbufErrors) {
  // nftables drops every datagram to b's port 7020: exactly kSent drops of that flow.
  nftIn(link_->nsB(),
        "table inet ayae2edrop {\n"
        "  counter dropped {}\n"
        "  chain input {\n"
        "    type filter hook input priority 0;\n"
        "    udp dport 7020 counter name dropped drop\n"
        "  }\n"
        "}\n");
  const std::uint64_t netfilter_before = metric("ayaflow_drops_total{reason=\"NETFILTER_DROP\"}");
  constexpr int kSent = 25;
  int fd = -1;
  link_->inA([&] {
    fd = udpSocket(link_->v4A(), 0);
    for (int i = 0; i < kSent; ++i) udpSend(fd, link_->v4B(), 7020, 100);
  });
  json s = waitForConnection(7020, [](const json& j) { return u32(j, "drops") >= kSent; });
  EXPECT_EQ(nftCounterPackets(link_->nsB(), "ayae2edrop", "dropped"),
            static_cast<std::uint64_t>(kSent));
  EXPECT_EQ(u32(s, "drops"), static_cast<std::uint32_t>(kSent)) << s.dump();
  EXPECT_EQ(text(s, "drop_reason"), "NETFILTER_DROP");
  EXPECT_FALSE(s.contains("state"));  // UDP
  const std::uint64_t netfilter = metric("ayaflow_drops_total{reason=\"NETFILTER_DROP\"}");
  EXPECT_NE(netfilter, UINT64_MAX);
  EXPECT_GE(netfilter - (netfilter_before == UINT64_MAX ? 0 : netfilter_before),
            static_cast<std::uint64_t>(kSent));
  close(fd);

  // A receiver that never reads, with a small buffer: the kernel's own count of what did not
  // fit is the agent's, with the socket-buffer reason.
  const std::uint64_t before = snmpCounter(link_->nsB(), "Udp", "RcvbufErrors");
  int receiver = -1;
  link_->inB([&] {
    receiver = udpSocket(link_->v4B(), 7021);
    const int size = 2048;
    setsockopt(receiver, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  });
  link_->inA([&] {
    fd = udpSocket(link_->v4A(), 0);
    for (int i = 0; i < 200; ++i) udpSend(fd, link_->v4B(), 7021, 1000);
  });
  std::uint64_t kernel = 0;
  s = waitForConnection(7021, [&](const json& j) {
    kernel = snmpCounter(link_->nsB(), "Udp", "RcvbufErrors") - before;
    return kernel > 0 && u32(j, "drops") == kernel;
  });
  std::this_thread::sleep_for(1500ms);  // one more collection: nothing is still on its way
  s = waitForConnection(7021, [](const json&) { return true; });
  kernel = snmpCounter(link_->nsB(), "Udp", "RcvbufErrors") - before;
  std::printf("rcvbuf drops: agent %u, UdpRcvbufErrors delta %llu\n", u32(s, "drops"),
              static_cast<unsigned long long>(kernel));
  EXPECT_GT(kernel, 100u);
  EXPECT_EQ(u32(s, "drops"), kernel);
  EXPECT_EQ(text(s, "drop_reason"), "SOCKET_RCVBUFF");
  // The rows of the flow sum to the same.
  std::string rows;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    rows = queryRow(agent_->dbPath(),
                    "SELECT coalesce(sum(drops), 0) FROM packets WHERE dst_port = 7021")
               .at(0);
    if (rows == std::to_string(kernel)) break;
    std::this_thread::sleep_for(200ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(rows, std::to_string(kernel));
  for (const char* probe : {"rtt", "retransmits", "drops"}) {
    EXPECT_EQ(metric(std::string("ayaflow_health_probe_up{probe=\"") + probe + "\"}"), 1u) << probe;
  }
  nftIn(link_->nsB(), "delete table inet ayae2edrop\n");
  close(fd);
  close(receiver);
}

// Every hook off: no state, RTT, retransmissions or drops, and none of their metrics.
TEST_F(TcpHealthE2E, EveryHookSwitchedOffLeavesTheFiguresAndMetricsOut) {
  AgentProcess off({"--interface", link_->devA(), "--tcp-state=false", "--tcp-rtt=false",
                    "--tcp-retransmits=false", "--drop-reasons=false", "--quiet"},
                   {"ip", "netns", "exec", link_->nsA()}, link_->nsA());
  off.waitReady();
  int listener = -1, client = -1;
  link_->inB([&] { listener = tcpListen(link_->v4B(), 7030); });
  link_->inA([&] { client = tcpConnect(link_->v4B(), 7030); });
  const int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  pingPong(client, server, 3);
  json stats;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  do {
    const json live = json::parse(off.get("/api/live").body);
    for (const auto& c : live.at("connections")) {
      if (c.at("connection").get<std::string>().find(":7030") != std::string::npos) {
        stats = c.at("stats");
      }
    }
    if (!stats.is_null() && stats.at("packets_count").get<std::uint64_t>() >= 9) break;
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_FALSE(stats.is_null());
  EXPECT_FALSE(stats.contains("state")) << stats.dump();
  EXPECT_FALSE(stats.contains("rtt_us"));
  EXPECT_FALSE(stats.contains("retransmits"));
  EXPECT_FALSE(stats.contains("drops"));
  const std::string metrics = off.get("/metrics").body;
  for (const char* family :
       {"ayaflow_tcp_connections_total", "ayaflow_tcp_rtt_seconds", "ayaflow_tcp_retransmits_total",
        "ayaflow_drops_total", "ayaflow_health_probe_up"}) {
    EXPECT_EQ(metrics.find(std::string("\n") + family), std::string::npos) << family;
  }
  close(client);
  close(server);
  close(listener);
}

}  // namespace
}  // namespace ayaflow::test
