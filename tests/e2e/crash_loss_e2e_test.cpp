// SPDX-License-Identifier: MIT OR Apache-2.0
// End to end as root: what a SIGKILL costs the history in aggregated mode. The real agent, in
// a cgroup-v1 memory cgroup of the DaemonSet's limit (128 MiB), on the host end of its own
// veth pair with --aggregation-window 60, takes 2 M UDP packets while a liveness-style probe
// polls /api/health; once a checkpoint interval (plus the flow table's once-a-second
// collection) has passed, the open window's counts are in the database, so a SIGKILL loses
// none of them. The cgroup's peak memory stays under a stated bound.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent_process.h"
#include "http_client.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr std::uint64_t kDaemonSetLimit = 128ull << 20;
/// The bound this test states for the cgroup's peak (RSS, page cache of the database and
/// kernel memory charged to it) while 2 M packets of a few flows go through.
constexpr std::uint64_t kPeakBound = 32ull << 20;

/// A cgroup-v1 memory cgroup of its own, removed (once empty) by the destructor.
class MemoryCgroup {
 public:
  explicit MemoryCgroup(std::uint64_t limit)
      : path_("/sys/fs/cgroup/memory/ayaflow-crash-test-" + std::to_string(::getpid())) {
    if (::mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST) {
      throw std::runtime_error("mkdir " + path_ + ": " + std::strerror(errno));
    }
    std::ofstream out(path_ + "/memory.limit_in_bytes");
    out << limit;
    out.flush();
    if (!out) throw std::runtime_error("cannot set " + path_ + "/memory.limit_in_bytes");
  }
  ~MemoryCgroup() {
    for (int i = 0; i < 50; ++i) {  // the killed agent may take a moment to leave it
      if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
      std::this_thread::sleep_for(100ms);
    }
  }
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  static bool available() { return ::access("/sys/fs/cgroup/memory/cgroup.procs", W_OK) == 0; }
  /// A command prefix that moves the process into the cgroup, then execs the rest.
  std::vector<std::string> prefix() const {
    return {"sh", "-c", "echo $$ > " + path_ + "/cgroup.procs && exec \"$@\"", "sh"};
  }
  std::uint64_t value(const char* file) const {
    std::ifstream in(path_ + "/" + file);
    std::uint64_t v = 0;
    in >> v;
    return v;
  }

 private:
  std::string path_;
};

