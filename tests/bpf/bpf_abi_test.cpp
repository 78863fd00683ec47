// SPDX-License-Identifier: MIT OR Apache-2.0
// The ABI header and the BPF object's BTF agree (opens the embedded object
// without loading it: no privileges needed).
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <string>

#include "ayaflow/abi/event.h"
#include "ayaflow_bpf.skel.h"

namespace {

struct SkelDeleter {
  void operator()(ayaflow_bpf* s) const { ayaflow_bpf::destroy(s); }
};

const btf_member* findMember(const btf* b, const btf_type* t, const char* name) {
  const btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); ++i, ++m) {
    if (std::string(btf__name_by_offset(b, m->name_off)) == name) {
      return m;
    }
  }
  return nullptr;
}

void expectMember(const btf* b, const btf_type* t, const char* name, size_t offset) {
  const btf_member* m = findMember(b, t, name);
  ASSERT_NE(m, nullptr) << name;
  EXPECT_EQ(btf_member_bit_offset(t, static_cast<__u32>(m - btf_members(t))), offset * 8) << name;
}

TEST(BpfAbi, BtfMatchesHeader) {
  std::unique_ptr<ayaflow_bpf, SkelDeleter> skel(ayaflow_bpf::open());
  ASSERT_TRUE(skel) << "open embedded BPF object";
  const btf* b = bpf_object__btf(skel->obj);
  ASSERT_NE(b, nullptr);

  int id = btf__find_by_name_kind(b, "ayaflow_packet_event", BTF_KIND_STRUCT);
  ASSERT_GT(id, 0);
  EXPECT_EQ(btf__resolve_size(b, id), static_cast<long>(sizeof(ayaflow_packet_event)));
  const btf_type* t = btf__type_by_id(b, id);
  EXPECT_EQ(btf_vlen(t), 15);  // every field, pads included
  expectMember(b, t, "abi_version", offsetof(ayaflow_packet_event, abi_version));
  expectMember(b, t, "direction", offsetof(ayaflow_packet_event, direction));
  expectMember(b, t, "ifindex", offsetof(ayaflow_packet_event, ifindex));
  expectMember(b, t, "pkt_len", offsetof(ayaflow_packet_event, pkt_len));
  expectMember(b, t, "src_port", offsetof(ayaflow_packet_event, src_port));
  expectMember(b, t, "timestamp_ns", offsetof(ayaflow_packet_event, timestamp_ns));
  expectMember(b, t, "src_addr", offsetof(ayaflow_packet_event, src_addr));
  expectMember(b, t, "dst_addr", offsetof(ayaflow_packet_event, dst_addr));

  id = btf__find_by_name_kind(b, "ayaflow_stats", BTF_KIND_STRUCT);
  ASSERT_GT(id, 0);
  EXPECT_EQ(btf__resolve_size(b, id), static_cast<long>(sizeof(ayaflow_stats)));
  t = btf__type_by_id(b, id);
  expectMember(b, t, "packets", offsetof(ayaflow_stats, packets));
  expectMember(b, t, "bytes", offsetof(ayaflow_stats, bytes));
  expectMember(b, t, "events_lost", offsetof(ayaflow_stats, events_lost));

  id = btf__find_by_name_kind(b, "ayaflow_stats_key", BTF_KIND_STRUCT);
  ASSERT_GT(id, 0);
  EXPECT_EQ(btf__resolve_size(b, id), static_cast<long>(sizeof(ayaflow_stats_key)));
  t = btf__type_by_id(b, id);
  EXPECT_EQ(btf_vlen(t), 5);
  expectMember(b, t, "ifindex", offsetof(ayaflow_stats_key, ifindex));
  expectMember(b, t, "direction", offsetof(ayaflow_stats_key, direction));
  expectMember(b, t, "protocol", offsetof(ayaflow_stats_key, protocol));
  expectMember(b, t, "addr_type", offsetof(ayaflow_stats_key, addr_type));
}

TEST(BpfAbi, ProgramsAndMapsArePresent) {
  std::unique_ptr<ayaflow_bpf, SkelDeleter> skel(ayaflow_bpf::open());
  ASSERT_TRUE(skel);
  EXPECT_STREQ(bpf_program__name(skel->progs.ayaflow_ingress), "ayaflow_ingress");
  EXPECT_STREQ(bpf_program__name(skel->progs.ayaflow_egress), "ayaflow_egress");
  EXPECT_EQ(bpf_program__type(skel->progs.ayaflow_ingress), BPF_PROG_TYPE_SCHED_CLS);
  EXPECT_EQ(bpf_map__type(skel->maps.events), BPF_MAP_TYPE_RINGBUF);
  EXPECT_EQ(bpf_map__type(skel->maps.stats), BPF_MAP_TYPE_PERCPU_HASH);
  EXPECT_EQ(bpf_map__key_size(skel->maps.stats), sizeof(ayaflow_stats_key));
  EXPECT_EQ(bpf_map__value_size(skel->maps.stats), sizeof(ayaflow_stats));
  EXPECT_EQ(bpf_map__max_entries(skel->maps.stats), AYAFLOW_STATS_MAX_ENTRIES);
  EXPECT_EQ(bpf_map__type(skel->maps.stats_overflow), BPF_MAP_TYPE_PERCPU_ARRAY);
  EXPECT_EQ(bpf_map__value_size(skel->maps.stats_overflow), sizeof(ayaflow_stats));
  EXPECT_EQ(bpf_map__max_entries(skel->maps.events), 256u * 1024u);
}

}  // namespace
