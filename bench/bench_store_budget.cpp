// SPDX-License-Identifier: MIT OR Apache-2.0
// The disk budget's cost to the SQLite writer (docs/storage.md "Disk budget"): raw rows
// written through SqliteSink in batches of 1000, with
//   off:      no budget, no free-space floor (--max-db-size 0 --min-free-disk 0);
//   measured: the defaults' work while under the budget (the size measured after every batch,
//             statvfs every 250 ms), with a budget never reached;
//   deleting: a budget of --budget-mib, reached early: the oldest rows deleted in chunks
//             all along.
// Process CPU per row (the writer is the only busy thread) and rows/s; --rounds rounds of the
// three, interleaved, medians with min-max.
//   bench_store_budget [--rows N] [--rounds R] [--budget-mib M] [--dir DIR]
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "ayaflow/store/sqlite_sink.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace ayaflow;

double cpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::uint64_t fileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

void removeDb(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((path + suffix).c_str());
}

pipeline::BatchPtr batch(std::int64_t base, std::size_t first, std::size_t n) {
  auto b = std::make_shared<pipeline::RecordBatch>(n);
  for (std::size_t i = 0; i < n; ++i) {
    pipeline::FlowRecord& r = (*b)[i];
    const std::size_t k = first + i;
    r.src = flow::IpAddress::fromV4(0x0a000000u | static_cast<std::uint32_t>(k % 4096));
    r.dst = flow::IpAddress::fromV4(0xc0a80001u);
    r.src_port = static_cast<std::uint16_t>(1024 + k % 50000);
    r.dst_port = 443;
    r.protocol = 6;
    r.first_ms = r.last_ms = base + static_cast<std::int64_t>(k / 100);  // 100k rows/s
    r.bytes = 64;
    r.packets = 1;
  }
  return b;
}

struct Result {
  double cpu_us_per_row;
  double rows_per_s;
  std::uint64_t deleted;
  std::uint64_t file;
};

Result run(const std::string& path, std::size_t rows, std::uint64_t budget, bool floor) {
  removeDb(path);
  store::StoreOptions o;
  o.db_path = path;
  o.queue_rows = std::size_t{1} << 22;
  o.max_db_bytes = budget;
  if (!floor) o.min_free_bytes = 0, o.min_free_percent = 0;
  std::vector<pipeline::BatchPtr> batches;
  const std::int64_t base = 1700000000000;
  for (std::size_t done = 0; done < rows; done += 1000) {
    batches.push_back(batch(base, done, std::min<std::size_t>(1000, rows - done)));
  }
  Result r{};
  {
    store::SqliteSink sink(o);
    const double cpu0 = cpuSeconds();
    const auto t0 = Clock::now();
    // Paced in slices so the queue never holds more than ~64k rows (as the agent's does).
    for (std::size_t i = 0; i < batches.size(); ++i) {
      sink.consume(batches[i], std::nullopt);
      if (i % 64 == 63) sink.flush();
    }
    sink.flush();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double cpu = cpuSeconds() - cpu0;
    const store::SqliteSinkStats s = sink.stats();
    if (s.rows_stored != rows)
      std::fprintf(stderr, "stored %llu of %zu rows\n",
                   static_cast<unsigned long long>(s.rows_stored), rows);
    r = Result{cpu * 1e6 / static_cast<double>(rows), static_cast<double>(rows) / secs,
               s.rows_deleted_size, fileBytes(path) + fileBytes(path + "-wal")};
  }
  removeDb(path);
  return r;
}

struct Stat {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  std::string text(const char* fmt) {
    std::sort(v.begin(), v.end());
    char buf[128];
    const double med = v[v.size() / 2];
    std::snprintf(buf, sizeof buf, fmt, med, v.front(), v.back());
    return buf;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::size_t rows = 2000000;
  int rounds = 3;
  std::uint64_t budget_mib = 64;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) {
      rows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--budget-mib" && i + 1 < argc) {
      budget_mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--rows N] [--rounds R] [--budget-mib M] [--dir DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  const std::string path = dir + "/bench-budget-" + std::to_string(::getpid()) + ".db";
  const char* names[3] = {"off (no budget, no floor)", "measured (budget not reached, floor on)",
                          "deleting (budget reached)"};
  Stat cpu[3], rate[3];
  std::uint64_t deleted = 0, file = 0;
  for (int round = 0; round < rounds; ++round) {
    for (int mode = 0; mode < 3; ++mode) {
      const std::uint64_t budget = mode == 0   ? 0
                                   : mode == 1 ? (std::uint64_t{1} << 40)
                                               : budget_mib << 20;
      const Result r = run(path, rows, budget, mode != 0);
      cpu[mode].add(r.cpu_us_per_row);
      rate[mode].add(r.rows_per_s);
      if (mode == 2) deleted = r.deleted, file = r.file;
    }
  }
  std::printf(
      "| %zu raw rows, batches of 1000, %d rounds | CPU per row (median, min-max) | "
      "rows/s |\n|---|---|---|\n",
      rows, rounds);
  for (int mode = 0; mode < 3; ++mode) {
    std::printf("| %s | %s | %s |\n", names[mode], cpu[mode].text("%.2f us (%.2f-%.2f)").c_str(),
                rate[mode].text("%.0f (%.0f-%.0f)").c_str());
  }
  std::printf("\nbudget %llu MiB: %llu rows deleted (last round), db + wal %.1f MiB at the end\n",
              static_cast<unsigned long long>(budget_mib), static_cast<unsigned long long>(deleted),
              static_cast<double>(file) / (1 << 20));
  return 0;
}
