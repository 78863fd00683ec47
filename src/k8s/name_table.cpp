// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/k8s/name_table.h"

#include <cstring>
#include <utility>

#include "ayaflow/flow/flow_key.h"

namespace ayaflow::k8s {

std::size_t NameIndex::AddressHash::operator()(const flow::IpAddress& a) const noexcept {
  std::uint64_t hi = 0, lo = 0;
  std::memcpy(&hi, a.bytes.data(), 8);
  std::memcpy(&lo, a.bytes.data() + 8, 8);
  // Addresses come from the runtime (the table's keys), so no flooding concern: a plain mix.
  std::uint64_t h = (hi * 0x9E3779B97F4A7C15ull) ^ (lo + 0x632BE59BD9B4E019ull);
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  return static_cast<std::size_t>(h ^ (h >> 32));
}

void NameTable::publish(std::shared_ptr<const NameIndex> index) {
  std::lock_guard<std::mutex> lock(mutex_);
  index_.swap(index);
  // The old index (if this was its last user) is freed outside the lock.
}

std::shared_ptr<const NameIndex> NameTable::index() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return index_;
}

void NameTable::name(const NameIndex& index, const flow::IpAddress& address, std::int64_t seen_ms,
                     enrich::EndpointNames& names) {
  if (!names.pod) {
    const auto it = index.pods.find(address);
    if (it != index.pods.end()) {
      // The latest tenure that held the address at seen_ms; failing that, one that began
      // within the clock slack after it (the runtime's clock against the packets').
      const Tenure* held = nullptr;
      const Tenure* near = nullptr;
      for (const Tenure& t : it->second) {
        if (seen_ms == 0 || (t.from_ms <= seen_ms && seen_ms <= t.until_ms)) {
          if (held == nullptr || t.from_ms >= held->from_ms) held = &t;
        } else if (t.from_ms > seen_ms && t.from_ms <= seen_ms + kClockSlackMs) {
          if (near == nullptr || t.from_ms < near->from_ms) near = &t;
        }
      }
      const Tenure* best = held != nullptr ? held : near;
      if (best != nullptr) names.pod = best->pod;
    }
  }
  if (!names.node && index.node && index.node_addresses.count(address) != 0) {
    names.node = index.node;
  }
}

void NameTable::enrich(const flow::FlowKey& key, std::int64_t seen_ms,
                       enrich::ConnectionNames& names) const {
  const std::shared_ptr<const NameIndex> current = index();
  if (!current) return;
  name(*current, key.local, seen_ms, names.local);
  name(*current, key.remote, seen_ms, names.remote);
}

}  // namespace ayaflow::k8s
