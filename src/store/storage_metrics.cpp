// SPDX-License-Identifier: MIT OR Apache-2.0
// The ayaflow_storage_* families: what the SQLite sink and the history reader count.
#include "ayaflow/common/metrics.h"
#include "ayaflow/store/sqlite_sink.h"

namespace ayaflow::store {

std::vector<prometheus::MetricFamily> storageFamilies(const SqliteSinkStats& s) {
  common::MetricFamilies f;
  f.counter("ayaflow_storage_rows_stored_total", "Rows committed to the SQLite database.",
            s.rows_stored);
  f.labelledCounter("ayaflow_storage_rows_dropped_total",
                    "Rows that could not be stored, by reason: queue_full (the hand-off to the "
                    "SQLite writer was full; nothing waits for the disk), write_error (SQLite "
                    "failed), disk_space (writes paused: free space below --min-free-disk) or "
                    "stopped (after shutdown began).",
                    "reason",
                    {{"queue_full", s.queue.records_dropped_full},
                     {"write_error", s.rows_dropped_write_error},
                     {"disk_space", s.rows_dropped_disk_space},
                     {"stopped", s.queue.records_dropped_closed}});
  f.labelledCounter("ayaflow_storage_rows_deleted_total",
                    "Rows deleted from the database, by reason: age (older than "
                    "--data-retention) or size (the oldest rows, to stay within --max-db-size).",
                    "reason", {{"age", s.rows_deleted}, {"size", s.rows_deleted_size}});
  f.gauge("ayaflow_storage_writes_paused",
          "1 while writes are paused because the database's file system has less free space "
          "than --min-free-disk (rows are dropped, reason disk_space), else 0.",
          s.writes_paused ? 1.0 : 0.0);
  f.gauge("ayaflow_storage_db_size_bytes",
          "Size of the database as the budget counts it: pages holding data plus the -wal file.",
          static_cast<double>(s.db_bytes));
  f.gauge("ayaflow_storage_db_file_size_bytes",
          "Size of the database on disk: the database file (free pages included) plus the -wal "
          "file.",
          static_cast<double>(s.db_file_bytes));
  f.gauge("ayaflow_storage_db_size_limit_bytes", "The size budget, --max-db-size; 0 = unlimited.",
          static_cast<double>(s.max_db_bytes));
  f.gauge("ayaflow_storage_disk_free_bytes",
          "Free space of the file system holding the database (0 = not measured: in memory).",
          static_cast<double>(s.disk_free_bytes));
  f.gauge("ayaflow_storage_disk_free_min_bytes",
          "The free-space floor, --min-free-disk, in bytes on the database's file system.",
          static_cast<double>(s.disk_floor_bytes));
  f.counter("ayaflow_storage_rows_updated_total",
            "Rows of open aggregation windows updated in place with newer counts (at a "
            "checkpoint or when the window ended).",
            s.rows_updated);
  f.counter("ayaflow_storage_checkpoint_records_refused_total",
            "Provisional records of a checkpoint not queued because the writer was busy; not "
            "lost: the pipeline sends those flows again at its next checkpoint.",
            s.queue.checkpoint_records_refused);
  f.gauge("ayaflow_storage_queue_rows", "Rows waiting to be written.",
          static_cast<double>(s.queue.depth));
  f.labelledCounter("ayaflow_storage_errors_total",
                    "SQLite failures while running, by operation: write (a write transaction "
                    "or retention statement failed) or read (a history query failed; a "
                    "damaged file, an I/O error). The first of each cause is logged.",
                    "operation", {{"read", s.read_errors}, {"write", s.write_failures}});
  f.labelledCounter("ayaflow_storage_queries_stopped_total",
                    "History queries stopped before they finished, by reason: timeout (ran "
                    "longer than the query time budget) or busy (every read connection was in "
                    "use for the whole budget).",
                    "reason", {{"timeout", s.queries_timed_out}, {"busy", s.queries_busy}});
  return f.take();
}

}  // namespace ayaflow::store
