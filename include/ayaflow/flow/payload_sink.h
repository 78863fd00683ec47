// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>

namespace ayaflow::flow {

/// Receives the kernel's deep-inspection records (struct ayaflow_payload_event) on the
/// ingest thread. Must not block; must not throw.
class PayloadSink {
 public:
  virtual ~PayloadSink() = default;
  /// One ring-buffer record (may be unaligned); now_ns is CLOCK_MONOTONIC.
  virtual void onPayload(const void* data, std::size_t size, std::uint64_t now_ns) noexcept = 0;
  /// Every few seconds, on the same thread: time to drop idle state.
  virtual void onTick(std::uint64_t /*now_ns*/) noexcept {}
};

}  // namespace ayaflow::flow
