// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace ayaflow::health {

/// Names of the kernel's packet drop reasons (enum skb_drop_reason), read from the running
/// kernel's BTF: the enum is not part of the kernel's ABI, its values differ between releases
/// (some were inserted at its start), so nothing is hard-coded. Names lose their
/// SKB_DROP_REASON_ prefix ("NETFILTER_DROP", "SOCKET_RCVBUFF"); SKB_CONSUMED and
/// SKB_NOT_DROPPED_YET keep theirs. Immutable after construction: any thread may read.
class DropReasonNames {
 public:
  /// Reads /sys/kernel/btf/vmlinux (libbpf's btf__load_vmlinux_btf). Empty, and never
  /// throwing, when the kernel has no BTF or no such enum (before 5.17).
  static DropReasonNames fromKernel();

  DropReasonNames() = default;
  explicit DropReasonNames(std::map<std::uint32_t, std::string> names) : names_(std::move(names)) {}

  /// The name of `value`, or "REASON_<value>" when the kernel does not name it.
  std::string name(std::uint32_t value) const;
  /// The value named `name` (without the prefix), if the kernel has it.
  std::optional<std::uint32_t> value(std::string_view name) const;
  bool empty() const { return names_.empty(); }
  std::size_t size() const { return names_.size(); }
  const std::map<std::uint32_t, std::string>& all() const { return names_; }

 private:
  std::map<std::uint32_t, std::string> names_;
};

}  // namespace ayaflow::health
