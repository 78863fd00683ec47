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

#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/live_source.h"
#include "ayaflow/api/router.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/pipeline.h"
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
  if (it == cache.end()) it = cache.emplace(flows, makeEvents(flows, kEvents)).first;
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
  ConnectionMap map;
  recordAll(src, map);
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
BENCHMARK(BM_DecodeRecord)->Arg(1)->Arg(1000)->Arg(100000);

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
    entries.push_back(
        {key, ayaflow_flow_value{10, 10u * ev.pkt_len, ev.timestamp_ns, ev.timestamp_ns + 1000}});
  }
  ConnectionMap map;
  Packet p;
  for (const auto& [k, v] : entries) {
    if (decodeFlowEntry(k, v, p) == DecodeStatus::kOk) map.record(p);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    if (decodeFlowEntry(entries[i].first, entries[i].second, p) == DecodeStatus::kOk) map.record(p);
    if (++i == entries.size()) i = 0;
  }
  state.counters["connections"] = static_cast<double>(map.size());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_FlowEntryRecord)->Arg(1000)->Arg(100000);

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

// GET /api/live through the router, as the agent serves it (without the 250 ms reuse):
// a top-50 scan of a map of N connections and the JSON body.
void BM_LiveJson(benchmark::State& state) {
  ConnectionMap map;
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
BENCHMARK(BM_LiveJson)->Arg(1000)->Arg(100000)->Unit(benchmark::kMicrosecond);

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
