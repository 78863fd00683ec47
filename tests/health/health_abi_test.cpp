// SPDX-License-Identifier: MIT OR Apache-2.0
// The tracing probes' ABI header (ayaflow/abi/health.h) and their BPF object's BTF agree,
// and the maps have the key and value sizes userspace reads them with (opens the embedded
// object without loading it: no privileges needed).
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "ayaflow/abi/health.h"
#include "ayaflow_health_bpf.skel.h"
#include "btf_layout.h"

namespace {

struct SkelDeleter {
  void operator()(ayaflow_health_bpf* s) const { ayaflow_health_bpf::destroy(s); }
};

using ::ayaflow::test::expectStruct;

TEST(HealthAbi, BtfMatchesHeader) {
  std::unique_ptr<ayaflow_health_bpf, SkelDeleter> skel(ayaflow_health_bpf::open());
  ASSERT_TRUE(skel) << "open embedded BPF object";
  const btf* b = bpf_object__btf(skel->obj);
  ASSERT_NE(b, nullptr);
  expectStruct(b, "ayaflow_tuple", sizeof(ayaflow_tuple),
               {AYAFLOW_FIELD(ayaflow_tuple, src_addr), AYAFLOW_FIELD(ayaflow_tuple, dst_addr),
                AYAFLOW_FIELD(ayaflow_tuple, src_port), AYAFLOW_FIELD(ayaflow_tuple, dst_port),
                AYAFLOW_FIELD(ayaflow_tuple, protocol), AYAFLOW_FIELD(ayaflow_tuple, addr_type),
                AYAFLOW_FIELD(ayaflow_tuple, pad)});
  expectStruct(
      b, "ayaflow_sock_health", sizeof(ayaflow_sock_health),
      {AYAFLOW_FIELD(ayaflow_sock_health, retrans_segs),
       AYAFLOW_FIELD(ayaflow_sock_health, sample_ns), AYAFLOW_FIELD(ayaflow_sock_health, srtt_us),
       AYAFLOW_FIELD(ayaflow_sock_health, pad)});
  expectStruct(b, "ayaflow_drop_key", sizeof(ayaflow_drop_key),
               {AYAFLOW_FIELD(ayaflow_drop_key, tuple), AYAFLOW_FIELD(ayaflow_drop_key, reason),
                AYAFLOW_FIELD(ayaflow_drop_key, pad)});
  expectStruct(
      b, "ayaflow_drop_value", sizeof(ayaflow_drop_value),
      {AYAFLOW_FIELD(ayaflow_drop_value, packets), AYAFLOW_FIELD(ayaflow_drop_value, bytes),
       AYAFLOW_FIELD(ayaflow_drop_value, last_ns)});
  expectStruct(b, "ayaflow_health_totals", sizeof(ayaflow_health_totals),
               {AYAFLOW_FIELD(ayaflow_health_totals, retrans_segs),
                AYAFLOW_FIELD(ayaflow_health_totals, drop_flow_overflow),
                AYAFLOW_FIELD(ayaflow_health_totals, rtt_samples),
                AYAFLOW_FIELD(ayaflow_health_totals, sock_overflow),
                AYAFLOW_FIELD(ayaflow_health_totals, drop_flow_rate_limited)});
}

TEST(HealthAbi, MapSizes) {
  std::unique_ptr<ayaflow_health_bpf, SkelDeleter> skel(ayaflow_health_bpf::open());
  ASSERT_TRUE(skel);
  EXPECT_EQ(bpf_map__key_size(skel->maps.sock_health), sizeof(ayaflow_tuple));
  EXPECT_EQ(bpf_map__value_size(skel->maps.sock_health), sizeof(ayaflow_sock_health));
  EXPECT_EQ(bpf_map__key_size(skel->maps.drop_flows), sizeof(ayaflow_drop_key));
  EXPECT_EQ(bpf_map__value_size(skel->maps.drop_flows), sizeof(ayaflow_drop_value));
  EXPECT_EQ(bpf_map__max_entries(skel->maps.drop_totals),
            static_cast<unsigned>(AYAFLOW_DROP_REASON_SLOTS));
  EXPECT_EQ(bpf_map__value_size(skel->maps.drop_totals), sizeof(std::uint64_t));
  EXPECT_EQ(bpf_map__value_size(skel->maps.health_totals), sizeof(ayaflow_health_totals));
}

}  // namespace
