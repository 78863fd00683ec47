// SPDX-License-Identifier: MIT OR Apache-2.0
// Userspace hot-path microbenchmarks: decode of raw ring-buffer records, and decode +
// ConnectionMap::record per event, against a baseline modelled on the original design
// (a string key "src:port -> dst:port" per direction in one mutex-guarded hash map); the
// same for kernel flow-table entries (aggregated mode); a new connection per event at the
// map's cap (eviction) and below it; rendering GET /api/live; and the
// hand-off of a record to the SQLite store. One iteration is one event, entry, request or
// hand-off, so the Time column is ns per item.
//
//   bench_flow --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/live_source.h"
#include "ayaflow/api/router.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/memory.h"
#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/pipeline/window_aggregator.h"
#include "ayaflow/store/sqlite_sink.h"

namespace {

using namespace ayaflow::flow;

constexpr std::size_t kEvents = std::size_t{1} << 18;  // 16 MiB of records, like a busy ring

// A pre-generated stream of raw 64-byte ayaflow_packet_event records over `flows`
// connections (one in eight IPv6), random direction and order, fixed seed.
struct EventSource {
  std::vector<unsigned char> bytes;
  std::size_t count = 0;

  const unsigned char* at(std::size_t i) const {
    return bytes.data() + i * sizeof(ayaflow_packet_event);
  }
};

EventSource makeEvents(std::size_t flows, std::size_t count) {
  EventSource src;
  src.count = count;
  src.bytes.resize(count * sizeof(ayaflow_packet_event));
  std::mt19937_64 rng(42);
  for (std::size_t i = 0; i < count; ++i) {
    // The first `flows` events cover every flow once; the rest are random.
    const std::uint64_t f = i < flows ? i : rng() % flows;
    const bool egress = rng() & 1;
    const bool v6 = f % 8 == 7;
    ayaflow_packet_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.abi_version = AYAFLOW_ABI_VERSION;
    ev.kind = AYAFLOW_EVENT_PACKET;
    ev.direction = egress ? AYAFLOW_DIR_EGRESS : AYAFLOW_DIR_INGRESS;
    ev.tuple.protocol = (f % 5 == 0) ? 17 : 6;
    ev.tuple.addr_type = v6 ? 6 : 4;
    ev.ifindex = 2;
    ev.pkt_len = static_cast<__u32>(64 + rng() % 1400);
    ev.timestamp_ns = 1000000 + i * 1000;
    IpAddress local, remote;
    if (v6) {
      local = *IpAddress::parse("2001:db8:1::1");
      remote = *IpAddress::parse("2001:db8:2::");
      std::memcpy(&local.bytes[12], &f, 4);
      remote.bytes[15] = static_cast<std::uint8_t>(f % 251);
    } else {
      local = IpAddress::fromV4(0x0a000000u | static_cast<std::uint32_t>(f >> 4 & 0xffff));
      remote = IpAddress::fromV4(0xc6336400u | static_cast<std::uint32_t>(f % 200));
    }
    const auto local_port = static_cast<std::uint16_t>(1024 + f % 16 * 3001);
    const std::uint16_t remote_port = (f % 5 == 0) ? 53 : 443;
    const IpAddress& s = egress ? local : remote;
    const IpAddress& d = egress ? remote : local;
    std::memcpy(ev.tuple.src_addr, s.bytes.data(), 16);
    std::memcpy(ev.tuple.dst_addr, d.bytes.data(), 16);
    ev.tuple.src_port = egress ? local_port : remote_port;
    ev.tuple.dst_port = egress ? remote_port : local_port;
    std::memcpy(src.bytes.data() + i * sizeof ev, &ev, sizeof ev);
  }
  return src;
}

const EventSource& events(std::size_t flows) {
  static std::unordered_map<std::size_t, EventSource> cache;
  auto it = cache.find(flows);
  if (it == cache.end())
    it = cache.emplace(flows, makeEvents(flows, std::max(kEvents, flows))).first;
  return it->second;
}

void BM_Decode(benchmark::State& state) {
  const EventSource& src = events(1000);
  std::size_t i = 0;
  Packet p;
  for (auto _ : state) {
    const DecodeStatus st = decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), p);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(p);
    if (++i == src.count) i = 0;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Decode);

