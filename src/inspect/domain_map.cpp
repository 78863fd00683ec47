// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/domain_map.h"

#include <algorithm>
#include <mutex>
#include <utility>

#include "ayaflow/inspect/dns.h"
#include "ayaflow/inspect/host_name.h"

namespace ayaflow::inspect {

DomainMap::DomainMap() : DomainMap(Options{}) {}

DomainMap::DomainMap(Options options, Clock clock)
    : options_(options),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {
  // Keys come off the wire: seed the hashes so colliding keys cannot be precomputed.
  dns_.index = decltype(dns_.index)(0, flow::FlowKeyHash{flow::randomHashSeed()});
  dns_any_.index = decltype(dns_any_.index)(0, flow::FlowKeyHash{flow::randomHashSeed()});
  sni_.index = decltype(sni_.index)(0, flow::FlowKeyHash{flow::randomHashSeed()});
  dns_.max = std::max<std::size_t>(options_.max_dns_entries, 1);
  dns_any_.max = dns_.max;
  sni_.max = std::max<std::size_t>(options_.max_sni_entries, 1);
}

flow::FlowKey DomainMap::dnsKey(const flow::IpAddress& client,
                                const flow::IpAddress& address) noexcept {
  flow::FlowKey k;
  k.local = client;
  k.remote = address;
  return k;
}

flow::FlowKey DomainMap::reversed(const flow::FlowKey& key) noexcept {
  flow::FlowKey k = key;
  k.local = key.remote;
  k.remote = key.local;
  k.local_port = key.remote_port;
  k.remote_port = key.local_port;
  return k;
}

bool DomainMap::learn(Table& t, const flow::FlowKey& key, std::string_view name,
                      std::atomic<std::uint64_t>& counter) {
  std::string normalized;
  if (!normalizeHostName(name, normalized)) return false;
  const TimePoint now = clock_();
  const TimePoint expires = now + options_.ttl;
  std::unique_lock lock(mutex_);
  const auto found = t.index.find(key);
  if (found != t.index.end()) {
    Entry& e = *found->second;
    const bool counts = e.expires <= now || e.name != normalized;
    if (e.name != normalized) e.name = std::move(normalized);
    e.expires = expires;
    t.order.splice(t.order.end(), t.order, found->second);  // newest last
    if (counts) counter.fetch_add(1, std::memory_order_relaxed);
    return counts;
  }
  while (t.index.size() >= t.max) {
    // Expired entries go first and silently; a live one is an eviction.
    if (t.order.front().expires > now) evictions_.fetch_add(1, std::memory_order_relaxed);
    t.index.erase(t.order.front().key);
    t.order.pop_front();
  }
  t.order.push_back({key, std::move(normalized), expires});
  t.index.emplace(key, std::prev(t.order.end()));
  counter.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool DomainMap::learnDns(const flow::IpAddress& client, const flow::IpAddress& address,
                         std::string_view name) {
  learn(dns_any_, dnsKey(flow::IpAddress{}, address), name, dns_any_learned_);
  return learn(dns_, dnsKey(client, address), name, dns_learned_);
}

std::size_t DomainMap::learnDnsResponse(const DnsMessage& m, const flow::IpAddress& client) {
  if (!m.is_response || m.rcode != 0) return 0;
  std::size_t counted = 0;
  for (const DnsAddressAnswer& a : m.addresses)
    counted += learnDns(client, a.address, a.name) ? 1 : 0;
  return counted;
}

bool DomainMap::learnSni(const flow::FlowKey& connection, std::string_view sni) {
  return learn(sni_, connection, sni, sni_learned_);
}

std::optional<std::string> DomainMap::find(const Table& t, const flow::FlowKey& key,
                                           TimePoint now) const {
  const auto it = t.index.find(key);
  if (it == t.index.end() || it->second->expires <= now) return std::nullopt;
  return it->second->name;
}

std::optional<std::string> DomainMap::findSni(const flow::FlowKey& key, TimePoint now) const {
  // Stored client -> server; a connection seen from its server end has the key reversed.
  if (auto sni = find(sni_, key, now)) return sni;
  return find(sni_, reversed(key), now);
}

std::optional<std::string> DomainMap::lookup(const flow::FlowKey& key) const {
  const TimePoint now = clock_();
  std::shared_lock lock(mutex_);
  if (auto sni = findSni(key, now)) return sni;
  if (auto own = find(dns_, dnsKey(key.local, key.remote), now)) return own;
  return find(dns_any_, dnsKey(flow::IpAddress{}, key.remote), now);
}

std::optional<std::string> DomainMap::dnsName(const flow::IpAddress& client,
                                              const flow::IpAddress& address) const {
  const TimePoint now = clock_();
  std::shared_lock lock(mutex_);
  return find(dns_, dnsKey(client, address), now);
}

std::optional<std::string> DomainMap::dnsName(const flow::IpAddress& address) const {
  const TimePoint now = clock_();
  std::shared_lock lock(mutex_);
  return find(dns_any_, dnsKey(flow::IpAddress{}, address), now);
}

std::optional<std::string> DomainMap::sniName(const flow::FlowKey& connection) const {
  const TimePoint now = clock_();
  std::shared_lock lock(mutex_);
  return findSni(connection, now);
}

std::size_t DomainMap::expireTable(Table& t, TimePoint now) {
  // Every entry lives for the same ttl, so learn order is expiry order: expired ones
  // are at the front.
  std::size_t removed = 0;
  while (!t.order.empty() && t.order.front().expires <= now) {
    t.index.erase(t.order.front().key);
    t.order.pop_front();
    ++removed;
  }
  return removed;
}

std::size_t DomainMap::expire() {
  const TimePoint now = clock_();
  std::unique_lock lock(mutex_);
  return expireTable(dns_, now) + expireTable(dns_any_, now) + expireTable(sni_, now);
}

std::uint64_t DomainMap::domainsResolved() const noexcept {
  return dns_learned_.load(std::memory_order_relaxed) +
         sni_learned_.load(std::memory_order_relaxed);
}

DomainMap::Counters DomainMap::counters() const noexcept {
  return {dns_learned_.load(std::memory_order_relaxed),
          sni_learned_.load(std::memory_order_relaxed), evictions_.load(std::memory_order_relaxed)};
}

std::size_t DomainMap::dnsSize() const {
  std::shared_lock lock(mutex_);
  return dns_.index.size();
}

std::size_t DomainMap::dnsAnySize() const {
  std::shared_lock lock(mutex_);
  return dns_any_.index.size();
}

std::size_t DomainMap::sniSize() const {
  std::shared_lock lock(mutex_);
  return sni_.index.size();
}

}  // namespace ayaflow::inspect
