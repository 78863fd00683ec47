// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>

namespace ayaflow::common {

/// What releaseStartupPages() did.
struct PageRelease {
  bool supported = false;      ///< the kernel knows MADV_PAGEOUT (Linux >= 5.4)
  std::size_t mappings = 0;    ///< read-only mappings of the executable and libraries advised
  std::size_t rss_before = 0;  ///< VmRSS in bytes before, 0 if unknown
  std::size_t rss_after = 0;   ///< VmRSS in bytes after, 0 if unknown
};

/// Asks the kernel to reclaim the pages of code and read-only data that this process has
/// mapped from its executable and shared libraries (madvise MADV_PAGEOUT on their
/// read-only mappings), and hands the heap freed so far back to the kernel (malloc_trim).
/// Meant to be called once, after start-up: the BPF loader, ELF and
/// BTF parsing and configuration parsing are not needed again, yet their pages would stay
/// resident. Pages other processes also map (libc, usually) are left alone by the kernel;
/// anything used again faults back in from the page cache or the file. Contents never
/// change. Never throws; reads /proc/self/maps and /proc/self/status.
PageRelease releaseStartupPages() noexcept;

/// VmRSS of this process in bytes, 0 if /proc/self/status cannot be read.
std::size_t residentBytes() noexcept;

}  // namespace ayaflow::common
