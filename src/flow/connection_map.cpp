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

// Total order used by top(): more packets first, then key bytes ascending.
bool ranksBefore(const ConnectionEntry& a, const ConnectionEntry& b) noexcept {
  if (a.stats.packets_count != b.stats.packets_count)
    return a.stats.packets_count > b.stats.packets_count;
  return std::memcmp(&a.key, &b.key, sizeof(FlowKey)) < 0;
}

// The same order on (packets, key) pairs.
template <typename R>
bool rankOrder(const R& a, const R& b) noexcept {
  if (a.packets != b.packets) return a.packets > b.packets;
  return std::memcmp(&a.key, &b.key, sizeof(FlowKey)) < 0;
}

// Whether (packets, key) ranks strictly before the rank t.
template <typename R>
bool ranksBeforeRank(std::uint64_t packets, const FlowKey& key, const R& t) noexcept {
  if (packets != t.packets) return packets > t.packets;
  return std::memcmp(&key, &t.key, sizeof(FlowKey)) < 0;
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
              "entries are moved bytewise (mremap, swap-remove) and never destroyed");

// One slot of a shard's index: where the entry lives in the shard's dense array (plus one;
// 0 marks an empty slot) and the low 32 bits of its key's hash. The hash bits give the
// slot's home (hash & mask, as the capacity never exceeds 2^32) without rehashing the key,
// and rule out nearly every non-matching key without touching the entry itself.
struct Slot {
  std::uint32_t pos1 = 0;
  std::uint32_t tag = 0;
};
static_assert(sizeof(Slot) == 8);

