// SPDX-License-Identifier: MIT OR Apache-2.0
// The SQLite writer's cost per row with and without Kubernetes names (plain main, prints a
// table; run a Release build). The same records are written by the SqliteSink alone (no
// pipeline, no capture) in alternating rounds, each into a fresh database:
//   - raw rows without names (the ten name columns NULL),
//   - raw rows with names: a pod at the source (namespace, pod, workload, kind: about 55
//     bytes of text) and the node at the destination, as the pod name table hands them out
//     (shared, immutable),
//   - aggregated rows updated in place (a checkpoint's UPDATE by rowid), with and without.
// Reported: the fastest round (least disturbed by other processes) and the median, in µs
// per row of the writer's transaction, and the database size per million rows.
//
//   bench_store_names [--rows N] [--rounds R] [--dir DIR]
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/enrich/enricher.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/flow_record.h"
#include "ayaflow/store/sqlite_sink.h"

namespace {

using ayaflow::flow::Direction;
using ayaflow::flow::IpAddress;
using ayaflow::pipeline::FlowRecord;
using ayaflow::pipeline::RecordBatch;
using ayaflow::pipeline::RecordState;
using Clock = std::chrono::steady_clock;

double us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

std::int64_t realtimeMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void removeDb(const std::string& path) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
}

std::uint64_t fileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

/// `rows` records of distinct flows 10.x -> 192.168.0.1:443; with `named`, each source is
/// one of 500 pods (20 namespaces) and the destination the node. With `update_keys`, each
/// record is a provisional checkpoint of its own (flow, window).
RecordBatch makeRecords(std::size_t rows, bool named, bool update_keys) {
  std::vector<std::shared_ptr<const ayaflow::enrich::ConnectionNames>> names;
  if (named) {
    const auto node = std::make_shared<const std::string>("node-a");
    for (int i = 0; i < 500; ++i) {
      auto n = std::make_shared<ayaflow::enrich::ConnectionNames>();
      n->local.pod = std::make_shared<const ayaflow::enrich::PodName>(ayaflow::enrich::PodName{
          "team-" + std::to_string(i % 20),
          "checkout-" + std::to_string(i / 4) + "-7d9f8c6b5-x2" + std::to_string(i),
          "checkout-" + std::to_string(i / 4), "Deployment"});
      n->remote.node = node;
      names.push_back(std::move(n));
    }
  }
  const std::int64_t now = realtimeMs();
  RecordBatch out(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    FlowRecord& r = out[i];
    const auto flow = static_cast<std::uint32_t>(i);
    r.src = IpAddress::fromV4(0x0a000000u | (flow >> 4));
    r.dst = IpAddress::fromV4(0xc0a80001u);
    r.src_port = static_cast<std::uint16_t>(40000 + (flow & 15));
    r.dst_port = 443;
    r.protocol = 6;
    r.direction = Direction::kEgress;
    r.first_ms = r.last_ms = now;
    r.bytes = 100;
    r.ifindex = 1;  // "lo": looked up once per batch
    if (named) r.names = names[i % names.size()];
    if (update_keys) {
      r.state = RecordState::kProvisional;
      r.update_key = i + 1;
      r.window_end_ms = now + 3600000;
    }
  }
  return out;
}

/// Writes `batch` through a fresh sink; returns µs per row of the transaction(s).
double writeOnce(const std::string& path, const RecordBatch& batch, std::uint64_t* bytes) {
  removeDb(path);
  ayaflow::store::StoreOptions so;
  so.db_path = path;
  so.queue_rows = batch.size() + 1;
  so.batch_rows = batch.size();
  ayaflow::store::SqliteSink sink(so);
  const auto data = std::make_shared<const RecordBatch>(batch);
  const auto t0 = Clock::now();
  sink.consume(data, Clock::now() + std::chrono::seconds(60));
  sink.flush();
  const double per_row = us(Clock::now() - t0) / static_cast<double>(batch.size());
  sink.stop();
  *bytes = fileBytes(path);
  removeDb(path);
  return per_row;
}

/// Inserts `batch` (provisional records), then writes it again: every row updated in place.
/// Returns µs per row of the second transaction.
double updateOnce(const std::string& path, const RecordBatch& batch) {
  removeDb(path);
  ayaflow::store::StoreOptions so;
  so.db_path = path;
  so.queue_rows = batch.size() + 1;
  so.batch_rows = batch.size();
  ayaflow::store::SqliteSink sink(so);
  const auto data = std::make_shared<const RecordBatch>(batch);
  sink.consume(data, Clock::now() + std::chrono::seconds(60));
  sink.flush();
  auto again = std::make_shared<RecordBatch>(batch);
  for (auto& r : *again) {
    r.packets += 1;
    r.bytes += 100;
  }
  const auto t0 = Clock::now();
  sink.consume(std::move(again), Clock::now() + std::chrono::seconds(60));
  sink.flush();
  const double per_row = us(Clock::now() - t0) / static_cast<double>(batch.size());
  sink.stop();
  removeDb(path);
  return per_row;
}

struct Series {
  const char* name;
  std::vector<double> per_row;
  std::uint64_t bytes = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::size_t rows = 200000;
  int rounds = 9;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) {
      rows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--rows N] [--rounds R] [--dir DIR]\n", argv[0]);
      return 2;
    }
  }
  if (rows == 0 || rounds < 1) return 2;
  ayaflow::configureLogging(/*quiet=*/true, /*verbose=*/false);
  const std::string path = dir + "/bench_store_names.db";
  const RecordBatch plain = makeRecords(rows, false, false);
  const RecordBatch named = makeRecords(rows, true, false);
  const RecordBatch plain_agg = makeRecords(rows, false, true);
  const RecordBatch named_agg = makeRecords(rows, true, true);
  Series s[4] = {{"INSERT, no names", {}, 0},
                 {"INSERT, pod + node names", {}, 0},
                 {"UPDATE in place, no names", {}, 0},
                 {"UPDATE in place, pod + node names", {}, 0}};
  for (int r = 0; r < rounds; ++r) {
    s[0].per_row.push_back(writeOnce(path, plain, &s[0].bytes));
    s[1].per_row.push_back(writeOnce(path, named, &s[1].bytes));
    s[2].per_row.push_back(updateOnce(path, plain_agg));
    s[3].per_row.push_back(updateOnce(path, named_agg));
  }
  std::printf("SQLite writer, %zu rows per transaction, %d rounds\n\n", rows, rounds);
  std::printf("| rows | fastest | median | database per million rows |\n|---|---|---|---|\n");
  for (auto& x : s) {
    std::sort(x.per_row.begin(), x.per_row.end());
    std::printf("| %s | %.2f us/row | %.2f us/row | ", x.name, x.per_row.front(),
                x.per_row[x.per_row.size() / 2]);
    if (x.bytes != 0) {
      std::printf("%.1f MB |\n",
                  static_cast<double>(x.bytes) / 1e6 * 1e6 / static_cast<double>(rows));
    } else {
      std::printf("- |\n");
    }
  }
  return 0;
}
