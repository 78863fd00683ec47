// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace ayaflow::test {

/// True when running under CI (CI=true): there a skipped root test is a failure.
inline bool inCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::strcmp(ci, "true") == 0 || std::strcmp(ci, "1") == 0);
}

}  // namespace ayaflow::test

/// Root-tier tests need root (BPF load, netns, veth). Outside CI they skip
/// with a clear message; in CI a skip would hide the kernel path, so it fails.
#define AYAFLOW_REQUIRE_ROOT()                                                           \
  do {                                                                                   \
    if (::geteuid() != 0) {                                                              \
      if (::ayaflow::test::inCi()) {                                                     \
        FAIL() << "root tier needs root, and CI=true forbids skipping";                  \
      }                                                                                  \
      GTEST_SKIP() << "needs root (BPF load, network namespaces); run as root or in CI"; \
    }                                                                                    \
  } while (0)