// A cap that holds `flows` connections (the default 180 000 would evict at 1M).
std::size_t mapCapFor(std::size_t flows) {
  return std::max(ConnectionMap::kDefaultMaxEntries, flows);
}

// Records every event of `src` in `map`.
void recordAll(const EventSource& src, ConnectionMap& map) {
  Packet p;
  for (std::size_t i = 0; i < src.count; ++i) {
    if (decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), p) == DecodeStatus::kOk)
      map.record(p);
  }
}

// decode + ConnectionMap::record, steady state (every flow already present).
void BM_DecodeRecord(benchmark::State& state) {
  const EventSource& src = events(static_cast<std::size_t>(state.range(0)));
  const std::size_t rss_before = ayaflow::common::residentBytes();
  ConnectionMap map(16, 256, mapCapFor(static_cast<std::size_t>(state.range(0))));
  recordAll(src, map);
  // Allocated (entry arrays grow by doubling; pages never written are not resident) and
  // the process's RSS growth while filling the map.
  state.counters["map_bytes_per_connection"] =
      static_cast<double>(map.memoryBytes()) / static_cast<double>(map.size());
  state.counters["rss_bytes_per_connection"] =
      static_cast<double>(ayaflow::common::residentBytes() - rss_before) /
      static_cast<double>(map.size());
  Packet p;
  std::size_t i = 0;
  for (auto _ : state) {
    if (decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), p) == DecodeStatus::kOk)
      map.record(p);
    if (++i == src.count) i = 0;
  }
  benchmark::DoNotOptimize(map.size());
  state.counters["connections"] = static_cast<double>(map.size());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DecodeRecord)->Arg(1)->Arg(1000)->Arg(100000)->Arg(1000000);

// Baseline: the original design. One entry per direction keyed by a formatted string,
// one std::unordered_map under one std::mutex.
struct BaselineStats {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t packets_count = 0;
  std::uint64_t last_seen_ns = 0;
};

class BaselineMap {
 public:
  void record(const Packet& p) {
    std::string key = formatEndpoint(p.src, p.src_port);
    key += " -> ";
    key += formatEndpoint(p.dst, p.dst_port);
    std::lock_guard<std::mutex> lock(mu_);
    BaselineStats& s = map_[std::move(key)];
    if (p.direction == Direction::kEgress) {
      s.bytes_sent += p.length;
    } else {
      s.bytes_received += p.length;
    }
    ++s.packets_count;
    s.last_seen_ns = p.timestamp_ns;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return map_.size();
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, BaselineStats> map_;  // guarded by mu_
};

void BM_BaselineStringMap(benchmark::State& state) {
  const EventSource& src = events(static_cast<std::size_t>(state.range(0)));
  BaselineMap map;
  Packet p;
  for (std::size_t i = 0; i < src.count; ++i) {
    if (decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), p) == DecodeStatus::kOk)
      map.record(p);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    if (decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), p) == DecodeStatus::kOk)
      map.record(p);
    if (++i == src.count) i = 0;
  }
  state.counters["connections"] = static_cast<double>(map.size());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_BaselineStringMap)->Arg(1)->Arg(1000)->Arg(100000);

