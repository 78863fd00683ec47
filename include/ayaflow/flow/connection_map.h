// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/flow/tcp.h"

namespace ayaflow::flow {

/// Counters of one connection (both directions).
struct ConnectionStats {
  std::uint64_t bytes_sent = 0;        // sum of lengths from the local end
  std::uint64_t bytes_received = 0;    // sum of lengths to the local end
  std::uint64_t packets_count = 0;     // both directions; >= 1 for every live entry
  std::uint64_t first_seen_ns = 0;     // earliest event timestamp (CLOCK_MONOTONIC)
  std::uint64_t last_seen_ns = 0;      // latest event timestamp (CLOCK_MONOTONIC)
  std::uint32_t ifindex_sent = 0;      // interface of the latest packet from the local end
  std::uint32_t ifindex_received = 0;  // interface of the latest packet to the local end
  ConnectionHealth tcp;                // TCP flags, state, RTT; retransmits and drops
};

/// What record() did to a connection, for the caller's counters and the history.
struct RecordOutcome {
  bool recorded = false;  ///< false: a health update for a connection not in the map
  /// The packet went to the entry of its reversed key: it travels towards the entry's local
  /// end although its hook (or, for a health update, its guess) said otherwise.
  bool flipped = false;
  TcpState before = TcpState::kUnknown, after = TcpState::kUnknown;
  std::uint16_t tcp_flags = 0;  ///< both directions' flags OR-ed, after the update
  std::uint32_t rtt_us = 0;     ///< the connection's RTT after the update (ConnectionHealth::rttUs)
  RttKind rtt_kind = RttKind::kNone;
  /// The handshake RTT measured by this very update (0: none), for the RTT histogram.
  std::uint32_t new_handshake_rtt_us = 0;
  /// resultBit()s the connection reached with this update (see updateTcp()).
  std::uint8_t new_results = 0;
};

struct ConnectionEntry {
  FlowKey key;
  ConnectionStats stats;
};

/// Sharded concurrent map of live connections, one entry per connection (FlowKey).
/// A packet whose key is absent but whose reversed key (ends swapped) is present belongs to
/// that entry, in the other direction: when both ends are on this host (two pods of a node,
/// each direction counted where it leaves its pod, so both as ingress), the first packet
/// decides which end is `local`. This costs a second lookup only for a connection's first
/// packets.
///
/// Threads: exactly one writer thread (ingest) calls record() and expire(); any number
/// of reader threads call size(), top(), snapshot() and find() concurrently with it.
/// Each shard is a mutex, a dense array of its entries (no holes: memory follows the live
/// connections, 128 B each) and an open-addressing index over it: 8-byte slots holding
/// the entry's position and 32 bits of its hash (linear probing, backward-shift deletion,
/// power-of-two capacity, max load 0.7, grows by doubling). expire() shrinks an index that
/// it leaves less than 1/8 full (halving while that holds, never below the initial
/// capacity) and gives back the entry array's pages beyond twice the live entries, so
/// memory taken by a burst of connections goes back once they expire. A grown index is
/// 0.35 full and a shrunk one 1/8 to 1/4 full, so the count must change by a factor of
/// about 2.8 before a resize can be undone: no thrashing. Entry arrays and indexes of
/// 64 KiB and more are mapped with mmap() directly (entry arrays grow and shrink with
/// mremap(), without copying), so freed memory returns to the kernel at once, whatever
/// the state of malloc's heap.
/// The shard comes from the high bits of hashFlowKey() (seeded with a random per-instance
/// seed against hash flooding), the slot from the low bits.
/// record() on an existing connection never allocates; a new connection allocates only
/// when its shard grows. Growth and shrinking of an index allocate the new one and free the
/// old one outside the shard lock; the lock is held only to move the slots across.
/// Readers copy entries out under one shard lock at a time, so a result is consistent
/// per entry but not a global point-in-time cut across shards.
///
/// Memory: 128 B per live entry plus 8 B per index slot (the index is 0.35 to 0.7 full
/// while growing: 11 to 23 B per entry), about 150 B per connection; 15 MB for 100 000.
///
/// Bounded: the map never holds more than max_entries() entries. The cap is split over
/// the shards (shard s holds at most max_entries / shards, plus one for the first
/// max_entries % shards shards), and a shard's index never grows past the smallest power
/// of two that holds its share at load 0.7, so memory at the cap is at most
/// max_entries x 128 B plus shards x that many slots x 8 B: 24.9 MB for the default
/// 180 000 entries over 16 shards (16 x 16384 slots; ~138 B per entry). A new connection
/// in a shard at its share evicts an idle entry first: the one with the oldest
/// last_seen_ns among kEvictionSample entries of the shard's dense array from its clock
/// hand (which then moves past them). This is approximate LRU (the victim is the idlest of a
/// sample, not of the shard; exact when the shard holds at most kEvictionSample entries),
/// allocation-free and O(kEvictionSample) per eviction. Shards fill unevenly, so the
/// first evictions come shortly before the map as a whole is at the cap (with the default,
/// at about 98% of it). Evictions are counted
/// (evicted()); the evicted connection's later packets start a new entry. The map's
/// figures are per connection; global totals come from the kernel and are not affected.
/// Errors: none reported; allocation failure terminates (noexcept).
class ConnectionMap {
 public:
  /// Default cap on live entries; see the class comment for its memory.
  static constexpr std::size_t kDefaultMaxEntries = 180000;
  /// Occupied slots examined per eviction.
  static constexpr std::size_t kEvictionSample = 16;

