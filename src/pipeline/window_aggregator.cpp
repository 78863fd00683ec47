// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/pipeline/window_aggregator.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "ayaflow/flow/flow_key.h"

namespace ayaflow::pipeline {
namespace {

/// Floor division: window k covers [k*W, (k+1)*W), negative times included.
std::int64_t windowOf(std::int64_t unix_ms, std::int64_t window_ms) noexcept {
  return unix_ms / window_ms - (unix_ms % window_ms < 0 ? 1 : 0);
}

/// Time order (rows get increasing ids), ties broken by the flow for determinism. Sorting
/// the contiguous records beats sorting pointers into the map.
void sortByTime(std::vector<FlowRecord>& out, std::size_t first) {
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
            [](const FlowRecord& a, const FlowRecord& b) {
              if (a.first_ms != b.first_ms) return a.first_ms < b.first_ms;
              const int c = std::memcmp(&a.src, &b.src, sizeof a.src);
              if (c != 0) return c < 0;
              const int d = std::memcmp(&a.dst, &b.dst, sizeof a.dst);
              if (d != 0) return d < 0;
              if (a.src_port != b.src_port) return a.src_port < b.src_port;
              if (a.dst_port != b.dst_port) return a.dst_port < b.dst_port;
              if (a.protocol != b.protocol) return a.protocol < b.protocol;
              return a.direction < b.direction;
            });
}

}  // namespace

static_assert(std::has_unique_object_representations_v<flow::IpAddress>);

WindowAggregator::WindowAggregator(std::int64_t window_ms) : window_ms_(window_ms) {
  if (window_ms <= 0) throw std::invalid_argument("aggregation window must be positive");
}

bool WindowAggregator::Key::operator==(const Key& o) const noexcept {
  return src == o.src && dst == o.dst && window == o.window && src_port == o.src_port &&
         dst_port == o.dst_port && protocol == o.protocol && direction == o.direction;
}

std::size_t WindowAggregator::KeyHash::operator()(const Key& k) const noexcept {
  // Reuse the flow layer's well-mixed hash: the two addresses, ports and protocol fill a
  // FlowKey; window and direction go into the seed.
  flow::FlowKey fk;
  fk.local = k.src;
  fk.remote = k.dst;
  fk.local_port = k.src_port;
  fk.remote_port = k.dst_port;
  fk.protocol = k.protocol;
  const std::uint64_t seed =
      static_cast<std::uint64_t>(k.window) * 0x9e3779b97f4a7c15ull ^ k.direction;
  return static_cast<std::size_t>(flow::hashFlowKey(fk, seed));
}

void WindowAggregator::add(const flow::Packet& p, std::int64_t first_ms, std::int64_t last_ms) {
  Key key;
  key.src = p.src;
  key.dst = p.dst;
  key.window = windowOf(first_ms, window_ms_);
  key.src_port = p.src_port;
  key.dst_port = p.dst_port;
  key.protocol = p.protocol;
  key.direction = static_cast<std::uint8_t>(p.direction);
  auto [it, inserted] = sums_.try_emplace(key);
  it->second.changed = epoch_;
  FlowRecord& r = it->second.record;
  if (inserted) {
    r = FlowRecord::fromPacket(p, first_ms, last_ms);
    r.update_key = next_update_key_++;
    r.window_end_ms = (key.window + 1) * window_ms_;
    ++windows_[key.window];
    return;
  }
  r.first_ms = std::min(r.first_ms, first_ms);
  r.last_ms = std::max(r.last_ms, last_ms);
  r.bytes += p.length;
  r.packets += p.packets;
  r.tcp_flags |= p.tcp_flags;
  r.retransmits += p.retransmits;
  r.drops += p.drops;
  if (p.tcp_state != flow::TcpState::kUnknown) r.tcp_state = p.tcp_state;
  if (p.rtt_us != 0) {
    r.rtt_us = p.rtt_us;
    r.rtt_kind = p.rtt_kind;
  }
}

std::size_t WindowAggregator::take(std::optional<std::int64_t> before_window,
                                   std::vector<FlowRecord>& out) {
  const std::size_t first = out.size();
  // At most every sum: one allocation instead of doubling (pages never written stay unused).
  out.reserve(first + sums_.size());
  for (auto it = sums_.begin(); it != sums_.end();) {
    if (before_window && it->first.window >= *before_window) {
      ++it;
      continue;
    }
    out.push_back(std::move(it->second.record));
    auto w = windows_.find(it->first.window);
    if (w != windows_.end() && --w->second == 0) windows_.erase(w);
    it = sums_.erase(it);
  }
  // The bucket array keeps the size of the largest burst: let it go once empty.
  if (sums_.empty() && sums_.bucket_count() > 4096) Sums().swap(sums_);
  sortByTime(out, first);
  return out.size() - first;
}

std::size_t WindowAggregator::checkpoint(std::vector<FlowRecord>& out) {
  const std::size_t first = out.size();
  out.reserve(first + sums_.size());
  for (const auto& [key, sum] : sums_) {
    if (sum.changed < unacked_from_) continue;
    out.push_back(sum.record);
    out.back().state = RecordState::kProvisional;
  }
  last_checkpoint_epoch_ = epoch_++;
  sortByTime(out, first);
  return out.size() - first;
}

std::size_t WindowAggregator::takeClosed(std::int64_t now_ms, std::vector<FlowRecord>& out) {
  if (windows_.empty()) return 0;
  // Window k has ended when (k+1)*W <= now, i.e. k < floor(now / W).
  const std::int64_t current = windowOf(now_ms, window_ms_);
  if (windows_.begin()->first >= current) return 0;
  return take(current, out);
}

std::size_t WindowAggregator::takeAll(std::vector<FlowRecord>& out) {
  return take(std::nullopt, out);
}

std::optional<std::int64_t> WindowAggregator::nextWindowEnd() const {
  if (windows_.empty()) return std::nullopt;
  return (windows_.begin()->first + 1) * window_ms_;
}

}  // namespace ayaflow::pipeline