// Aggregated mode: one kernel flow-table entry (a second of one flow) decoded and added to
// the connection map, steady state. Entries are made from the event stream's first events.
void BM_FlowEntryRecord(benchmark::State& state) {
  const std::size_t flows = static_cast<std::size_t>(state.range(0));
  const EventSource& src = events(flows);
  std::vector<std::pair<ayaflow_flow_key, ayaflow_flow_value>> entries;
  for (std::size_t i = 0; i < flows; ++i) {
    ayaflow_packet_event ev;
    std::memcpy(&ev, src.at(i), sizeof ev);
    ayaflow_flow_key key;
    std::memset(&key, 0, sizeof key);
    key.tuple = ev.tuple;
    key.ifindex = ev.ifindex;
    key.direction = ev.direction;
    ayaflow_flow_value value{};
    value.packets = 10;
    value.bytes = 10u * ev.pkt_len;
    value.first_ns = ev.timestamp_ns;
    value.last_ns = ev.timestamp_ns + 1000;
    entries.push_back({key, value});
  }
  ConnectionMap map(16, 256, mapCapFor(flows));
  Packet p;
  for (const auto& [k, v] : entries) {
    if (decodeFlowEntry(k, v, p) == DecodeStatus::kOk) map.record(p);
  }
  state.counters["map_bytes_per_connection"] =
      static_cast<double>(map.memoryBytes()) / static_cast<double>(map.size());
  std::size_t i = 0;
  for (auto _ : state) {
    if (decodeFlowEntry(entries[i].first, entries[i].second, p) == DecodeStatus::kOk) map.record(p);
    if (++i == entries.size()) i = 0;
  }
  state.counters["connections"] = static_cast<double>(map.size());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_FlowEntryRecord)->Arg(1000)->Arg(100000)->Arg(1000000);