// Anonymous memory straight from the kernel, so that freeing (or shrinking) returns its
// pages at once, whatever the state of malloc's heap: glibc raises its mmap threshold each
// time it frees a mapped block, so after one burst the next burst's tables would come from
// the heap, where a freed table in the middle stays resident. Pages never written are never
// resident either. Failure throws std::bad_alloc (record() is noexcept: terminate).
void* mapPages(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

constexpr std::size_t kPageBytes = 4096;

std::size_t pageRound(std::size_t bytes) noexcept {
  return (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
}

// A shard's index: a power-of-two array of empty (zero) slots. Small ones come from
// operator new, those of 64 KiB and more from mapPages().
class SlotTable {
 public:
  SlotTable() noexcept = default;
  explicit SlotTable(std::size_t size) : size_(size) {
    void* p = mapped() ? mapPages(size * sizeof(Slot)) : ::operator new(size * sizeof(Slot));
    data_ = static_cast<Slot*>(p);
    std::uninitialized_value_construct_n(data_, size_);
  }
  ~SlotTable() { release(); }
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  void swap(SlotTable& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }
  std::size_t size() const noexcept { return size_; }
  std::size_t bytes() const noexcept { return size_ * sizeof(Slot); }
  Slot& operator[](std::size_t i) noexcept { return data_[i]; }
  const Slot& operator[](std::size_t i) const noexcept { return data_[i]; }
  const Slot* begin() const noexcept { return data_; }
  const Slot* end() const noexcept { return data_ + size_; }

 private:
  bool mapped() const noexcept { return size_ * sizeof(Slot) >= kMapThresholdBytes; }
  void release() noexcept {
    if (data_ == nullptr) return;
    if (mapped()) {
      munmap(data_, size_ * sizeof(Slot));
    } else {
      ::operator delete(data_);
    }
    data_ = nullptr;
    size_ = 0;
  }

  Slot* data_ = nullptr;
  std::size_t size_ = 0;
};

// A shard's entries, packed at [0, count): no empty entries, so memory follows the number of
// live connections (128 B each) rather than the index's capacity. Mapped pages, grown by
// doubling and shrunk with mremap(), which moves page tables instead of copying entries and
// never holds old and new copies at once; pages past the last entry written stay unbacked.
class EntryArray {
 public:
  EntryArray() noexcept = default;
  ~EntryArray() {
    if (data_ != nullptr) munmap(data_, capacity_ * sizeof(ConnectionEntry));
  }
  EntryArray(const EntryArray&) = delete;
  EntryArray& operator=(const EntryArray&) = delete;

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t bytes() const noexcept { return capacity_ * sizeof(ConnectionEntry); }
  ConnectionEntry* data() noexcept { return data_; }
  const ConnectionEntry* data() const noexcept { return data_; }

  // Capacity for at least `entries` (whole pages). Entries below the old capacity keep
  // their values; the rest are unspecified until written.
  void resize(std::size_t entries) {
    const std::size_t bytes =
        pageRound(std::max<std::size_t>(entries, 1) * sizeof(ConnectionEntry));
    const std::size_t old_bytes = capacity_ * sizeof(ConnectionEntry);
    if (bytes == old_bytes) return;
    void* p;
    if (data_ == nullptr) {
      p = mapPages(bytes);
    } else {
      p = mremap(data_, old_bytes, bytes, MREMAP_MAYMOVE);
      if (p == MAP_FAILED) throw std::bad_alloc();
    }
    data_ = static_cast<ConnectionEntry*>(p);
    capacity_ = bytes / sizeof(ConnectionEntry);
  }

 private:
  ConnectionEntry* data_ = nullptr;
  std::size_t capacity_ = 0;
};

static_assert(kPageBytes % sizeof(ConnectionEntry) == 0, "whole entries per page");

}  // namespace

// One shard: an open-addressing index over a dense array of entries, guarded by `mu`.
// Aligned to a cache line so two shards' mutexes never share one.
struct alignas(64) ConnectionMap::Shard {
  mutable std::mutex mu;
  SlotTable slots;        // guarded by mu; size is a power of two
  EntryArray entries;     // guarded by mu; [0, count) live
  std::size_t count = 0;  // guarded by mu; the writer may read it unlocked
  std::size_t limit = 0;  // this shard's share of the cap; set at construction
  // guarded by mu: state of the generator that picks eviction samples (xorshift64*)
  std::uint64_t sampler = 0x9e3779b97f4a7c15ULL;

  std::size_t mask() const noexcept { return slots.size() - 1; }
  ConnectionEntry& entry(const Slot& s) noexcept { return entries.data()[s.pos1 - 1]; }
  const ConnectionEntry& entry(const Slot& s) const noexcept { return entries.data()[s.pos1 - 1]; }
  const ConnectionEntry* begin() const noexcept { return entries.data(); }
  const ConnectionEntry* end() const noexcept { return entries.data() + count; }

  // Index of key's slot, or of the empty slot where it would be inserted.
  std::size_t probe(const FlowKey& key, std::uint64_t hash, bool& found) const noexcept {
    const std::size_t m = mask();
    const auto tag = static_cast<std::uint32_t>(hash);
    for (std::size_t i = tag & m;; i = (i + 1) & m) {
      const Slot& s = slots[i];
      if (s.pos1 == 0) {
        found = false;
        return i;
      }
      if (s.tag == tag && entry(s).key == key) {
        found = true;
        return i;
      }
    }
  }

  // The slot that points at entries[pos] (which must be live).
  std::size_t slotOf(std::size_t pos, std::uint64_t seed) const noexcept {
    const std::size_t m = mask();
    const auto tag = static_cast<std::uint32_t>(hashFlowKey(entries.data()[pos].key, seed));
    const auto pos1 = static_cast<std::uint32_t>(pos + 1);
    std::size_t i = tag & m;
    while (slots[i].pos1 != pos1) i = (i + 1) & m;
    return i;
  }

  // Appends a zeroed entry for `key` at the empty slot i (found by probe()); the entry
  // array must have room (see reserveOne()).
  ConnectionEntry& insertAt(std::size_t i, const FlowKey& key, std::uint64_t hash) noexcept {
    ConnectionEntry* e = entries.data() + count;
    *e = ConnectionEntry{};
    e->key = key;
    slots[i] = Slot{static_cast<std::uint32_t>(count + 1), static_cast<std::uint32_t>(hash)};
    ++count;
    return *e;
  }

  // Room in the entry array for one more entry (doubling, at most the shard's share).
  void reserveOne() {
    if (count < entries.capacity()) return;
    entries.resize(std::min(std::max<std::size_t>(entries.capacity() * 2, 1), limit));
  }

  // Re-inserts every slot of `slots` into `fresh` (all empty, larger, or smaller but with
  // room for every entry) and swaps them, so `fresh` ends up holding the old index (freed
  // by the caller outside the lock). Entries do not move.
  void rehashInto(SlotTable& fresh) noexcept {
    const std::size_t m = fresh.size() - 1;
    for (const Slot& s : slots) {
      if (s.pos1 == 0) continue;
      std::size_t i = s.tag & m;
      while (fresh[i].pos1 != 0) i = (i + 1) & m;
      fresh[i] = s;
    }
    slots.swap(fresh);
  }

  // Removes entries[pos]: backward-shift deletion of its slot (later members of its probe
  // cluster move back so that no slot is separated from its home by an empty slot), then
  // the last entry moves into its place in the dense array.
  void eraseEntry(std::size_t pos, std::uint64_t seed) noexcept {
    const std::size_t m = mask();
    std::size_t hole = slotOf(pos, seed);
    for (std::size_t j = (hole + 1) & m;; j = (j + 1) & m) {
      const Slot s = slots[j];
      if (s.pos1 == 0) break;
      const std::size_t home = s.tag & m;
      // s may fill the hole iff the hole lies cyclically within [home, j).
      if (((j - home) & m) >= ((j - hole) & m)) {
        slots[hole] = s;
        hole = j;
      }
    }
    slots[hole] = Slot{};
    const std::size_t last = count - 1;
    if (pos != last) {
      slots[slotOf(last, seed)].pos1 = static_cast<std::uint32_t>(pos + 1);
      entries.data()[pos] = entries.data()[last];
    }
    --count;
  }

  // Evicts the entry with the oldest last_seen_ns among kEvictionSample entries of the dense
  // array picked at random (all of them if the shard holds fewer). At random, not in a run
  // from a clock hand: an erased entry's place is taken by the array's last, newest entry,
  // so runs of neighbours fill with new connections and a run would evict one of them.
  // Requires count > 0.
  void evictIdlest(std::uint64_t seed) noexcept {
    std::size_t victim = 0;
    std::uint64_t oldest = 0;
    if (count <= kEvictionSample) {
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t seen = entries.data()[i].stats.last_seen_ns;
        if (i == 0 || seen < oldest) {
          oldest = seen;
          victim = i;
        }
      }
    } else {
      for (std::size_t n = 0; n < kEvictionSample; ++n) {
        sampler ^= sampler >> 12;
        sampler ^= sampler << 25;
        sampler ^= sampler >> 27;
        const std::uint64_t r = (sampler * 0x2545f4914f6cdd1dULL) >> 32;
        const auto i = static_cast<std::size_t>((r * count) >> 32);  // uniform in [0, count)
        const std::uint64_t seen = entries.data()[i].stats.last_seen_ns;
        if (n == 0 || seen < oldest) {
          oldest = seen;
          victim = i;
        }
      }
    }
    eraseEntry(victim, seed);
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
    SlotTable initial(initial_capacity_);
    shards_[s].slots.swap(initial);
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
  if (rebuild_wanted_.load(std::memory_order_relaxed)) rebuildCandidates();
  const FlowKey key = FlowKey::fromPacket(p);
  const std::uint64_t h = hash(key);
  Shard& shard = shardFor(h);
  bool flipped = false;  // the packet belongs to the entry of the reversed key
  RecordOutcome out;

  auto add = [this, &p, &flipped, &out](ConnectionEntry& e) noexcept {
    ConnectionStats& s = e.stats;
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
      const std::uint64_t had = s.packets_count;
      s.packets_count += p.packets;
      // Into the candidate set when it now ranks before the threshold (see top()).
      if (!ranksBeforeRank(had, e.key, threshold_) &&
          ranksBeforeRank(s.packets_count, e.key, threshold_))
        addCandidate(e.key);
      if (p.tcp_flags != 0) {
        const std::uint32_t had_rtt = t.handshake_rtt_us;
        out.new_results = updateTcp(t, sent, p.tcp_flags, p.syns, p.syn_ns, p.ack_ns);
        if (had_rtt == 0) out.new_handshake_rtt_us = t.handshake_rtt_us;
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
      add(shard.entry(shard.slots[at]));
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
      add(other.entry(other.slots[at]));
      return out;
    }
  }
  if (p.packets == 0) return out;  // a health update never creates a connection

  {
    std::lock_guard<std::mutex> lock(shard.mu);
    bool found = false;
    std::size_t i = shard.probe(key, h, found);
    if (!found && shard.count >= shard.limit) {
      // At the cap: make room (the index never grows past max_capacity_, which holds
      // `limit` entries), then find the insertion slot again (eviction shifts slots).
      shard.evictIdlest(seed_);
      evicted_.fetch_add(1, std::memory_order_relaxed);
      i = shard.probe(key, h, found);
      add(shard.insertAt(i, key, h));
      return out;  // one out, one in: size_ unchanged
    }
    if (found || shard.count < loadLimit(shard.slots.size())) {
      if (found) {
        add(shard.entry(shard.slots[i]));
        return out;
      }
      shard.reserveOne();
      add(shard.insertAt(i, key, h));
      size_.fetch_add(1, std::memory_order_relaxed);
      return out;
    }
  }

  // New connection in a full index below the cap. Then the index is smaller than
  // max_capacity_ (which holds the shard's whole share), so doubling stays within it. This
  // is the only writer, so the shard cannot change while unlocked: allocate (and zero) the
  // doubled index without blocking readers.
  SlotTable fresh(shard.slots.size() * 2);
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    shard.rehashInto(fresh);
    bool found = false;
    const std::size_t i = shard.probe(key, h, found);
    shard.reserveOne();
    add(shard.insertAt(i, key, h));
  }
  size_.fetch_add(1, std::memory_order_relaxed);
  // `fresh` now holds the old index and is freed here, outside the lock.
  return out;
}

