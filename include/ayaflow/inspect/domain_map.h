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

/// What deep inspection has learned about connections and remote endpoints:
///   - SNI, per connection: the 5-tuple (FlowKey) of the TLS connection whose ClientHello
///     carried it, oriented client -> server (local = client). It names that connection
///     only; other connections to the same server address and port are not affected.
///   - DNS, per client: (client, address) -> name, where client is the destination of the
///     DNS response (the host that asked) and address one of the answered addresses.
///   - DNS, any client: address -> the name most recently answered for it to anyone.
/// lookup(key) of a connection: its own SNI (in either orientation of the key, so a
/// connection seen from its server side is named too), else the name its local end's own
/// DNS lookup returned for the remote address, else the latest name any client got for
/// the remote address. Many names can share one address (virtual hosting, CDNs): each
/// connection and each client keeps its own.
///
/// Entries expire `ttl` after they were last learned (default 300 s; expired entries are
/// never returned and are removed by expire() or when the table is full). The SNI table
/// holds at most max_sni_entries; each DNS table (per client, any client) at most
/// max_dns_entries: learning a new key into a full table evicts the entry learned
/// longest ago (counted in Counters::evictions).
///
/// Names are validated with normalizeHostName() (host_name.h) and stored lower-case;
/// invalid ones are refused. The clock is injectable for tests (default
/// std::chrono::steady_clock::now).
///
/// Threads: all methods are thread-safe (one reader-writer lock over all tables; lookups
/// share it). Errors: none; std::bad_alloc only.
class DomainMap {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  struct Options {
    std::chrono::seconds ttl{300};        ///< lifetime of a learned name
    std::size_t max_dns_entries = 16384;  ///< per DNS table (per client, any client), ~200 B each
    std::size_t max_sni_entries = 16384;  ///< connection -> name entries
  };

  /// Learn events, cumulative. A learn event counts when it gives a key a name it did not
  /// have: a new entry, a different name, or the same name again after the entry expired.
  /// Refreshing an unexpired entry with the same name (repeated DNS answers, every new TLS
  /// connection to the same server) only extends its lifetime and is not counted.
  struct Counters {
    std::uint64_t dns_learned = 0;  ///< (client, address) pairs that got a name from DNS
    std::uint64_t sni_learned = 0;  ///< connections that got a name from an SNI
    std::uint64_t evictions = 0;    ///< live entries pushed out by a full table
  };

  DomainMap();
  explicit DomainMap(Options options, Clock clock = {});
  DomainMap(const DomainMap&) = delete;
  DomainMap& operator=(const DomainMap&) = delete;

  /// (client, address) -> name, and address -> name for any client. Returns true if the
  /// event counted for the client's entry (see Counters); false if it was a refresh or
  /// the name is invalid.
  bool learnDns(const flow::IpAddress& client, const flow::IpAddress& address,
                std::string_view name);

  /// learnDns() for every address of a response (m.addresses, each mapped to the question
  /// name), for `client`, the response's destination. Queries and error responses
  /// (rcode != 0) teach nothing. Returns the number of events that counted.
  std::size_t learnDnsResponse(const DnsMessage& m, const flow::IpAddress& client);

  /// connection -> SNI, where connection is the ClientHello's 5-tuple, local = client.
  bool learnSni(const flow::FlowKey& connection, std::string_view sni);

  /// The domain of a connection (see the class comment): its SNI, else its local end's
  /// DNS name for the remote address, else any client's.
  std::optional<std::string> lookup(const flow::FlowKey& key) const;
  /// The name `client` was answered for `address`.
  std::optional<std::string> dnsName(const flow::IpAddress& client,
                                     const flow::IpAddress& address) const;
  /// The latest name any client was answered for `address`.
  std::optional<std::string> dnsName(const flow::IpAddress& address) const;
  /// The SNI of a connection (either orientation of the key).
  std::optional<std::string> sniName(const flow::FlowKey& connection) const;

  /// Removes expired entries from both tables; returns how many.
  std::size_t expire();

  /// dns_learned + sni_learned: what ayaflow_domains_resolved_total exports.
  std::uint64_t domainsResolved() const noexcept;
  Counters counters() const noexcept;
  std::size_t dnsSize() const;     ///< (client, address) entries
  std::size_t dnsAnySize() const;  ///< address entries (any client)
  std::size_t sniSize() const;     ///< connection entries

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Entry {
    flow::FlowKey key;  // DNS: local = client, remote; any: remote; SNI: the connection
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
  std::optional<std::string> findSni(const flow::FlowKey& key, TimePoint now) const;
  std::size_t expireTable(Table& t, TimePoint now);
  static flow::FlowKey dnsKey(const flow::IpAddress& client,
                              const flow::IpAddress& address) noexcept;
  static flow::FlowKey reversed(const flow::FlowKey& key) noexcept;

  const Options options_;
  const Clock clock_;
  mutable std::shared_mutex mutex_;
  Table dns_;      // guarded by mutex_; per client
  Table dns_any_;  // guarded by mutex_; latest answer to any client
  Table sni_;      // guarded by mutex_
  std::atomic<std::uint64_t> dns_learned_{0};
  std::atomic<std::uint64_t> dns_any_learned_{0};  // not exported: dns_learned_ counts DNS
  std::atomic<std::uint64_t> sni_learned_{0};
  std::atomic<std::uint64_t> evictions_{0};
};

}  // namespace ayaflow::inspect