// Aggregated mode's pipeline work per flow-table entry: WindowAggregator::add() with N
// flows open (each entry adds to its flow's open sum), then, per window, takeClosed() of
// all N sums into records, as the pipeline hands them to the store. The window closes
// every N items, so the take is amortised over one add per flow.
void BM_AggregateWindow(benchmark::State& state) {
  const std::size_t flows = static_cast<std::size_t>(state.range(0));
  const EventSource& src = events(flows);
  std::vector<Packet> packets(flows);
  for (std::size_t i = 0; i < flows; ++i)
    decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), packets[i]);
  constexpr std::int64_t kWindowMs = 10000;
  ayaflow::pipeline::WindowAggregator agg(kWindowMs);
  std::int64_t window_start = 1700000000000;
  // Untimed: one window's worth, for the memory figures (allocated; RSS growth).
  const std::size_t rss_before = ayaflow::common::residentBytes();
  for (const Packet& p : packets) agg.add(p, window_start + 1, window_start + 1);
  const double open_bytes =
      static_cast<double>(agg.memoryBytes()) / static_cast<double>(agg.openFlows());
  const double open_rss = static_cast<double>(ayaflow::common::residentBytes() - rss_before) /
                          static_cast<double>(agg.openFlows());
  std::vector<ayaflow::pipeline::FlowRecord> out;
  std::size_t i = 0;
  for (auto _ : state) {
    agg.add(packets[i], window_start + 1, window_start + 1);
    if (++i == flows) {
      i = 0;
      window_start += kWindowMs;
      out.clear();
      agg.takeClosed(window_start, out);
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.counters["flows"] = static_cast<double>(flows);
  state.counters["open_sum_bytes"] = open_bytes;
  state.counters["open_sum_rss_bytes"] = open_rss;
  state.counters["record_bytes"] = sizeof(ayaflow::pipeline::FlowRecord);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_AggregateWindow)->Arg(100000)->Arg(1000000);

// A packet of connection n (distinct for every n < 2^32): IPv4 10.x.y.z:port <-> 198.51.100.n%200.
Packet churnPacket(std::uint64_t n) {
  Packet p;
  p.direction = Direction::kEgress;
  p.src = IpAddress::fromV4(0x0a000000u | static_cast<std::uint32_t>(n >> 8 & 0xffffff));
  p.dst = IpAddress::fromV4(0xc6336400u | static_cast<std::uint32_t>(n % 200));
  p.src_port = static_cast<std::uint16_t>(1024 + (n & 0xff));
  p.dst_port = 443;
  p.protocol = 6;
  p.addr_type = 4;
  p.length = 100;
  p.timestamp_ns = 1000000 + n * 1000;
  p.ifindex = 2;
  return p;
}

// A new connection per item with the map full at its cap (range(0)): every record()
// evicts the idlest of ConnectionMap::kEvictionSample sampled entries first.
void BM_RecordEvictAtCap(benchmark::State& state) {
  const std::size_t cap = static_cast<std::size_t>(state.range(0));
  ConnectionMap map(16, 256, cap);
  std::uint64_t n = 0;
  for (; n < cap; ++n) map.record(churnPacket(n));
  const std::uint64_t evicted_before = map.evicted();
  for (auto _ : state) map.record(churnPacket(n++));
  state.counters["connections"] = static_cast<double>(map.size());
  state.counters["evicted_per_item"] =
      static_cast<double>(map.evicted() - evicted_before) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_RecordEvictAtCap)->Arg(4096)->Arg(180000);

// For comparison: a new connection per item below the cap (inserts, table growth
// amortised); the map is emptied, untimed, every 100 000 connections.
void BM_RecordNewBelowCap(benchmark::State& state) {
  ConnectionMap map;
  std::uint64_t n = 0;
  for (auto _ : state) {
    map.record(churnPacket(n++));
    if (map.size() == 100000) {
      state.PauseTiming();
      map.expire(std::numeric_limits<std::uint64_t>::max(), 0);
      state.ResumeTiming();
    }
  }
  state.counters["evicted"] = static_cast<double>(map.evicted());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_RecordNewBelowCap);

// ConnectionMap::top(n) over a map of N connections: n = 50 (what /api/live asks, answered
// from the candidate set) against n = kTopTracked + 1 (a full scan, as every top() was
// before the candidate set), same map, same run.
void BM_Top(benchmark::State& state) {
  const std::size_t flows = static_cast<std::size_t>(state.range(0));
  const std::size_t n = static_cast<std::size_t>(state.range(1));
  ConnectionMap map(16, 256, mapCapFor(flows));
  recordAll(events(flows), map);
  for (auto _ : state) {
    auto top = map.top(n);
    benchmark::DoNotOptimize(top.data());
  }
  state.counters["connections"] = static_cast<double>(map.size());
  state.counters["full_scans"] = static_cast<double>(map.topScansForTest());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Top)
    ->Args({1000, 50})
    ->Args({1000, ConnectionMap::kTopTracked + 1})
    ->Args({100000, 50})
    ->Args({100000, ConnectionMap::kTopTracked + 1})
    ->Args({1000000, 50})
    ->Args({1000000, ConnectionMap::kTopTracked + 1})
    ->Unit(benchmark::kMicrosecond);

// GET /api/live through the router, as the agent serves it (without the 250 ms reuse):
// a top-50 scan of a map of N connections and the JSON body.
void BM_LiveJson(benchmark::State& state) {
  ConnectionMap map(16, 256, mapCapFor(static_cast<std::size_t>(state.range(0))));
  recordAll(events(static_cast<std::size_t>(state.range(0))), map);
  const ayaflow::api::MapLiveSource live(
      [] {
        return ayaflow::api::LiveSource::Totals{123456789, 987654321};
      },
      map, nullptr);
  ayaflow::api::Router router;
  ayaflow::api::addCoreRoutes(router, live, std::chrono::milliseconds(0));
  const auto request = ayaflow::api::parseTarget("GET", "/api/live", "");
  std::size_t bytes = 0;
  for (auto _ : state) {
    const ayaflow::api::Response r = router.route(*request);
    bytes = r.body.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["connections"] = static_cast<double>(map.size());
  state.counters["body_bytes"] = static_cast<double>(bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_LiveJson)->Arg(1000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMicrosecond);

// GET /api/live under load: a writer thread records the event stream over N connections
// without pause (every packet a record(), raw mode's worst case) while this thread renders
// /api/live back to back. Reports the latency percentiles of the requests and the writer's
// records per second during them; one iteration is one request.
void BM_LiveJsonUnderLoad(benchmark::State& state) {
  const std::size_t flows = static_cast<std::size_t>(state.range(0));
  const EventSource& src = events(flows);
  ConnectionMap map(16, 256, mapCapFor(flows));
  recordAll(src, map);
  const ayaflow::api::MapLiveSource live(
      [] {
        return ayaflow::api::LiveSource::Totals{123456789, 987654321};
      },
      map, nullptr);
  ayaflow::api::Router router;
  ayaflow::api::addCoreRoutes(router, live, std::chrono::milliseconds(0));
  const auto request = ayaflow::api::parseTarget("GET", "/api/live", "");
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> recorded{0};
  std::thread writer([&] {
    Packet p;
    std::size_t i = 0;
    std::uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      if (decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), p) == DecodeStatus::kOk)
        map.record(p);
      if (++i == src.count) i = 0;
      if (++n % 1024 == 0) recorded.store(n, std::memory_order_relaxed);
    }
  });
  std::vector<double> us;
  const auto started = std::chrono::steady_clock::now();
  const std::uint64_t recorded_before = recorded.load();
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const ayaflow::api::Response r = router.route(*request);
    benchmark::DoNotOptimize(r.body.data());
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::uint64_t recorded_during = recorded.load() - recorded_before;
  stop = true;
  writer.join();
  std::sort(us.begin(), us.end());
  auto pct = [&us](double q) {
    return us.empty() ? 0.0 : us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))];
  };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["connections"] = static_cast<double>(map.size());
  state.counters["full_scans"] = static_cast<double>(map.topScansForTest());
  state.counters["writer_records_per_s"] = static_cast<double>(recorded_during) / seconds;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_LiveJsonUnderLoad)
    ->Arg(100000)
    ->Arg(1000000)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Pipeline::onPacket: the capture thread's hand-off of one record to the pipeline, which
