// SPDX-License-Identifier: MIT OR Apache-2.0
// Aggregated mode's kernel flow tables, run by the kernel through
// BPF_PROG_TEST_RUN (root): exact counts without events, the swap that loses
// nothing while packets are being counted, and the fall-back to events when
// a table is full.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/bpf/flow_tables.h"
#include "packet_builder.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

constexpr std::uint16_t kEthIp = 0x0800;

/// Sums what the tables hand out, per (direction, src port, dst port).
struct CollectingSink final : bpf::FlowSink {
  struct Sum {
    std::uint64_t packets = 0, bytes = 0, entries = 0;
    ayaflow_flow_key key{};
    std::uint64_t first_ns = 0, last_ns = 0;
  };
  void onFlow(const ayaflow_flow_key& key, const ayaflow_flow_value& value) noexcept override {
    Sum& s = sums[{key.direction, key.tuple.src_port, key.tuple.dst_port}];
    s.packets += value.packets;
    s.bytes += value.bytes;
    s.entries += 1;
    s.key = key;
    s.first_ns = value.first_ns;
    s.last_ns = value.last_ns;
    packets += value.packets;
  }
  std::map<std::tuple<int, int, int>, Sum> sums;
  std::uint64_t packets = 0;
};

class BpfFlowTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    bpf::installLibbpfLogger(false);
    bpf::ProgramOptions options;
    options.flow_table = true;
    program_ = std::make_unique<bpf::BpfProgram>(options);
    tables_ = std::make_unique<bpf::FlowTables>(
        program_->flowTablesMapFd(), program_->flowTableFd(0), program_->flowTableFd(1), 64);
    rb_.reset(
        ring_buffer__new(program_->eventsMapFd(), &BpfFlowTableTest::onSample, this, nullptr));
    ASSERT_TRUE(rb_);
  }

  static int onSample(void* ctx, void*, size_t) {
    ++static_cast<BpfFlowTableTest*>(ctx)->events_;
    return 0;
  }

  static Bytes udp(int sport, int dport, std::size_t payload) {
    return concat(ethernet(kEthIp),
                  ipv4(17, "10.0.0.1", "10.0.0.2", l4(17, sport, dport, payload)));
  }

  void run(const Bytes& frame, int repeat, bool egress = false) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                .data_size_in = static_cast<__u32>(frame.size()), .repeat = repeat);
    const int fd = egress ? program_->egressProgramFd() : program_->ingressProgramFd();
    ASSERT_EQ(bpf_prog_test_run_opts(fd, &opts), 0);
  }

  std::size_t consumeEvents() {
    events_ = 0;
    ring_buffer__consume(rb_.get());
    return events_;
  }

  std::unique_ptr<bpf::BpfProgram> program_;
  std::unique_ptr<bpf::FlowTables> tables_;
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb_{nullptr, ring_buffer__free};
  std::size_t events_ = 0;
};

TEST_F(BpfFlowTableTest, CountsEveryPacketPerFlowWithoutEvents) {
  run(udp(1111, 53, 10), 5);
  run(udp(2222, 80, 100), 3, true);
  EXPECT_EQ(consumeEvents(), 0u);

  CollectingSink sink;
  EXPECT_EQ(tables_->swapAndCollect(sink), 2u);
  ASSERT_EQ(sink.sums.size(), 2u);
  const auto& a = sink.sums.at({AYAFLOW_DIR_INGRESS, 1111, 53});
  EXPECT_EQ(a.packets, 5u);
  EXPECT_EQ(a.bytes, 5u * 38u);
  EXPECT_EQ(a.key.tuple.protocol, 17);
  EXPECT_EQ(a.key.tuple.addr_type, 4);
  EXPECT_EQ(a.key.flags, 0);
  unsigned char v4[4];
  inet_pton(AF_INET, "10.0.0.1", v4);
  EXPECT_EQ(std::memcmp(a.key.tuple.src_addr + 12, v4, 4), 0);
  EXPECT_EQ(a.key.tuple.src_addr[10], 0xff);
  EXPECT_NE(a.first_ns, 0u);
  EXPECT_GE(a.last_ns, a.first_ns);
  const auto& b = sink.sums.at({AYAFLOW_DIR_EGRESS, 2222, 80});
  EXPECT_EQ(b.packets, 3u);
  EXPECT_EQ(b.bytes, 3u * 128u);

  // The retired table was emptied; the program now counts into the other one.
  EXPECT_EQ(tables_->activeTable(), 1);
  CollectingSink empty;
  EXPECT_EQ(tables_->swapAndCollect(empty), 0u);
  run(udp(1111, 53, 10), 2);
  CollectingSink again;
  EXPECT_EQ(tables_->swapAndCollect(again), 1u);
  EXPECT_EQ(again.packets, 2u);

  const bpf::KernelTotals t = program_->readTotals();
  EXPECT_EQ(t.totalPackets(), 10u);
  EXPECT_EQ(t.totalLost(), 0u);
  EXPECT_EQ(program_->readFlowTableOverflow(), 0u);
}

