// SPDX-License-Identifier: MIT OR Apache-2.0
#include "sqlite_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

namespace ayaflow::store::detail {
namespace {

constexpr char kSqliteHeader[16] = "SQLite format 3";  // 15 characters + NUL, as on disk
constexpr int kBusyTimeoutMs = 5000;

[[noreturn]] void configFail(const DbLocation& loc, const std::string& what) {
  throw ConfigError(loc.display + ": " + what);
}

std::string directoryOf(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// Closes the fd on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

/// "file:" URI for a path, percent-encoding what URIs reserve.
std::string fileUri(const std::string& path, const char* query) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = "file:";
  for (const unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  out += '?';
  out += query;
  return out;
}

/// SQLite messages (quick_check's especially) may span lines; errors here are one line.
std::string oneLine(std::string text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n') {
      if (!out.empty() && out.back() != ' ') out += "; ";
    } else if (c != '\r') {
      out += c;
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  return out;
}

bool isCorruption(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

// Maps a failure while opening for writing to the error the user can act on.
[[noreturn]] void openFail(const DbLocation& loc, sqlite3* db, int rc, const char* action) {
  const std::string msg = oneLine(db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  const int primary = rc & 0xff;
  if (primary == SQLITE_NOTADB) configFail(loc, "not a SQLite database (" + msg + ")");
  if (primary == SQLITE_CORRUPT) configFail(loc, "damaged database (" + msg + ")");
  if (primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN || primary == SQLITE_PERM ||
      primary == SQLITE_AUTH) {
    configFail(loc, std::string("cannot ") + action + " (" + msg + ")");
  }
  throw SystemError(EIO, loc.display + ": cannot " + action + " (" + msg + ")");
}

struct Column {
  const char* name;
  const char* decl;  // for ALTER TABLE ADD COLUMN
};

// Columns an older database may lack (the original's schemas, or ayaflow's own before a
// column was added), with what to add. Everything else (id, timestamp, src_ip, dst_ip, ...)
// has been there since the original's first release.
constexpr Column kAddable[] = {
    {"src_port", "src_port INTEGER"},
    {"dst_port", "dst_port INTEGER"},
    {"protocol", "protocol TEXT"},
    {"length", "length INTEGER"},
    {"direction", "direction TEXT"},
    {"src_hostname", "src_hostname TEXT"},
    {"dst_hostname", "dst_hostname TEXT"},
    {"domain", "domain TEXT"},
    {"packet_count", "packet_count INTEGER NOT NULL DEFAULT 1"},
    {"interface", "interface TEXT"},
    // Kubernetes names of each end (k8s/): NULL when unknown and in older rows.
    {"src_namespace", "src_namespace TEXT"},
    {"src_pod", "src_pod TEXT"},
    {"src_workload", "src_workload TEXT"},
    {"src_workload_kind", "src_workload_kind TEXT"},
    {"src_node", "src_node TEXT"},
    {"dst_namespace", "dst_namespace TEXT"},
    {"dst_pod", "dst_pod TEXT"},
    {"dst_workload", "dst_workload TEXT"},
    {"dst_workload_kind", "dst_workload_kind TEXT"},
    {"dst_node", "dst_node TEXT"},
    // TCP health (issue: state, RTT, retransmissions, drops): NULL in UDP rows without drops
    // and in older rows.
    {"tcp_flags", "tcp_flags INTEGER"},
    {"tcp_state", "tcp_state TEXT"},
    {"rtt_us", "rtt_us INTEGER"},
    {"rtt_kind", "rtt_kind TEXT"},
    {"retransmits", "retransmits INTEGER"},
    {"drops", "drops INTEGER"},
};
constexpr const char* kRequired[] = {"id", "timestamp", "src_ip", "dst_ip"};

constexpr const char* kCreateTable =
    "CREATE TABLE packets ("
    "id INTEGER PRIMARY KEY, "
    "timestamp INTEGER NOT NULL, "
    "src_ip TEXT NOT NULL, "
    "dst_ip TEXT NOT NULL, "
    "src_port INTEGER, "
    "dst_port INTEGER, "
    "protocol TEXT, "
    "length INTEGER, "
    "direction TEXT, "
    "src_hostname TEXT, "
    "dst_hostname TEXT, "
    "domain TEXT, "
    "packet_count INTEGER NOT NULL DEFAULT 1, "
    "interface TEXT, "
    "src_namespace TEXT, "
    "src_pod TEXT, "
    "src_workload TEXT, "
    "src_workload_kind TEXT, "
    "src_node TEXT, "
    "dst_namespace TEXT, "
    "dst_pod TEXT, "
    "dst_workload TEXT, "
    "dst_workload_kind TEXT, "
    "dst_node TEXT, "
    "tcp_flags INTEGER, "
    "tcp_state TEXT, "
    "rtt_us INTEGER, "
    "rtt_kind TEXT, "
    "retransmits INTEGER, "
    "drops INTEGER)";

std::set<std::string, std::less<>> packetColumns(sqlite3* db, int* rc_out);
std::string pragmaText(sqlite3* db, const char* sql, int* rc_out);

// The summary of which addresses and ports occur in which 10-second bucket
// (docs/storage.md): the writer adds a row's four keys when it inserts the row, in the same
// transaction. Keyed by (epoch, k, bucket), an epoch being 1 minute: the writer's inserts
// stay in the newest epoch's part of the tree, a query finds an address's buckets with one
// range per epoch, and retention deletes whole epochs by the same key.
constexpr const char* kCreateKeys =
    "CREATE TABLE packets_keys (epoch INTEGER NOT NULL, k NOT NULL, bucket INTEGER NOT NULL, "
    "PRIMARY KEY (epoch, k, bucket)) WITHOUT ROWID";
constexpr const char* kCreateMeta =
    "CREATE TABLE IF NOT EXISTS ayaflow_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID";
// Rows already stored when the summary is created are not in it: queries search rows up to
// their newest timestamp without it.
constexpr const char* kSetKeysFrom =
    "INSERT OR REPLACE INTO ayaflow_meta (key, value) VALUES ('keys_from_ms', "
    "coalesce((SELECT max(timestamp) FROM packets) + 1, -9223372036854775807 - 1))";

// Adds the summary to a database that has none (new or migrated), inside migrate()'s
// transaction. Returns the SQLite result code.
int addKeys(sqlite3* db, bool* added) {
  int rc = SQLITE_OK;
  const std::string n = pragmaText(
      db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'packets_keys'", &rc);
  if (rc != SQLITE_OK) return rc;
  *added = n == "0";
  if (!*added) return SQLITE_OK;
  rc = exec(db, kCreateKeys);
  if (rc == SQLITE_OK) rc = exec(db, kCreateMeta);
  if (rc == SQLITE_OK) rc = exec(db, kSetKeysFrom);
  return rc;
}

// Creates or migrates the schema inside one immediate transaction.
void migrate(const DbLocation& loc, sqlite3* db) {
  int rc = exec(db, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) openFail(loc, db, rc, "lock the database for writing");
  const auto columns = packetColumns(db, &rc);
  if (rc != SQLITE_OK) {
    exec(db, "ROLLBACK");
    openFail(loc, db, rc, "read the schema");
  }
  std::string added;
  if (columns.empty()) {
    rc = exec(db, kCreateTable);
    if (rc != SQLITE_OK) {
      exec(db, "ROLLBACK");
      openFail(loc, db, rc, "create the packets table");
    }
  } else {
    for (const char* name : kRequired) {
      if (columns.count(name) == 0) {
        exec(db, "ROLLBACK");
        configFail(loc, std::string("its packets table has no '") + name +
                            "' column: not an ayaflow database");
      }
    }
    for (const Column& c : kAddable) {
      if (columns.count(c.name) != 0) continue;
      const std::string sql = std::string("ALTER TABLE packets ADD COLUMN ") + c.decl;
      rc = exec(db, sql.c_str());
      if (rc != SQLITE_OK) {
        exec(db, "ROLLBACK");
        openFail(loc, db, rc, std::string("add column " + std::string(c.name)).c_str());
      }
      added += added.empty() ? "" : ", ";
      added += c.name;
    }
  }
  rc = exec(db, "CREATE INDEX IF NOT EXISTS idx_timestamp ON packets(timestamp)");
  if (rc != SQLITE_OK) {
    exec(db, "ROLLBACK");
    openFail(loc, db, rc, "create the timestamp index");
  }
  bool keys_added = false;
  rc = addKeys(db, &keys_added);
  if (rc != SQLITE_OK) {
    exec(db, "ROLLBACK");
    openFail(loc, db, rc, "create the address and port summary");
  }
  rc = exec(db, "COMMIT");
  if (rc != SQLITE_OK) {
    exec(db, "ROLLBACK");
    openFail(loc, db, rc, "commit the schema");
  }
  if (keys_added && !columns.empty()) {
    added += added.empty() ? "" : ", ";
    added += "the address and port summary packets_keys, for rows from now on";
  }
  if (!added.empty()) {
    logger("store")->info("{}: migrated the packets table in place (added {})", loc.display, added);
  }
}

std::string pragmaText(sqlite3* db, const char* sql, int* rc_out) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
  StmtPtr stmt(raw);
  std::string out;
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(raw);
    if (rc == SQLITE_ROW) {
      const auto* t = sqlite3_column_text(raw, 0);
      if (t != nullptr) out = reinterpret_cast<const char*>(t);
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      rc = SQLITE_OK;
    }
  }
  *rc_out = rc;
  return out;
}

/// Column names of the packets table (empty when there is none).
std::set<std::string, std::less<>> packetColumns(sqlite3* db, int* rc_out) {
  std::set<std::string, std::less<>> columns;
  sqlite3_stmt* raw = nullptr;
  int rc =
      sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('packets')", -1, &raw, nullptr);
  StmtPtr stmt(raw);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      const auto* name = sqlite3_column_text(raw, 0);
      if (name != nullptr) columns.emplace(reinterpret_cast<const char*>(name));
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  *rc_out = rc;
  return columns;
}

}  // namespace

// keyBucket() and keyEpoch() in SQL (SQLite's integer division truncates).
#define AYAFLOW_BUCKET \
  "(CASE WHEN timestamp >= 0 THEN timestamp / 10000 ELSE (timestamp + 1) / 10000 - 1 END)"
#define AYAFLOW_EPOCH \
  "(CASE WHEN timestamp >= 0 THEN timestamp / 60000 ELSE (timestamp + 1) / 60000 - 1 END)"
#define AYAFLOW_KEY(column) "SELECT " AYAFLOW_EPOCH ", " column ", " AYAFLOW_BUCKET " FROM packets"
const char* const kRebuildKeysSql =
    "INSERT OR IGNORE INTO packets_keys (epoch, k, bucket) " AYAFLOW_KEY("src_ip") " UNION ALL "
    AYAFLOW_KEY("dst_ip") " UNION ALL " AYAFLOW_KEY("src_port") " WHERE src_port IS NOT NULL "
    "UNION ALL " AYAFLOW_KEY("dst_port") " WHERE dst_port IS NOT NULL";
#undef AYAFLOW_KEY
#undef AYAFLOW_EPOCH
#undef AYAFLOW_BUCKET
static_assert(kKeyBucketMs == 10000 && kKeyEpochBuckets == 6,
              "kRebuildKeysSql spells the bucket and epoch widths");

void StorageErrors::report(Operation op, const std::string& display, const std::string& cause) {
  counts_[op].fetch_add(1, std::memory_order_relaxed);
  const auto now = std::chrono::steady_clock::now();
  std::uint64_t suppressed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Last& last = last_[op];
    const auto interval = std::chrono::milliseconds(log_interval_ms.load());
    if (last.logged && last.cause == cause && now - last.at < interval) {
      ++last.suppressed;
      return;
    }
    // A new cause is logged at once, but at most one line a second per operation.
    if (last.logged && now - last.at < std::chrono::seconds(1)) {
      ++last.suppressed;
      return;
    }
    suppressed = last.suppressed;
    last = Last{cause, now, 0, true};
  }
  const char* what = op == kRead ? "reading" : "writing";
  if (suppressed == 0) {
    logger("store")->error("{}: {} failed: {}", display, what, cause);
  } else {
    logger("store")->error("{}: {} failed: {} ({} more failures not logged)", display, what, cause,
                           suppressed);
  }
}

DbLocation locate(const std::string& db_path) {
  // Before SQLite's first use in the process (sqlite3_config() refuses afterwards, harmlessly):
  // no memory statistics, which SQLite otherwise keeps under a global mutex taken on every
  // allocation and free, several per row written. Nothing here reads them.
  static std::once_flag configured;
  std::call_once(configured, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  DbLocation loc;
  loc.display = db_path;
  if (db_path == ":memory:") {
    // A memdb database shared by this store's connections only; it lives as long as one
    // of them is open.
    static std::atomic<unsigned> counter{0};
    loc.open_name = "file:/ayaflow-" + std::to_string(::getpid()) + "-" +
                    std::to_string(counter.fetch_add(1)) + "?vfs=memdb";
    loc.uri = true;
    loc.in_memory = true;
  } else {
    loc.open_name = db_path;
  }
  return loc;
}

void checkBeforeOpen(const DbLocation& loc) {
  if (loc.in_memory) return;
  const std::string& path = loc.display;
  if (path.empty()) throw ConfigError("database path is empty");
  const std::string dir = directoryOf(path);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    configFail(loc, "directory '" + dir + "' does not exist");
  }
  // SQLite creates -wal and -shm files next to the database.
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    configFail(loc, "directory '" + dir + "' is not writable (" + std::strerror(errno) + ")");
  }
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;  // created on open
    configFail(loc, std::string("cannot access (") + std::strerror(errno) + ")");
  }
  if (S_ISDIR(st.st_mode)) configFail(loc, "is a directory");
  if (!S_ISREG(st.st_mode)) configFail(loc, "not a regular file");
  if (::access(path.c_str(), R_OK | W_OK) != 0) {
    configFail(loc, std::string("not writable (") + std::strerror(errno) + ")");
  }
  if (st.st_size == 0) return;  // SQLite treats an empty file as a new database

