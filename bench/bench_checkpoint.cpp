// SPDX-License-Identifier: MIT OR Apache-2.0
// Aggregated mode's checkpoints and memory bound (plain main, prints a table; run a Release
// build). Results in docs/storage.md ("Crashes").
//   1. cost of one checkpoint with --flows open flows: WindowAggregator::checkpoint() (copy
//      and sort) and the SQLite writer's transaction (first: INSERTs; later: UPDATEs in place),
//      against plain INSERTs of the same rows (what a window's end costs without checkpoints)
//   2. --flood: the agent's pipeline and SQLite writer with their defaults fed
//      --flood-flows distinct flows over --flood-seconds (default 1.2 M in 20 s, the issue's
//      case), reporting peak RSS (VmHWM), drops and what reached the database.
//
//   bench_checkpoint [--flows N] [--rounds R] [--dir DIR] [--flood] [--flood-flows N]
//                    [--flood-seconds S] [--checkpoint-ms MS]
#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/pipeline/window_aggregator.h"
#include "ayaflow/store/sqlite_sink.h"

namespace {

using ayaflow::flow::Direction;
using ayaflow::flow::IpAddress;
using ayaflow::flow::Packet;
using ayaflow::pipeline::FlowRecord;
using ayaflow::pipeline::RecordBatch;
using ayaflow::pipeline::RecordState;
using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::int64_t realtimeMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// kB of a /proc/self/status field ("VmRSS", "VmHWM").
long statusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::atol(line.c_str() + prefix.size());
  }
  return -1;
}

/// Flow i: 10.x.y.z:port -> 192.168.0.1:443, all distinct for i < 2^24 * 28000.
Packet flowPacket(std::uint32_t i, std::uint32_t length) {
  Packet p;
  p.src = IpAddress::fromV4(0x0a000000u | (i & 0xffffffu) >> 4);
  p.dst = IpAddress::fromV4(0xc0a80001u);
  p.src_port = static_cast<std::uint16_t>(32768 + (i & 0xf) * 1000 + (i >> 24));
  p.dst_port = 443;
  p.protocol = 6;
  p.direction = Direction::kEgress;
  p.addr_type = 4;
  p.ifindex = 2;
  p.length = length;
  return p;
}

std::shared_ptr<RecordBatch> stamp(const RecordBatch& in, RecordState state, std::uint64_t add) {
  auto b = std::make_shared<RecordBatch>(in);
  for (auto& r : *b) {
    r.state = state;
    r.packets += add;
    r.bytes += add * 100;
  }
  return b;
}

void checkpointCost(std::size_t flows, int rounds, const std::string& dir) {
  const std::int64_t window_ms = 60000;
  const std::int64_t now = realtimeMs();
  ayaflow::pipeline::WindowAggregator agg(window_ms);
  for (std::uint32_t i = 0; i < flows; ++i) agg.add(flowPacket(i, 100), now, now);

  std::vector<double> copy_ms;
  RecordBatch cp;
  for (int r = 0; r < rounds; ++r) {
    for (std::uint32_t i = 0; i < flows; ++i) agg.add(flowPacket(i, 100), now, now);
    cp.clear();
    const auto t0 = Clock::now();
    agg.checkpoint(cp);
    copy_ms.push_back(ms(Clock::now() - t0));
    agg.acknowledgeCheckpoint();
  }
  std::sort(copy_ms.begin(), copy_ms.end());
  std::printf("open flows                          %zu\n", flows);
  std::printf("aggregator checkpoint (copy+sort)   %.1f ms (median of %d)\n",
              copy_ms[copy_ms.size() / 2], rounds);

  const auto run = [&](bool checkpoints) {
    const std::string path = dir + "/bench-checkpoint.db";
    for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
    ayaflow::store::StoreOptions so;
    so.db_path = path;
    so.queue_rows = flows;
    ayaflow::store::SqliteSink sink(so);
    std::vector<double> times;
    const auto write = [&](std::shared_ptr<RecordBatch> b) {
      const auto t0 = Clock::now();
      sink.consume(std::move(b), Clock::now() + std::chrono::seconds(60));
      sink.flush();
      times.push_back(ms(Clock::now() - t0));
    };
    if (checkpoints) {
      for (int r = 0; r <= rounds; ++r) write(stamp(cp, RecordState::kProvisional, r));
      write(stamp(cp, RecordState::kFinal, rounds + 1));
      const double first = times.front(), final = times.back();
      std::vector<double> updates(times.begin() + 1, times.end() - 1);
      std::sort(updates.begin(), updates.end());
      std::printf("first checkpoint (INSERT)           %.1f ms\n", first);
      std::printf("later checkpoint (UPDATE in place)  %.1f ms (median of %d), %.2f us/row\n",
                  updates[updates.size() / 2], rounds,
                  1000.0 * updates[updates.size() / 2] / static_cast<double>(flows));
      std::printf("window end (final UPDATE)           %.1f ms\n", final);
      const auto s = sink.stats();
      std::printf("rows stored / updated               %llu / %llu\n",
                  static_cast<unsigned long long>(s.rows_stored),
                  static_cast<unsigned long long>(s.rows_updated));
    } else {
      for (int r = 0; r < rounds; ++r) write(stamp(cp, RecordState::kFinal, r));
      std::sort(times.begin(), times.end());
      std::printf("window end without checkpoints      %.1f ms (median of %d INSERT batches)\n",
                  times[times.size() / 2], rounds);
    }
    sink.stop();
    for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  };
  run(false);
  run(true);
}

