// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_store: RAII for sqlite3 handles and the start-up checks.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>

namespace ayaflow::store::detail {

struct DbCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

/// Where and how to open the database: a file path, or a memdb URI for ":memory:".
struct DbLocation {
  std::string display;  ///< the path as the user gave it (used in messages)
  std::string open_name;
  bool uri = false;
  bool in_memory = false;
};

DbLocation locate(const std::string& db_path);

/// Start-up checks that read but never modify anything: the directory is writable, an
/// existing file is writable and starts with the SQLite header, and PRAGMA quick_check says
/// "ok". Throws ConfigError with one line naming the file.
void checkBeforeOpen(const DbLocation& loc);

/// Opens the write connection: WAL, synchronous=NORMAL, busy timeout, the `packets` table
/// created or migrated in place (missing columns added), the timestamp index. Throws
/// ConfigError (file unusable) or SystemError.
DbPtr openWriter(const DbLocation& loc);

/// Opens a read-only connection. Throws SystemError.
DbPtr openReader(const DbLocation& loc);

/// Prepares `sql` on `db`; throws SystemError naming `what` on failure.
StmtPtr prepare(sqlite3* db, const char* sql, const std::string& what);

/// Runs `sql` (no results); returns the SQLite result code.
int exec(sqlite3* db, const char* sql) noexcept;

}  // namespace ayaflow::store::detail
