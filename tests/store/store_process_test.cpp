// SPDX-License-Identifier: MIT OR Apache-2.0
// The store in a child process that gets killed (unit tier: no root, real files):
// SIGKILL while rows are being written leaves a sound database with its rows; SIGTERM
// right after a burst, handled by stopping the store, stores every packet.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "store_harness.h"
#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using test::Child;
using test::Harness;
using test::HarnessOptions;
using test::makePacket;
using test::RawDb;
using test::send;
using test::spawn;
using test::TempDir;

TEST(StoreProcess, SigkillWhileWritingLeavesASoundDatabaseThatReopensWithItsRows) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  std::int64_t rows_before = 0;
  for (int round = 0; round < 3; ++round) {
    Child child = spawn([&](int out) {
      HarnessOptions o;
      o.db_path = path;
      o.batch_rows = 200;
      o.batch_interval = std::chrono::milliseconds(5);
      Harness store(o);
      bool told = false;
      for (std::uint32_t i = 0;; ++i) {
        store.submit(makePacket(i % 1000, static_cast<std::uint16_t>(i), 80));
        if (i % 200 == 199) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          const std::uint64_t stored = store.stats().sink.rows_stored;
          if (!told && stored >= 5000) {
            send(out, &stored, sizeof stored);
            told = true;
          }
        }
      }
      return 0;
    });
    std::uint64_t stored_at_report = 0;
    ASSERT_TRUE(child.read(&stored_at_report, sizeof stored_at_report));
    // Let it keep writing a moment, so the kill lands in the middle of batches.
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + 20 * round));
    ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
    const int status = child.wait();
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGKILL);

    std::int64_t count = 0;
    {
      RawDb db(path);
      EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
      count = db.count("SELECT count(*) FROM packets");
      // Every row committed before the report survived.
      EXPECT_GE(count, rows_before + static_cast<std::int64_t>(stored_at_report));
    }
    // Start-up checks pass (the WAL left by the kill is replayed) and the rows are there.
    {
      HarnessOptions o;
      o.db_path = path;
      Harness store(o);
      flow::HistoryQuery q;
      q.limit = 1000;
      EXPECT_EQ(store.query(q).size(), 1000u);
      store.submit(makePacket(1, 1, 1));
      store.flush();
      EXPECT_EQ(store.stats().sink.rows_stored, 1u);
    }
    rows_before = count + 1;
  }
}

struct BurstReport {
  std::uint64_t rows_stored;
  std::uint64_t dropped_queue_full;
  std::uint64_t dropped_write_error;
};

TEST(StoreProcess, SigtermRightAfterABurstStoresEveryPacket) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  constexpr std::uint32_t kBurst = 60000;
  Child child = spawn([&](int out) {
    // As the agent does: SIGTERM is taken synchronously, then the store is stopped. Block
    // it before any thread starts so every thread inherits the mask.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    HarnessOptions o;
    o.db_path = path;  // default batching: 1000 rows or 2 s
    Harness store(o);
    for (std::uint32_t i = 0; i < kBurst; ++i) {
      store.submit(makePacket(i % 4000, static_cast<std::uint16_t>(i), 443, 6,
                              flow::Direction::kIngress, 1 + i % 1500));
    }
    const char ready = 'R';
    send(out, &ready, 1);
    int sig = 0;
    sigwait(&set, &sig);
    store.stop();
    const Harness::Stats s = store.stats();
    const BurstReport r{s.sink.rows_stored, s.pipeline.packets_dropped_queue_full,
                        s.sink.rows_dropped_write_error};
    send(out, &r, sizeof r);
    return 0;
  });
  char ready = 0;
  ASSERT_TRUE(child.read(&ready, 1));
  ASSERT_EQ(::kill(child.pid, SIGTERM), 0);
  BurstReport r{};
  ASSERT_TRUE(child.read(&r, sizeof r));
  const int status = child.wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(r.dropped_queue_full, 0u);
  EXPECT_EQ(r.dropped_write_error, 0u);
  EXPECT_EQ(r.rows_stored, kBurst);

  std::uint64_t bytes = 0;
  for (std::uint32_t i = 0; i < kBurst; ++i) bytes += 1 + i % 1500;
  RawDb db(path);
  EXPECT_EQ(db.one("SELECT count(*), sum(length) FROM packets"),
            std::to_string(kBurst) + "|" + std::to_string(bytes));
  EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
}

}  // namespace
}  // namespace ayaflow::store
