// SPDX-License-Identifier: MIT OR Apache-2.0
// End to end as root: the agent's packets and bytes against a ground truth taken on the very
// device it is attached to, for an HTTP download from a real web server (nginx, curl) and
// for iperf3, over IPv4 and IPv6, with the agent's device sending the bulk data (its egress
// hook sees GSO super-packets) or receiving it (GRO on: its ingress hook sees merged packets).
//
// Two offload settings. TSO off (the VethPair default): the kernel segments in software
// before the device's capture tap, so the tap of the sender sees wire-sized segments.
// Offloads on (TSO, GSO, GRO): the taps see super-packets, the same buffers as the agent's
// hooks. Either way the truth comes from AF_PACKET sockets with PACKET_VNET_HDR (WireCounter)
// on both ends of the veth, which expand every buffer into the segments it stands for from
// its own headers and segment size; both ends must agree with each other, and the agent with
// them, exactly: totals, each connection's figures, the stored rows, and the number of
// buffers that stood for several packets wherever the tap sees the hook's buffers.
#include <fcntl.h>
#include <linux/ethtool.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent_checks.h"
#include "agent_process.h"
#include "netns.h"
#include "root_guard.h"
#include "wire_counter.h"

extern char** environ;

namespace ayaflow::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Counts = std::map<LinkCounter::Key, LinkCounter::Count>;

// ---- The expansion itself, on hand-made headers (no root needed). ----

/// An IPv4 (or IPv6) TCP header pair with `options` bytes of TCP options and an IP length
/// covering `payload` bytes: the first bytes of a captured buffer.
std::vector<std::uint8_t> tcpHeaders(bool v6, std::size_t options, std::size_t payload) {
  const std::size_t ip = v6 ? 40 : 20, tcp = 20 + options;
  std::vector<std::uint8_t> b(ip + tcp, 0);
  const std::size_t len = v6 ? tcp + payload : ip + tcp + payload;
  if (v6) {
    b[0] = 0x60;
    b[4] = static_cast<std::uint8_t>(len >> 8);
    b[5] = static_cast<std::uint8_t>(len);
    b[6] = 6;
    b[8] = 0xfd;
    b[23] = 1;
    b[24] = 0xfd;
    b[39] = 2;
  } else {
    b[0] = 0x45;
    b[2] = static_cast<std::uint8_t>(len >> 8);
    b[3] = static_cast<std::uint8_t>(len);
    b[9] = 6;
    b[12] = 10, b[15] = 1, b[16] = 10, b[19] = 2;
  }
  b[ip] = 0x1f, b[ip + 1] = 0x90;  // 8080
  b[ip + 2] = 0xc0, b[ip + 3] = 0x01;
  b[ip + 12] = static_cast<std::uint8_t>((tcp / 4) << 4);
  return b;
}

TEST(WireFrameExpansion, GsoBuffersBecomeTheirSegments) {
  // 10 full segments of 1448 bytes and a last one of 100, each with 52 bytes of IPv4 + TCP
  // (12 bytes of timestamps) headers.
  VnetHeader gso{};
  gso.gso_type = kVnetGsoTcpV4 | kVnetGsoEcn;
  gso.gso_size = htole16(1448);
  auto h = tcpHeaders(false, 12, 10 * 1448 + 100);
  auto f = expandWireFrame(gso, h.data(), h.size(), false);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->packets, 11u);
  EXPECT_EQ(f->bytes, 11u * 52 + 10 * 1448 + 100);
  EXPECT_EQ(f->key.src, "10.0.0.1");
  EXPECT_EQ(f->key.sport, 8080);
  EXPECT_EQ(f->key.dport, 0xc001);

  // Exactly 3 full IPv6 segments: no fourth, empty one.
  gso.gso_type = kVnetGsoTcpV6;
  h = tcpHeaders(true, 0, 3 * 1440);
  gso.gso_size = htole16(1440);
  f = expandWireFrame(gso, h.data(), h.size(), true);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->packets, 3u);
  EXPECT_EQ(f->bytes, 3u * 60 + 3 * 1440);
  EXPECT_EQ(f->key.dst, "fd00::2");
  EXPECT_FALSE(expandWireFrame(gso, h.data(), h.size(), false)) << "IPv6 only when asked";

  // An ordinary buffer is one packet of its IP length.
  const VnetHeader none{};
  h = tcpHeaders(false, 0, 1000);
  f = expandWireFrame(none, h.data(), h.size(), false);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->packets, 1u);
  EXPECT_EQ(f->bytes, 1040u);

  // UFO makes IP fragments, not segments: refused rather than guessed.
  VnetHeader ufo{};
  ufo.gso_type = kVnetGsoUdp;
  ufo.gso_size = htole16(1400);
  EXPECT_THROW(expandWireFrame(ufo, h.data(), h.size(), false), std::invalid_argument);
}

