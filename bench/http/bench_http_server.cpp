// SPDX-License-Identifier: MIT OR Apache-2.0
// Server side of bench/bench_http.sh: the real HttpServer with the core routes, /metrics
// and /api/stream over a ConnectionMap holding N synthetic connections, while a synthetic
// "capture" thread records events into the map at a fixed rate, as the ingest thread does.
//
// The capture thread models the kernel ring buffer: events become due at `--rate` per
// second; at most `--ring` of them may wait (256 KiB / 64-byte events = 4096 by default);
// whatever falls due beyond that while the thread is held up is counted as lost, exactly
// what the kernel would drop. So "lost" shows whether serving /api/live (which copies out
// of the same shard locks) ever stalls capture long enough to matter.
//
//   bench_http_server [--port 0] [--connections 100000] [--rate 200000] [--ring 4096]
//                     [--threads 2] [--live-max-age-ms 250]
// Prints "port <n>" once listening; GET /bench/capture returns the capture counters (and
// the longest stall since the previous call); SIGINT/SIGTERM stop it.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/live_source.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/router.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/capture/capture.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"

namespace {

using namespace ayaflow;
using Clock = std::chrono::steady_clock;

struct Options {
  std::uint16_t port = 0;
  std::size_t connections = 100000;
  std::uint64_t rate = 200000;  // events per second
  std::uint64_t ring = 4096;    // events the ring buffer holds
  unsigned threads = 2;
  std::uint64_t live_max_age_ms = 250;  // addCoreRoutes()'s reuse of the /api/live list
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const unsigned long long v = std::strtoull(argv[i + 1], nullptr, 10);
    if (flag == "--port") {
      o.port = static_cast<std::uint16_t>(v);
    } else if (flag == "--connections") {
      o.connections = v;
    } else if (flag == "--rate") {
      o.rate = v;
    } else if (flag == "--ring") {
      o.ring = v;
    } else if (flag == "--threads") {
      o.threads = static_cast<unsigned>(v);
    } else if (flag == "--live-max-age-ms") {
      o.live_max_age_ms = v;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      std::exit(2);
    }
  }
  return o;
}

/// Synthetic packet i % n: connection i between 10.x.y.z:port and 93.184.216.34:443.
flow::Packet packetFor(std::size_t i, std::size_t n, std::uint64_t now_ns) {
  const std::size_t c = i % n;
  flow::Packet p;
  const bool egress = (i / n) % 2 == 0;
  const auto local = flow::IpAddress::fromV4(0x0a000000u | static_cast<std::uint32_t>(c >> 4));
  const auto remote = flow::IpAddress::fromV4(0x5db8d822u);  // 93.184.216.34
  const auto local_port = static_cast<std::uint16_t>(10000 + (c & 0xf));
  p.src = egress ? local : remote;
  p.dst = egress ? remote : local;
  p.src_port = egress ? local_port : 443;
  p.dst_port = egress ? 443 : local_port;
  p.protocol = 6;
  p.direction = egress ? flow::Direction::kEgress : flow::Direction::kIngress;
  p.addr_type = 4;
  p.ifindex = 1;
  p.length = 100 + static_cast<std::uint32_t>(c % 1400);
  p.timestamp_ns = now_ns;
  return p;
}

std::uint64_t nowNs() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}

/// The synthetic ingest thread. Counters are atomics read by HTTP threads.
class Capture {
 public:
  Capture(flow::ConnectionMap& map, const Options& options) : map_(map), options_(options) {}

