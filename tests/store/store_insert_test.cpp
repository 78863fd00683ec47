// SPDX-License-Identifier: MIT OR Apache-2.0
// Raw rows inserted many per statement (unit tier, real SQLite files): the same records
// written one row per transaction (one-row statements only) and in one batch (groups of rows
// per statement, then one-row statements for the rest) give identical rows, value and type
// of every column, whatever mix of names, health figures, families and interfaces the
// records have; the counters and the address and port summary agree too.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ayaflow/pipeline/flow_record.h"
#include "ayaflow/store/sqlite_sink.h"
#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using test::RawDb;
using test::TempDir;

// Every column of the table with its storage class, in id order.
constexpr const char* kAllColumns =
    "SELECT id, timestamp, typeof(timestamp), src_ip, typeof(src_ip), dst_ip, dst_port, "
    "src_port, protocol, typeof(protocol), length, packet_count, direction, src_hostname, "
    "dst_hostname, domain, interface, typeof(interface), src_namespace, src_pod, "
    "src_workload, src_workload_kind, src_node, dst_namespace, dst_pod, dst_workload, "
    "dst_workload_kind, dst_node, tcp_flags, typeof(tcp_flags), tcp_state, rtt_us, rtt_kind, "
    "retransmits, typeof(retransmits), drops, typeof(drops) FROM packets ORDER BY id";

/// Records of every kind the writer tells apart, in a fixed pseudo-random mix and in time
/// order: TCP with health figures, UDP without (and with drops), IPv4 and IPv6, with and
/// without Kubernetes names and host names, on interface 1 (lo), none, or one that does not
/// exist (no name).
std::vector<pipeline::FlowRecord> mixedRecords(std::size_t n) {
  const auto web = std::make_shared<const enrich::PodName>(
      enrich::PodName{"shop", "web-7d9f8-x2x4q", "web", "Deployment"});
  const auto node = std::make_shared<const std::string>("node-a");
  auto names = std::make_shared<enrich::ConnectionNames>();
  names->local.pod = web;
  names->remote.node = node;
  names->remote.hostname = "db.example";
  names->domain = "example.com";
  auto hosts_only = std::make_shared<enrich::ConnectionNames>();
  hosts_only->remote.hostname = "peer.example";

  std::mt19937_64 rng(7);
  std::vector<pipeline::FlowRecord> out(n);
  const std::int64_t t0 = 1760000000000;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = rng();
    pipeline::FlowRecord& rec = out[i];
    if (r % 5 == 0) {
      rec.src = *flow::IpAddress::parse("2001:db8::1");
      rec.dst = *flow::IpAddress::parse("2001:db8::2");
      rec.dst.bytes[15] = static_cast<std::uint8_t>(r >> 8);
    } else {
      rec.src = flow::IpAddress::fromV4(0x0a000001u + static_cast<std::uint32_t>((r >> 8) % 7));
      rec.dst = flow::IpAddress::fromV4(0xc0a80001u);
    }
    rec.first_ms = rec.last_ms = t0 + static_cast<std::int64_t>(i / 3);
    rec.bytes = 40 + (r >> 16) % 1400;
    rec.src_port = static_cast<std::uint16_t>(30000 + (r >> 24) % 50);
    rec.dst_port = (r >> 30) & 1 ? 443 : 53;
    rec.direction = (r >> 31) & 1 ? flow::Direction::kEgress : flow::Direction::kIngress;
    rec.ifindex = (r >> 32) % 3 == 0 ? 0 : ((r >> 32) % 3 == 1 ? 1 : 999999);
    if ((r >> 34) % 3 == 0) {
      rec.protocol = 6;
      rec.tcp_flags = 0x18;
      rec.tcp_state = flow::TcpState::kEstablished;
      if ((r >> 36) & 1) {
        rec.rtt_us = 1234;
        rec.rtt_kind = flow::RttKind::kSmoothed;
      }
      rec.retransmits = (r >> 37) & 1;
    } else {
      rec.protocol = 17;
      rec.drops = (r >> 38) % 8 == 0 ? 1 : 0;
    }
    switch ((r >> 40) % 4) {
      case 0:
        rec.names = names;
        break;
      case 1:
        rec.names = hosts_only;
        break;
      default:
        break;
    }
  }
  return out;
}