// ---- End to end. ----

/// A server started by PID in `link`'s namespace (or the root namespace when null), output
/// to `log`; ready once it listens on `port`; killed and reaped by that PID on destruction.
class Server {
 public:
  Server(std::vector<std::string> argv, const VethPair* link, std::uint16_t port, std::string log)
      : log_(std::move(log)) {
    if (link != nullptr) argv.insert(argv.begin(), {"ip", "netns", "exec", link->ns()});
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error(argv[0] + ": " + std::strerror(rc));
    const std::string ss = (link != nullptr ? "ip netns exec " + link->ns() + " " : "") +
                           "ss -Htln 'sport = :" + std::to_string(port) + "'";
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (shOutput(ss).empty()) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(argv[link != nullptr ? 4 : 0] + " exited: " + output());
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);  // no destructor runs for a constructor that throws
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
        throw std::runtime_error(argv[0] + " not listening on " + std::to_string(port) +
                                 " after 10 s: " + output());
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::string output() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

/// The path of an installed program, also from /usr/sbin when PATH lacks it ("" if none).
std::string binary(const std::string& name) {
  std::string path = shOutput("command -v " + name + " || { test -x /usr/sbin/" + name +
                              " && echo /usr/sbin/" + name + "; }");
  while (!path.empty() && path.back() == '\n') path.pop_back();
  return path;
}

/// A temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ayaflow-wire-e2e-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() { shOutput("rm -rf '" + path_ + "'"); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr std::size_t kFileBytes = 8u << 20;  // the download, and iperf3's transfer

/// Debian's nginx as a single process (no master, no workers changing user) with its
/// configuration, logs, temporary files and document root in `dir`, serving one file of
/// kFileBytes (sent with sendfile(), as nginx is usually configured) on addr:port.
std::unique_ptr<Server> startNginx(const std::string& dir, const std::string& addr,
                                   std::uint16_t port, const VethPair* link) {
  sh("mkdir -p " + dir + "/www " + dir + "/tmp");
  {
    // Not compressible, not constant: whatever nginx or TCP might do with the content.
    std::ofstream blob(dir + "/www/blob", std::ios::binary);
    std::uint32_t x = 2463534242u;
    std::vector<std::uint32_t> chunk(1 << 14);
    for (std::size_t written = 0; written < kFileBytes; written += chunk.size() * 4) {
      for (auto& w : chunk) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        w = x;
      }
      blob.write(reinterpret_cast<const char*>(chunk.data()),
                 static_cast<std::streamsize>(chunk.size() * 4));
    }
  }
  const std::string listen =
      (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) + ":" + std::to_string(port);
  std::ofstream(dir + "/nginx.conf")
      << "daemon off;\nmaster_process off;\npid " << dir << "/nginx.pid;\n"
      << "error_log " << dir << "/error.log;\n"
      << "events { worker_connections 16; }\n"
      << "http {\n  access_log off;\n  sendfile on;\n"
      << "  client_body_temp_path " << dir << "/tmp/body;\n"
      << "  proxy_temp_path " << dir << "/tmp/proxy;\n"
      << "  fastcgi_temp_path " << dir << "/tmp/fastcgi;\n"
      << "  uwsgi_temp_path " << dir << "/tmp/uwsgi;\n"
      << "  scgi_temp_path " << dir << "/tmp/scgi;\n"
      << "  server {\n    listen " << listen << ";\n    root " << dir << "/www;\n  }\n}\n";
  return std::make_unique<Server>(
      std::vector<std::string>{binary("nginx"), "-p", dir, "-c", dir + "/nginx.conf", "-e",
                               dir + "/error.log"},
      link, port, dir + "/server.log");
}

