// SPDX-License-Identifier: MIT OR Apache-2.0
// The ABI header and the BPF object's BTF agree (opens the embedded object
// without loading it: no privileges needed).
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/tc_attachment.h"
#include "ayaflow_bpf.skel.h"
#include "btf_layout.h"

namespace {

struct SkelDeleter {
  void operator()(ayaflow_bpf* s) const { ayaflow_bpf::destroy(s); }
};

using ::ayaflow::test::expectStruct;

TEST(BpfAbi, BtfMatchesHeader) {
  std::unique_ptr<ayaflow_bpf, SkelDeleter> skel(ayaflow_bpf::open());
  ASSERT_TRUE(skel) << "open embedded BPF object";
  const btf* b = bpf_object__btf(skel->obj);
  ASSERT_NE(b, nullptr);

  expectStruct(b, "ayaflow_tuple", sizeof(ayaflow_tuple),
               {AYAFLOW_FIELD(ayaflow_tuple, src_addr), AYAFLOW_FIELD(ayaflow_tuple, dst_addr),
                AYAFLOW_FIELD(ayaflow_tuple, src_port), AYAFLOW_FIELD(ayaflow_tuple, dst_port),
                AYAFLOW_FIELD(ayaflow_tuple, protocol), AYAFLOW_FIELD(ayaflow_tuple, addr_type),
                AYAFLOW_FIELD(ayaflow_tuple, pad)});
  expectStruct(
      b, "ayaflow_packet_event", sizeof(ayaflow_packet_event),
      {AYAFLOW_FIELD(ayaflow_packet_event, abi_version), AYAFLOW_FIELD(ayaflow_packet_event, kind),
       AYAFLOW_FIELD(ayaflow_packet_event, direction), AYAFLOW_FIELD(ayaflow_packet_event, flags),
       AYAFLOW_FIELD(ayaflow_packet_event, tcp_flags), AYAFLOW_FIELD(ayaflow_packet_event, segs),
       AYAFLOW_FIELD(ayaflow_packet_event, ifindex), AYAFLOW_FIELD(ayaflow_packet_event, pkt_len),
       AYAFLOW_FIELD(ayaflow_packet_event, timestamp_ns),
       AYAFLOW_FIELD(ayaflow_packet_event, tuple)});
  expectStruct(
      b, "ayaflow_payload_event", sizeof(ayaflow_payload_event),
      {AYAFLOW_FIELD(ayaflow_payload_event, abi_version),
       AYAFLOW_FIELD(ayaflow_payload_event, kind), AYAFLOW_FIELD(ayaflow_payload_event, direction),
       AYAFLOW_FIELD(ayaflow_payload_event, flags), AYAFLOW_FIELD(ayaflow_payload_event, pad),
       AYAFLOW_FIELD(ayaflow_payload_event, data_len),
       AYAFLOW_FIELD(ayaflow_payload_event, ifindex), AYAFLOW_FIELD(ayaflow_payload_event, seq),
       AYAFLOW_FIELD(ayaflow_payload_event, timestamp_ns),
       AYAFLOW_FIELD(ayaflow_payload_event, tuple), AYAFLOW_FIELD(ayaflow_payload_event, data)});
  expectStruct(b, "ayaflow_flow_key", sizeof(ayaflow_flow_key),
               {AYAFLOW_FIELD(ayaflow_flow_key, tuple), AYAFLOW_FIELD(ayaflow_flow_key, ifindex),
                AYAFLOW_FIELD(ayaflow_flow_key, direction), AYAFLOW_FIELD(ayaflow_flow_key, flags),
                AYAFLOW_FIELD(ayaflow_flow_key, pad)});
  expectStruct(
      b, "ayaflow_flow_value", sizeof(ayaflow_flow_value),
      {AYAFLOW_FIELD(ayaflow_flow_value, packets), AYAFLOW_FIELD(ayaflow_flow_value, bytes),
       AYAFLOW_FIELD(ayaflow_flow_value, first_ns), AYAFLOW_FIELD(ayaflow_flow_value, last_ns),
       AYAFLOW_FIELD(ayaflow_flow_value, syn_ns), AYAFLOW_FIELD(ayaflow_flow_value, ack_ns),
       AYAFLOW_FIELD(ayaflow_flow_value, tcp_flags), AYAFLOW_FIELD(ayaflow_flow_value, syns)});
  expectStruct(
      b, "ayaflow_stats_key", sizeof(ayaflow_stats_key),
      {AYAFLOW_FIELD(ayaflow_stats_key, ifindex), AYAFLOW_FIELD(ayaflow_stats_key, direction),
       AYAFLOW_FIELD(ayaflow_stats_key, protocol), AYAFLOW_FIELD(ayaflow_stats_key, addr_type),
       AYAFLOW_FIELD(ayaflow_stats_key, pad)});
  expectStruct(
      b, "ayaflow_stats", sizeof(ayaflow_stats),
      {AYAFLOW_FIELD(ayaflow_stats, packets), AYAFLOW_FIELD(ayaflow_stats, bytes),
       AYAFLOW_FIELD(ayaflow_stats, events_lost), AYAFLOW_FIELD(ayaflow_stats, super_packets),
       AYAFLOW_FIELD(ayaflow_stats, elsewhere_packets),
       AYAFLOW_FIELD(ayaflow_stats, elsewhere_bytes)});
  expectStruct(b, "ayaflow_iface_info", sizeof(ayaflow_iface_info),
               {AYAFLOW_FIELD(ayaflow_iface_info, role), AYAFLOW_FIELD(ayaflow_iface_info, pad),
                AYAFLOW_FIELD(ayaflow_iface_info, stats_slot)});
  expectStruct(
      b, "ayaflow_payload_stats", sizeof(ayaflow_payload_stats),
      {AYAFLOW_FIELD(ayaflow_payload_stats, events), AYAFLOW_FIELD(ayaflow_payload_stats, lost)});
}

TEST(BpfAbi, MapKeysAndValuesAreTheAbiTypes) {
  std::unique_ptr<ayaflow_bpf, SkelDeleter> skel(ayaflow_bpf::open());
  ASSERT_TRUE(skel);
  for (const bpf_map* m : {skel->maps.flows_a, skel->maps.flows_b}) {
    EXPECT_EQ(bpf_map__key_size(m), sizeof(ayaflow_flow_key)) << bpf_map__name(m);
    EXPECT_EQ(bpf_map__value_size(m), sizeof(ayaflow_flow_value)) << bpf_map__name(m);
  }
  EXPECT_EQ(bpf_map__key_size(skel->maps.tls_flows), sizeof(ayaflow_tuple));
  EXPECT_EQ(bpf_map__value_size(skel->maps.payload_scratch), sizeof(ayaflow_payload_event));
  EXPECT_EQ(bpf_map__value_size(skel->maps.payload_stats), sizeof(ayaflow_payload_stats));
  for (const bpf_map* m : {skel->maps.iface_info, skel->maps.iface_roles}) {
    EXPECT_EQ(bpf_map__value_size(m), sizeof(ayaflow_iface_info)) << bpf_map__name(m);
  }
  EXPECT_EQ(bpf_map__value_size(skel->maps.stats_slots), sizeof(ayaflow_stats));
  EXPECT_EQ(bpf_map__max_entries(skel->maps.stats_slots),
            AYAFLOW_STATS_SLOTS * AYAFLOW_STATS_SLOT_KEYS);
}

TEST(BpfAbi, ProgramsAndMapsArePresent) {
  std::unique_ptr<ayaflow_bpf, SkelDeleter> skel(ayaflow_bpf::open());
  ASSERT_TRUE(skel);
  EXPECT_STREQ(bpf_program__name(skel->progs.ayaflow_in), "ayaflow_in");
  EXPECT_STREQ(bpf_program__name(skel->progs.ayaflow_eg), "ayaflow_eg");
  EXPECT_STREQ(bpf_program__name(skel->progs.ayaflow_in_ip), "ayaflow_in_ip");
  EXPECT_STREQ(bpf_program__name(skel->progs.ayaflow_eg_ip), "ayaflow_eg_ip");
  EXPECT_EQ(bpf_program__type(skel->progs.ayaflow_in), BPF_PROG_TYPE_SCHED_CLS);
  EXPECT_EQ(bpf_map__type(skel->maps.events), BPF_MAP_TYPE_RINGBUF);
  EXPECT_EQ(bpf_map__type(skel->maps.stats), BPF_MAP_TYPE_PERCPU_HASH);
  EXPECT_EQ(bpf_map__key_size(skel->maps.stats), sizeof(ayaflow_stats_key));
  EXPECT_EQ(bpf_map__value_size(skel->maps.stats), sizeof(ayaflow_stats));
  EXPECT_EQ(bpf_map__max_entries(skel->maps.stats), AYAFLOW_STATS_MAX_ENTRIES);
  EXPECT_EQ(bpf_map__type(skel->maps.stats_overflow), BPF_MAP_TYPE_PERCPU_ARRAY);
  EXPECT_EQ(bpf_map__value_size(skel->maps.stats_overflow), sizeof(ayaflow_stats));
  EXPECT_EQ(bpf_map__max_entries(skel->maps.events), 256u * 1024u);
}

// The kernel keeps 15 characters of a program's name, and a filter left behind is told
// apart from someone else's by that name: every program of the object must keep its whole
// name and be recognised on its own hook only.
TEST(BpfAbi, EveryProgramNameFitsTheKernelAndIsRecognisedOnItsHook) {
  std::unique_ptr<ayaflow_bpf, SkelDeleter> skel(ayaflow_bpf::open());
  ASSERT_TRUE(skel);
  const std::pair<const bpf_program*, bool> ours[] = {
      {skel->progs.ayaflow_in, true},
      {skel->progs.ayaflow_in_ip, true},
      {skel->progs.ayaflow_eg, false},
      {skel->progs.ayaflow_eg_ip, false},
  };
  int programs = 0;
  bpf_program* p = nullptr;
  bpf_object__for_each_program(p, skel->obj) { ++programs; }
  EXPECT_EQ(programs, 4) << "a new program must be added here and to tc_attachment.cpp";
  for (const auto& [prog, ingress] : ours) {
    const std::string name = bpf_program__name(prog);
    EXPECT_LT(name.size(), std::size_t{BPF_OBJ_NAME_LEN}) << name;
    EXPECT_TRUE(ayaflow::bpf::isOurProgramName(name, ingress)) << name;
    EXPECT_FALSE(ayaflow::bpf::isOurProgramName(name, !ingress)) << name;
  }
  // What the kernel kept of earlier versions' names is still ours, on the right hook.
  EXPECT_TRUE(ayaflow::bpf::isOurProgramName("ayaflow_ingress", true));
  EXPECT_TRUE(ayaflow::bpf::isOurProgramName("ayaflow_egress", false));
  EXPECT_TRUE(ayaflow::bpf::isOurProgramName("ayaflow_egress_", false));
  EXPECT_FALSE(ayaflow::bpf::isOurProgramName("ayaflow_egress_", true));
  // Someone else's program is not, prefix or not.
  for (const char* other : {"", "tc_ingress", "ayaflow_", "ayaflow_in_", "cil_from_netdev"}) {
    EXPECT_FALSE(ayaflow::bpf::isOurProgramName(other, true)) << other;
    EXPECT_FALSE(ayaflow::bpf::isOurProgramName(other, false)) << other;
  }
}

}  // namespace