TEST_F(BpfFlowTableTest, SwappingWhilePacketsAreCountedLosesNothing) {
  // Two threads run the program flat out while this one keeps swapping and
  // collecting: every packet must be collected exactly once.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> runs{0};
  auto runner = [&](int sport) {
    const Bytes frame = udp(sport, 9, 20);
    while (!stop.load()) {
      LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                  .data_size_in = static_cast<__u32>(frame.size()), .repeat = 1000);
      if (bpf_prog_test_run_opts(program_->ingressProgramFd(), &opts) == 0) {
        runs.fetch_add(1000);
      }
    }
  };
  std::thread r1(runner, 3001), r2(runner, 3002);
  CollectingSink sink;
  std::size_t swaps = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < until) {
    tables_->swapAndCollect(sink);
    ++swaps;
  }
  stop = true;
  r1.join();
  r2.join();
  tables_->collectAll(sink);
  EXPECT_GT(swaps, 10u);
  RecordProperty("swaps", static_cast<int>(swaps));
  RecordProperty("runs", static_cast<int>(runs.load()));
  EXPECT_GT(runs.load(), 0u);
  EXPECT_EQ(sink.packets, runs.load());
  EXPECT_EQ(program_->readTotals().totalPackets(), runs.load());
  EXPECT_EQ(consumeEvents(), 0u);
}

TEST_F(BpfFlowTableTest, FullTableFallsBackToEventsAndCountsThem) {
  // Fill the active table with flows of an interface that does not exist.
  for (std::uint32_t i = 0; i < AYAFLOW_FLOW_TABLE_ENTRIES; ++i) {
    ayaflow_flow_key key{};
    key.ifindex = 1000000;
    key.tuple.protocol = 17;
    key.tuple.addr_type = 4;
    key.tuple.src_port = static_cast<__u16>(i);
    key.tuple.dst_port = static_cast<__u16>(i >> 16);
    ayaflow_flow_value value{};
    value.packets = value.bytes = value.first_ns = value.last_ns = 1;
    ASSERT_EQ(bpf_map_update_elem(program_->flowTableFd(0), &key, &value, BPF_NOEXIST), 0);
  }
  run(udp(4444, 53, 10), 7);
  EXPECT_EQ(consumeEvents(), 7u);
  EXPECT_EQ(program_->readFlowTableOverflow(), 7u);
  const bpf::KernelTotals t = program_->readTotals();
  EXPECT_EQ(t.totalPackets(), 7u);
  EXPECT_EQ(t.totalLost(), 0u);

  // After the swap the empty table takes the flow again.
  CollectingSink sink;
  EXPECT_EQ(tables_->swapAndCollect(sink), std::size_t{AYAFLOW_FLOW_TABLE_ENTRIES});
  run(udp(4444, 53, 10), 2);
  EXPECT_EQ(consumeEvents(), 0u);
  CollectingSink next;
  tables_->swapAndCollect(next);
  EXPECT_EQ(next.packets, 2u);
  EXPECT_EQ(program_->readFlowTableOverflow(), 7u);
}

TEST(BpfFlowTableDeepInspect, PayloadStillCapturedWhenFlowsAreCountedInTheKernel) {
  AYAFLOW_REQUIRE_ROOT();
  bpf::installLibbpfLogger(false);
  bpf::ProgramOptions options;
  options.flow_table = true;
  options.deep_inspect = true;
  bpf::BpfProgram program(options);
  std::size_t payloads = 0, events = 0;
  auto count = [](void* ctx, void*, size_t) {
    ++*static_cast<std::size_t*>(ctx);
    return 0;
  };
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> payload_rb(
      ring_buffer__new(program.payloadEventsMapFd(), count, &payloads, nullptr), ring_buffer__free);
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> event_rb(
      ring_buffer__new(program.eventsMapFd(), count, &events, nullptr), ring_buffer__free);
  ASSERT_TRUE(payload_rb && event_rb);
  const Bytes dns =
      concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.53", l4(17, 40000, 53, 40)));
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = dns.data(),
              .data_size_in = static_cast<__u32>(dns.size()), .repeat = 3);
  ASSERT_EQ(bpf_prog_test_run_opts(program.egressProgramFd(), &opts), 0);
  ring_buffer__consume(payload_rb.get());
  ring_buffer__consume(event_rb.get());
  EXPECT_EQ(payloads, 3u);  // one DNS record per packet
  EXPECT_EQ(events, 0u);    // counted in the flow table instead
  bpf::FlowTables tables(program.flowTablesMapFd(), program.flowTableFd(0), program.flowTableFd(1));
  CollectingSink sink;
  tables.swapAndCollect(sink);
  EXPECT_EQ(sink.packets, 3u);
}

std::uint32_t maxEntries(int map_fd) {
  bpf_map_info info{};
  __u32 len = sizeof(info);
  EXPECT_EQ(bpf_obj_get_info_by_fd(map_fd, &info, &len), 0);
  return info.max_entries;
}

TEST(BpfFlowTableSize, SizedByOptionAndTinyInRawMode) {
  AYAFLOW_REQUIRE_ROOT();
  bpf::ProgramOptions options;
  options.flow_table = true;
  options.flow_table_entries = 2048;
  bpf::BpfProgram sized(options);
  EXPECT_EQ(maxEntries(sized.flowTableFd(0)), 2048u);
  EXPECT_EQ(maxEntries(sized.flowTableFd(1)), 2048u);
  // The swap must accept the resized tables (the outer map's template agrees).
  bpf::FlowTables tables(sized.flowTablesMapFd(), sized.flowTableFd(0), sized.flowTableFd(1));
  CollectingSink sink;
  EXPECT_EQ(tables.swapAndCollect(sink), 0u);
  EXPECT_EQ(tables.swapAndCollect(sink), 0u);

  bpf::BpfProgram raw(bpf::ProgramOptions{});
  EXPECT_EQ(maxEntries(raw.flowTableFd(0)), 1u);
  EXPECT_EQ(maxEntries(raw.flowTableFd(1)), 1u);
}

}  // namespace
}  // namespace ayaflow::test
