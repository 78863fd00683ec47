// SPDX-License-Identifier: MIT OR Apache-2.0
// What the kernel tracing probes (src/health) cost: the BPF run time of each hook, per run
// and per packet on the wire, under a workload that fires all of them, and the workload's
// TCP throughput with the probes off and on. Root; makes its own namespace and veth pair.
//
//   bench_health_probes [--seconds N] [--repeat R]
//
// Workload (N seconds, each): a TCP bulk transfer from the root-namespace end of a veth pair
// to a receiver in the namespace, whose input drops 1 % of it (retransmissions; every
// received segment fires the RTT hook), and a UDP flood of 64-byte datagrams of which the
// receiver's input drops 10 % (drops with a reason). Packets on the wire are the veth's own
// counters. Run time comes from BPF_ENABLE_STATS (held by this process only: the global
// kernel.bpf_stats_enabled is left alone). The hooks are global: traffic of other processes
// on the machine during the run adds runs (ns per run stays right; per packet is then an
// upper bound).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/health/health_probes.h"
#include "delay_relay.h"
#include "netns.h"

namespace {

using ayaflow::test::VethPair;

std::uint64_t readCounter(const std::string& dev, const char* name) {
  std::ifstream in("/sys/class/net/" + dev + "/statistics/" + name);
  std::uint64_t v = 0;
  in >> v;
  return v;
}

std::set<std::uint32_t> programIds() {
  std::set<std::uint32_t> ids;
  std::uint32_t id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) ids.insert(id);
  return ids;
}

struct ProgStats {
  std::string name;
  std::uint64_t run_time_ns = 0;
  std::uint64_t run_cnt = 0;
};

std::map<std::uint32_t, ProgStats> readStats(const std::set<std::uint32_t>& ids) {
  std::map<std::uint32_t, ProgStats> out;
  for (std::uint32_t id : ids) {
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
      out[id] = ProgStats{info.name, info.run_time_ns, info.run_cnt};
    }
    close(fd);
  }
  return out;
}

struct Workload {
  double tcp_mbytes_per_s = 0;
  std::uint64_t packets = 0;  // both directions on the veth
};

Workload runWorkload(const VethPair& link, int seconds) {
  Workload w;
  const std::uint64_t before =
      readCounter(link.host(), "tx_packets") + readCounter(link.host(), "rx_packets");
  int listener = -1, udp_rx = -1;
  link.inNamespace([&] {
    listener = ayaflow::test::tcpListen(link.peerV4(), 5201);
    udp_rx = ayaflow::test::udpSocket(link.peerV4(), 5301);
  });
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> received{0};
  std::thread receiver([&] {
    const int fd = accept(listener, nullptr, nullptr);
    std::vector<char> buf(256 * 1024);
    for (;;) {
      const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      received += static_cast<std::uint64_t>(n);
    }
    close(fd);
  });
  std::thread udp_drain([&] {
    std::vector<char> buf(2048);
    timeval tv{0, 100000};
    setsockopt(udp_rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (!stop) recv(udp_rx, buf.data(), buf.size(), 0);
  });
  const int udp_tx = ayaflow::test::udpSocket(link.hostV4(), 0);
  std::thread flood([&] {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(5301);
    inet_pton(AF_INET, link.peerV4().c_str(), &to.sin_addr);
    char payload[36] = {};
    while (!stop) {
      for (int i = 0; i < 64; ++i) {
        sendto(udp_tx, payload, sizeof(payload), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // ~300k packets/s at most
    }
  });
  const int client = ayaflow::test::tcpConnect(link.peerV4(), 5201);
  std::vector<char> chunk(256 * 1024, 'b');
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (send(client, chunk.data(), chunk.size(), 0) <= 0) break;
  }
  shutdown(client, SHUT_WR);
  receiver.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  flood.join();
  udp_drain.join();
  close(client);
  close(listener);
  close(udp_rx);
  close(udp_tx);
  w.tcp_mbytes_per_s = static_cast<double>(received.load()) / elapsed / 1e6;
  w.packets =
      readCounter(link.host(), "tx_packets") + readCounter(link.host(), "rx_packets") - before;
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 5;
  int repeat = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--repeat") == 0) repeat = std::atoi(argv[i + 1]);
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench_health_probes: run as root\n");
    return 2;
  }
  const int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) {
    std::fprintf(stderr, "BPF_ENABLE_STATS: %s\n", std::strerror(errno));
    return 1;
  }
  VethPair link(250);
  ayaflow::test::nftIn(link.ns(),
                       "table inet ayabench {\n"
                       "  chain input {\n"
                       "    type filter hook input priority 0;\n"
                       "    tcp dport 5201 numgen random mod 100 < 1 drop\n"
                       "    udp dport 5301 numgen random mod 100 < 10 drop\n"
                       "  }\n"
                       "}\n");
  std::printf(
      "| run | probes | TCP MB/s | packets | hook | runs | ns/run | runs/packet | "
      "ns/packet |\n|---|---|---|---|---|---|---|---|---|\n");
  for (int r = 1; r <= repeat; ++r) {
    const Workload off = runWorkload(link, seconds);
    std::printf("| %d | off | %.0f | %llu | | | | | |\n", r, off.tcp_mbytes_per_s,
                static_cast<unsigned long long>(off.packets));
    const std::set<std::uint32_t> ids_before = programIds();
    ayaflow::health::HealthProbes probes(ayaflow::health::HealthOptions{});
    std::set<std::uint32_t> ours;
    for (std::uint32_t id : programIds()) {
      if (ids_before.count(id) == 0) ours.insert(id);
    }
    const auto stats_before = readStats(ours);
    const Workload on = runWorkload(link, seconds);
    const auto stats_after = readStats(ours);
    double total_ns = 0;
    std::string rows;
    for (const auto& [id, after] : stats_after) {
      const auto it = stats_before.find(id);
      const std::uint64_t ns =
          after.run_time_ns - (it != stats_before.end() ? it->second.run_time_ns : 0);
      const std::uint64_t cnt = after.run_cnt - (it != stats_before.end() ? it->second.run_cnt : 0);
      total_ns += static_cast<double>(ns);
      char row[256];
      std::snprintf(
          row, sizeof(row), "| %d | on | | | %s | %llu | %.1f | %.3f | %.2f |\n", r,
          after.name.c_str(), static_cast<unsigned long long>(cnt),
          cnt ? static_cast<double>(ns) / static_cast<double>(cnt) : 0.0,
          static_cast<double>(cnt) / static_cast<double>(std::max<std::uint64_t>(on.packets, 1)),
          static_cast<double>(ns) / static_cast<double>(std::max<std::uint64_t>(on.packets, 1)));
      rows += row;
    }
    std::printf("| %d | on | %.0f | %llu | all | | | | %.2f |\n%s", r, on.tcp_mbytes_per_s,
                static_cast<unsigned long long>(on.packets),
                total_ns / static_cast<double>(std::max<std::uint64_t>(on.packets, 1)),
                rows.c_str());
  }
  close(stats_fd);
  return 0;
}
