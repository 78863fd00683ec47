// SPDX-License-Identifier: MIT OR Apache-2.0
// Helpers shared by the store tests: temporary directories, packets, raw SQLite access.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
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
#include "flow_packets.h"

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

using ayaflow::test::eventually;
using ayaflow::test::makePacket;
using ayaflow::test::monotonicForUnixMs;
using ayaflow::test::monotonicNowNs;
using ayaflow::test::realtimeNowMs;

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

/// A forked child and a pipe it reports on (for tests that kill a writer mid-work).
struct Child {
  pid_t pid = -1;
  int from_child = -1;

  /// Reads exactly n bytes (or fails).
  bool read(void* out, std::size_t n) const {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
      const ssize_t got = ::read(from_child, p, n);
      if (got <= 0) return false;
      p += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }

  int wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(from_child);
    pid = -1;
    return status;
  }

  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      wait();
    }
  }
};

/// Forks; the child runs body(write end of the pipe) and exits with its result (2 if it
/// throws).
template <typename Fn>
Child spawn(Fn body) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    ::close(fds[0]);
    int code = 1;
    try {
      code = body(fds[1]);
    } catch (...) {
      code = 2;
    }
    _exit(code);
  }
  ::close(fds[1]);
  c.from_child = fds[0];
  return c;
}

/// In a child: writes all of data to the pipe, or exits 5.
inline void send(int fd, const void* data, std::size_t n) {
  if (::write(fd, data, n) != static_cast<ssize_t>(n)) _exit(5);
}

}  // namespace ayaflow::store::test
