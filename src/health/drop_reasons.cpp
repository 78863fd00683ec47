// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/health/drop_reasons.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <memory>

namespace ayaflow::health {

DropReasonNames DropReasonNames::fromKernel() {
  std::unique_ptr<btf, decltype(&btf__free)> vmlinux(btf__load_vmlinux_btf(), btf__free);
  if (!vmlinux) return {};
  const std::int32_t id = btf__find_by_name_kind(vmlinux.get(), "skb_drop_reason", BTF_KIND_ENUM);
  if (id < 0) return {};
  const btf_type* type = btf__type_by_id(vmlinux.get(), static_cast<std::uint32_t>(id));
  std::map<std::uint32_t, std::string> names;
  const struct btf_enum* values = btf_enum(type);
  constexpr std::string_view kPrefix = "SKB_DROP_REASON_";
  for (std::uint16_t i = 0; i < btf_vlen(type); ++i) {
    std::string_view name = btf__name_by_offset(vmlinux.get(), values[i].name_off);
    if (name.substr(0, kPrefix.size()) == kPrefix) name.remove_prefix(kPrefix.size());
    // SKB_DROP_REASON_MAX and the subsystem mask are bounds, not reasons; the first name
    // given to a value wins (aliases come later in the enum).
    if (name == "MAX" || name.substr(0, 7) == "SUBSYS_") continue;
    names.emplace(static_cast<std::uint32_t>(values[i].val), std::string(name));
  }
  return DropReasonNames(std::move(names));
}

std::string DropReasonNames::name(std::uint32_t value) const {
  const auto it = names_.find(value);
  return it != names_.end() ? it->second : "REASON_" + std::to_string(value);
}

std::optional<std::uint32_t> DropReasonNames::value(std::string_view name) const {
  for (const auto& [value, n] : names_) {
    if (n == name) return value;
  }
  return std::nullopt;
}

}  // namespace ayaflow::health