enum class App { Http, Iperf };

struct Case {
  std::string name;
  App app;
  bool v6;
  bool host_sends;  // the agent's device sends the bulk data (egress), else receives it
  bool offloads;    // TSO/GSO (and GRO on the receiver) on; else TSO off
  bool aggregated;  // --aggregation-window 1 (per-flow counts in the kernel), else events
  int n;            // VethPair number
};

/// Test failures name the case, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string tupleText(const LinkCounter::Key& k) {
  return endpoint(k.src, k.sport) + " > " + endpoint(k.dst, k.dport) + "/" +
         std::to_string(k.proto);
}

/// Every difference between two per-5-tuple tallies, one line each ("" if equal).
std::string differences(const Counts& a, const Counts& b, const char* a_name, const char* b_name) {
  std::string out;
  auto line = [&](const LinkCounter::Key& k, const LinkCounter::Count* x,
                  const LinkCounter::Count* y) {
    const auto fmt = [](const LinkCounter::Count* c) {
      return c == nullptr ? std::string("-")
                          : std::to_string(c->packets) + " pkts " + std::to_string(c->bytes) + " B";
    };
    out += tupleText(k) + ": " + a_name + " " + fmt(x) + ", " + b_name + " " + fmt(y) + "\n";
  };
  for (const auto& [k, c] : a) {
    auto it = b.find(k);
    if (it == b.end()) {
      line(k, &c, nullptr);
    } else if (it->second.packets != c.packets || it->second.bytes != c.bytes) {
      line(k, &c, &it->second);
    }
  }
  for (const auto& [k, c] : b) {
    if (!a.count(k)) line(k, nullptr, &c);
  }
  return out;
}

/// Frames either end of the veth dropped, sending (its peer's queue was full) or receiving.
std::uint64_t linkDrops(const VethPair& link) {
  std::uint64_t sum = 0;
  for (const bool peer_end : {false, true}) {
    for (const char* counter : {"tx_dropped", "rx_dropped"}) {
      const std::string out = shOutput(
          (peer_end ? "ip netns exec " + link.ns() + " " : std::string()) + "cat /sys/class/net/" +
          (peer_end ? link.peer() : link.host()) + "/statistics/" + counter);
      sum += out.empty() ? 0 : std::stoull(out);
    }
  }
  return sum;
}

/// A labelled series of the agent's /metrics, 0 when the agent has not created it.
std::uint64_t metricOrZero(const std::string& metrics, const std::string& name) {
  const std::uint64_t v = metricValue(metrics, name);
  return v == UINT64_MAX ? 0 : v;
}

class WireTruthE2E : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    const char* tool = GetParam().app == App::Http ? "nginx" : "iperf3";
    if (binary(tool).empty() || (GetParam().app == App::Http && binary("curl").empty())) {
      if (inCi()) FAIL() << tool << " or curl not installed (scripts/install-deps.sh)";
      GTEST_SKIP() << tool << " or curl not installed (scripts/install-deps.sh)";
    }
  }
};

