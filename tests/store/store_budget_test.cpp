// SPDX-License-Identifier: MIT OR Apache-2.0
// The disk budget (docs/storage.md "Disk budget"): past max_db_bytes the oldest rows go, in
// chunks, and the file stops growing; the deleted rows are counted exactly; retention by age
// works beside it; a lowered budget takes effect at start-up. Real SQLite files in $TMPDIR.
#include <gtest/gtest.h>
#include <prometheus/metric_family.h>
#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ayaflow/store/sqlite_sink.h"
#include "sqlite_util.h"
#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using test::RawDb;
using test::TempDir;

constexpr std::uint64_t kMiB = 1u << 20;

std::uint64_t sizeOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

/// The database file and its -wal file, as `du` would count them.
std::uint64_t onDisk(const std::string& path) { return sizeOf(path) + sizeOf(path + "-wal"); }

StoreOptions budgetOptions(const std::string& path, std::uint64_t max_bytes) {
  StoreOptions o;
  o.db_path = path;
  o.max_db_bytes = max_bytes;
  o.budget_chunk = 2000;
  o.queue_rows = std::size_t{1} << 20;  // nothing dropped for a full queue
  o.min_free_bytes = 0;                 // the floor has its own (root) test
  o.min_free_percent = 0;
  return o;
}

/// Raw rows with timestamps base + first .. base + first + n - 1 (one per millisecond), from
/// 256 source addresses and ports, so the packets_keys summary has work too.
pipeline::BatchPtr rows(std::int64_t base, std::int64_t first, std::size_t n) {
  auto batch = std::make_shared<pipeline::RecordBatch>(n);
  for (std::size_t i = 0; i < n; ++i) {
    pipeline::FlowRecord& r = (*batch)[i];
    const std::int64_t t = first + static_cast<std::int64_t>(i);
    r.src = flow::IpAddress::fromV4(0x0a000000u | static_cast<std::uint32_t>(t % 256));
    r.dst = flow::IpAddress::fromV4(0xc0a80001u);
    r.src_port = static_cast<std::uint16_t>(10000 + t % 256);
    r.dst_port = 443;
    r.protocol = 6;
    r.first_ms = r.last_ms = base + t;
    r.bytes = 100;
    r.packets = 1;
  }
  return batch;
}

std::uint64_t sampleOf(const SqliteSinkStats& s, const std::string& family,
                       const std::string& reason) {
  for (const prometheus::MetricFamily& f : storageFamilies(s)) {
    if (f.name != family) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (l.name == "reason" && l.value == reason) {
          return static_cast<std::uint64_t>(m.counter.value);
        }
      }
    }
  }
  ADD_FAILURE() << family << "{reason=\"" << reason << "\"} not found";
  return 0;
}

TEST(StoreBudget, OldestRowsGoFirstAndTheFileStaysWithinTheBudget) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  const std::uint64_t budget = 8 * kMiB;
  const std::int64_t base = ayaflow::test::realtimeNowMs() - 3600 * 1000;
  constexpr std::size_t kBatch = 1000;
  constexpr int kBatches = 180;  // ~18 MB of rows: twice the budget
  SqliteSink sink(budgetOptions(path, budget));
  std::uint64_t high_water = 0;
  for (int b = 0; b < kBatches; ++b) {
    ASSERT_TRUE(sink.consume(rows(base, std::int64_t{b} * kBatch, kBatch), std::nullopt));
    sink.syncForTest();  // written, and any budget pass finished
    high_water = std::max(high_water, onDisk(path));
  }
  const SqliteSinkStats s = sink.stats();
  sink.stop();

  const std::uint64_t written = std::uint64_t{kBatches} * kBatch;
  EXPECT_EQ(s.rows_stored, written);
  EXPECT_GT(s.rows_deleted_size, written / 2) << "the budget never deleted much";
  EXPECT_EQ(s.rows_deleted, 0u);  // no retention
  // One chunk's slack: a turn writes a batch before the budget deletes the next chunk.
  EXPECT_LE(high_water, budget + kMiB) << "the file grew past the budget";
  EXPECT_LE(s.db_bytes, budget);
  EXPECT_EQ(s.max_db_bytes, budget);

  RawDb db(path);
  const std::int64_t present = db.count("SELECT count(*) FROM packets");
  // Exact: every row written is present or was counted deleted for space.
  EXPECT_EQ(s.rows_deleted_size, written - static_cast<std::uint64_t>(present));
  EXPECT_EQ(sampleOf(s, "ayaflow_storage_rows_deleted_total", "size"), s.rows_deleted_size);
  EXPECT_EQ(sampleOf(s, "ayaflow_storage_rows_deleted_total", "age"), 0u);
  // The oldest went first: what is left is the newest rows, all of them, without gaps.
  const std::int64_t oldest = db.count("SELECT min(timestamp) FROM packets");
  const std::int64_t newest = db.count("SELECT max(timestamp) FROM packets");
  EXPECT_EQ(newest, base + static_cast<std::int64_t>(written) - 1);
  EXPECT_EQ(present, newest - oldest + 1);
  EXPECT_EQ(oldest, base + static_cast<std::int64_t>(s.rows_deleted_size));
  // The summary lost only epochs wholly older than the oldest row: every row left can still be
  // found by address, and no epoch before the oldest row's is left.
  const std::int64_t oldest_epoch = detail::keyEpoch(detail::keyBucket(oldest));
  EXPECT_EQ(db.count("SELECT min(epoch) FROM packets_keys"), oldest_epoch);
  EXPECT_EQ(db.count("SELECT count(*) FROM packets p WHERE NOT EXISTS (SELECT 1 FROM "
                     "packets_keys k WHERE k.bucket = p.timestamp / 10000 AND k.k = p.src_ip)"),
            0);
  EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
}

