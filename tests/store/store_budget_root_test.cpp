// SPDX-License-Identifier: MIT OR Apache-2.0
// The free-space floor (root tier: mounts a small tmpfs): below --min-free-disk writes pause
// with a counted reason instead of failing, the writer keeps running, and writing resumes once
// space returns; every row offered is either stored or counted dropped.
#include <gtest/gtest.h>
#include <prometheus/metric_family.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/store/sqlite_sink.h"
#include "root_guard.h"
#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using test::RawDb;
using test::TempDir;

constexpr std::uint64_t kMiB = 1u << 20;

/// A tmpfs of `mib` MiB mounted on a fresh directory; always unmounted on destruction.
class Tmpfs {
 public:
  explicit Tmpfs(int mib) {
    mountpoint_ = dir_.file("fs");
    std::filesystem::create_directory(mountpoint_);
    const std::string opts = "size=" + std::to_string(mib) + "m,mode=0755";
    if (::mount("ayaflow-budget-test", mountpoint_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                opts.c_str()) != 0) {
      error_ = std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(mountpoint_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  std::string file(const std::string& name) const { return mountpoint_ + "/" + name; }
  std::uint64_t freeBytes() const {
    struct statvfs v {};
    if (::statvfs(mountpoint_.c_str(), &v) != 0) return 0;
    return static_cast<std::uint64_t>(v.f_bavail) * v.f_frsize;
  }

 private:
  TempDir dir_;
  std::string mountpoint_;
  bool mounted_ = false;
  std::string error_;
};

/// Writes `bytes` of zeros to `path`; false if the file system refused.
bool writeBallast(const std::string& path, std::uint64_t bytes) {
  std::ofstream out(path, std::ios::binary);
  static const std::vector<char> chunk(kMiB / 4, 0);
  for (std::uint64_t done = 0; done < bytes && out; done += chunk.size()) {
    out.write(chunk.data(),
              static_cast<std::streamsize>(std::min<std::uint64_t>(chunk.size(), bytes - done)));
  }
  out.flush();
  return static_cast<bool>(out);
}

pipeline::BatchPtr rows(std::int64_t first_ms, std::size_t n) {
  auto batch = std::make_shared<pipeline::RecordBatch>(n);
  for (std::size_t i = 0; i < n; ++i) {
    pipeline::FlowRecord& r = (*batch)[i];
    r.src = flow::IpAddress::fromV4(0x0a000001u + static_cast<std::uint32_t>(i % 64));
    r.dst = flow::IpAddress::fromV4(0xc0a80001u);
    r.src_port = static_cast<std::uint16_t>(20000 + i);
    r.dst_port = 53;
    r.protocol = 17;
    r.first_ms = r.last_ms = first_ms + static_cast<std::int64_t>(i);
    r.bytes = 80;
    r.packets = 1;
  }
  return batch;
}

double sample(const SqliteSinkStats& s, const std::string& family, const char* reason) {
  for (const prometheus::MetricFamily& f : storageFamilies(s)) {
    if (f.name != family) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      if (reason == nullptr) return m.gauge.value;
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (l.name == "reason" && l.value == reason) return m.counter.value;
      }
    }
  }
  ADD_FAILURE() << family << " not found";
  return -1;
}

TEST(StoreBudgetRoot, BelowTheFloorWritesPauseCountedAndResume) {
  AYAFLOW_REQUIRE_ROOT();
  Tmpfs fs(16);
  ASSERT_TRUE(fs.mounted()) << "mount tmpfs: " << fs.error();

  StoreOptions o;
  o.db_path = fs.file("traffic.db");
  o.queue_rows = std::size_t{1} << 20;
  o.min_free_bytes = 4 * kMiB;
  o.min_free_percent = 0;
  o.free_check_interval = std::chrono::milliseconds(5);
  o.log_interval = std::chrono::milliseconds(0);
  SqliteSink sink(o);
  constexpr std::size_t kBatch = 100;
  std::uint64_t offered = 0;
  std::int64_t t = ayaflow::test::realtimeNowMs() - 600 * 1000;
  const auto offer = [&] {
    ASSERT_TRUE(sink.consume(rows(t, kBatch), std::nullopt));
    t += static_cast<std::int64_t>(kBatch);
    offered += kBatch;
    sink.syncForTest();
  };
  // Offers batches until `done` holds; false past the deadline.
  const auto offerUntil = [&](auto done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      offer();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // a floor check is due
    }
    return true;
  };

  for (int i = 0; i < 10; ++i) offer();
  SqliteSinkStats s = sink.stats();
  ASSERT_EQ(s.rows_stored, offered);
  EXPECT_FALSE(s.writes_paused);
  EXPECT_EQ(s.disk_floor_bytes, 4 * kMiB);

  // A ballast leaves 2 MiB: below the floor, still room for SQLite.
  const std::uint64_t free_before = fs.freeBytes();
  ASSERT_GT(free_before, 8 * kMiB);
  ASSERT_TRUE(writeBallast(fs.file("ballast"), free_before - 2 * kMiB));
  ASSERT_TRUE(offerUntil([&] { return sink.stats().writes_paused; }))
      << "writes never paused; free " << fs.freeBytes();

  // Paused: every row offered is dropped and counted, nothing fails, the writer runs on.
  s = sink.stats();
  const std::uint64_t stored_at_pause = s.rows_stored;
  const std::uint64_t dropped_at_pause = s.rows_dropped_disk_space;
  for (int i = 0; i < 20; ++i) offer();
  s = sink.stats();
  EXPECT_TRUE(s.writes_paused);
  EXPECT_EQ(s.rows_stored, stored_at_pause);
  EXPECT_EQ(s.rows_dropped_disk_space, dropped_at_pause + 20 * kBatch);
  EXPECT_EQ(s.packets_dropped_disk_space, s.rows_dropped_disk_space);
  EXPECT_EQ(s.write_errors, 0u);
  EXPECT_EQ(s.write_failures, 0u);
  EXPECT_EQ(sample(s, "ayaflow_storage_writes_paused", nullptr), 1.0);
  EXPECT_EQ(sample(s, "ayaflow_storage_rows_dropped_total", "disk_space"),
            static_cast<double>(s.rows_dropped_disk_space));
  EXPECT_LT(s.disk_free_bytes, s.disk_floor_bytes);

  // Space returns: writing resumes by itself.
  ASSERT_TRUE(std::filesystem::remove(fs.file("ballast")));
  ASSERT_TRUE(offerUntil([&] { return !sink.stats().writes_paused; }));
  const std::uint64_t stored_at_resume = sink.stats().rows_stored;
  for (int i = 0; i < 10; ++i) offer();
  s = sink.stats();
  EXPECT_EQ(s.rows_stored, stored_at_resume + 10 * kBatch);
  EXPECT_EQ(sample(s, "ayaflow_storage_writes_paused", nullptr), 0.0);
  // Nothing lost silently.
  EXPECT_EQ(s.rows_stored + s.rows_dropped_disk_space, offered);
  EXPECT_EQ(s.rows_dropped_write_error + s.queue.records_dropped_full, 0u);
  sink.stop();

  RawDb db(fs.file("traffic.db"));
  EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(db.count("SELECT count(*) FROM packets"), static_cast<std::int64_t>(s.rows_stored));
}

}  // namespace
}  // namespace ayaflow::store
