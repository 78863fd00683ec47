// SPDX-License-Identifier: MIT OR Apache-2.0
// Helpers shared by the store tests: temporary directories, packets, raw SQLite access.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/flow/packet.h"

namespace ayaflow::store::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/ayaflow-store-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::uint64_t monotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

inline std::int64_t realtimeNowMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

/// The CLOCK_MONOTONIC timestamp (ns) that the store converts to about `unix_ms`.
inline std::uint64_t monotonicForUnixMs(std::int64_t unix_ms) {
  const std::int64_t offset_ms =
      realtimeNowMs() - static_cast<std::int64_t>(monotonicNowNs() / 1000000);
  return static_cast<std::uint64_t>(unix_ms - offset_ms) * 1000000ULL;
}

/// An IPv4 TCP/UDP packet 10.0.<a>.<b> -> 192.168.0.1.
inline flow::Packet makePacket(std::uint32_t src_host, std::uint16_t src_port,
                               std::uint16_t dst_port, std::uint8_t protocol = 6,
                               flow::Direction direction = flow::Direction::kEgress,
                               std::uint32_t length = 100, std::uint64_t timestamp_ns = 0) {
  flow::Packet p;
  p.src = flow::IpAddress::fromV4(0x0a000000u | (src_host & 0xffffu));
  p.dst = flow::IpAddress::fromV4(0xc0a80001u);
  p.src_port = src_port;
  p.dst_port = dst_port;
  p.protocol = protocol;
  p.direction = direction;
  p.addr_type = 4;
  p.ifindex = 1;
  p.length = length;
  p.timestamp_ns = timestamp_ns != 0 ? timestamp_ns : monotonicNowNs();
  return p;
}

/// A raw sqlite3 connection for checking what the store wrote (or preparing a file).
class RawDb {
 public:
  explicit RawDb(const std::string& path, int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) {
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      throw std::runtime_error("open " + path + ": " + sqlite3_errmsg(db_));
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(sql + ": " + msg);
    }
  }

  /// Every row of the result, columns joined by '|' (NULL as "NULL").
  std::vector<std::string> rows(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    }
    std::vector<std::string> out;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        if (i != 0) row += '|';
        const auto* t = sqlite3_column_text(stmt, i);
        row += t != nullptr ? reinterpret_cast<const char*>(t) : "NULL";
      }
      out.push_back(row);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    return out;
  }

  std::string one(const std::string& sql) {
    auto r = rows(sql);
    if (r.size() != 1) throw std::runtime_error(sql + ": expected one row");
    return r[0];
  }

  std::int64_t count(const std::string& sql) { return std::stoll(one(sql)); }

  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void writeFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Polls `done` every 10 ms for up to `limit`; true once it holds. For conditions that
/// depend on a timer: the test checks the outcome, never how long it took.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace ayaflow::store::test