TEST_P(WireTruthE2E, AgentEqualsTheDevicesWireExactly) {
  const Case& c = GetParam();
  VethPair link(c.n);
  if (c.offloads) {
    // Both ends: the sender's stack hands its tap (and the peer) whole super-packets, the
    // way a NIC with TSO receives them from the kernel.
    for (const auto command : {ETHTOOL_SGSO, ETHTOOL_STSO}) {
      ethtoolSet(link.host(), command, 1);
      link.inNamespace([&] { ethtoolSet(link.peer(), command, 1); });
    }
  }
  // The receiving host end merges what arrives (NAPI + GRO on a veth) before its tap and hook.
  if (!c.host_sends) ethtoolSet(link.host(), ETHTOOL_SGRO, 1);

  const std::string host = c.v6 ? link.hostV6() : link.hostV4();
  const std::string peer = c.v6 ? link.peerV6() : link.peerV4();
  std::vector<std::string> args = {"--interface", link.host(), "--quiet"};
  if (c.v6) args.push_back("--enable-ipv6");
  if (c.aggregated) args.insert(args.end(), {"--aggregation-window", "1"});
  AgentProcess agent(args);
  agent.waitReady();

  // The server on the sending side; nothing crosses the link until the transfer.
  TempDir dir;
  const std::uint16_t port = freePort();
  std::unique_ptr<Server> server;
  if (c.app == App::Http) {
    server =
        startNginx(dir.path(), c.host_sends ? host : peer, port, c.host_sends ? nullptr : &link);
  } else {
    server = std::make_unique<Server>(
        std::vector<std::string>{"iperf3", "-s", "-1", "-B", peer, "-p", std::to_string(port)},
        &link, port, dir.path() + "/server.log");
  }

  const std::uint64_t drops_before = linkDrops(link);
  WireCounter host_tap(link.host(), nullptr, c.v6);
  WireCounter peer_tap(link.peer(), &link, c.v6);
  if (c.app == App::Http) {
    const std::string url = "http://" + endpoint(c.host_sends ? host : peer, port) + "/blob";
    const std::string client = c.host_sends ? "ip netns exec " + link.ns() + " " : "";
    const std::string got = shOutput(client + "curl -sS -g --noproxy '*' --max-time 30 " +
                                     "-o /dev/null -w '%{size_download}' '" + url + "' 2>&1");
    ASSERT_EQ(got, std::to_string(kFileBytes)) << server->output();
  } else {
    sh("timeout 30 iperf3 -c " + peer + " -B " + host + " -p " + std::to_string(port) + " -n " +
       std::to_string(kFileBytes) + (c.v6 ? " -6" : " -4") + (c.host_sends ? "" : " -R") +
       " >/dev/null");
  }
  // The closing handshake follows the client's exit: wait until neither end's count has
  // changed for 300 ms, longer than TCP's longest delayed ACK (200 ms), so nothing arrives
  // after the captures stop (no assertion on time).
  LinkCounter::Count host_before{}, peer_before{};
  int quiet = 0;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (quiet < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
    const LinkCounter::Count h = host_tap.total(), p = peer_tap.total();
    const bool same = h.packets == host_before.packets && h.bytes == host_before.bytes &&
                      p.packets == peer_before.packets && p.bytes == peer_before.bytes;
    quiet = same ? quiet + 1 : 0;
    host_before = h;
    peer_before = p;
  }
  const WireCounter::Result at_host = host_tap.stop();
  const WireCounter::Result at_peer = peer_tap.stop();
  // The truth is the tap of the agent's own device. The other end's tap must agree with it,
  // unless the veth dropped frames between the two (its receive queue full on a loaded
  // machine; TCP then resent them): the sender's tap saw those, the receiver never did.
  const Counts& truth = at_host.counts;
  const std::uint64_t link_drops = linkDrops(link) - drops_before;
  if (link_drops == 0) {
    EXPECT_EQ(differences(truth, at_peer.counts, "host end", "peer end"), "")
        << "the two ends of the link disagree";
  } else {
    std::printf("  the veth dropped %llu frames between its ends (a loaded machine)\n",
                static_cast<unsigned long long>(link_drops));
    for (const auto& [key, count] : truth) {
      const auto it = at_peer.counts.find(key);
      EXPECT_TRUE(it != at_peer.counts.end() && it->second.packets >= count.packets &&
                  it->second.bytes >= count.bytes)
          << tupleText(key) << ": the host end saw more than the peer end";
    }
  }
  const Totals wire = linkTotals(truth);
  // A bulk transfer took place (curl got the whole file; iperf3 -n may end its data connection
  // with a reset before the last bytes in flight arrive, so its transfer is a little shorter).
  ASSERT_GT(wire.bytes, kFileBytes / 2);

  // Per connection ("local -> remote", the local end being the host end), both directions.
  struct Sides {
    Totals sent, received;
  };
  std::map<std::string, Sides> conns;
  for (const auto& [key, count] : truth) {
    const bool out = key.src == host;
    const std::string conn =
        out ? endpoint(key.src, key.sport) + " -> " + endpoint(key.dst, key.dport)
            : endpoint(key.dst, key.dport) + " -> " + endpoint(key.src, key.sport);
    Totals& t = out ? conns[conn].sent : conns[conn].received;
    t.packets += count.packets;
    t.bytes += count.bytes;
  }

  const json stats = waitForStats(agent, wire.packets);
  // What the agent itself reports losing (events the ring buffer could not hold, packets the
  // pipeline's hand-off could not take, rows the writer's queue could not take): the totals
  // above stay exact (kernel counters), but such a loss is missing from its connection or
  // the stored rows, so a failure below says whether the agent knew.
  const auto losses = [&] {
    const std::string m = agent.get("/metrics").body;
    return "events lost " +
           std::to_string(metricOrZero(m, "ayaflow_events_lost_total{direction=\"ingress\"}") +
                          metricOrZero(m, "ayaflow_events_lost_total{direction=\"egress\"}")) +
           ", pipeline queue_full " +
           std::to_string(
               metricOrZero(m, "ayaflow_pipeline_packets_dropped_total{reason=\"queue_full\"}")) +
           ", rows dropped queue_full " +
           std::to_string(
               metricOrZero(m, "ayaflow_storage_rows_dropped_total{reason=\"queue_full\"}"));
  };
  const std::string lost = losses();
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), wire.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), wire.bytes);

  std::map<std::string, json> live;
  const auto live_deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    live.clear();
    const json body = json::parse(agent.get("/api/live").body);
    for (const auto& e : body.at("connections")) {
      live[e.at("connection").get<std::string>()] = e.at("stats");
    }
    bool caught_up = true;
    for (const auto& [conn, s] : conns) {
      auto it = live.find(conn);
      caught_up = caught_up && it != live.end() &&
                  it->second.at("packets_count").get<std::uint64_t>() >=
                      s.sent.packets + s.received.packets;
    }
    if (caught_up || std::chrono::steady_clock::now() > live_deadline) break;
    std::this_thread::sleep_for(50ms);
  }
  for (const auto& [conn, s] : conns) {
    ASSERT_TRUE(live.count(conn)) << conn << " not in " << agent.get("/api/live").body;
    const json& a = live.at(conn);
    EXPECT_EQ(a.at("packets_count").get<std::uint64_t>(), s.sent.packets + s.received.packets)
        << conn << "; " << lost;
    EXPECT_EQ(a.at("bytes_sent").get<std::uint64_t>(), s.sent.bytes) << conn;
    EXPECT_EQ(a.at("bytes_received").get<std::uint64_t>(), s.received.bytes) << conn;
    std::printf("  %s: wire %llu+%llu packets, %llu+%llu bytes (sent+received)\n", conn.c_str(),
                static_cast<unsigned long long>(s.sent.packets),
                static_cast<unsigned long long>(s.received.packets),
                static_cast<unsigned long long>(s.sent.bytes),
                static_cast<unsigned long long>(s.received.bytes));
  }

  // Buffers that stood for several packets. The tap sees the hook's own buffers wherever no
  // segmentation comes between them: always at ingress (the tap runs just before the hook, on
  // the merged packet), and at egress with offloads on. With TSO off the egress tap sees the
  // segments, and only the hook the super-packets.
  const std::string metrics = agent.get("/metrics").body;
  const auto supers = [&](const char* direction) {
    return metricOrZero(metrics, "ayaflow_interface_super_packets_total{interface=\"" +
                                     link.host() + "\",direction=\"" + direction +
                                     "\",protocol=\"tcp\",family=\"" + (c.v6 ? "ipv6" : "ipv4") +
                                     "\"}");
  };
  const std::uint64_t agent_egress = supers("egress"), agent_ingress = supers("ingress");
  EXPECT_EQ(agent_ingress, at_host.super_frames[0]);
  if (c.offloads) {
    EXPECT_EQ(agent_egress, at_host.super_frames[1]);
  } else {
    EXPECT_EQ(at_host.super_frames[1], 0u) << "TSO off: the sender's tap sees segments";
    EXPECT_EQ(at_peer.super_frames[1], 0u) << "TSO off: the sender's tap sees segments";
  }
  // The data direction did batch segments, at the hook, and at the tap with offloads on.
  EXPECT_GT(c.host_sends ? agent_egress : agent_ingress, 0u);
  if (c.offloads) {
    EXPECT_GT(at_host.super_frames[c.host_sends ? 1 : 0], 0u);
  }
  EXPECT_EQ(metricValue(metrics, "ayaflow_packets_total"), wire.packets);
  EXPECT_EQ(metricValue(metrics, "ayaflow_bytes_total"), wire.bytes);

  std::printf(
      "%s: wire %llu packets, %llu bytes; agent %llu packets, %llu bytes\n"
      "  host tap: %llu buffers, super %llu in / %llu out (largest %llu segments); "
      "peer tap: %llu buffers, super %llu in / %llu out\n"
      "  agent super-packets: %llu ingress / %llu egress; %s\n",
      c.name.c_str(), static_cast<unsigned long long>(wire.packets),
      static_cast<unsigned long long>(wire.bytes),
      static_cast<unsigned long long>(stats.at("total_packets").get<std::uint64_t>()),
      static_cast<unsigned long long>(stats.at("total_bytes").get<std::uint64_t>()),
      static_cast<unsigned long long>(at_host.frames),
      static_cast<unsigned long long>(at_host.super_frames[0]),
      static_cast<unsigned long long>(at_host.super_frames[1]),
      static_cast<unsigned long long>(at_host.largest),
      static_cast<unsigned long long>(at_peer.frames),
      static_cast<unsigned long long>(at_peer.super_frames[0]),
      static_cast<unsigned long long>(at_peer.super_frames[1]),
      static_cast<unsigned long long>(agent_ingress), static_cast<unsigned long long>(agent_egress),
      lost.c_str());

  // The stored rows, once a clean stop has flushed them, per 5-tuple and direction.
  const std::string lost_before_stop = losses();
  agent.signal(SIGTERM);
  ASSERT_EQ(agent.waitExit(10s), std::optional<int>(0)) << agent.log();
  Counts stored;
  for (const auto& row : queryRows(agent.dbPath(),
                                   "SELECT src_ip, src_port, dst_ip, dst_port, protocol, "
                                   "SUM(packet_count), SUM(length) FROM packets "
                                   "GROUP BY src_ip, src_port, dst_ip, dst_port, protocol")) {
    LinkCounter::Key k{row[0], row[2], static_cast<std::uint16_t>(std::stoi(row[1])),
                       static_cast<std::uint16_t>(std::stoi(row[3])),
                       static_cast<std::uint8_t>(row[4] == "TCP"   ? 6
                                                 : row[4] == "UDP" ? 17
                                                                   : 0)};
    stored[k] = {std::stoull(row[5]), std::stoull(row[6])};
  }
  EXPECT_EQ(differences(truth, stored, "wire", "stored"), "") << lost_before_stop;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  int n = 160;
  // The HTTP download from nginx: both offload settings, both families, both directions.
  for (const bool offloads : {false, true}) {
    for (const bool v6 : {false, true}) {
      for (const bool host_sends : {true, false}) {
        out.push_back({std::string("Http") + (v6 ? "V6" : "V4") +
                           (host_sends ? "ServedByAgentHost" : "DownloadedByAgentHost") +
                           (offloads ? "OffloadsOn" : "TsoOff"),
                       App::Http, v6, host_sends, offloads, false, n++});
      }
    }
  }
  // iperf3 with offloads on (TSO off is gso_e2e_test's), per-flow counting in the kernel.
  for (const bool v6 : {false, true}) {
    for (const bool host_sends : {true, false}) {
      out.push_back({std::string("Iperf") + (v6 ? "V6" : "V4") + (host_sends ? "Send" : "Receive") +
                         "OffloadsOnAggregated",
                     App::Iperf, v6, host_sends, true, true, n++});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Cases, WireTruthE2E, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace ayaflow::test