/// The first row of `sql` on a read-only connection, columns joined by '|' ("" if none).
std::string queryOne(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        if (i != 0) out += '|';
        const auto* t = sqlite3_column_text(st, i);
        out += t != nullptr ? reinterpret_cast<const char*>(t) : "NULL";
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

/// A UDP socket bound to `local` and connected to peer:port.
int connectedUdp(const std::string& local, const std::string& peer, std::uint16_t port) {
  const int fd = udpSocket(local, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  inet_pton(AF_INET, peer.c_str(), &to.sin_addr);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    close(fd);
    throw std::runtime_error("connect udp");
  }
  return fd;
}

class CrashLossE2E : public ::testing::Test {
 protected:
  void SetUp() override { AYAFLOW_REQUIRE_ROOT(); }
};

TEST_F(CrashLossE2E, SigkillInAggregatedModeLosesNoCheckpointedPackets) {
  if (!MemoryCgroup::available()) GTEST_SKIP() << "no cgroup-v1 memory controller";
  VethPair link(171);
  MemoryCgroup cgroup(kDaemonSetLimit);
  AgentProcess agent({"--interface", link.host(), "--quiet", "--aggregation-window", "60"},
                     cgroup.prefix());
  agent.waitReady();

  // A liveness-style probe (2 s deadline) every 200 ms until the kill.
  std::atomic<bool> probing{true};
  std::atomic<int> probes{0}, probe_failures{0};
  std::thread prober([&] {
    for (int i = 0; i < 1000 && probing; ++i) {
      const HttpResult r = httpGet("127.0.0.1", agent.port(), "/api/health", 2s);
      ++probes;
      if (r.status != 200) ++probe_failures;
      std::this_thread::sleep_for(200ms);
    }
  });
  struct JoinProber {
    std::atomic<bool>& probing;
    std::thread& t;
    ~JoinProber() {
      probing = false;
      if (t.joinable()) t.join();
    }
  } join_prober{probing, prober};

  // Receivers that never read (their buffers fill and the peer drops; the host's egress hook
  // has counted every packet by then), so the peer never answers with ICMP errors.
  constexpr std::uint16_t kPorts[] = {5171, 5172, 5173, 5174};
  std::vector<int> peer_fds;
  link.inNamespace([&] {
    for (std::uint16_t port : kPorts) peer_fds.push_back(udpSocket(link.peerV4(), port));
  });
  std::vector<int> fds;
  for (std::uint16_t port : kPorts) fds.push_back(connectedUdp(link.hostV4(), link.peerV4(), port));

  // 2 M packets, bounded in time too (a slow machine sends fewer; the counts stay exact).
  constexpr std::uint64_t kPackets = 2000000;
  const char payload[18] = {};
  std::uint64_t sent = 0;
  const auto send_deadline = std::chrono::steady_clock::now() + 60s;
  while (sent < kPackets && std::chrono::steady_clock::now() < send_deadline) {
    for (int i = 0; i < 1000 && sent < kPackets; ++i) {
      if (send(fds[sent % fds.size()], payload, sizeof payload, 0) == sizeof payload) ++sent;
    }
  }
  for (int fd : fds) close(fd);
  ASSERT_GT(sent, 0u);

  // The kernel counted them at once.
  std::uint64_t counted = 0;
  for (int i = 0; i < 100 && counted < sent; ++i) {
    counted = json::parse(agent.get("/api/stats").body).at("total_packets").get<std::uint64_t>();
    if (counted < sent) std::this_thread::sleep_for(100ms);
  }
  ASSERT_GE(counted, sent);

  // Within a checkpoint interval (2 s) plus a collection (1 s) the database has every packet,
  // though the 60 s window is still open (or, near a minute boundary, has just been written).
  const std::string db = agent.dbPath();
  const std::string udp_sum =
      "SELECT coalesce(sum(packet_count), 0) FROM packets WHERE protocol = 'UDP' AND "
      "dst_port BETWEEN 5171 AND 5174";
  const auto waited_from = std::chrono::steady_clock::now();
  std::string stored;
  while (std::chrono::steady_clock::now() - waited_from < 20s) {
    stored = queryOne(db, udp_sum);
    if (stored == std::to_string(sent)) break;
    std::this_thread::sleep_for(100ms);
  }
  const auto waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - waited_from)
                             .count();
  ASSERT_EQ(stored, std::to_string(sent)) << agent.log();
  std::printf("[ measure  ] %llu packets in the database %lld ms after the last was counted\n",
              static_cast<unsigned long long>(sent), static_cast<long long>(waited_ms));
  const std::string metrics = agent.get("/metrics").body;
  EXPECT_NE(metrics.find("ayaflow_pipeline_checkpoint_records_total"), std::string::npos);

  probing = false;
  prober.join();
  EXPECT_GT(probes.load(), 0);
  EXPECT_EQ(probe_failures.load(), 0);
  const std::uint64_t peak = cgroup.value("memory.max_usage_in_bytes");
  std::printf("[ measure  ] cgroup peak memory %.1f MiB (bound %llu MiB)\n",
              static_cast<double>(peak) / (1 << 20),
              static_cast<unsigned long long>(kPeakBound >> 20));
  EXPECT_LT(peak, kPeakBound);
  EXPECT_EQ(cgroup.value("memory.failcnt"), 0u);

  agent.signal(SIGKILL);
  ASSERT_TRUE(agent.waitExit(5s).has_value());
  for (int fd : peer_fds) close(fd);

  // After the kill: a sound database with every packet, and one row per flow per window.
  EXPECT_EQ(queryOne(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(queryOne(db, udp_sum), std::to_string(sent));
  EXPECT_EQ(queryOne(db,
                     "SELECT count(*) FROM (SELECT count(*) AS n FROM packets GROUP BY src_ip, "
                     "dst_ip, src_port, dst_port, protocol, direction, timestamp / 60000 "
                     "HAVING n > 1)"),
            "0");
}

}  // namespace
}  // namespace ayaflow::test
