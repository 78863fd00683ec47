// SPDX-License-Identifier: MIT OR Apache-2.0
// Replays every seed and regression input of the fuzz targets through the same property
// checks (fuzz/fuzz_checks.h), so inputs that once broke a parser stay fixed in every
// build, fuzzer or not.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../fuzz/fuzz_checks.h"

namespace ayaflow::inspect {
namespace {

namespace fs = std::filesystem;

/// Regular files in `dir` whose name starts with `prefix` (missing dir: none).
std::vector<fs::path> filesIn(const fs::path& dir, const std::string& prefix = "") {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename().string().rfind(prefix, 0) == 0 &&
        e.path().filename() != "README.md") {
      out.push_back(e.path());
    }
  }
  return out;
}

std::vector<std::uint8_t> readAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void replay(const std::string& target, const std::string& data_prefix,
            void (*check)(const std::uint8_t*, std::size_t)) {
  const fs::path fuzz_dir = AYAFLOW_FUZZ_DIR;
  std::vector<fs::path> inputs = filesIn(fuzz_dir / "corpus" / target);
  for (auto& p : filesIn(fuzz_dir / "regressions" / target)) inputs.push_back(p);
  if (!data_prefix.empty()) {
    for (auto& p : filesIn(AYAFLOW_INSPECT_DATA_DIR, data_prefix)) {
      if (p.extension() == ".bin") inputs.push_back(p);
    }
  }
  EXPECT_FALSE(inputs.empty());
  for (const auto& p : inputs) {
    SCOPED_TRACE(p.string());
    const auto bytes = readAll(p);
    check(bytes.data(), bytes.size());
  }
}

TEST(FuzzCorpusReplay, Dns) { replay("dns", "dns_", fuzz::checkDns); }
TEST(FuzzCorpusReplay, Tls) { replay("tls", "tls_", fuzz::checkTls); }
TEST(FuzzCorpusReplay, Reassembler) { replay("reassembler", "", fuzz::checkReassembler); }

}  // namespace
}  // namespace ayaflow::inspect
