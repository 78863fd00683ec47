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
  sni_.index = decltype(sni_.index)(0, flow::FlowKeyHash{flow::randomHashSeed()});
  dns_.max = std::max<std::size_t>(options_.max_dns_entries, 1);
  sni_.max = std::max<std::size_t>(options_.max_sni_entries, 1);
}

flow::FlowKey DomainMap::dnsKey(const flow::IpAddress& address) noexcept {
  flow::FlowKey k;
  k.remote = address;
  return k;
}

flow::FlowKey DomainMap::sniKey(const flow::IpAddress& address, std::uint16_t port) noexcept {
  flow::FlowKey k;
  k.remote = address;
  k.remote_port = port;
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

bool DomainMap::learnDns(const flow::IpAddress& address, std::string_view name) {
  return learn(dns_, dnsKey(address), name, dns_learned_);
}

std::size_t DomainMap::learnDnsResponse(const DnsMessage& m) {
  if (!m.is_response || m.rcode != 0) return 0;
  std::size_t counted = 0;
  for (const DnsAddressAnswer& a : m.addresses) counted += learnDns(a.address, a.name) ? 1 : 0;
  return counted;
}

bool DomainMap::learnSni(const flow::IpAddress& address, std::uint16_t port, std::string_view sni) {
  return learn(sni_, sniKey(address, port), sni, sni_learned_);
}

std::optional<std::string> DomainMap::find(const Table& t, const flow::FlowKey& key,
                                           TimePoint now) const {
  const auto it = t.index.find(key);
  if (it == t.index.end() || it->second->expires <= now) return std::nullopt;
  return it->second->name;
}

std::optional<std::string> DomainMap::lookup(const flow::IpAddress& remote,
                                             std::uint16_t remote_port) const {
  const TimePoint now = clock_();
  std::shared_lock lock(mutex_);
  if (auto sni = find(sni_, sniKey(remote, remote_port), now)) return sni;
  return find(dns_, dnsKey(remote), now);
}

std::optional<std::string> DomainMap::dnsName(const flow::IpAddress& address) const {
  const TimePoint now = clock_();
  std::shared_lock lock(mutex_);
  return find(dns_, dnsKey(address), now);
}

std::optional<std::string> DomainMap::sniName(const flow::IpAddress& address,
                                              std::uint16_t port) const {
  const TimePoint now = clock_();
  std::shared_lock lock(mutex_);
  return find(sni_, sniKey(address, port), now);
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
  return expireTable(dns_, now) + expireTable(sni_, now);
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

std::size_t DomainMap::sniSize() const {
  std::shared_lock lock(mutex_);
  return sni_.index.size();
}

}  // namespace ayaflow::inspect
