// SPDX-License-Identifier: MIT OR Apache-2.0
// bench_pod_names: what naming pods costs the agent. A private containerd (the tests'
// fixture) runs PODS pod sandboxes (default 200); two of them exchange UDP traffic generated
// by sendmmsg_flood at a fixed rate. The agent runs attached to those two pods' interfaces,
// alternately without pod names (--cri-socket none) and with them (the runtime's socket, so
// every pod is known), in raw mode (a row per packet: every record named) and in aggregated
// mode (the DaemonSet's 10 s window). For each run: packets counted, agent CPU seconds per
// million packets and RSS at the end (VmRSS) and at its peak (VmHWM).
//
//   bench_pod_names [--pods N] [--seconds S] [--rate PPS] [--reps R]
//
// Root; needs what the tests' containerd fixture needs (containerd, runc, the CNI plugins,
// busybox-static). Results: docs/benchmarks.md ("Pod names").
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent_checks.h"
#include "agent_process.h"
#include "ayaflow/capture/link.h"
#include "ayaflow/k8s/cri_client.h"
#include "ayaflow/k8s/name_table.h"
#include "ayaflow/k8s/pod_watcher.h"
#include "containerd_fixture.h"
#include "netns.h"

namespace {

using ayaflow::test::AgentProcess;
using ayaflow::test::Containerd;

struct Usage {
  double cpu_s = 0;
  std::uint64_t rss_kib = 0, hwm_kib = 0;
};

Usage usageOf(pid_t pid) {
  Usage u;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoul(field);
    if (i == 15) stime = std::stoul(field);
  }
  u.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) u.rss_kib = std::stoull(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) u.hwm_kib = std::stoull(line.substr(6));
  }
  return u;
}