TEST(StoreBudget, RetentionByAgeWorksBeside) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  { SqliteSink create(budgetOptions(path, 0)); }
  const std::int64_t now = ayaflow::test::realtimeNowMs();
  constexpr int kOld = 3000;
  {
    RawDb db(path);
    db.exec("BEGIN");
    for (int i = 0; i < kOld; ++i) {
      db.exec("INSERT INTO packets (timestamp, src_ip, dst_ip) VALUES (" +
              std::to_string(now - 7200 * 1000 + i) + ", 'old', 'x')");
    }
    db.exec("COMMIT");
  }
  const std::uint64_t budget = 6 * kMiB;
  StoreOptions o = budgetOptions(path, budget);
  o.retention_s = 3600;
  SqliteSink sink(o);
  sink.syncForTest();  // the start-up retention pass
  ASSERT_EQ(sink.stats().rows_deleted, static_cast<std::uint64_t>(kOld));
  const std::int64_t base = now - 1800 * 1000;  // within the retention
  constexpr std::size_t kBatch = 2000;
  constexpr int kBatches = 100;
  for (int b = 0; b < kBatches; ++b) {
    ASSERT_TRUE(sink.consume(rows(base, std::int64_t{b} * kBatch, kBatch), std::nullopt));
    sink.syncForTest();
  }
  const SqliteSinkStats s = sink.stats();
  sink.stop();
  const std::uint64_t written = std::uint64_t{kBatches} * kBatch;
  RawDb db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM packets WHERE src_ip = 'old'"), 0);
  const auto present = static_cast<std::uint64_t>(db.count("SELECT count(*) FROM packets"));
  EXPECT_GT(s.rows_deleted_size, 0u);
  EXPECT_EQ(s.rows_deleted, static_cast<std::uint64_t>(kOld));  // age: the old rows only
  EXPECT_EQ(s.rows_deleted_size, written - present);            // size: the rest
  EXPECT_EQ(sampleOf(s, "ayaflow_storage_rows_deleted_total", "age"),
            static_cast<std::uint64_t>(kOld));
  EXPECT_EQ(db.count("SELECT min(timestamp) FROM packets"),
            base + static_cast<std::int64_t>(s.rows_deleted_size));
  EXPECT_LE(onDisk(path), budget + kMiB);
}

/// Writes `batches` x 2000 rows without a budget (the file grows to ~7 MB per 100 batches).
void fill(const std::string& path, int batches, std::int64_t base) {
  SqliteSink sink(budgetOptions(path, 0));
  for (int b = 0; b < batches; ++b) {
    ASSERT_TRUE(sink.consume(rows(base, std::int64_t{b} * 2000, 2000), std::nullopt));
  }
  sink.syncForTest();
}

TEST(StoreBudget, ALoweredBudgetStopsTheFileGrowing) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  const std::int64_t base = ayaflow::test::realtimeNowMs() - 3600 * 1000;
  fill(path, 300, base);  // ~21 MB
  const std::uint64_t before = sizeOf(path);
  ASSERT_GT(before, 16 * kMiB);

  const std::uint64_t budget = 8 * kMiB;
  SqliteSink sink(budgetOptions(path, budget));
  sink.syncForTest();  // the first turn measures the file and deletes down to the budget
  EXPECT_LE(sink.stats().db_bytes, budget);
  EXPECT_GT(sink.stats().rows_deleted_size, 0u);
  // Free pages are reused: ~7 MB more rows do not grow the file (a plain file keeps its
  // size; only an auto_vacuum=INCREMENTAL file gives pages back, see the next test).
  for (int b = 300; b < 400; ++b) {
    ASSERT_TRUE(sink.consume(rows(base, std::int64_t{b} * 2000, 2000), std::nullopt));
    sink.syncForTest();
  }
  EXPECT_LE(sizeOf(path), before);
  EXPECT_LE(sink.stats().db_bytes, budget);
}

TEST(StoreBudget, AnIncrementalVacuumFileShrinksToTheBudget) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  const std::int64_t base = ayaflow::test::realtimeNowMs() - 3600 * 1000;
  fill(path, 300, base);
  {
    RawDb db(path);  // as docs/storage.md tells, once, with the agent stopped
    db.exec("PRAGMA auto_vacuum=INCREMENTAL");
    db.exec("VACUUM");
    ASSERT_EQ(db.count("PRAGMA auto_vacuum"), 2);
  }
  ASSERT_GT(sizeOf(path), 16 * kMiB);
  const std::uint64_t budget = 8 * kMiB;
  SqliteSink sink(budgetOptions(path, budget));
  sink.syncForTest();  // deletes, then gives the free pages back, a chunk per turn
  EXPECT_LE(onDisk(path), budget + kMiB);
  EXPECT_LE(sink.stats().db_file_bytes, budget + kMiB);
}

}  // namespace
}  // namespace ayaflow::store
