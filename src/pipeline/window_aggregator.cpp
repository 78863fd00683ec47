// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/pipeline/window_aggregator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

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

namespace {

constexpr std::size_t kPageBytes = 4096;
constexpr std::size_t kMinIndexSlots = 512;  // one page of slots

std::size_t pageRound(std::size_t bytes) noexcept {
  return (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
}

// Anonymous pages straight from the kernel: freeing or shrinking returns them at once,
// whatever the state of malloc's heap (glibc raises its mmap threshold each time it frees a
// mapped block, so the next window's arrays would come from the heap and stay resident).
// Pages never written are never resident. Failure throws std::bad_alloc.
void* mapPages(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

// Max load 0.7.
std::size_t loadLimit(std::size_t slots) noexcept { return slots * 7 / 10; }

}  // namespace

// One open (flow, window) sum: the key (addresses, ports, protocol, direction, window) and
// the record's figures, without FlowRecord's names pointer (names come after the window).
struct WindowAggregator::Entry {
  flow::IpAddress src, dst;
  std::int64_t window = 0;
  std::int64_t first_ms = 0, last_ms = 0;
  std::uint64_t packets = 0, bytes = 0;
  std::uint64_t update_key = 0;
  std::uint32_t ifindex = 0;
  std::uint16_t src_port = 0, dst_port = 0;
  std::uint32_t rtt_us = 0, retransmits = 0, drops = 0;
  std::uint32_t changed = 0;  // the epoch of the latest add()
  std::uint16_t tcp_flags = 0;
  std::uint8_t protocol = 0;
  flow::Direction direction = flow::Direction::kIngress;
  std::uint8_t flags = 0;
  flow::TcpState tcp_state = flow::TcpState::kUnknown;
  flow::RttKind rtt_kind = flow::RttKind::kNone;
  std::uint8_t pad = 0;
};
static_assert(sizeof(flow::Direction) == 1 && sizeof(flow::TcpState) == 1 &&
              sizeof(flow::RttKind) == 1);
static_assert(std::is_trivially_copyable_v<flow::IpAddress>);

// An index slot: the entry's position plus one (0: empty) and 32 bits of its hash (the
// slot's home is tag & mask; a different tag rules a slot out without reading the entry).
struct WindowAggregator::Slot {
  std::uint32_t pos1 = 0;
  std::uint32_t tag = 0;
};

namespace {

std::uint64_t hashOf(const flow::IpAddress& src, const flow::IpAddress& dst, std::uint16_t sport,
                     std::uint16_t dport, std::uint8_t protocol, std::uint8_t direction,
                     std::int64_t window) noexcept {
  // Reuse the flow layer's well-mixed hash: the two addresses, ports and protocol fill a
  // FlowKey; window and direction go into the seed.
  flow::FlowKey fk;
  fk.local = src;
  fk.remote = dst;
  fk.local_port = sport;
  fk.remote_port = dport;
  fk.protocol = protocol;
  const std::uint64_t seed = static_cast<std::uint64_t>(window) * 0x9e3779b97f4a7c15ull ^ direction;
  return flow::hashFlowKey(fk, seed);
}

}  // namespace

std::size_t WindowAggregator::entryBytes() noexcept { return sizeof(Entry); }

WindowAggregator::WindowAggregator(std::int64_t window_ms) : window_ms_(window_ms) {
  if (window_ms <= 0) throw std::invalid_argument("aggregation window must be positive");
}

WindowAggregator::~WindowAggregator() { release(); }

WindowAggregator::WindowAggregator(WindowAggregator&& o) noexcept
    : window_ms_(o.window_ms_),
      entries_(std::exchange(o.entries_, nullptr)),
      count_(std::exchange(o.count_, 0)),
      capacity_(std::exchange(o.capacity_, 0)),
      index_(std::exchange(o.index_, nullptr)),
      index_slots_(std::exchange(o.index_slots_, 0)),
      windows_(std::move(o.windows_)),
      next_update_key_(o.next_update_key_),
      epoch_(o.epoch_),
      last_checkpoint_epoch_(o.last_checkpoint_epoch_),
      unacked_from_(o.unacked_from_) {}

WindowAggregator& WindowAggregator::operator=(WindowAggregator&& o) noexcept {
  if (this != &o) {
    release();
    window_ms_ = o.window_ms_;
    entries_ = std::exchange(o.entries_, nullptr);
    count_ = std::exchange(o.count_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    index_ = std::exchange(o.index_, nullptr);
    index_slots_ = std::exchange(o.index_slots_, 0);
    windows_ = std::move(o.windows_);
    next_update_key_ = o.next_update_key_;
    epoch_ = o.epoch_;
    last_checkpoint_epoch_ = o.last_checkpoint_epoch_;
    unacked_from_ = o.unacked_from_;
  }
  return *this;
}

void WindowAggregator::release() noexcept {
  if (entries_ != nullptr) munmap(entries_, capacity_ * sizeof(Entry));
  if (index_ != nullptr) munmap(index_, index_slots_ * sizeof(Slot));
  entries_ = nullptr;
  index_ = nullptr;
  capacity_ = count_ = index_slots_ = 0;
}

std::size_t WindowAggregator::memoryBytes() const noexcept {
  return pageRound(capacity_ * sizeof(Entry)) + index_slots_ * sizeof(Slot);
}

void WindowAggregator::resizeEntries(std::size_t entries) {
  // Whole pages: the capacity is what fits in them.
  const std::size_t bytes = pageRound(std::max<std::size_t>(entries, 1) * sizeof(Entry));
  const std::size_t old_bytes = pageRound(capacity_ * sizeof(Entry));
  if (entries_ != nullptr && bytes == old_bytes) return;
  void* p;
  if (entries_ == nullptr) {
    p = mapPages(bytes);
  } else {
    // Moves page tables, never copies entries or holds two copies.
    p = mremap(entries_, old_bytes, bytes, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) throw std::bad_alloc();
  }
  entries_ = static_cast<Entry*>(p);
  capacity_ = bytes / sizeof(Entry);
}

void WindowAggregator::growIndex(std::size_t slots) {
  Slot* fresh = static_cast<Slot*>(mapPages(slots * sizeof(Slot)));  // zero: all empty
  const std::size_t m = slots - 1;
  for (std::size_t i = 0; i < index_slots_; ++i) {
    const Slot s = index_[i];
    if (s.pos1 == 0) continue;
    std::size_t j = s.tag & m;
    while (fresh[j].pos1 != 0) j = (j + 1) & m;
    fresh[j] = s;
  }
  if (index_ != nullptr) munmap(index_, index_slots_ * sizeof(Slot));
  index_ = fresh;
  index_slots_ = slots;
}

// A fresh index for entries [0, count_), at most 0.35 full; none when there are none.
void WindowAggregator::rebuildIndex() {
  if (index_ != nullptr) munmap(index_, index_slots_ * sizeof(Slot));
  index_ = nullptr;
  index_slots_ = 0;
  if (count_ == 0) return;
  std::size_t slots = kMinIndexSlots;
  while (loadLimit(slots) < 2 * count_) slots *= 2;
  index_ = static_cast<Slot*>(mapPages(slots * sizeof(Slot)));
  index_slots_ = slots;
  const std::size_t m = slots - 1;
  for (std::size_t pos = 0; pos < count_; ++pos) {
    const Entry& e = entries_[pos];
    const auto tag =
        static_cast<std::uint32_t>(hashOf(e.src, e.dst, e.src_port, e.dst_port, e.protocol,
                                          static_cast<std::uint8_t>(e.direction), e.window));
    std::size_t j = tag & m;
    while (index_[j].pos1 != 0) j = (j + 1) & m;
    index_[j] = Slot{static_cast<std::uint32_t>(pos + 1), tag};
  }
}

void WindowAggregator::add(const flow::Packet& p, std::int64_t first_ms, std::int64_t last_ms) {
  const std::int64_t window = windowOf(first_ms, window_ms_);
  const auto direction = static_cast<std::uint8_t>(p.direction);
  const auto tag = static_cast<std::uint32_t>(
      hashOf(p.src, p.dst, p.src_port, p.dst_port, p.protocol, direction, window));
  if (index_slots_ != 0) {
    const std::size_t m = index_slots_ - 1;
    for (std::size_t i = tag & m; index_[i].pos1 != 0; i = (i + 1) & m) {
      if (index_[i].tag != tag) continue;
      Entry& r = entries_[index_[i].pos1 - 1];
      if (r.window != window || r.src_port != p.src_port || r.dst_port != p.dst_port ||
          r.protocol != p.protocol || r.direction != p.direction || !(r.src == p.src) ||
          !(r.dst == p.dst)) {
        continue;
      }
      r.changed = epoch_;
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
      return;
    }
  }
  // A new sum.
  if (loadLimit(index_slots_) <= count_) growIndex(std::max(kMinIndexSlots, index_slots_ * 2));
  if (count_ == capacity_) resizeEntries(std::max<std::size_t>(capacity_ * 2, 1));
  const std::size_t m = index_slots_ - 1;
  std::size_t i = tag & m;
  while (index_[i].pos1 != 0) i = (i + 1) & m;
  Entry& r = entries_[count_];
  r = Entry{};
  r.src = p.src;
  r.dst = p.dst;
  r.window = window;
  r.first_ms = first_ms;
  r.last_ms = last_ms;
  r.packets = p.packets;
  r.bytes = p.length;
  r.update_key = next_update_key_++;
  r.ifindex = p.ifindex;
  r.src_port = p.src_port;
  r.dst_port = p.dst_port;
  r.rtt_us = p.rtt_us;
  r.retransmits = p.retransmits;
  r.drops = p.drops;
  r.changed = epoch_;
  r.tcp_flags = p.tcp_flags;
  r.protocol = p.protocol;
  r.direction = p.direction;
  r.flags = p.flags;
  r.tcp_state = p.tcp_state;
  r.rtt_kind = p.rtt_kind;
  index_[i] = Slot{static_cast<std::uint32_t>(count_ + 1), tag};
  ++count_;
  ++windows_[window];
}

namespace {

template <typename E>
FlowRecord toRecord(const E& e, std::int64_t window_ms) noexcept {
  FlowRecord r;
  r.src = e.src;
  r.dst = e.dst;
  r.first_ms = e.first_ms;
  r.last_ms = e.last_ms;
  r.packets = e.packets;
  r.bytes = e.bytes;
  r.ifindex = e.ifindex;
  r.src_port = e.src_port;
  r.dst_port = e.dst_port;
  r.protocol = e.protocol;
  r.direction = e.direction;
  r.flags = e.flags;
  r.tcp_flags = e.tcp_flags;
  r.tcp_state = e.tcp_state;
  r.rtt_kind = e.rtt_kind;
  r.rtt_us = e.rtt_us;
  r.retransmits = e.retransmits;
  r.drops = e.drops;
  r.update_key = e.update_key;
  r.window_end_ms = (e.window + 1) * window_ms;
  return r;
}

}  // namespace

std::size_t WindowAggregator::take(std::optional<std::int64_t> before_window,
                                   std::vector<FlowRecord>& out) {
  const std::size_t first = out.size();
  std::size_t taking = 0;
  for (const auto& [window, n] : windows_) {
    if (before_window && window >= *before_window) break;
    taking += n;
  }
  if (taking == 0) return 0;
  // One allocation; its pages become resident only as records are written, while the
  // sums' pages are given back below as they are consumed.
  out.reserve(first + taking);
  // Compact the sums that stay to the front; pages wholly between the kept prefix and the
  // scan position hold only consumed sums: give them back every 64 KiB of progress.
  constexpr std::size_t kReleaseEvery = 64 * 1024 / sizeof(Entry);
  auto* base = reinterpret_cast<unsigned char*>(entries_);
  std::size_t released_to = 0;  // bytes [0, released_to) of the array are handled
  std::size_t keep = 0;
  for (std::size_t i = 0; i < count_; ++i) {
    const Entry& e = entries_[i];
    if (before_window && e.window >= *before_window) {
      if (keep != i) entries_[keep] = e;
      ++keep;
    } else {
      out.push_back(toRecord(e, window_ms_));
    }
    if ((i + 1) % kReleaseEvery == 0) {
      const std::size_t from = std::max(released_to, pageRound(keep * sizeof(Entry)));
      const std::size_t to = (i + 1) * sizeof(Entry) / kPageBytes * kPageBytes;
      if (to > from) {
        madvise(base + from, to - from, MADV_DONTNEED);
        released_to = to;
      }
    }
  }
  count_ = keep;
  windows_.erase(windows_.begin(),
                 before_window ? windows_.lower_bound(*before_window) : windows_.end());
  if (count_ == 0) {
    release();
  } else {
    // What stays is usually the next window's first seconds: room for it to double.
    if (count_ * 4 < capacity_) resizeEntries(count_ * 2);
    rebuildIndex();
  }
  sortByTime(out, first);
  return out.size() - first;
}

std::size_t WindowAggregator::checkpoint(std::vector<FlowRecord>& out) {
  const std::size_t first = out.size();
  std::size_t changed = 0;
  for (std::size_t i = 0; i < count_; ++i) changed += entries_[i].changed >= unacked_from_;
  out.reserve(first + changed);
  for (std::size_t i = 0; i < count_; ++i) {
    const Entry& e = entries_[i];
    if (e.changed < unacked_from_) continue;
    out.push_back(toRecord(e, window_ms_));
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
