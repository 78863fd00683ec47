// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace boost::asio {
class io_context;
}

struct ring_buffer;

namespace ayaflow::bpf {

/// Receives each ring-buffer record. Called on the reader's io_context
/// thread; must not throw and should not allocate.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void onEvent(const void* data, std::size_t size) noexcept = 0;
  /// After each drain (once per wake-up or timer tick), with the number of
  /// records consumed.
  virtual void onDrained(std::size_t /*records*/) noexcept {}
};

/// Drains a BPF ring buffer on an Asio io_context: the ring buffer's epoll fd
/// is awaited asynchronously (the program wakes it once enough bytes are
/// pending), and a short timer drains whatever arrived in quiet periods, when
/// the program submitted without waking anyone. No sleep or poll loop.
/// Owned and used by the io_context's thread only; libbpf owns the fd.
class RingBufferReader {
 public:
  RingBufferReader(boost::asio::io_context& io, int ring_map_fd, EventSink& sink,
                   std::chrono::milliseconds quiet_drain_interval = std::chrono::milliseconds(50));
  ~RingBufferReader();
  RingBufferReader(const RingBufferReader&) = delete;
  RingBufferReader& operator=(const RingBufferReader&) = delete;

  /// Starts waiting for data.
  void start();
  /// Cancels the pending waits (call on the io_context's thread).
  void stop();
  /// Consumes everything pending now, synchronously; returns records read.
  std::size_t drain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::bpf
