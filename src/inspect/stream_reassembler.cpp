// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/stream_reassembler.h"

#include <algorithm>
#include <cstring>

namespace ayaflow::inspect {
namespace {

/// Signed distance from `from` to `to` in sequence space (RFC 1982).
std::int64_t seqDelta(std::uint32_t to, std::uint32_t from) noexcept {
  return static_cast<std::int32_t>(to - from);
}

}  // namespace

StreamReassembler::StreamReassembler() : StreamReassembler(Options{}) {}

StreamReassembler::StreamReassembler(Options options)
    : options_(options), index_(0, flow::FlowKeyHash{flow::randomHashSeed()}) {
  options_.max_stream_bytes = std::max<std::size_t>(options_.max_stream_bytes, 1);
  // Offsets are kept as 32-bit values and compared in sequence space: stay far below 2^31.
  options_.max_stream_bytes = std::min<std::size_t>(options_.max_stream_bytes, 1u << 24);
  options_.max_streams = std::max<std::size_t>(options_.max_streams, 1);
  options_.max_ranges = std::max<std::size_t>(options_.max_ranges, 1);
}

std::size_t StreamReassembler::contiguous(const Stream& s) const noexcept {
  return !s.ranges.empty() && s.ranges.front().begin == 0 ? s.ranges.front().end : 0;
}

StreamReassembler::Stream& StreamReassembler::touch(const flow::FlowKey& key, std::uint64_t now_ns,
                                                    bool& created) {
  const auto found = index_.find(key);
  if (found != index_.end()) {
    lru_.splice(lru_.end(), lru_, found->second);
    found->second->last_seen_ns = now_ns;
    created = false;
    return *found->second;
  }
  if (index_.size() >= options_.max_streams) {
    removeIt(lru_.begin());
    ++evictions_;
  }
  lru_.emplace_back();
  Stream& s = lru_.back();
  s.key = key;
  s.last_seen_ns = now_ns;
  index_.emplace(key, std::prev(lru_.end()));
  created = true;
  return s;
}

void StreamReassembler::release(Stream& s) {
  total_bytes_ -= s.bytes.capacity();
  std::vector<std::uint8_t>().swap(s.bytes);
  s.ranges.clear();
}

void StreamReassembler::removeIt(List::iterator it) {
  total_bytes_ -= it->bytes.capacity();
  index_.erase(it->key);
  lru_.erase(it);
}

void StreamReassembler::enforceBudget(const Stream* keep) {
  while (total_bytes_ > options_.max_total_bytes && lru_.size() > 1) {
    auto victim = lru_.begin();
    if (&*victim == keep) ++victim;
    removeIt(victim);
    ++evictions_;
  }
}

void StreamReassembler::rebase(Stream& s, std::uint32_t new_base) {
  const std::int64_t delta = seqDelta(s.base_seq, new_base);  // > 0: the data moves right
  s.base_seq = new_base;
  if (delta == 0) return;
  const std::size_t max = options_.max_stream_bytes;
  std::vector<Range> moved;
  moved.reserve(s.ranges.size());
  for (const Range& r : s.ranges) {
    const std::int64_t b = std::max<std::int64_t>(std::int64_t{r.begin} + delta, 0);
    const std::int64_t e = std::min<std::int64_t>(std::int64_t{r.end} + delta, max);
    if (b < e) moved.push_back({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(e)});
  }
  s.ranges = std::move(moved);
  const std::size_t new_size = s.ranges.empty() ? 0 : s.ranges.back().end;
  const std::size_t old_cap = s.bytes.capacity();
  if (delta > 0) {
    const auto shift = static_cast<std::size_t>(delta);
    if (new_size > shift) {
      s.bytes.reserve(new_size);
      s.bytes.resize(new_size);
      std::memmove(s.bytes.data() + shift, s.bytes.data(), new_size - shift);
    } else {
      s.bytes.clear();
    }
  } else {
    const auto shift = static_cast<std::size_t>(-delta);
    s.bytes.erase(s.bytes.begin(), s.bytes.begin() + std::min(shift, s.bytes.size()));
    s.bytes.resize(new_size);
  }
  total_bytes_ = total_bytes_ - old_cap + s.bytes.capacity();
}

StreamReassembler::View StreamReassembler::add(const flow::FlowKey& key, std::uint32_t seq,
                                               const std::uint8_t* data, std::size_t len,
                                               std::uint64_t now_ns) {
  if (data == nullptr || len == 0) {
    View v = view(key);
    const auto it = index_.find(key);
    v.status = it != index_.end() && it->second->finished ? Status::kFinished : Status::kUnchanged;
    return v;
  }
  bool created = false;
  Stream& s = touch(key, now_ns, created);
  if (created) s.base_seq = seq;
  if (s.finished) return {nullptr, 0, Status::kFinished};
  const std::size_t max = options_.max_stream_bytes;
  const std::size_t before = contiguous(s);
  std::int64_t off = seqDelta(seq, s.base_seq);
  if (off < 0) {
    const auto behind = static_cast<std::size_t>(-off);
    if (s.base_fixed || behind >= max) {
      // Before the known start (a retransmission reaching back, or junk): keep the rest.
      if (behind >= len) return {s.bytes.data(), before, Status::kUnchanged};
      data += behind;
      len -= behind;
    } else {
      rebase(s, seq);  // an earlier segment arrived late: the stream starts here
    }
    off = 0;
  }
  if (static_cast<std::size_t>(off) >= max) return {s.bytes.data(), before, Status::kUnchanged};
  const auto begin = static_cast<std::uint32_t>(off);
  const auto end = static_cast<std::uint32_t>(std::min(static_cast<std::size_t>(off) + len, max));

  // Merge [begin, end) into the sorted range list (overlapping or adjacent ranges join).
  std::vector<Range> merged;
  merged.reserve(s.ranges.size() + 1);
  Range in{begin, end};
  bool placed = false;
  for (const Range& r : s.ranges) {
    if (r.end < in.begin) {
      merged.push_back(r);
    } else if (in.end < r.begin) {
      if (!placed) merged.push_back(in);
      placed = true;
      merged.push_back(r);
    } else {
      in.begin = std::min(in.begin, r.begin);
      in.end = std::max(in.end, r.end);
    }
  }
  if (!placed) merged.push_back(in);
  if (merged.size() > options_.max_ranges) {
    return {s.bytes.data(), contiguous(s), Status::kDropped};
  }
  s.ranges = std::move(merged);

  if (s.bytes.size() < end) {
    const std::size_t old_cap = s.bytes.capacity();
    if (end > old_cap) {
      s.bytes.reserve(std::min(max, std::max<std::size_t>({end, old_cap * 2, 512})));
    }
    s.bytes.resize(end);
    total_bytes_ = total_bytes_ - old_cap + s.bytes.capacity();
  }
  std::memcpy(s.bytes.data() + begin, data, end - begin);
  enforceBudget(&s);
  const std::size_t after = contiguous(s);
  return {s.bytes.data(), after, after > before ? Status::kGrew : Status::kUnchanged};
}

void StreamReassembler::startAt(const flow::FlowKey& key, std::uint32_t first_seq,
                                std::uint64_t now_ns) {
  bool created = false;
  Stream& s = touch(key, now_ns, created);
  if (created) {
    s.base_seq = first_seq;
  } else if (!s.finished) {
    rebase(s, first_seq);
  }
  s.base_fixed = true;
}

StreamReassembler::View StreamReassembler::view(const flow::FlowKey& key) const {
  const auto it = index_.find(key);
  if (it == index_.end() || it->second->finished) return {};
  return {it->second->bytes.data(), contiguous(*it->second), Status::kUnchanged};
}

void StreamReassembler::finish(const flow::FlowKey& key) {
  const auto it = index_.find(key);
  if (it == index_.end()) return;
  release(*it->second);
  it->second->finished = true;
}

void StreamReassembler::erase(const flow::FlowKey& key) {
  const auto it = index_.find(key);
  if (it != index_.end()) removeIt(it->second);
}

std::size_t StreamReassembler::expire(std::uint64_t now_ns) {
  std::size_t removed = 0;
  // The list is in touch order, so idle streams are at the front (for a monotonic clock).
  while (!lru_.empty()) {
    const Stream& s = lru_.front();
    if (now_ns <= s.last_seen_ns || now_ns - s.last_seen_ns <= options_.idle_timeout_ns) break;
    removeIt(lru_.begin());
    ++removed;
  }
  return removed;
}

}  // namespace ayaflow::inspect