struct Run {
  double packets = 0, cpu_per_mpkt = 0, idle_cpu_per_s = 0;
  std::uint64_t rss_kib = 0, hwm_kib = 0, pods_known = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int pods = 200, seconds = 10, rate = 100000, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--pods") pods = v;
    if (a == "--seconds") seconds = v;
    if (a == "--rate") rate = v;
    if (a == "--reps") reps = v;
  }
  if (pods < 2) pods = 2;
  try {
    const auto t0 = std::chrono::steady_clock::now();
    Containerd runtime;
    std::vector<Containerd::Pod> all;
    const std::string prefix = "aybp" + std::to_string(getpid() % 100000);
    for (int i = 0; i < pods; ++i) {
      Containerd::PodSpec spec;
      spec.name = "app-" + std::to_string(i % 20) + "-7d9f8c6b5d-" + std::to_string(10000 + i);
      spec.ns = "ns-" + std::to_string(i % 10);
      spec.labels = {{"pod-template-hash", "7d9f8c6b5d"}, {"app", "app-" + std::to_string(i % 20)}};
      all.push_back(runtime.runPod(spec));
      if (i < 2) {
        Containerd::Pod& p = all.back();
        const std::string name = prefix + std::to_string(i);
        ayaflow::test::sh("ip link set dev " + p.host_veth + " down && ip link set dev " +
                          p.host_veth + " name " + name + " && ip link set dev " + name + " up");
        p.host_veth = name;
      }
    }
    const double setup_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%d pods running (%.0f s to start)\n", pods, setup_s);
    // The pod watcher's own cost, on this thread: one CRI pod list, and one whole refresh
    // (the list, the node's addresses, the index when something changed).
    {
      ayaflow::k8s::CriClient cri(runtime.endpoint());
      ayaflow::k8s::NameTable table;
      ayaflow::k8s::PodWatcherOptions o;
      o.cri_socket = runtime.endpoint();
      o.node_name = "bench-node";
      o.node_addresses = ayaflow::capture::listAddresses;
      ayaflow::k8s::PodWatcher watcher(o, table);
      watcher.refreshForTest();  // learns every pod (a status call each)
      const auto cpuNow = [] {
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
      };
      constexpr int kRounds = 50;
      double c0 = cpuNow();
      const auto w0 = std::chrono::steady_clock::now();
      std::size_t listed = 0;
      for (int i = 0; i < kRounds; ++i) listed += cri.listSandboxes().size();
      const double list_cpu = (cpuNow() - c0) / kRounds;
      const double list_wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count() / kRounds;
      c0 = cpuNow();
      for (int i = 0; i < kRounds; ++i) watcher.refreshForTest();
      const double refresh_cpu = (cpuNow() - c0) / kRounds;
      std::printf(
          "pod watcher: ListPodSandbox of %zu pods %.2f ms CPU (%.2f ms wall); a refresh with "
          "nothing new %.2f ms CPU (its thread; gRPC's own threads not included)\n",
          listed / kRounds, list_cpu * 1e3, list_wall * 1e3, refresh_cpu * 1e3);
    }
    const Containerd::Pod& sender = all[0];
    const Containerd::Pod& receiver = all[1];
    // The receiver drops what nobody reads: the kernel answers nothing (no ICMP for a bound
    // port), so only the sender's packets cross, counted once at the sender's interface.
    int sink = -1;
    ayaflow::test::inPod(receiver, [&] { sink = ayaflow::test::udpSocket(receiver.ip, 50000); });

    const auto run = [&](bool names, int window) {
      std::vector<std::string> args = {
          "--interface",          prefix + "*",
          "--cri-socket",         names ? runtime.endpoint() : std::string("none"),
          "--aggregation-window", std::to_string(window)};
      AgentProcess agent(args);
      agent.waitReady();
      Run r;
      if (names) {
        for (int i = 0; i < 100; ++i) {
          r.pods_known = ayaflow::test::metricValue(agent.get("/metrics").body, "ayaflow_cri_pods");
          if (r.pods_known == static_cast<std::uint64_t>(pods)) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
      // Idle: what the agent costs with no traffic (the pod watcher's polling, with names).
      const Usage idle0 = usageOf(agent.pid());
      std::this_thread::sleep_for(std::chrono::seconds(5));
      const Usage idle1 = usageOf(agent.pid());
      r.idle_cpu_per_s = (idle1.cpu_s - idle0.cpu_s) / 5;
      const Usage before = usageOf(agent.pid());
      const std::string out = ayaflow::test::podShOutput(
          sender, std::string(AYAFLOW_FLOOD_BINARY) + " " + sender.ip + " " + receiver.ip +
                      ":50000 " + std::to_string(seconds) + " 64 64 " + std::to_string(rate));
      std::this_thread::sleep_for(std::chrono::seconds(window > 0 ? window + 3 : 2));
      const Usage after = usageOf(agent.pid());
      const auto stats = nlohmann::json::parse(agent.get("/api/stats").body);
      r.packets = stats.at("total_packets").get<double>();
      r.cpu_per_mpkt = (after.cpu_s - before.cpu_s) / (r.packets / 1e6);
      r.rss_kib = after.rss_kib;
      r.hwm_kib = after.hwm_kib;
      agent.signal(SIGTERM);
      agent.waitExit(std::chrono::seconds(10));
      std::printf(
          "  %-5s window=%-2d idle cpu=%.1f ms/s packets=%.0f cpu/Mpkt=%.3f s rss=%.1f MiB "
          "peak=%.1f MiB%s\n",
          names ? "names" : "none", window, r.idle_cpu_per_s * 1e3, r.packets, r.cpu_per_mpkt,
          static_cast<double>(r.rss_kib) / 1024, static_cast<double>(r.hwm_kib) / 1024,
          names ? (" pods_known=" + std::to_string(r.pods_known)).c_str() : "");
      std::fflush(stdout);
      return r;
    };

    std::printf("%d s at %d packets/s per run, %d repetitions, alternating\n", seconds, rate, reps);
    for (const int window : {0, 10}) {
      double cpu[2] = {0, 0}, rss[2] = {0, 0}, hwm[2] = {0, 0}, idle[2] = {0, 0};
      for (int rep = 0; rep < reps; ++rep) {
        for (const bool names : {false, true}) {
          const Run r = run(names, window);
          cpu[names] += r.cpu_per_mpkt / reps;
          idle[names] += r.idle_cpu_per_s * 1e3 / reps;
          rss[names] += static_cast<double>(r.rss_kib) / 1024 / reps;
          hwm[names] += static_cast<double>(r.hwm_kib) / 1024 / reps;
        }
      }
      std::printf(
          "window=%d: without names cpu/Mpkt %.3f s, idle %.1f ms/s, RSS %.1f MiB (peak %.1f); "
          "with %d pods known %.3f s, idle %.1f ms/s, RSS %.1f MiB (peak %.1f); ratio %.2f\n",
          window, cpu[0], idle[0], rss[0], hwm[0], pods, cpu[1], idle[1], rss[1], hwm[1],
          cpu[1] / cpu[0]);
    }
    ::close(sink);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pod_names: %s\n", e.what());
    return 1;
  }
  return 0;
}
