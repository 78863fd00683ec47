// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/memory.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

namespace ayaflow::common {

std::size_t residentBytes() noexcept {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return 0;
  char line[256];
  std::size_t kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmRSS: %zu kB", &kb) == 1) break;
  }
  std::fclose(f);
  return kb * 1024;
}

PageRelease releaseStartupPages() noexcept {
  PageRelease r;
  r.rss_before = residentBytes();
  // The heap the loaders freed (the kernel's BTF, parsed for CO-RE relocations and the drop
  // reasons' names: about 10 MB) goes back to the kernel now, not at the first expiry pass.
  malloc_trim(0);
  char exe[4096];
  const ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[exe_len > 0 ? exe_len : 0] = '\0';

  std::FILE* f = std::fopen("/proc/self/maps", "re");
  if (f == nullptr) return r;
  char line[4096 + 128];
  r.supported = true;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long begin = 0, end = 0;
    char perms[8] = {};
    int path_at = 0;
    if (std::sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &begin, &end, perms, &path_at) < 3 ||
        path_at <= 0) {
      continue;
    }
    char* path = line + path_at;
    path[std::strcspn(path, "\n")] = '\0';
    // Only the executable and shared libraries, only read-only mappings: never data
    // files (the SQLite WAL index is mapped shared) nor anything writable.
    const bool code = path[0] == '/' && (std::strstr(path, ".so") != nullptr ||
                                         (exe[0] != '\0' && std::strcmp(path, exe) == 0));
    if (!code || perms[1] == 'w') continue;
    if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT) != 0) {
      if (errno == EINVAL) {  // kernel older than 5.4
        r.supported = false;
        break;
      }
      continue;
    }
    ++r.mappings;
  }
  std::fclose(f);
  r.rss_after = residentBytes();
  return r;
}

}  // namespace ayaflow::common