// feeds the SQLite writer (an in-memory database, both running). Arg 0: raw mode, else the
// aggregation window. The queue never fills: this is the cost of an accepted record
// ("dropped" stays 0).
void BM_StoreSubmit(benchmark::State& state) {
  const EventSource& src = events(1000);
  ayaflow::store::StoreOptions store_options;
  store_options.db_path = ":memory:";
  ayaflow::store::SqliteSink sqlite(store_options);
  ayaflow::pipeline::PipelineOptions options;
  options.aggregation_window_s = static_cast<std::uint32_t>(state.range(0));
  options.queue_capacity = 16384;
  ayaflow::pipeline::Pipeline store(options, nullptr, {&sqlite});
  std::vector<Packet> packets(4096);
  for (std::size_t i = 0; i < packets.size(); ++i) {
    decodePacketEvent(src.at(i), sizeof(ayaflow_packet_event), packets[i]);
    packets[i].timestamp_ns = 0;  // stamped by the pipeline: stays in the current window
  }
  // Time only accepted hand-offs: every half queue, wait (untimed) for the pipeline.
  std::size_t i = 0;
  std::size_t since_sync = 0;
  for (auto _ : state) {
    store.onPacket(packets[i]);
    if (++i == packets.size()) i = 0;
    if (++since_sync == options.queue_capacity / 2) {
      state.PauseTiming();
      store.syncForTest();
      since_sync = 0;
      state.ResumeTiming();
    }
  }
  const ayaflow::pipeline::PipelineStats st = store.stats();
  state.counters["dropped"] = static_cast<double>(st.packets_dropped_queue_full);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_StoreSubmit)->Arg(0)->Arg(10);

}  // namespace

int main(int argc, char** argv) {
  ayaflow::configureLogging(true, false);  // errors only: the store would warn about drops
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
