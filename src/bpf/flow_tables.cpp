// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/bpf/flow_tables.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <iterator>

#include "ayaflow/common/system_error.h"

namespace ayaflow::bpf {
namespace {
// The kernel's ENOTSUPP (not in userspace headers): an operation the map type lacks.
constexpr int kKernelEnotsupp = 524;
}  // namespace

FlowTables::FlowTables(int outer_map_fd, int table_a_fd, int table_b_fd, std::size_t chunk_entries)
    : outer_fd_(outer_map_fd),
      tables_{table_a_fd, table_b_fd},
      keys_(chunk_entries == 0 ? 1 : chunk_entries),
      values_(keys_.size()) {}

void FlowTables::swap() {
  const std::uint32_t slot = 0;
  const int next = 1 - active_;
  const std::uint32_t fd = static_cast<std::uint32_t>(tables_[next]);
  // For map-in-map types the kernel returns from the update only after an RCU grace
  // period: no program run that looked up the old table is still going on.
  if (bpf_map_update_elem(outer_fd_, &slot, &fd, BPF_ANY) != 0) {
    AYAFLOW_SYSTEM_ERROR(errno, "swap flow tables");
  }
  active_ = next;
}

std::size_t FlowTables::swapAndCollect(FlowSink& sink) {
  swap();
  return drain(tables_[1 - active_], sink);
}

std::size_t FlowTables::collectAll(FlowSink& sink) {
  swap();
  std::size_t n = drain(tables_[1 - active_], sink);
  n += drain(tables_[active_], sink);
  return n;
}

std::size_t FlowTables::drain(int table_fd, FlowSink& sink) {
  if (!batch_ops_) {
    return drainOneByOne(table_fd, sink);
  }
  std::size_t total = 0;
  // Hash maps use a bucket index as the batch cursor; leave room for any cursor size.
  std::uint64_t cursor_in[8] = {};
  std::uint64_t cursor_out[8] = {};
  bool first = true;
  for (;;) {
    auto count = static_cast<__u32>(keys_.size());
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int err =
        bpf_map_lookup_and_delete_batch(table_fd, first ? nullptr : cursor_in, cursor_out,
                                        keys_.data(), values_.data(), &count, &opts);
    if (err != 0 && err != -ENOENT) {
      // Kernels before 5.6 have no batch operations; a bucket with more entries than
      // the chunk reports ENOSPC. Either way the rest can be read one entry at a time.
      if (err == -EINVAL || err == -kKernelEnotsupp || err == -EOPNOTSUPP) {
        batch_ops_ = false;
        return total + drainOneByOne(table_fd, sink);
      }
      if (err == -ENOSPC) {
        return total + drainOneByOne(table_fd, sink);
      }
      AYAFLOW_SYSTEM_ERROR(-err, "read flow table");
    }
    for (__u32 i = 0; i < count; ++i) {
      sink.onFlow(keys_[i], values_[i]);
    }
    total += count;
    if (err == -ENOENT) {
      return total;  // that was the last batch
    }
    std::copy(std::begin(cursor_out), std::end(cursor_out), std::begin(cursor_in));
    first = false;
  }
}

std::size_t FlowTables::drainOneByOne(int table_fd, FlowSink& sink) {
  std::size_t total = 0;
  ayaflow_flow_key key{};
  ayaflow_flow_value value{};
  // Nothing writes the retired table, so taking the first key until none is left
  // visits each entry once.
  while (bpf_map_get_next_key(table_fd, nullptr, &key) == 0) {
    if (bpf_map_lookup_elem(table_fd, &key, &value) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "read flow table entry");
    }
    if (bpf_map_delete_elem(table_fd, &key) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "delete flow table entry");
    }
    sink.onFlow(key, value);
    ++total;
  }
  if (errno != ENOENT) {
    AYAFLOW_SYSTEM_ERROR(errno, "walk flow table");
  }
  return total;
}

}  // namespace ayaflow::bpf
