// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_store: the writer's side of the `packets_keys` summary (see
// docs/storage.md): which addresses and ports each time bucket holds, the saturation mark
// of a bucket with too many keys, and the summary's retention. Used by SqliteSink's writer
// thread only, inside the transactions it opens.
#pragma once

#include <sqlite3.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/flow_record.h"
#include "sqlite_util.h"

namespace ayaflow::store::detail {

/// Adds the keys of written rows to packets_keys. Not thread-safe: the writer thread owns it,
/// with the connection its statements are prepared on. Remembers the keys it added recently
/// (bounded) so that a busy flow costs no INSERT per row, and counts keys per bucket to mark
/// a bucket saturated (StoreOptions::keys_per_bucket). Errors are SQLite result codes, left
/// to the caller's transaction handling.
class KeysWriter {
 public:
  /// Prepares its statements on `db` (the writer's connection); throws as prepare() does.
  KeysWriter(sqlite3* db, const std::string& what, std::size_t keys_per_bucket);

  /// Adds the record's addresses and ports to packets_keys for the bucket of `ms`; `src` and
  /// `dst` hold the addresses as text. SQLITE_OK, or the failing statement's result.
  int add(const pipeline::FlowRecord& r, std::int64_t ms, const char* src, const char* dst);

  /// The transaction of the last add() calls rolled back: forgets the keys it remembers as
  /// added and the per-bucket counts.
  void rolledBack();

  /// Retention: deletes the whole epochs of the summary that end before the bucket of
  /// `cutoff_ms`, and forgets the keys it remembers (a late row of a deleted bucket must add
  /// its keys again). SQLITE_OK, or the DELETE's result.
  int deleteBefore(std::int64_t cutoff_ms);

 private:
  struct SeenKey {
    std::int64_t bucket;
    std::array<std::uint8_t, 16> value;  // the address, or the port in value[0..1]
    bool is_port;
    friend bool operator==(const SeenKey& a, const SeenKey& b) noexcept {
      return a.bucket == b.bucket && a.is_port == b.is_port && a.value == b.value;
    }
  };

  struct SeenKeyHash {
    // Looked up four times per row written: two 64-bit words and a multiply-xorshift mix,
    // not a loop over the 16 bytes.
    std::size_t operator()(const SeenKey& k) const noexcept {
      std::uint64_t a = 0, b = 0;
      std::memcpy(&a, k.value.data(), 8);
      std::memcpy(&b, k.value.data() + 8, 8);
      std::uint64_t h = static_cast<std::uint64_t>(k.bucket) * 0x9e3779b97f4a7c15ull;
      h ^= a + (k.is_port ? 0x632be59bd9b4e019ull : 0);
      h *= 0xbf58476d1ce4e5b9ull;
      h ^= b + (h >> 31);
      h *= 0x94d049bb133111ebull;
      return static_cast<std::size_t>(h ^ (h >> 29));
    }
  };

  int addAddressKey(std::int64_t bucket, const flow::IpAddress& address, const char* text);
  int addPortKey(std::int64_t bucket, std::uint16_t port);
  bool markSeen(const SeenKey& k);
  bool saturated(std::int64_t bucket) const;
  int stepKey(std::int64_t bucket);

  sqlite3* const db_;
  const std::size_t keys_per_bucket_;
  StmtPtr key_stmt_;
  StmtPtr key_retention_stmt_;
  std::unordered_set<SeenKey, SeenKeyHash> seen_keys_;
  std::unordered_map<std::int64_t, std::size_t> bucket_keys_;  // keys added per bucket
  // The keys of the last add() (all in the summary, or in the open transaction, when
  // last_valid_): a row repeating them looks nothing up.
  bool last_valid_ = false;
  std::int64_t last_bucket_ = 0;
  flow::IpAddress last_src_, last_dst_;
  std::uint16_t last_src_port_ = 0, last_dst_port_ = 0;
};

}  // namespace ayaflow::store::detail