  void start() {
    start_ = Clock::now();
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::uint64_t expected() const {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    return static_cast<std::uint64_t>(seconds * static_cast<double>(options_.rate));
  }
  std::uint64_t processed() const { return processed_.load(std::memory_order_relaxed); }
  std::uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  std::uint64_t lost() const { return lost_.load(std::memory_order_relaxed); }
  /// Longest single iteration (one batch, or one sleep) since the previous call, in µs.
  std::uint64_t takeMaxStallUs() { return max_stall_ns_.exchange(0) / 1000; }

 private:
  void run() {
    constexpr std::uint64_t kBatch = 256;
    std::uint64_t consumed = 0;  // processed + lost, this thread only
    std::size_t next = 0;
    auto last = Clock::now();
    while (!stop_) {
      const auto now = Clock::now();
      const auto stall = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - last).count());
      if (stall > max_stall_ns_.load(std::memory_order_relaxed)) max_stall_ns_.store(stall);
      last = now;
      const double seconds = std::chrono::duration<double>(now - start_).count();
      const auto due = static_cast<std::uint64_t>(seconds * static_cast<double>(options_.rate));
      std::uint64_t backlog = due - consumed;
      if (backlog > options_.ring) {
        // The kernel would have found the ring full for these.
        lost_.fetch_add(backlog - options_.ring, std::memory_order_relaxed);
        consumed += backlog - options_.ring;
        backlog = options_.ring;
      }
      if (backlog == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        last = Clock::now();  // a voluntary sleep is not a stall
        continue;
      }
      const std::uint64_t n = std::min(backlog, kBatch);
      const std::uint64_t ts = nowNs();
      std::uint64_t bytes = 0;
      for (std::uint64_t i = 0; i < n; ++i) {
        const flow::Packet p = packetFor(next++, options_.connections, ts);
        bytes += p.length;
        map_.record(p);
      }
      consumed += n;
      processed_.fetch_add(n, std::memory_order_relaxed);
      bytes_.fetch_add(bytes, std::memory_order_relaxed);
    }
  }

  flow::ConnectionMap& map_;
  const Options options_;
  Clock::time_point start_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> processed_{0};
  std::atomic<std::uint64_t> bytes_{0};
  std::atomic<std::uint64_t> lost_{0};
  std::atomic<std::uint64_t> max_stall_ns_{0};
};

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  configureLogging(true, false);  // errors only: the benchmark prints its own lines

  // Block the stop signals in every thread; main waits for them with sigwait().
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  flow::ConnectionMap map;
  const std::uint64_t ts = nowNs();
  for (std::size_t i = 0; i < 2 * options.connections; ++i) {
    map.record(packetFor(i, options.connections, ts));  // both directions once
  }
  Capture capture(map, options);
  // The agent's LiveSource (totals from the capture counters).
  const api::MapLiveSource live(
      [&capture] {
        return api::LiveSource::Totals{capture.processed(), capture.bytes()};
      },
      map, nullptr);

  api::Router router;
  api::StreamHub hub;
  std::unique_ptr<api::HttpServer> server;
  api::addCoreRoutes(router, live, std::chrono::milliseconds(options.live_max_age_ms));
  api::addStreamRoute(router, hub);
  common::MetricsRegistry metrics;
  metrics.add([&] {
    ayaflow::capture::CaptureStats s;
    // The kernel counts every packet, delivered to the ring or not.
    s.packets = capture.processed() + capture.lost();
    s.bytes = capture.bytes();
    s.events_lost[0] = capture.lost();
    s.events_read = capture.processed();
    s.active_connections = map.size();
    return ayaflow::capture::captureFamilies(s);
  });
  metrics.add([&] { return api::httpServerFamilies(server->stats()); });
  metrics.add(hub.metrics());
  metrics.add(api::processMetrics());
  api::addMetricsRoute(router, metrics);
  router.add("GET", "/bench/capture", [&](const api::Request&) {
    api::Response r;
    r.body = "{\"expected\":" + std::to_string(capture.expected()) +
             ",\"processed\":" + std::to_string(capture.processed()) +
             ",\"lost\":" + std::to_string(capture.lost()) +
             ",\"max_stall_us\":" + std::to_string(capture.takeMaxStallUs()) +
             ",\"connections\":" + std::to_string(map.size()) + "}";
    return r;
  });

  api::HttpServerOptions http;
  http.address = "127.0.0.1";
  http.port = options.port;
  http.threads = options.threads;
  http.max_connections = 4096;
  server = std::make_unique<api::HttpServer>(http, router);
  server->start();
  capture.start();
  std::atomic<bool> running{true};
  std::thread publisher([&] {
    // The app's one-second stream timer.
    while (running) {
      hub.publish(api::streamFrame(live));
      for (int i = 0; i < 10 && running; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
  std::printf("port %u connections %zu rate %llu ring %llu threads %u live-max-age %llu ms\n",
              server->port(), map.size(), static_cast<unsigned long long>(options.rate),
              static_cast<unsigned long long>(options.ring), options.threads,
              static_cast<unsigned long long>(options.live_max_age_ms));
  std::fflush(stdout);

  int signo = 0;
  sigwait(&signals, &signo);
  running = false;
  publisher.join();
  server->stop();
  capture.stop();
  std::printf("stopped: expected %llu processed %llu lost %llu\n",
              static_cast<unsigned long long>(capture.expected()),
              static_cast<unsigned long long>(capture.processed()),
              static_cast<unsigned long long>(capture.lost()));
  return 0;
}