void flood(std::size_t flows, int seconds, const std::string& dir,
           std::chrono::milliseconds checkpoint_interval) {
  const std::string path = dir + "/bench-flood.db";
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  const long rss_start = statusKb("VmRSS");
  // The agent's defaults with 60 s windows, as src/app/app.cpp derives them for aggregated
  // mode (two flow tables of 16 384 entries).
  const std::size_t tables = 2 * 16384;
  ayaflow::pipeline::PipelineOptions po;
  po.aggregation_window_s = 60;
  po.checkpoint_interval = checkpoint_interval;
  po.queue_capacity += tables;
  po.max_open_flows = std::max(po.max_open_flows, tables);
  ayaflow::store::StoreOptions so;
  so.db_path = path;
  so.queue_rows = std::max(so.queue_rows, po.max_open_flows + tables);
  auto sink = std::make_unique<ayaflow::store::SqliteSink>(so);
  auto pipe = std::make_unique<ayaflow::pipeline::Pipeline>(
      po, nullptr, std::vector<ayaflow::pipeline::RecordSink*>{sink.get()});
  const auto start = Clock::now();
  const double per_ms = static_cast<double>(flows) / (seconds * 1000.0);
  std::size_t sent = 0;
  long peak_open = 0;
  while (sent < flows) {
    const double elapsed = ms(Clock::now() - start);
    const auto due = std::min(flows, static_cast<std::size_t>(elapsed * per_ms));
    const std::uint64_t ts = monotonicNs();
    for (; sent < due; ++sent) {
      Packet p = flowPacket(static_cast<std::uint32_t>(sent), 100);
      p.timestamp_ns = ts;
      pipe->onPacket(p);
    }
    peak_open = std::max<long>(peak_open, static_cast<long>(pipe->stats().open_flows));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const double feed_s = ms(Clock::now() - start) / 1000.0;
  const long hwm_during = statusKb("VmHWM");
  pipe->stop();
  sink->stop();
  const auto ps = pipe->stats();
  const auto ss = sink->stats();
  std::printf("flows sent                          %zu in %.1f s\n", sent, feed_s);
  std::printf("RSS at start / peak (VmHWM)         %.1f / %.1f MiB\n", rss_start / 1024.0,
              hwm_during / 1024.0);
  std::printf("open flows (max seen)               %ld\n", peak_open);
  std::printf("pipeline dropped (queue full)       %llu\n",
              static_cast<unsigned long long>(ps.packets_dropped_queue_full));
  std::printf("records final / checkpointed        %llu / %llu\n",
              static_cast<unsigned long long>(ps.records_emitted),
              static_cast<unsigned long long>(ps.records_checkpointed));
  std::printf("rows stored / updated               %llu / %llu\n",
              static_cast<unsigned long long>(ss.rows_stored),
              static_cast<unsigned long long>(ss.rows_updated));
  std::printf("packets stored                      %llu\n",
              static_cast<unsigned long long>(ss.packets_stored));
  std::printf("rows dropped: queue full / checkpoint records refused  %llu / %llu\n",
              static_cast<unsigned long long>(ss.queue.records_dropped_full),
              static_cast<unsigned long long>(ss.queue.checkpoint_records_refused));
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t flows = 100000;
  int rounds = 5;
  std::string dir = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
  bool do_flood = false;
  std::size_t flood_flows = 1200000;
  int flood_seconds = 20;
  long checkpoint_ms = ayaflow::pipeline::PipelineOptions().checkpoint_interval.count();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : "0"; };
    if (a == "--flows")
      flows = std::strtoull(next(), nullptr, 10);
    else if (a == "--rounds")
      rounds = std::atoi(next());
    else if (a == "--dir")
      dir = next();
    else if (a == "--flood")
      do_flood = true;
    else if (a == "--flood-flows")
      flood_flows = std::strtoull(next(), nullptr, 10);
    else if (a == "--flood-seconds")
      flood_seconds = std::atoi(next());
    else if (a == "--checkpoint-ms")
      checkpoint_ms = std::atol(next());
    else {
      std::fprintf(stderr,
                   "usage: %s [--flows N] [--rounds R] [--dir DIR] [--flood] "
                   "[--flood-flows N] [--flood-seconds S] [--checkpoint-ms MS]\n",
                   argv[0]);
      return 2;
    }
  }
  ayaflow::configureLogging(/*quiet=*/true, /*verbose=*/false);
  if (rounds < 1) rounds = 1;
  if (do_flood) {
    flood(flood_flows, std::max(1, flood_seconds), dir,
          std::chrono::milliseconds(std::max(0L, checkpoint_ms)));
  } else {
    checkpointCost(flows, rounds, dir);
  }
  return 0;
}