/// Writes `records` through a fresh SqliteSink at `path`, `per_batch` records per batch.
SqliteSinkStats write(const std::string& path, const std::vector<pipeline::FlowRecord>& records,
                      std::size_t per_batch) {
  StoreOptions o;
  o.db_path = path;
  o.batch_rows = per_batch;
  SqliteSink sink(o);
  for (std::size_t i = 0; i < records.size(); i += per_batch) {
    const auto end =
        records.begin() + static_cast<std::ptrdiff_t>(std::min(records.size(), i + per_batch));
    auto batch = std::make_shared<const pipeline::RecordBatch>(
        records.begin() + static_cast<std::ptrdiff_t>(i), end);
    EXPECT_TRUE(sink.consume(batch, std::chrono::steady_clock::now() + std::chrono::seconds(60)));
  }
  sink.flush();
  const SqliteSinkStats s = sink.stats();
  sink.stop();
  return s;
}

TEST(StoreInsert, RowsInsertedManyPerStatementEqualRowsInsertedOneByOne) {
  TempDir dir;
  // 1000 records: groups of many rows, then a tail of single rows.
  const auto records = mixedRecords(1000);
  const SqliteSinkStats one = write(dir.file("one.db"), records, 1);
  const SqliteSinkStats many = write(dir.file("many.db"), records, records.size());
  EXPECT_EQ(one.rows_stored, records.size());
  EXPECT_EQ(many.rows_stored, records.size());
  EXPECT_EQ(one.packets_stored, records.size());
  EXPECT_EQ(many.packets_stored, records.size());
  EXPECT_EQ(many.batches, 1u);
  EXPECT_EQ(many.rows_dropped_write_error + many.queue.records_dropped_full, 0u);

  RawDb a(dir.file("one.db"));
  RawDb b(dir.file("many.db"));
  const auto rows_one = a.rows(kAllColumns);
  const auto rows_many = b.rows(kAllColumns);
  ASSERT_EQ(rows_one.size(), records.size());
  ASSERT_EQ(rows_many.size(), records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(rows_one[i], rows_many[i]) << "row " << i + 1;
  }
  // Every kind occurs, so the comparison covered them.
  EXPECT_GT(b.count("SELECT count(*) FROM packets WHERE src_pod IS NOT NULL"), 0);
  EXPECT_GT(b.count("SELECT count(*) FROM packets WHERE dst_hostname IS NOT NULL AND "
                    "src_pod IS NULL AND dst_node IS NULL"),
            0);
  EXPECT_GT(b.count("SELECT count(*) FROM packets WHERE tcp_flags IS NULL AND drops IS NULL"), 0);
  EXPECT_GT(b.count("SELECT count(*) FROM packets WHERE protocol = 'UDP' AND drops = 1"), 0);
  EXPECT_GT(b.count("SELECT count(*) FROM packets WHERE rtt_us IS NOT NULL"), 0);
  EXPECT_GT(b.count("SELECT count(*) FROM packets WHERE interface IS NULL"), 0);
  EXPECT_GT(b.count("SELECT count(*) FROM packets WHERE src_ip LIKE '2001:%'"), 0);
  // The address and port summary holds the same keys.
  const char* keys = "SELECT epoch, quote(k), bucket FROM packets_keys ORDER BY 1, 2, 3";
  EXPECT_EQ(a.rows(keys), b.rows(keys));
  EXPECT_GT(b.count("SELECT count(*) FROM packets_keys"), 0);
}

}  // namespace
}  // namespace ayaflow::store
