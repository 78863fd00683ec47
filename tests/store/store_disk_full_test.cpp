// SPDX-License-Identifier: MIT OR Apache-2.0
// Disk full (root tier: mounts a small tmpfs). The store keeps serving reads, counts the rows
// it cannot write, and writes again once space returns.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "root_guard.h"
#include "store_harness.h"
#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using test::Harness;
using test::HarnessOptions;
using test::makePacket;
using test::TempDir;

/// A 1 MiB tmpfs mounted on a fresh directory; always unmounted on destruction.
class SmallTmpfs {
 public:
  SmallTmpfs() {
    mountpoint_ = dir_.file("fs");
    std::filesystem::create_directory(mountpoint_);
    if (::mount("ayaflow-test", mountpoint_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                "size=1m,mode=0755") != 0) {
      error_ = std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(mountpoint_.c_str(), MNT_DETACH);
  }

  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  std::string file(const std::string& name) const { return mountpoint_ + "/" + name; }

  /// Writes zeros to `path` until the file system is full; returns the bytes written.
  std::size_t fill(const std::string& path) const {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return 0;
    static const char zeros[4096] = {};
    std::size_t total = 0;
    for (;;) {
      const std::size_t n = std::fwrite(zeros, 1, sizeof zeros, f);
      total += n;
      if (n < sizeof zeros || std::fflush(f) != 0) break;
    }
    std::fclose(f);
    return total;
  }

 private:
  TempDir dir_;
  std::string mountpoint_;
  bool mounted_ = false;
  std::string error_;
};

TEST(StoreDiskFull, DropsAreCountedReadsContinueAndWritesResume) {
  AYAFLOW_REQUIRE_ROOT();
  SmallTmpfs fs;
  ASSERT_TRUE(fs.mounted()) << "mount tmpfs: " << fs.error();

  HarnessOptions o;
  o.db_path = fs.file("traffic.db");
  o.batch_rows = 100;
  o.batch_interval = std::chrono::hours(24);
  o.log_interval = std::chrono::milliseconds(0);
  // No free-space floor: this test is about SQLite failing (store_budget_root_test.cpp has
  // the floor).
  o.min_free_bytes = 0;
  o.min_free_percent = 0;
  Harness store(o);
  for (int i = 0; i < 300; ++i) store.submit(makePacket(1, static_cast<std::uint16_t>(i), 80));
  store.flush();
  ASSERT_EQ(store.stats().sink.rows_stored, 300u);

  // Fill the file system, then keep writing: rows are refused, counted, never blocking.
  ASSERT_GT(fs.fill(fs.file("filler")), 0u);
  std::uint64_t submitted = 0;
  for (int round = 0; round < 50 && store.stats().sink.write_errors == 0; ++round) {
    for (int i = 0; i < 500; ++i) {
      store.submit(
          makePacket(2, static_cast<std::uint16_t>(i), 443, 6, flow::Direction::kEgress, 1500));
      ++submitted;
    }
    store.flush();
  }
  Harness::Stats s = store.stats();
  ASSERT_GT(s.sink.write_errors, 0u) << "the full file system never failed a write";
  EXPECT_GT(s.sink.rows_dropped_write_error, 0u);
  EXPECT_EQ(s.sink.rows_dropped_write_error, s.sink.packets_dropped_write_error);
  EXPECT_EQ(s.sink.rows_stored + s.sink.rows_dropped_write_error, 300u + submitted);
  EXPECT_EQ(s.pipeline.packets_dropped_queue_full, 0u);
  EXPECT_EQ(s.sink.write_failures, s.sink.write_errors);  // ayaflow_storage_errors_total

  // Still serving reads while full.
  flow::HistoryQuery q;
  q.limit = 1000;
  const std::size_t visible = store.query(q).size();
  EXPECT_GE(visible, 300u);

  // Space returns: writes resume by themselves.
  ASSERT_TRUE(std::filesystem::remove(fs.file("filler")));
  const std::uint64_t stored_before = s.sink.rows_stored;
  for (int i = 0; i < 250; ++i) store.submit(makePacket(3, static_cast<std::uint16_t>(i), 53, 17));
  store.flush();
  s = store.stats();
  EXPECT_EQ(s.sink.rows_stored, stored_before + 250);
  q.ip = flow::IpAddress::parse("10.0.0.3");
  EXPECT_EQ(store.query(q).size(), 250u);
  // The keys of rolled-back transactions were not taken for written: the summary finds the
  // rows stored after the failures too.
  q.ip = flow::IpAddress::parse("10.0.0.2");
  EXPECT_EQ(store.query(q).size(), std::min<std::size_t>(1000, s.sink.rows_stored - 300 - 250));
  store.stop();

  test::RawDb db(fs.file("traffic.db"));
  EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(db.count("SELECT count(*) FROM packets"),
            static_cast<std::int64_t>(s.sink.rows_stored));
}

}  // namespace
}  // namespace ayaflow::store
