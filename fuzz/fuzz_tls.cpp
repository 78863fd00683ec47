// SPDX-License-Identifier: MIT OR Apache-2.0
// libFuzzer target: see fuzz_checks.h for the properties checked.
#include <cstddef>
#include <cstdint>

#include "fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ayaflow::inspect::fuzz::checkTls(data, size);
  return 0;
}
