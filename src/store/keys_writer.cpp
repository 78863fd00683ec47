// SPDX-License-Identifier: MIT OR Apache-2.0
// The packets_keys summary as the writer maintains it (keys_writer.h): one INSERT OR IGNORE
// per new (bucket, key), the empty-blob key once a bucket saturates, retention by epoch.
#include "keys_writer.h"

#include <string>

namespace ayaflow::store::detail {
namespace {

constexpr const char* kKeySql =
    "INSERT OR IGNORE INTO packets_keys (epoch, k, bucket) VALUES (?3, ?2, ?1)";
// Whole epochs whose every bucket ended before the cutoff.
constexpr const char* kKeyRetentionSql = "DELETE FROM packets_keys WHERE epoch < ?1";

// Keys of packets_keys the writer added recently; they need no INSERT again. Bounded.
constexpr std::size_t kMaxSeenKeys = 16384;
// Buckets whose keys the writer counts (for StoreOptions::keys_per_bucket).
constexpr std::size_t kMaxCountedBuckets = 1024;

/// Binds text that stays valid until the statement is stepped and reset.
void bindText(sqlite3_stmt* stmt, int index, const char* text, std::size_t len) {
  sqlite3_bind_text(stmt, index, text, static_cast<int>(len), SQLITE_STATIC);
}

}  // namespace

KeysWriter::KeysWriter(sqlite3* db, const std::string& what, std::size_t keys_per_bucket)
    : db_(db),
      keys_per_bucket_(keys_per_bucket),
      key_stmt_(prepare(db, kKeySql, what)),
      key_retention_stmt_(prepare(db, kKeyRetentionSql, what)) {
  seen_keys_.reserve(kMaxSeenKeys);
}

int KeysWriter::add(const pipeline::FlowRecord& r, std::int64_t ms, const char* src,
                    const char* dst) {
  const std::int64_t bucket = keyBucket(ms);
  // Most rows repeat the previous row's keys (a busy flow, a busy host): those need no
  // lookup in seen_keys_ at all.
  const bool same_bucket = last_valid_ && bucket == last_bucket_;
  int rc = SQLITE_OK;
  if (!same_bucket || r.src != last_src_) rc = addAddressKey(bucket, r.src, src);
  if (rc == SQLITE_OK && (!same_bucket || r.dst != last_dst_)) {
    rc = addAddressKey(bucket, r.dst, dst);
  }
  if (rc == SQLITE_OK && (!same_bucket || r.src_port != last_src_port_)) {
    rc = addPortKey(bucket, r.src_port);
  }
  if (rc == SQLITE_OK && (!same_bucket || r.dst_port != last_dst_port_)) {
    rc = addPortKey(bucket, r.dst_port);
  }
  last_valid_ = rc == SQLITE_OK;
  last_bucket_ = bucket;
  last_src_ = r.src;
  last_dst_ = r.dst;
  last_src_port_ = r.src_port;
  last_dst_port_ = r.dst_port;
  return rc;
}

void KeysWriter::rolledBack() {
  seen_keys_.clear();  // some were rolled back
  bucket_keys_.clear();
  last_valid_ = false;
}

int KeysWriter::deleteBefore(std::int64_t cutoff_ms) {
  sqlite3_stmt* keys = key_retention_stmt_.get();
  sqlite3_bind_int64(keys, 1, keyEpoch(keyBucket(cutoff_ms)));
  const int rc = sqlite3_step(keys);
  sqlite3_reset(keys);
  seen_keys_.clear();  // a late row of a deleted bucket must add its keys again
  last_valid_ = false;
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/// Adds (bucket, address) to packets_keys unless added recently; `text` is its text.
int KeysWriter::addAddressKey(std::int64_t bucket, const flow::IpAddress& address,
                              const char* text) {
  if (saturated(bucket) || !markSeen(SeenKey{bucket, address.bytes, false})) return SQLITE_OK;
  sqlite3_bind_int64(key_stmt_.get(), 1, bucket);
  sqlite3_bind_int64(key_stmt_.get(), 3, keyEpoch(bucket));
  bindText(key_stmt_.get(), 2, text, std::char_traits<char>::length(text));
  return stepKey(bucket);
}

int KeysWriter::addPortKey(std::int64_t bucket, std::uint16_t port) {
  SeenKey k{bucket, {}, true};
  k.value[0] = static_cast<std::uint8_t>(port >> 8);
  k.value[1] = static_cast<std::uint8_t>(port & 0xff);
  if (saturated(bucket) || !markSeen(k)) return SQLITE_OK;
  sqlite3_bind_int64(key_stmt_.get(), 1, bucket);
  sqlite3_bind_int64(key_stmt_.get(), 3, keyEpoch(bucket));
  sqlite3_bind_int(key_stmt_.get(), 2, port);
  return stepKey(bucket);
}

/// True when `k` was not seen yet (and is now).
bool KeysWriter::markSeen(const SeenKey& k) {
  if (seen_keys_.size() >= kMaxSeenKeys && seen_keys_.count(k) == 0) seen_keys_.clear();
  return seen_keys_.insert(k).second;
}

/// True once `bucket` holds keys_per_bucket keys: it is marked saturated (the empty-blob
/// key), queries scan it whole, and it gets no more keys. Bounds the writer's extra work
/// when every packet brings a new address or port (a flood of spoofed sources).
bool KeysWriter::saturated(std::int64_t bucket) const {
  const auto it = bucket_keys_.find(bucket);
  return it != bucket_keys_.end() && it->second >= keys_per_bucket_;
}

int KeysWriter::stepKey(std::int64_t bucket) {
  sqlite3_stmt* key = key_stmt_.get();
  int rc = sqlite3_step(key);
  sqlite3_reset(key);
  if (rc != SQLITE_DONE) return rc;
  if (sqlite3_changes(db_) == 0) return SQLITE_OK;
  if (bucket_keys_.size() >= kMaxCountedBuckets && bucket_keys_.count(bucket) == 0) {
    bucket_keys_.clear();  // rows come in time order: the newest buckets get the keys
  }
  if (++bucket_keys_[bucket] < keys_per_bucket_) return SQLITE_OK;
  sqlite3_bind_int64(key, 1, bucket);
  sqlite3_bind_int64(key, 3, keyEpoch(bucket));
  sqlite3_bind_zeroblob(key, 2, 0);
  rc = sqlite3_step(key);
  sqlite3_reset(key);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

}  // namespace ayaflow::store::detail