std::vector<ConnectionEntry> ConnectionMap::top(std::size_t n) const {
  if (n == 0) return {};
  if (n <= kTopTracked) {
    Rank t;
    std::vector<FlowKey> keys;
    {
      std::lock_guard<std::mutex> lock(top_mu_);
      t = threshold_;
      keys = candidates_;
    }
    // Look the keys up a shard at a time: one lock per shard, not per key.
    std::vector<std::pair<std::uint64_t, std::size_t>> order;  // (hash, index into keys)
    order.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) order.emplace_back(hash(keys[i]), i);
    std::sort(order.begin(), order.end());
    std::vector<ConnectionEntry> found;
    found.reserve(keys.size());
    for (std::size_t i = 0; i < order.size();) {
      const Shard& shard = shardFor(order[i].first);
      std::lock_guard<std::mutex> lock(shard.mu);
      for (; i < order.size() && &shardFor(order[i].first) == &shard; ++i) {
        bool hit = false;
        const std::size_t at = shard.probe(keys[order[i].second], order[i].first, hit);
        if (!hit) continue;  // removed since: its key waits for the next trim
        const ConnectionEntry& e = shard.entry(shard.slots[at]);
        if (ranksBeforeRank(e.stats.packets_count, e.key, t)) found.push_back(e);
      }
    }
    std::sort(found.begin(), found.end(), ranksBefore);
    found.erase(std::unique(found.begin(), found.end(),
                            [](const ConnectionEntry& a, const ConnectionEntry& b) {
                              return a.key == b.key;
                            }),
                found.end());
    // Every live entry ranking before t is among them; with t at the bottom (count 0),
    // that is every live entry.
    if (found.size() >= n || t.packets == 0) {
      if (found.size() > n) found.resize(n);
      return found;
    }
    rebuild_wanted_.store(true, std::memory_order_relaxed);
  }
  top_scans_.fetch_add(1, std::memory_order_relaxed);
  return scanTop(n);
}

