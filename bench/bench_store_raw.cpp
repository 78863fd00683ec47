// SPDX-License-Identifier: MIT OR Apache-2.0
// Raw mode's history path alone (plain main, prints a table; run a Release build): the
// pipeline thread and the SQLite writer thread as the agent wires them, fed packets as fast
// as they take them (nothing dropped), and each thread's own CPU time per row
// (/proc/self/task/*/schedstat: exact, not 10 ms ticks). The feeding thread is not counted.
//
//   bench_store_raw [--rows N] [--dir DIR] [--flows F | --random] [--rounds R] [--batch B]
//
// --flows F (default 32): F UDP flows of 46-byte packets from one host to another, as
// bench/compare.sh floods them. --random: bench_store's stream instead (20 000 hosts, one in
// eight IPv6, random ports: a new key in the address and port summary far more often).
// Each round writes N rows (default 1 000 000) into a fresh database; the table shows the
// median and min-max over R rounds (default 3). --batch B: B records per pipeline batch and
// per write transaction instead of the defaults. Results in docs/storage.md ("Performance").
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/store/sqlite_sink.h"
#include "bench_packets.h"

namespace {

using ayaflow::flow::Direction;
using ayaflow::flow::IpAddress;
using ayaflow::flow::Packet;
using Clock = std::chrono::steady_clock;

std::uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Run time in ns of this process's threads named `comm` (summed).
std::uint64_t threadNs(const std::string& comm) {
  std::uint64_t total = 0;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string base = std::string("/proc/self/task/") + e->d_name;
    std::ifstream c(base + "/comm");
    std::string name;
    std::getline(c, name);
    if (name != comm) continue;
    std::ifstream s(base + "/schedstat");
    std::uint64_t ns = 0;
    s >> ns;
    total += ns;
  }
  ::closedir(d);
  return total;
}

/// The flood of bench/compare.sh: `flows` UDP flows from 10.215.1.1 to 10.215.1.2:9,
/// 46-byte IP packets, egress.
std::vector<Packet> floodPackets(std::size_t flows) {
  std::vector<Packet> out(std::max<std::size_t>(flows, 1));
  for (std::size_t i = 0; i < out.size(); ++i) {
    Packet& p = out[i];
    p.src = IpAddress::fromV4(0x0ad70101u);
    p.dst = IpAddress::fromV4(0x0ad70102u);
    p.src_port = static_cast<std::uint16_t>(40000 + i);
    p.dst_port = 9;
    p.protocol = 17;
    p.direction = Direction::kEgress;
    p.length = 46;
    p.ifindex = 1;  // lo: a name every machine has
  }
  return out;
}

struct Round {
  double rows_per_s = 0;
  double pipe_us = 0;   // pipeline thread CPU per row
  double store_us = 0;  // writer thread CPU per row
  double mb_per_mrow = 0;
  std::uint64_t stored = 0, dropped = 0;
};

Round runRound(const std::string& path, const std::vector<Packet>& packets, std::size_t rows,
               std::size_t batch) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  ayaflow::store::StoreOptions so;  // the agent's defaults
  so.db_path = path;
  ayaflow::pipeline::PipelineOptions po;
  if (batch != 0) so.batch_rows = po.batch_records = batch;
  auto sink = std::make_unique<ayaflow::store::SqliteSink>(so);
  auto pipe = std::make_unique<ayaflow::pipeline::Pipeline>(
      po, nullptr, std::vector<ayaflow::pipeline::RecordSink*>{sink.get()});
  const std::size_t room_max = std::min<std::size_t>(po.queue_capacity, so.queue_rows) / 2;
  const std::uint64_t pipe0 = threadNs("ayaflow-pipe");
  const std::uint64_t store0 = threadNs("ayaflow-store");
  const auto t0 = Clock::now();
  std::size_t i = 0;
  while (i < rows) {
    const std::size_t depth = pipe->stats().queue_depth + sink->stats().queue.depth;
    if (depth >= room_max) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    const std::size_t n = std::min(room_max - depth, rows - i);
    std::uint64_t now = monotonicNs();
    for (std::size_t k = 0; k < n; ++k, ++i) {
      Packet p = packets[i % packets.size()];
      p.timestamp_ns = now + k;  // distinct, increasing, like the hook's
      pipe->onPacket(p);
    }
  }
  pipe->flush();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  Round r;
  r.pipe_us = static_cast<double>(threadNs("ayaflow-pipe") - pipe0) / 1e3 / rows;
  r.store_us = static_cast<double>(threadNs("ayaflow-store") - store0) / 1e3 / rows;
  r.rows_per_s = static_cast<double>(rows) / wall;
  const auto ps = pipe->stats();
  const auto ss = sink->stats();
  r.stored = ss.rows_stored;
  r.dropped =
      ps.packets_dropped_queue_full + ss.queue.records_dropped_full + ss.rows_dropped_write_error;
  pipe->stop();
  sink->stop();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    r.mb_per_mrow = static_cast<double>(st.st_size) / 1e6 / (static_cast<double>(rows) / 1e6);
  }
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  return r;
}

void printRow(const char* what, std::vector<double> v, const char* fmt) {
  std::sort(v.begin(), v.end());
  std::printf("| %s | ", what);
  std::printf(fmt, v[v.size() / 2]);
  std::printf(" (");
  std::printf(fmt, v.front());
  std::printf("-");
  std::printf(fmt, v.back());
  std::printf(") |\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t rows = 1000000;
  std::size_t flows = 32;
  int rounds = 3;
  std::size_t batch = 0;
  bool random = false;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) {
      rows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--flows" && i + 1 < argc) {
      flows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--random") {
      random = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--rows N] [--dir DIR] [--flows F | --random] [--rounds R] "
                   "[--batch B]\n",
                   argv[0]);
      return 2;
    }
  }
  if (rows == 0) rows = 1;
  ayaflow::configureLogging(/*quiet=*/true, /*verbose=*/false);
  const std::string path = dir + "/bench_store_raw." + std::to_string(::getpid()) + ".db";
  const std::vector<Packet> packets =
      random ? ayaflow::bench::storePackets(1 << 20, 1) : floodPackets(flows);
  std::printf("raw history path: %zu rows per round, %d rounds, %s\n\n", rows, rounds,
              random ? "random hosts and ports" : (std::to_string(flows) + " UDP flows").c_str());
  std::vector<double> rate, pipe_us, store_us, both_us, mb;
  std::uint64_t stored = 0, dropped = 0;
  for (int r = 0; r < rounds; ++r) {
    const Round x = runRound(path, packets, rows, batch);
    rate.push_back(x.rows_per_s);
    pipe_us.push_back(x.pipe_us);
    store_us.push_back(x.store_us);
    both_us.push_back(x.pipe_us + x.store_us);
    mb.push_back(x.mb_per_mrow);
    stored += x.stored;
    dropped += x.dropped;
  }
  std::printf("| median (min-max) | value |\n|---|---|\n");
  printRow("rows/s", rate, "%.0f");
  printRow("pipeline thread, us CPU per row", pipe_us, "%.3f");
  printRow("writer thread, us CPU per row", store_us, "%.3f");
  printRow("both, us CPU per row (= s per million packets)", both_us, "%.3f");
  printRow("database, MB per million rows", mb, "%.1f");
  std::printf("| rows stored / dropped (all rounds) | %llu / %llu |\n",
              static_cast<unsigned long long>(stored), static_cast<unsigned long long>(dropped));
  return stored == rows * static_cast<std::size_t>(rounds) && dropped == 0 ? 0 : 1;
}
