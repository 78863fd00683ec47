// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"

namespace ayaflow::inspect {

struct DnsMessage;

/// What deep inspection has learned about remote endpoints: address -> name from
/// DNS answers, and (address, port) -> name from TLS SNI. A flow's domain is the SNI for
/// its (remote address, remote port) if known, else the DNS name of its remote address.
///
/// Entries expire `ttl` after they were last learned (default 300 s; expired entries are
/// never returned and are removed by expire() or when the table is full). Each table holds
/// at most its max entries: learning a new key into a full table evicts the entry learned
/// longest ago. An address answered with several names keeps the last one.
///
/// Names are validated with normalizeHostName() (host_name.h) and stored lower-case;
/// invalid ones are refused. The clock is injectable for tests (default
/// std::chrono::steady_clock::now).
///
/// Threads: all methods are thread-safe (one reader-writer lock over both tables; lookups
/// share it). Errors: none; std::bad_alloc only.
class DomainMap {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  struct Options {
    std::chrono::seconds ttl{300};        ///< lifetime of a learned name
    std::size_t max_dns_entries = 16384;  ///< address -> name entries (~200 B each)
    std::size_t max_sni_entries = 16384;  ///< (address, port) -> name entries
  };

  /// Learn events, cumulative. A learn event counts when it gives a key a name it did not
  /// have: a new entry, a different name, or the same name again after the entry expired.
  /// Refreshing an unexpired entry with the same name (repeated DNS answers, every new TLS
  /// connection to the same server) only extends its lifetime and is not counted.
  struct Counters {
    std::uint64_t dns_learned = 0;  ///< addresses that got a name from a DNS answer
    std::uint64_t sni_learned = 0;  ///< (address, port) pairs that got a name from an SNI
    std::uint64_t evictions = 0;    ///< live entries pushed out by a full table
  };

  DomainMap();
  explicit DomainMap(Options options, Clock clock = {});
  DomainMap(const DomainMap&) = delete;
  DomainMap& operator=(const DomainMap&) = delete;

  /// address -> name. Returns true if the event counted (see Counters); false if it was a
  /// refresh or the name is invalid.
  bool learnDns(const flow::IpAddress& address, std::string_view name);

  /// learnDns() for every address of a response (m.addresses, each mapped to the question
  /// name). Queries and error responses (rcode != 0) teach nothing. Returns the number of
  /// events that counted.
  std::size_t learnDnsResponse(const DnsMessage& m);

  /// (address, port) -> SNI, where address:port is the server the ClientHello went to.
  bool learnSni(const flow::IpAddress& address, std::uint16_t port, std::string_view sni);

  /// The domain of a flow to remote:remote_port: SNI first, then DNS.
  std::optional<std::string> lookup(const flow::IpAddress& remote, std::uint16_t remote_port) const;
  std::optional<std::string> lookup(const flow::FlowKey& key) const {
    return lookup(key.remote, key.remote_port);
  }
  std::optional<std::string> dnsName(const flow::IpAddress& address) const;
  std::optional<std::string> sniName(const flow::IpAddress& address, std::uint16_t port) const;

  /// Removes expired entries from both tables; returns how many.
  std::size_t expire();

  /// dns_learned + sni_learned: what ayaflow_domains_resolved_total exports.
  std::uint64_t domainsResolved() const noexcept;
  Counters counters() const noexcept;
  std::size_t dnsSize() const;
  std::size_t sniSize() const;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Entry {
    flow::FlowKey key;  // DNS: remote only; SNI: remote, remote_port
    std::string name;
    TimePoint expires;
  };
  /// Entries in learn order (oldest first) plus an index. Guarded by mutex_.
  struct Table {
    std::list<Entry> order;
    std::unordered_map<flow::FlowKey, std::list<Entry>::iterator, flow::FlowKeyHash> index;
    std::size_t max = 0;
  };

  bool learn(Table& t, const flow::FlowKey& key, std::string_view name,
             std::atomic<std::uint64_t>& counter);
  std::optional<std::string> find(const Table& t, const flow::FlowKey& key, TimePoint now) const;
  std::size_t expireTable(Table& t, TimePoint now);
  static flow::FlowKey dnsKey(const flow::IpAddress& address) noexcept;
  static flow::FlowKey sniKey(const flow::IpAddress& address, std::uint16_t port) noexcept;

  const Options options_;
  const Clock clock_;
  mutable std::shared_mutex mutex_;
  Table dns_;  // guarded by mutex_
  Table sni_;  // guarded by mutex_
  std::atomic<std::uint64_t> dns_learned_{0};
  std::atomic<std::uint64_t> sni_learned_{0};
  std::atomic<std::uint64_t> evictions_{0};
};

}  // namespace ayaflow::inspect
