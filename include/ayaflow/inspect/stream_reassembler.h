// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "ayaflow/flow/flow_key.h"

namespace ayaflow::inspect {

/// Collects the first bytes of TCP byte streams (one direction of a connection, e.g. client
/// to server) from segments given with their sequence numbers, so a message split over
/// several segments (a ClientHello) can be parsed as one buffer. No I/O.
///
/// Per stream it keeps the bytes [0, max_stream_bytes) of the stream, placed by sequence
/// number: in-order, out-of-order, overlapping and retransmitted segments are handled
/// (overlaps overwrite; at most max_ranges disjoint ranges, i.e. holes, per stream). The
/// stream starts at the sequence number given to startAt() (the SYN's + 1) if the caller
/// knows it; otherwise at the lowest sequence number seen, so an earlier segment that
/// arrives late (within max_stream_bytes) moves the start back. Sequence numbers wrap
/// (RFC 1982 arithmetic). Segments past the window are ignored.
///
/// Memory is bounded: at most max_streams streams (least recently used evicted first) and
/// max_total_bytes buffered over all streams (LRU streams evicted to stay under it). A
/// stream marked finish() releases its bytes and remembers only that it is done, so later
/// segments of that connection cost a lookup. expire() drops streams idle too long.
///
/// Thread: not thread-safe; one owner thread (the ingest thread). Errors: none; hostile
/// sequence numbers only waste the window. View data stays valid until the next non-const
/// call.
class StreamReassembler {
 public:
  struct Options {
    std::size_t max_stream_bytes = 16384;    ///< bytes kept per stream, from its start
    std::size_t max_streams = 1024;          ///< streams tracked (finished ones included)
    std::size_t max_total_bytes = 4u << 20;  ///< buffered bytes, all streams together
    std::size_t max_ranges = 16;             ///< disjoint byte ranges (holes + 1) per stream
    std::uint64_t idle_timeout_ns = 30'000'000'000;  ///< expire() drops streams idle longer
  };

  enum class Status {
    kGrew,       ///< the contiguous prefix grew: worth parsing again
    kUnchanged,  ///< duplicate, out of window, behind a hole, or empty
    kFinished,   ///< the stream was finish()ed: the segment was ignored
    kDropped,    ///< too many holes: the segment was ignored
  };

  /// The contiguous bytes from the stream's start.
  struct View {
    const std::uint8_t* data = nullptr;
    std::size_t len = 0;
    Status status = Status::kUnchanged;
  };

  StreamReassembler();
  explicit StreamReassembler(Options options);
  StreamReassembler(const StreamReassembler&) = delete;
  StreamReassembler& operator=(const StreamReassembler&) = delete;

  /// Adds a segment's payload (len may be less than the segment's if the capture was cut:
  /// what is missing stays a hole). Creates the stream on its first non-empty segment.
  View add(const flow::FlowKey& key, std::uint32_t seq, const std::uint8_t* data, std::size_t len,
           std::uint64_t now_ns);

  /// Declares where the stream starts (the SYN's sequence number + 1): bytes before it are
  /// discarded and the start no longer moves. Creates the stream if needed.
  void startAt(const flow::FlowKey& key, std::uint32_t first_seq, std::uint64_t now_ns);

  /// The stream's current contiguous bytes (empty if unknown or finished).
  View view(const flow::FlowKey& key) const;

  /// Releases the stream's bytes; later segments return kFinished until it is erased,
  /// evicted or expired. Unknown keys are ignored.
  void finish(const flow::FlowKey& key);

  /// Forgets the stream (e.g. on FIN/RST).
  void erase(const flow::FlowKey& key);

  /// Drops streams whose last segment is older than idle_timeout_ns (last_seen +
  /// idle_timeout_ns < now_ns). Returns the number dropped.
  std::size_t expire(std::uint64_t now_ns);

  std::size_t size() const noexcept { return index_.size(); }
  std::size_t bufferedBytes() const noexcept { return total_bytes_; }
  /// Streams evicted because of max_streams or max_total_bytes since construction.
  std::uint64_t evictions() const noexcept { return evictions_; }
  const Options& options() const noexcept { return options_; }

 private:
  struct Range {
    std::uint32_t begin, end;  // offsets from the stream start, end exclusive
  };
  struct Stream {
    flow::FlowKey key;
    std::uint32_t base_seq = 0;  // sequence number of offset 0
    bool base_fixed = false;     // set by startAt()
    bool finished = false;
    std::uint64_t last_seen_ns = 0;
    std::vector<std::uint8_t> bytes;  // size = highest end offset received
    std::vector<Range> ranges;        // sorted, disjoint, not adjacent
  };
  using List = std::list<Stream>;

  Stream& touch(const flow::FlowKey& key, std::uint64_t now_ns, bool& created);
  void rebase(Stream& s, std::uint32_t new_base);
  void release(Stream& s);
  void removeIt(List::iterator it);
  void enforceBudget(const Stream* keep);
  std::size_t contiguous(const Stream& s) const noexcept;

  Options options_;
  List lru_;  // least recently used first
  std::unordered_map<flow::FlowKey, List::iterator, flow::FlowKeyHash> index_;
  std::size_t total_bytes_ = 0;  // sum of bytes.capacity()
  std::uint64_t evictions_ = 0;
};

}  // namespace ayaflow::inspect
