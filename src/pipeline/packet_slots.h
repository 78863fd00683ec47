// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_pipeline: the storage of the capture -> pipeline hand-off queue.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "ayaflow/flow/packet.h"

namespace ayaflow::pipeline::detail {

/// The hand-off queue's slots: one anonymous mapping whose pages the kernel provides on
/// first write, so a queue that never gets deep costs only the pages it reached.
class PacketSlots {
 public:
  PacketSlots() = default;
  explicit PacketSlots(std::size_t n) : n_(n), bytes_(n * sizeof(flow::Packet)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<unsigned char*>(p);
  }
  PacketSlots(PacketSlots&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), n_(o.n_), bytes_(o.bytes_) {}
  PacketSlots& operator=(PacketSlots&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(n_, o.n_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  PacketSlots(const PacketSlots&) = delete;
  PacketSlots& operator=(const PacketSlots&) = delete;
  ~PacketSlots() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }

  std::size_t size() const noexcept { return n_; }
  /// Gives the pages of slots [first, end) back to the kernel (they read as zero until
  /// written again). The caller makes sure nothing uses those slots meanwhile.
  void release(std::size_t first) noexcept {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t from = (first * sizeof(flow::Packet) + page - 1) / page * page;
    if (from < bytes_) madvise(data_ + from, bytes_ - from, MADV_DONTNEED);
  }
  void put(std::size_t i, const flow::Packet& p) noexcept {
    std::memcpy(data_ + i * sizeof p, &p, sizeof p);
  }
  void get(std::size_t i, std::size_t count, flow::Packet* out) const noexcept {
    if (count > 0) std::memcpy(out, data_ + i * sizeof *out, count * sizeof *out);
  }

 private:
  static_assert(std::is_trivially_copyable_v<flow::Packet>);
  unsigned char* data_ = nullptr;
  std::size_t n_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace ayaflow::pipeline::detail