std::vector<ConnectionEntry> ConnectionMap::scanTop(std::size_t n) const {
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
      for (const ConnectionEntry& e : shard) {
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

const ConnectionEntry* ConnectionMap::peek(const FlowKey& key) const noexcept {
  const std::uint64_t h = hash(key);
  const Shard& shard = shardFor(h);
  bool found = false;
  const std::size_t at = shard.probe(key, h, found);
  return found ? &shard.entry(shard.slots[at]) : nullptr;
}

// Writer, under a shard lock (lock order: shard, then top_mu_; readers never hold both).
void ConnectionMap::addCandidate(const FlowKey& key) {
  std::lock_guard<std::mutex> lock(top_mu_);
  candidates_.push_back(key);
  if (candidates_.size() >= kTopTracked + kTopSlack) trimCandidates();
}

// Writer, under top_mu_. Keeps the kTopTracked best live candidates and raises the
// threshold to the next one: every entry dropped ranks at or after it, and every entry
// never added ranked after the old threshold, which ranks after the new one.
void ConnectionMap::trimCandidates() {
  std::vector<Rank> live;
  live.reserve(candidates_.size());
  for (const FlowKey& key : candidates_) {
    const ConnectionEntry* e = peek(key);  // the writer's own entries: no shard lock
    if (e != nullptr && ranksBeforeRank(e->stats.packets_count, key, threshold_))
      live.push_back(Rank{e->stats.packets_count, key});
  }
  std::sort(live.begin(), live.end(), rankOrder<Rank>);
  live.erase(std::unique(live.begin(), live.end(),
                         [](const Rank& a, const Rank& b) { return a.key == b.key; }),
             live.end());
  if (live.size() > kTopTracked) {
    threshold_ = live[kTopTracked];
    live.resize(kTopTracked);
  }
  candidates_.clear();
  for (const Rank& r : live) candidates_.push_back(r.key);
}

// Writer: the candidate set from scratch, when a reader found it short of live entries.
void ConnectionMap::rebuildCandidates() {
  rebuild_wanted_.store(false, std::memory_order_relaxed);
  // Max-heap under rankOrder: front() is the worst of the best kTopTracked + 1.
  std::vector<Rank> heap;
  heap.reserve(kTopTracked + 1);
  for (std::size_t s = 0; s < shard_count_; ++s) {
    for (const ConnectionEntry& e : shards_[s]) {  // the writer's own entries: no lock
      const Rank r{e.stats.packets_count, e.key};
      if (heap.size() < kTopTracked + 1) {
        heap.push_back(r);
        std::push_heap(heap.begin(), heap.end(), rankOrder<Rank>);
      } else if (rankOrder(r, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), rankOrder<Rank>);
        heap.back() = r;
        std::push_heap(heap.begin(), heap.end(), rankOrder<Rank>);
      }
    }
  }
  std::sort(heap.begin(), heap.end(), rankOrder<Rank>);
  Rank t;  // the bottom: every live entry ranks before it
  if (heap.size() > kTopTracked) {
    t = heap[kTopTracked];
    heap.resize(kTopTracked);
  }
  std::lock_guard<std::mutex> lock(top_mu_);
  threshold_ = t;
  candidates_.clear();
  for (const Rank& r : heap) candidates_.push_back(r.key);
}

std::vector<ConnectionEntry> ConnectionMap::snapshot() const {
  std::vector<ConnectionEntry> out;
  const std::size_t estimate = size();
  out.reserve(estimate + estimate / 8 + 64);
  for (std::size_t s = 0; s < shard_count_; ++s) {
    const Shard& shard = shards_[s];
    std::lock_guard<std::mutex> lock(shard.mu);
    out.insert(out.end(), shard.begin(), shard.end());
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
  return shard.entry(shard.slots[i]).stats;
}

std::size_t ConnectionMap::expire(std::uint64_t now_ns, std::uint64_t idle_timeout_ns) {
  // last_seen + timeout < now, written without overflow.
  auto idle = [&](const ConnectionStats& s) noexcept {
    return now_ns > s.last_seen_ns && now_ns - s.last_seen_ns > idle_timeout_ns;
  };
  if (rebuild_wanted_.load(std::memory_order_relaxed)) rebuildCandidates();
  std::size_t removed_total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    Shard& shard = shards_[s];
    std::size_t target = 0;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      std::size_t removed = 0;
      // Erasing at i moves the last entry into i, so i is re-examined instead of advanced.
      for (std::size_t i = 0; i < shard.count;) {
        if (idle(shard.entries.data()[i].stats)) {
          shard.eraseEntry(i, seed_);
          ++removed;
        } else {
          ++i;
        }
      }
      // The entry array gives back what a quarter of it would not need (pages past the
      // last entry); halving at most to what is live keeps a shrink from being undone by
      // the next few inserts.
      if (shard.entries.capacity() > kPageBytes / sizeof(ConnectionEntry) &&
          shard.count < shard.entries.capacity() / 4) {
        shard.entries.resize(std::max(shard.count * 2, kPageBytes / sizeof(ConnectionEntry)));
      }
      // Publish per shard, so size() never lags the shards by more than one.
      size_.fetch_sub(removed, std::memory_order_relaxed);
      removed_total += removed;
      target = shrunkCapacity(shard.slots.size(), shard.count, initial_capacity_);
    }
    if (target == shard.slots.size()) continue;
    // This is the only writer, so the shard cannot change while unlocked: allocate the
    // smaller index without blocking readers, move the slots under the lock, and free
    // the old index (now in `fresh`) after releasing it.
    SlotTable fresh(target);
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      shard.rehashInto(fresh);
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
    if (shard.count > shard.entries.capacity()) return false;
    if (cap > initial_capacity_ && shard.count < cap / 8) return false;  // missed a shrink
    const std::size_t m = shard.mask();
    std::vector<bool> referenced(shard.count);
    std::size_t count = 0;
    for (std::size_t i = 0; i < cap; ++i) {
      const Slot& slot = shard.slots[i];
      if (slot.pos1 == 0) continue;
      ++count;
      if (slot.pos1 > shard.count || referenced[slot.pos1 - 1]) return false;
      referenced[slot.pos1 - 1] = true;
      const ConnectionEntry& e = shard.entry(slot);
      if (e.stats.packets_count == 0) return false;
      const std::uint64_t h = hash(e.key);
      if (&shardFor(h) != &shard) return false;
      if (slot.tag != static_cast<std::uint32_t>(h)) return false;
      // Every slot from home up to i must be occupied, and the key must be unique there.
      for (std::size_t j = static_cast<std::size_t>(h) & m; j != i; j = (j + 1) & m) {
        if (shard.slots[j].pos1 == 0) return false;
        if (shard.entry(shard.slots[j]).key == e.key) return false;
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

std::size_t ConnectionMap::memoryBytes() const {
  std::size_t total = shard_count_ * sizeof(Shard);
  for (std::size_t s = 0; s < shard_count_; ++s) {
    std::lock_guard<std::mutex> lock(shards_[s].mu);
    total += shards_[s].slots.bytes() + shards_[s].entries.bytes();
  }
  return total;
}

}  // namespace ayaflow::flow