  /// shard_count and initial_capacity_per_shard are rounded up to powers of two
  /// (at least 1 shard and 8 slots). max_entries (1 to 2^30) caps the live entries; the
  /// shard count is lowered to the largest power of two not above it, and the initial
  /// capacity to the largest table a shard may have.
  explicit ConnectionMap(std::size_t shard_count = 16, std::size_t initial_capacity_per_shard = 256,
                         std::size_t max_entries = kDefaultMaxEntries);
  ~ConnectionMap();
  ConnectionMap(const ConnectionMap&) = delete;
  ConnectionMap& operator=(const ConnectionMap&) = delete;

  /// Writer thread only. Finds or inserts the packet's connection and adds it:
  /// egress length to bytes_sent, ingress length to bytes_received, p.packets packets
  /// (1 for an event, more for a kernel flow-table entry), its TCP flags and handshake times
  /// (updateTcp()), and its health figures (retransmits, drops: added; srtt_us: replaces).
  /// A new connection in a shard at its share of the cap first evicts an idle entry (see the
  /// class comment). A health update (p.packets == 0) changes only a connection already
  /// present: it neither creates an entry nor counts as activity.
  RecordOutcome record(const Packet& p) noexcept;

  /// Number of live entries. Relaxed; exact once the writer's call has returned.
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

  /// The n entries with the highest packets_count, descending; ties ordered by key bytes
  /// (memcmp ascending) so the result is deterministic.
  /// For n up to kTopTracked the answer comes from the candidate set the writer keeps (see
  /// below): at most kTopTracked + kTopSlack lookups, whatever the map's size. Otherwise
  /// (or while the set is short of live candidates, after they expired or were evicted)
  /// every entry is scanned: per shard the best n are kept in a heap while locked, shards
  /// are merged outside the locks; a short set is then rebuilt by the writer's next call.
  ///
  /// The candidate set: a threshold rank T (a count and a key) and a set C of keys such that
  /// every live entry ranking before T is in C. The writer adds an entry's key to C when a
  /// packet moves it from after T to before T (counts only grow), which costs nothing for
  /// the others. When C reaches kTopTracked + kTopSlack keys, the writer looks them up
  /// (about one lookup per key added), raises T to the (kTopTracked+1)-th best of them and
  /// drops the rest, keys of removed entries included; removals themselves touch nothing.
  std::vector<ConnectionEntry> top(std::size_t n) const;

