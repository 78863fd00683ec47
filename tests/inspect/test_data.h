// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace ayaflow::inspect::testing {

using Bytes = std::vector<std::uint8_t>;

/// Reads a file from tests/inspect/data (recorded by data/record.sh); throws if missing.
inline Bytes readData(const std::string& name) {
  const std::string path = std::string(AYAFLOW_INSPECT_DATA_DIR) + "/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open test data " + path);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void putBe16(Bytes& b, std::size_t at, std::size_t v) {
  b.at(at) = static_cast<std::uint8_t>(v >> 8);
  b.at(at + 1) = static_cast<std::uint8_t>(v);
}

inline void appendBe16(Bytes& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}

}  // namespace ayaflow::inspect::testing
