// SPDX-License-Identifier: MIT OR Apache-2.0
// Flow export's cost (plain main, prints a table; run a Release build). Results in
// docs/benchmarks.md ("Flow export").
//   - CPU per 1000 final flow records for each sink, measured as the process's CPU time
//     (getrusage: the sink's own thread does the work; the main thread sleeps in flush())
//     while the sink takes --intervals batches of --flows records (one aggregation window's
//     final records each, half of them with pod names on one end):
//       clickhouse: RowBinary INSERTs to a real server (--clickhouse-url; the server's own CPU
//                   is not counted), ipfix-udp: libfixbuf encoding plus one sendto() per
//                   1400-byte message to a loopback UDP socket nobody reads;
//   - peak RSS (VmHWM) of this process with both sinks on and 100 000 flows per interval.
//
//   bench_export [--flows N] [--intervals K] [--clickhouse-url URL]
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "ayaflow/common/logging.h"
#include "ayaflow/export/clickhouse_sink.h"
#include "ayaflow/export/ipfix_sink.h"

namespace {

using ayaflow::exporter::ClickHouseOptions;
using ayaflow::exporter::ClickHouseSink;
using ayaflow::exporter::IpfixOptions;
using ayaflow::exporter::IpfixSink;
using ayaflow::pipeline::BatchPtr;
using ayaflow::pipeline::FlowRecord;
using ayaflow::pipeline::RecordBatch;
using ayaflow::pipeline::RecordSink;
using Clock = std::chrono::steady_clock;

double cpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

long statusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::atol(line.c_str() + prefix.size());
  }
  return -1;
}

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// One window's final records: `n` distinct flows, every other one with a pod at its local
/// end (a named pod's strings are shared, as the enrichment chain shares them).
BatchPtr window(std::size_t n, std::int64_t at_ms, std::uint32_t salt) {
  static const auto names = [] {
    auto c = std::make_shared<ayaflow::enrich::ConnectionNames>();
    auto pod = std::make_shared<ayaflow::enrich::PodName>();
    *pod = ayaflow::enrich::PodName{"shop", "checkout-7d9f8c6b5-x2x4q", "checkout", "Deployment"};
    c->local.pod = pod;
    c->remote.node = std::make_shared<const std::string>("node-17");
    return c;
  }();
  auto batch = std::make_shared<RecordBatch>();
  batch->reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    FlowRecord r;
    r.src = ayaflow::flow::IpAddress::fromV4(0x0a000000u + static_cast<std::uint32_t>(i % 60000));
    r.dst = ayaflow::flow::IpAddress::fromV4(0xc0a80000u + salt);
    r.src_port = static_cast<std::uint16_t>(1024 + i % 60000);
    r.dst_port = 443;
    r.protocol = 6;
    r.packets = 1 + i % 50;
    r.bytes = 60 * r.packets + i % 1400;
    r.first_ms = at_ms;
    r.last_ms = at_ms + 9000;
    r.ifindex = 1;
    r.direction = i % 2 ? ayaflow::flow::Direction::kEgress : ayaflow::flow::Direction::kIngress;
    r.tcp_flags = 0x18;
    r.window_end_ms = at_ms + 10000;
    r.update_key = i + 1;
    if (i % 2 == 0) r.names = names;
    batch->push_back(r);
  }
  return batch;
}

struct Result {
  double cpu_s = 0;
  double wall_s = 0;
  std::uint64_t records = 0;
};

double threadCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// Hands `intervals` windows of `flows` records to the sink, one at a time as the pipeline
/// does (each built just before, released once the sink has it); a window's records are
/// sent before the next window comes (windows are seconds apart), checked by `done(n)`.
/// CPU: the process's, less this thread's (building the batches is not the sink's cost).
template <typename Sink, typename Done>
Result run(Sink& sink, std::size_t flows, int intervals, Done done) {
  const double cpu0 = cpuSeconds(), main0 = threadCpuSeconds();
  const auto t0 = Clock::now();
  for (int k = 0; k < intervals; ++k) {
    BatchPtr b = window(flows, nowMs() + k * 10000, static_cast<std::uint32_t>(k));
    // As the pipeline hands a window over at shutdown: wait for room (bench only).
    sink.consume(std::move(b), Clock::now() + std::chrono::seconds(60));
    sink.flush();
    const std::uint64_t sent = flows * static_cast<std::size_t>(k + 1);
    while (!done(sent)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  Result r;
  r.cpu_s = (cpuSeconds() - cpu0) - (threadCpuSeconds() - main0);
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  r.records = flows * static_cast<std::size_t>(intervals);
  return r;
}

void print(const char* name, const Result& r, std::uint64_t bytes) {
  std::printf(
      "%-12s %10llu records  %8.1f ms CPU per 1000 records  %8.0f records/s  %6.1f B/record\n",
      name, static_cast<unsigned long long>(r.records), 1000.0 * r.cpu_s / r.records * 1000,
      r.records / r.wall_s, static_cast<double>(bytes) / r.records);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t flows = 100000;
  int intervals = 5;
  std::string url;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--flows" && i + 1 < argc) {
      flows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--intervals" && i + 1 < argc) {
      intervals = std::atoi(argv[++i]);
    } else if (a == "--clickhouse-url" && i + 1 < argc) {
      url = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: bench_export [--flows N] [--intervals K] [--clickhouse-url URL]\n");
      return 2;
    }
  }
  std::printf(
      "%zu flows per interval, %d intervals; RSS at start %ld kB; a window's batch "
      "holds %zu bytes of records\n",
      flows, intervals, statusKb("VmRSS"), flows * sizeof(FlowRecord));

  // A loopback UDP port nobody reads: the kernel drops what overflows its buffer.
  const int sink_fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(sink_fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(sink_fd, reinterpret_cast<sockaddr*>(&a), &len);
  {
    IpfixOptions o;
    o.collectors = {"127.0.0.1:" + std::to_string(ntohs(a.sin_port))};
    o.queue_records = 4 * flows;
    IpfixSink ipfix(o);
    const Result r = run(ipfix, flows, intervals, [&](std::uint64_t n) {
      const auto s = ipfix.stats();
      return s.records + s.dropped_send >= n;
    });
    print("ipfix-udp", r, ipfix.stats().bytes);
    std::printf("  peak RSS so far (VmHWM) %ld kB\n", statusKb("VmHWM"));
  }
  if (!url.empty()) {
    ClickHouseOptions o;
    o.url = url;
    o.table = "bench_export";
    o.create_table = true;
    o.node = "bench";
    o.queue_records = 4 * flows;
    ClickHouseSink ch(o);
    const Result r =
        run(ch, flows, intervals, [&](std::uint64_t n) { return ch.stats().records >= n; });
    print("clickhouse", r, ch.stats().bytes);
    std::printf("  peak RSS so far (VmHWM) %ld kB\n", statusKb("VmHWM"));
  }
  std::printf("peak RSS (VmHWM) %ld kB, RSS now %ld kB\n", statusKb("VmHWM"), statusKb("VmRSS"));
  ::close(sink_fd);
  return 0;
}
