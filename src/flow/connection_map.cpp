// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/flow/connection_map.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>

namespace ayaflow::flow {

namespace {

constexpr std::size_t kMinCapacity = 8;

// Caps above this are lowered to it (2^30 entries: 88 GiB of tables, so in effect
// unbounded), which keeps the table-size arithmetic far from overflow.
constexpr std::size_t kMaxEntriesLimit = std::size_t{1} << 30;

// Tables at least this large are mmap()ed directly instead of taken from malloc.
constexpr std::size_t kMapThresholdBytes = 64 * 1024;

std::size_t roundUpPow2(std::size_t v) noexcept {
  std::size_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

std::size_t roundDownPow2(std::size_t v) noexcept {
  std::size_t p = 1;
  while (p <= v / 2) p <<= 1;
  return p;
}

unsigned log2Pow2(std::size_t v) noexcept {
  unsigned n = 0;
  while ((std::size_t{1} << n) < v) ++n;
  return n;
}

// Max load 0.7: a table of `capacity` slots holds at most this many entries.
std::size_t loadLimit(std::size_t capacity) noexcept { return capacity * 7 / 10; }

// The smallest table (a power of two, at least kMinCapacity) that holds `entries` at
// load 0.7.
std::size_t capacityFor(std::size_t entries) noexcept {
  std::size_t capacity = kMinCapacity;
  while (loadLimit(capacity) < entries) capacity *= 2;
  return capacity;
}

static_assert(sizeof(ConnectionEntry) == 128, "the memory figures in the class comment");

// A slot is empty iff packets_count == 0: every live entry has seen at least one packet.
bool occupied(const ConnectionEntry& e) noexcept { return e.stats.packets_count != 0; }

// Total order used by top(): more packets first, then key bytes ascending.
bool ranksBefore(const ConnectionEntry& a, const ConnectionEntry& b) noexcept {
  if (a.stats.packets_count != b.stats.packets_count)
    return a.stats.packets_count > b.stats.packets_count;
  return std::memcmp(&a.key, &b.key, sizeof(FlowKey)) < 0;
}

// The capacity expire() leaves a shard of `capacity` slots holding `count` entries with:
// halved while the table is under 1/8 full, never below `floor`. Unless it stops at the
// floor, the result is 1/8 to 1/4 full, far below the 0.7 that makes it grow again; and a
// table that just grew is 0.35 full, far above 1/8.
std::size_t shrunkCapacity(std::size_t capacity, std::size_t count, std::size_t floor) noexcept {
  while (capacity > floor && count < capacity / 8) capacity /= 2;
  return capacity;
}

static_assert(std::is_trivially_copyable_v<ConnectionEntry> &&
                  std::is_trivially_destructible_v<ConnectionEntry>,
              "SlotTable copies entries bytewise and never runs destructors");

// The slots of one shard: a fixed-size array of value-initialised (empty) entries. Large
// arrays are mapped from the kernel directly, small ones come from operator new. mmap()
// matters for memory: glibc raises its mmap threshold each time it frees a mapped block,
// so after one burst, tables of the next burst would come from the heap, where a freed
// table in the middle stays resident. A mapping is returned by munmap() on free.
// Allocation failure throws std::bad_alloc (record() is noexcept: terminate).
class SlotTable {
 public:
  SlotTable() noexcept = default;
  explicit SlotTable(std::size_t size) : size_(size) {
    const std::size_t bytes = size * sizeof(ConnectionEntry);
    void* p;
    if (mapped()) {
      p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
    } else {
      p = ::operator new(bytes);
    }
    // Fresh anonymous pages are already zero, but value-initialising makes the entries
    // objects; the rehash that follows touches nearly every page anyway.
    data_ = static_cast<ConnectionEntry*>(p);
    std::uninitialized_value_construct_n(data_, size_);
  }
  ~SlotTable() { release(); }
  SlotTable(SlotTable&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  SlotTable& operator=(SlotTable&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  void swap(SlotTable& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }
  std::size_t size() const noexcept { return size_; }
  ConnectionEntry& operator[](std::size_t i) noexcept { return data_[i]; }
  const ConnectionEntry& operator[](std::size_t i) const noexcept { return data_[i]; }
  const ConnectionEntry* begin() const noexcept { return data_; }
  const ConnectionEntry* end() const noexcept { return data_ + size_; }

 private:
  bool mapped() const noexcept { return size_ * sizeof(ConnectionEntry) >= kMapThresholdBytes; }
  void release() noexcept {
    if (data_ == nullptr) return;
    if (mapped()) {
      munmap(data_, size_ * sizeof(ConnectionEntry));
    } else {
      ::operator delete(data_);
    }
    data_ = nullptr;
    size_ = 0;
  }

  ConnectionEntry* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace

// One shard: a flat open-addressing table guarded by `mu`. Aligned to a cache line so
// two shards' mutexes never share one.
struct alignas(64) ConnectionMap::Shard {
  mutable std::mutex mu;
  SlotTable slots;        // guarded by mu; size is a power of two
  std::size_t count = 0;  // guarded by mu; the writer may read it unlocked
  std::size_t limit = 0;  // this shard's share of the cap; set at construction
  std::size_t hand = 0;   // guarded by mu: where the next eviction sample starts

  std::size_t mask() const noexcept { return slots.size() - 1; }

  // Index of key's slot, or of the empty slot where it would be inserted.
  std::size_t probe(const FlowKey& key, std::uint64_t hash, bool& found) const noexcept {
    const std::size_t m = mask();
    for (std::size_t i = static_cast<std::size_t>(hash) & m;; i = (i + 1) & m) {
      const ConnectionEntry& e = slots[i];
      if (!occupied(e)) {
        found = false;
        return i;
      }
      if (e.key == key) {
        found = true;
        return i;
      }
    }
  }

  // Moves every entry of `slots` into `fresh` (all empty, larger, or smaller but with room
  // for every entry) and swaps them, so `fresh` ends up holding the old storage (freed by
  // the caller outside the lock).
  void rehashInto(SlotTable& fresh, std::uint64_t seed) noexcept {
    const std::size_t m = fresh.size() - 1;
    for (const ConnectionEntry& e : slots) {
      if (!occupied(e)) continue;
      std::size_t i = static_cast<std::size_t>(hashFlowKey(e.key, seed)) & m;
      while (occupied(fresh[i])) i = (i + 1) & m;
      fresh[i] = e;
    }
    slots.swap(fresh);
  }

  // Backward-shift deletion: empties slot i and pulls later members of its probe
  // cluster back so that no entry is separated from its home slot by an empty slot.
  void eraseAt(std::size_t i, std::uint64_t seed) noexcept {
    const std::size_t m = mask();
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & m;; j = (j + 1) & m) {
      ConnectionEntry& e = slots[j];
      if (!occupied(e)) break;
      const std::size_t home = static_cast<std::size_t>(hashFlowKey(e.key, seed)) & m;
      // e may fill the hole iff the hole lies cyclically within [home, j).
      if (((j - home) & m) >= ((j - hole) & m)) {
        slots[hole] = e;
        hole = j;
      }
    }
    slots[hole] = ConnectionEntry{};
    --count;
  }

  // Evicts the entry with the oldest last_seen_ns among the next kEvictionSample occupied
  // slots from the clock hand (fewer if the table holds fewer), and moves the hand past
  // them. Requires count > 0.
  void evictIdlest(std::uint64_t seed) noexcept {
    const std::size_t m = mask();
    std::size_t i = hand & m;
    std::size_t victim = i;
    std::uint64_t oldest = 0;
    std::size_t sampled = 0;
    for (std::size_t n = 0; n <= m && sampled < kEvictionSample; ++n, i = (i + 1) & m) {
      const ConnectionEntry& e = slots[i];
      if (!occupied(e)) continue;
      ++sampled;
      if (sampled == 1 || e.stats.last_seen_ns < oldest) {
        oldest = e.stats.last_seen_ns;
        victim = i;
      }
    }
    hand = i;
    eraseAt(victim, seed);
  }
};

ConnectionMap::ConnectionMap(std::size_t shard_count, std::size_t initial_capacity_per_shard,
                             std::size_t max_entries)
    : seed_(randomHashSeed()),
      max_entries_(std::clamp<std::size_t>(max_entries, 1, kMaxEntriesLimit)),
      shard_count_(std::min(roundUpPow2(std::max<std::size_t>(shard_count, 1)),
                            roundDownPow2(max_entries_))),
      max_capacity_(capacityFor((max_entries_ + shard_count_ - 1) / shard_count_)),
      initial_capacity_(
          std::min(roundUpPow2(std::max(initial_capacity_per_shard, kMinCapacity)), max_capacity_)),
      shard_shift_(64 - log2Pow2(shard_count_)),
      shards_(new Shard[shard_count_]) {
  for (std::size_t s = 0; s < shard_count_; ++s) {
    shards_[s].slots = SlotTable(initial_capacity_);
    shards_[s].limit = max_entries_ / shard_count_ + (s < max_entries_ % shard_count_ ? 1 : 0);
  }
}

ConnectionMap::~ConnectionMap() = default;

ConnectionMap::Shard& ConnectionMap::shardFor(std::uint64_t h) const noexcept {
  // Shard from the high bits, slot (in probe()) from the low bits.
  if (shard_shift_ >= 64) return shards_[0];
  return shards_[static_cast<std::size_t>(h >> shard_shift_)];
}

RecordOutcome ConnectionMap::record(const Packet& p) noexcept {
  const FlowKey key = FlowKey::fromPacket(p);
  const std::uint64_t h = hash(key);
  Shard& shard = shardFor(h);
  bool flipped = false;  // the packet belongs to the entry of the reversed key
  RecordOutcome out;

  auto add = [&p, &flipped, &out](ConnectionStats& s) noexcept {
    const bool sent = (p.direction == Direction::kEgress) != flipped;
    ConnectionHealth& t = s.tcp;
    out.recorded = true;
    out.flipped = flipped;
    out.before = t.state;
    if (p.packets != 0) {
      if (sent) {
        s.bytes_sent += p.length;
        s.ifindex_sent = p.ifindex;
      } else {
        s.bytes_received += p.length;
        s.ifindex_received = p.ifindex;
      }
      if (s.packets_count == 0) {
        s.first_seen_ns = p.firstTimestampNs();
        s.last_seen_ns = p.timestamp_ns;
      } else {
        // Events from different CPUs can arrive slightly out of order.
        s.first_seen_ns = std::min(s.first_seen_ns, p.firstTimestampNs());
        s.last_seen_ns = std::max(s.last_seen_ns, p.timestamp_ns);
      }
      s.packets_count += p.packets;
      if (p.tcp_flags != 0) {
        const std::uint32_t had = t.handshake_rtt_us;
        out.new_results = updateTcp(t, sent, p.tcp_flags, p.syns, p.syn_ns, p.ack_ns);
        if (had == 0) out.new_handshake_rtt_us = t.handshake_rtt_us;
      }
    }
    t.retransmits += p.retransmits;
    t.drops += p.drops;
    if (p.drops != 0) t.drop_reason = p.drop_reason;
    if (p.srtt_us != 0) t.srtt_us = p.srtt_us;
    out.after = t.state;
    out.tcp_flags = t.flags_sent | t.flags_received;
    out.rtt_us = t.rttUs();
    out.rtt_kind = t.rttKind();
  };

  {
    std::lock_guard<std::mutex> lock(shard.mu);
    bool found = false;
    const std::size_t at = shard.probe(key, h, found);
    if (found) {
      add(shard.slots[at].stats);
      return out;
    }
  }
  // Both ends on this host (pods of one node, seen where each packet leaves its pod): the
  // other direction may have made the entry, under the reversed key.
  {
    FlowKey reversed = key;
    std::swap(reversed.local, reversed.remote);
    std::swap(reversed.local_port, reversed.remote_port);
    const std::uint64_t rh = hash(reversed);
    Shard& other = shardFor(rh);
    std::lock_guard<std::mutex> lock(other.mu);
    bool found = false;
    const std::size_t at = other.probe(reversed, rh, found);
    if (found) {
      flipped = true;
      add(other.slots[at].stats);
      return out;
    }
  }
  if (p.packets == 0) return out;  // a health update never creates a connection

  {
    std::lock_guard<std::mutex> lock(shard.mu);
    bool found = false;
    std::size_t i = shard.probe(key, h, found);
    if (!found && shard.count >= shard.limit) {
      // At the cap: make room (the table never grows past max_capacity_, which holds
      // `limit` entries), then find the insertion slot again (eviction shifts entries).
      shard.evictIdlest(seed_);
      evicted_.fetch_add(1, std::memory_order_relaxed);
      i = shard.probe(key, h, found);
      ConnectionEntry& e = shard.slots[i];
      e.key = key;
      ++shard.count;
      add(e.stats);
      return out;  // one out, one in: size_ unchanged
    }
    if (found || shard.count < loadLimit(shard.slots.size())) {
      ConnectionEntry& e = shard.slots[i];
      if (!found) {
        e.key = key;
        ++shard.count;
      }
      add(e.stats);
      if (!found) size_.fetch_add(1, std::memory_order_relaxed);
      return out;
    }
  }

  // New connection in a full table below the cap. Then the table is smaller than
  // max_capacity_ (which holds the shard's whole share), so doubling stays within it. This
  // is the only writer, so the shard cannot change while unlocked: allocate (and zero) the
  // doubled table without blocking readers.
  SlotTable fresh(shard.slots.size() * 2);
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    shard.rehashInto(fresh, seed_);
    bool found = false;
    const std::size_t i = shard.probe(key, h, found);
    ConnectionEntry& e = shard.slots[i];
    e.key = key;
    ++shard.count;
    add(e.stats);
  }
  size_.fetch_add(1, std::memory_order_relaxed);
  // `fresh` now holds the old table and is freed here, outside the lock.
  return out;
}

std::vector<ConnectionEntry> ConnectionMap::top(std::size_t n) const {
  std::vector<ConnectionEntry> merged;
  if (n == 0) return merged;
  // Reserve outside the locks; a shard that grows meanwhile may still force a
  // reallocation under its lock, which is rare and bounded.
  const std::size_t per_shard = std::min(n, size() + 64);
  std::vector<ConnectionEntry> heap;
  heap.reserve(per_shard);
  merged.reserve(std::min(per_shard * shard_count_, size() + 64));

  for (std::size_t s = 0; s < shard_count_; ++s) {
    heap.clear();
    {
      const Shard& shard = shards_[s];
      std::lock_guard<std::mutex> lock(shard.mu);
      // Max-heap under ranksBefore: front() is the worst of the best n seen so far.
      for (const ConnectionEntry& e : shard.slots) {
        if (!occupied(e)) continue;
        if (heap.size() < n) {
          heap.push_back(e);
          std::push_heap(heap.begin(), heap.end(), ranksBefore);
        } else if (ranksBefore(e, heap.front())) {
          std::pop_heap(heap.begin(), heap.end(), ranksBefore);
          heap.back() = e;
          std::push_heap(heap.begin(), heap.end(), ranksBefore);
        }
      }
    }
    merged.insert(merged.end(), heap.begin(), heap.end());
  }

  if (merged.size() > n) {
    std::partial_sort(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(n), merged.end(),
                      ranksBefore);
    merged.resize(n);
  } else {
    std::sort(merged.begin(), merged.end(), ranksBefore);
  }
  return merged;
}

std::vector<ConnectionEntry> ConnectionMap::snapshot() const {
  std::vector<ConnectionEntry> out;
  const std::size_t estimate = size();
  out.reserve(estimate + estimate / 8 + 64);
  for (std::size_t s = 0; s < shard_count_; ++s) {
    const Shard& shard = shards_[s];
    std::lock_guard<std::mutex> lock(shard.mu);
    for (const ConnectionEntry& e : shard.slots) {
      if (occupied(e)) out.push_back(e);
    }
  }
  return out;
}

std::optional<ConnectionStats> ConnectionMap::find(const FlowKey& key) const {
  const std::uint64_t h = hash(key);
  const Shard& shard = shardFor(h);
  std::lock_guard<std::mutex> lock(shard.mu);
  bool found = false;
  const std::size_t i = shard.probe(key, h, found);
  if (!found) return std::nullopt;
  return shard.slots[i].stats;
}

std::size_t ConnectionMap::expire(std::uint64_t now_ns, std::uint64_t idle_timeout_ns) {
  // last_seen + timeout < now, written without overflow.
  auto idle = [&](const ConnectionStats& s) noexcept {
    return now_ns > s.last_seen_ns && now_ns - s.last_seen_ns > idle_timeout_ns;
  };
  std::size_t removed_total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    Shard& shard = shards_[s];
    std::size_t target = 0;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      std::size_t removed = 0;
      // Erasing at i pulls later entries back into [i, j), so i is re-examined instead of
      // advanced. Only entries of a cluster wrapping past the end can move from low indices
      // (already examined and kept) to high ones; examining them again is harmless.
      for (std::size_t i = 0; i < shard.slots.size();) {
        const ConnectionEntry& e = shard.slots[i];
        if (occupied(e) && idle(e.stats)) {
          shard.eraseAt(i, seed_);
          ++removed;
        } else {
          ++i;
        }
      }
      // Publish per shard, so size() never lags the shards by more than one.
      size_.fetch_sub(removed, std::memory_order_relaxed);
      removed_total += removed;
      target = shrunkCapacity(shard.slots.size(), shard.count, initial_capacity_);
    }
    if (target == shard.slots.size()) continue;
    // This is the only writer, so the shard cannot change while unlocked: allocate the
    // smaller table without blocking readers, move the entries under the lock, and free
    // the old table (now in `fresh`) after releasing it.
    SlotTable fresh(target);
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      shard.rehashInto(fresh, seed_);
    }
  }
  return removed_total;
}

bool ConnectionMap::checkInvariantsForTest() const {
  std::size_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    const Shard& shard = shards_[s];
    std::lock_guard<std::mutex> lock(shard.mu);
    const std::size_t cap = shard.slots.size();
    if (cap == 0 || (cap & (cap - 1)) != 0) return false;
    if (shard.count > loadLimit(cap)) return false;
    if (cap < initial_capacity_ || cap > max_capacity_) return false;
    if (shard.count > shard.limit) return false;
    if (cap > initial_capacity_ && shard.count < cap / 8) return false;  // missed a shrink
    const std::size_t m = shard.mask();
    std::size_t count = 0;
    for (std::size_t i = 0; i < cap; ++i) {
      const ConnectionEntry& e = shard.slots[i];
      if (!occupied(e)) continue;
      ++count;
      const std::uint64_t h = hash(e.key);
      if (&shardFor(h) != &shard) return false;
      // Every slot from home up to i must be occupied, and the key must be unique there.
      for (std::size_t j = static_cast<std::size_t>(h) & m; j != i; j = (j + 1) & m) {
        if (!occupied(shard.slots[j])) return false;
        if (shard.slots[j].key == e.key) return false;
      }
    }
    if (count != shard.count) return false;
    total += count;
  }
  return total == size();
}

std::size_t ConnectionMap::capacityForTest() const {
  std::size_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    std::lock_guard<std::mutex> lock(shards_[s].mu);
    total += shards_[s].slots.size();
  }
  return total;
}

}  // namespace ayaflow::flow
