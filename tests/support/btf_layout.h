// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Checks that a struct in a BPF object's BTF is laid out as the C++ compiler lays out the ABI
// header's struct: the ABI tests of the classifier and of the tracing probes.

#include <bpf/btf.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

namespace ayaflow::test {

inline const btf_member* findBtfMember(const btf* b, const btf_type* t, const char* name) {
  const btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); ++i, ++m) {
    if (std::string(btf__name_by_offset(b, m->name_off)) == name) return m;
  }
  return nullptr;
}

/// One member as the C++ compiler lays it out.
struct Field {
  const char* name;
  std::size_t offset;
  std::size_t size;
};
#define AYAFLOW_FIELD(type, member) \
  ::ayaflow::test::Field { #member, offsetof(type, member), sizeof(type::member) }

/// The struct `name` in the BTF has exactly `fields` (pads included), at the C++ offsets and
/// sizes, and the C++ size.
inline void expectStruct(const btf* b, const char* name, std::size_t size,
                         const std::vector<Field>& fields) {
  SCOPED_TRACE(name);
  const int id = btf__find_by_name_kind(b, name, BTF_KIND_STRUCT);
  ASSERT_GT(id, 0);
  EXPECT_EQ(btf__resolve_size(b, id), static_cast<long>(size));
  const btf_type* t = btf__type_by_id(b, id);
  EXPECT_EQ(btf_vlen(t), static_cast<int>(fields.size()));  // every field, pads included
  for (const Field& f : fields) {
    const btf_member* m = findBtfMember(b, t, f.name);
    ASSERT_NE(m, nullptr) << f.name;
    EXPECT_EQ(btf_member_bit_offset(t, static_cast<__u32>(m - btf_members(t))), f.offset * 8)
        << f.name;
    EXPECT_EQ(btf__resolve_size(b, m->type), static_cast<long>(f.size)) << f.name;
  }
}

}  // namespace ayaflow::test