  // The header, read without SQLite so that nothing can write to a file that is not ours.
  {
    Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (f.fd < 0) configFail(loc, std::string("cannot open (") + std::strerror(errno) + ")");
    char header[sizeof kSqliteHeader] = {};
    const ssize_t n = ::pread(f.fd, header, sizeof header, 0);
    if (n != static_cast<ssize_t>(sizeof header) ||
        std::memcmp(header, kSqliteHeader, sizeof header) != 0) {
      configFail(loc, "not a SQLite database (left untouched)");
    }
  }

  // Integrity, through a read-only connection: never modifies the database file. Without a
  // WAL file there is nothing to replay, so open it immutable: SQLite then creates no -wal or
  // -shm file either.
  // (A rollback journal left by a crash must be replayed too: no immutable open then.)
  struct stat side {};
  const bool has_wal = ::stat((path + "-wal").c_str(), &side) == 0 ||
                       ::stat((path + "-journal").c_str(), &side) == 0;
  const std::string name = has_wal ? path : fileUri(path, "immutable=1");
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(name.c_str(), &raw,
                           SQLITE_OPEN_READONLY | (has_wal ? 0 : SQLITE_OPEN_URI), nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    const std::string msg = oneLine(raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
    if (isCorruption(rc)) configFail(loc, "damaged database (" + msg + "); left untouched");
    configFail(loc, "cannot open (" + msg + ")");
  }
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  const std::string result = pragmaText(raw, "PRAGMA quick_check(1)", &rc);
  if (rc != SQLITE_OK) {
    const std::string msg = oneLine(sqlite3_errmsg(raw));
    if (isCorruption(rc)) configFail(loc, "damaged database (" + msg + "); left untouched");
    // A hot rollback journal can only be replayed by a writer: let openWriter() do it.
    if ((rc & 0xff) == SQLITE_READONLY) return;
    configFail(loc, "cannot check the database (" + msg + ")");
  }
  if (result != "ok") {
    configFail(loc, "damaged database (quick_check: " + oneLine(result) + "); left untouched");
  }
  const auto columns = packetColumns(raw, &rc);
  if (rc != SQLITE_OK)
    configFail(loc, "cannot read the schema (" + oneLine(sqlite3_errmsg(raw)) + ")");
  for (const char* required : kRequired) {
    if (!columns.empty() && columns.count(required) == 0) {
      configFail(loc, std::string("its packets table has no '") + required +
                          "' column: not an ayaflow database (left untouched)");
    }
  }
}

DbPtr openWriter(const DbLocation& loc) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (loc.uri) flags |= SQLITE_OPEN_URI;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(loc.open_name.c_str(), &raw, flags, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) openFail(loc, raw, rc, "open for writing");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  if (!loc.in_memory) {
    const std::string mode = pragmaText(raw, "PRAGMA journal_mode=WAL", &rc);
    if (rc != SQLITE_OK) openFail(loc, raw, rc, "switch to WAL");
    if (mode != "wal") configFail(loc, "cannot switch to WAL (journal mode stays '" + mode + "')");
  }
  rc = exec(raw, "PRAGMA synchronous=NORMAL");
  if (rc != SQLITE_OK) openFail(loc, raw, rc, "set synchronous=NORMAL");
  // Appends touch the right edge of the table and timestamp index only: a
  // 512 KiB page cache (default 2 MB) keeps the agent's memory small.
  rc = exec(raw, "PRAGMA cache_size=-512");
  if (rc != SQLITE_OK) openFail(loc, raw, rc, "set cache_size");
  // Keep the WAL file from staying large after a burst (it is reused, then truncated).
  rc = exec(raw, "PRAGMA journal_size_limit=67108864");
  if (rc != SQLITE_OK) openFail(loc, raw, rc, "set journal_size_limit");
  migrate(loc, raw);
  return db;
}

DbPtr openReader(const DbLocation& loc, std::chrono::milliseconds busy_timeout) {
  int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
  if (loc.uri) flags |= SQLITE_OPEN_URI;
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(loc.open_name.c_str(), &raw, flags, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    const std::string msg = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    throw SystemError(EIO, loc.display + ": cannot open for reading (" + msg + ")");
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(
      raw, static_cast<int>(std::min<std::int64_t>(busy_timeout.count(), kBusyTimeoutMs)));
  // History reads walk the timestamp index newest first: 1 MiB is plenty.
  sqlite3_exec(raw, "PRAGMA cache_size=-1024", nullptr, nullptr, nullptr);
  return db;
}

StmtPtr prepare(sqlite3* db, const char* sql, const std::string& what) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  StmtPtr stmt(raw);
  if (rc != SQLITE_OK) {
    throw SystemError(EIO, what + ": cannot prepare statement (" + sqlite3_errmsg(db) + ")");
  }
  return stmt;
}

int exec(sqlite3* db, const char* sql) noexcept {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
}

}  // namespace ayaflow::store::detail