  /// The largest n that top() answers from the candidate set.
  static constexpr std::size_t kTopTracked = 64;
  /// Keys the candidate set takes beyond kTopTracked before the writer trims it.
  static constexpr std::size_t kTopSlack = 256;

  /// top() calls answered by a full scan (the candidate set could not), since construction.
  std::uint64_t topScansForTest() const noexcept {
    return top_scans_.load(std::memory_order_relaxed);
  }

  /// All entries, in no particular order.
  std::vector<ConnectionEntry> snapshot() const;

  /// The entry for key, if live.
  std::optional<ConnectionStats> find(const FlowKey& key) const;

  /// Writer thread only. Removes entries idle for longer than idle_timeout_ns, i.e.
  /// with last_seen_ns + idle_timeout_ns < now_ns (an entry exactly at the boundary
  /// stays). Overflow-safe. Then shrinks every shard left less than 1/8 full (see the
  /// class comment). Returns the number removed.
  std::size_t expire(std::uint64_t now_ns, std::uint64_t idle_timeout_ns);

  std::size_t shardCount() const noexcept { return shard_count_; }

  /// The cap on live entries (as given, within 1 to 2^30).
  std::size_t maxEntries() const noexcept { return max_entries_; }

  /// Entries evicted by the cap since construction. Relaxed; any thread.
  std::uint64_t evicted() const noexcept { return evicted_.load(std::memory_order_relaxed); }

  /// Test hook, writer idle: checks every shard's table invariants (each entry reachable
  /// from its home slot without crossing an empty slot, counts match, load at most 0.7,
  /// capacity at least the initial one and at most the cap's, a table above the initial
  /// one at least 1/8 full, and no shard over its share of the cap).
  bool checkInvariantsForTest() const;

  /// Test hook: total index slots allocated over all shards.
  std::size_t capacityForTest() const;

  /// Bytes the map has allocated (indexes, entry arrays, shards), resident or not: entry
  /// arrays are reserved in whole pages and grow by doubling, so this is at most about
  /// twice what the live entries need. Locks each shard in turn; any thread.
  std::size_t memoryBytes() const;

 private:
  struct Shard;

  struct Rank {
    std::uint64_t packets = 0;
    FlowKey key;
  };

  Shard& shardFor(std::uint64_t hash) const noexcept;
  RecordOutcome recordInto(const Packet& p, const FlowKey& key, std::uint64_t h) noexcept;
  std::vector<ConnectionEntry> scanTop(std::size_t n) const;
  // Writer only: the live entry of key, read without the shard lock (only the writer
  // changes entries), or null.
  const ConnectionEntry* peek(const FlowKey& key) const noexcept;
  void addCandidate(const FlowKey& key);
  void trimCandidates();
  void rebuildCandidates();
  std::uint64_t hash(const FlowKey& key) const noexcept { return hashFlowKey(key, seed_); }

  const std::uint64_t seed_;
  std::size_t max_entries_;
  std::size_t shard_count_;
  std::size_t max_capacity_;      // slots per shard: the cap's table, never grown past
  std::size_t initial_capacity_;  // slots per shard at construction; shrinking stops here
  unsigned shard_shift_;          // hash >> shard_shift_ is the shard; 64 means one shard
  std::unique_ptr<Shard[]> shards_;
  std::atomic<std::size_t> size_{0};       // written by the writer thread only
  std::atomic<std::uint64_t> evicted_{0};  // written by the writer thread only

  // The candidate set (see top()). Changed by the writer under top_mu_; the writer reads
  // its own threshold without it.
  mutable std::mutex top_mu_;
  Rank threshold_;                                   // T: initially before nothing (count 0)
  std::vector<FlowKey> candidates_;                  // C, may hold dead or duplicate keys
  mutable std::atomic<bool> rebuild_wanted_{false};  // set by a reader that found C short
  mutable std::atomic<std::uint64_t> top_scans_{0};
};

}  // namespace ayaflow::flow
