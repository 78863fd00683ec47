// SPDX-License-Identifier: MIT OR Apache-2.0
// The deep-inspection enrichers name connections from the domain map and reverse DNS.
#include "ayaflow/inspect/enrichers.h"

#include <gtest/gtest.h>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "ayaflow/inspect/deep_inspection.h"

namespace ayaflow::inspect {
namespace {

flow::FlowKey key(const char* local, const char* remote, std::uint16_t remote_port) {
  flow::FlowKey k;
  k.local = *flow::IpAddress::parse(local);
  k.remote = *flow::IpAddress::parse(remote);
  k.local_port = 40000;
  k.remote_port = remote_port;
  k.protocol = 6;
  return k;
}

TEST(DomainEnricher, NamesTheConnectionSniFirst) {
  DomainMap domains;
  domains.learnDns(*flow::IpAddress::parse("10.0.0.1"), *flow::IpAddress::parse("93.184.216.34"),
                   "example.com");
  domains.learnSni(key("10.0.0.1", "93.184.216.34", 443), "www.example.com");
  const DomainEnricher enricher(domains);
  enrich::ConnectionNames names;
  enricher.enrich(key("10.0.0.1", "93.184.216.34", 443), 0, names);
  EXPECT_EQ(names.domain, "www.example.com");
  names = {};
  enricher.enrich(key("10.0.0.1", "93.184.216.34", 80), 0, names);
  EXPECT_EQ(names.domain, "example.com");
  names = {};
  enricher.enrich(key("93.184.216.34", "10.0.0.1", 80), 0, names);  // the other way round
  EXPECT_FALSE(names.domain);
  names.domain = "earlier.example";  // an earlier source wins
  enricher.enrich(key("10.0.0.1", "93.184.216.34", 443), 0, names);
  EXPECT_EQ(names.domain, "earlier.example");
}

TEST(DomainEnricher, InterleavedConnectionsToOneServerEachGetTheirOwnName) {
  DomainMap domains;
  const DomainEnricher enricher(domains);
  const char* const snis[] = {"a.example.test", "b.example.test", "c.example.test"};
  flow::FlowKey keys[3];
  for (int i = 0; i < 3; ++i) {
    keys[i] = key("10.0.0.1", "10.0.0.7", 443);
    keys[i].local_port = static_cast<std::uint16_t>(40001 + i);
  }
  // Hellos interleaved with enrichment: a connection named before the next hello keeps
  // its name after it.
  for (int i = 0; i < 3; ++i) {
    domains.learnSni(keys[i], snis[i]);
    for (int j = 0; j <= i; ++j) {
      enrich::ConnectionNames names;
      enricher.enrich(keys[j], 0, names);
      EXPECT_EQ(names.domain, snis[j]) << i << " " << j;
    }
  }
}

TEST(DomainEnricher, TwoClientsGotDifferentNamesForOneAddress) {
  DomainMap domains;
  const auto server = *flow::IpAddress::parse("10.0.0.7");
  domains.learnDns(*flow::IpAddress::parse("10.0.0.1"), server, "one.example.test");
  domains.learnDns(*flow::IpAddress::parse("10.0.0.2"), server, "two.example.test");
  const DomainEnricher enricher(domains);
  enrich::ConnectionNames names;
  enricher.enrich(key("10.0.0.1", "10.0.0.7", 443), 0, names);
  EXPECT_EQ(names.domain, "one.example.test");
  names = {};
  enricher.enrich(key("10.0.0.2", "10.0.0.7", 443), 0, names);
  EXPECT_EQ(names.domain, "two.example.test");
  names = {};
  enricher.enrich(key("10.0.0.3", "10.0.0.7", 443), 0, names);  // no own lookup: the latest
  EXPECT_EQ(names.domain, "two.example.test");
}

TEST(ReverseDnsEnricher, NamesBothEndsOnceResolved) {
  ReverseResolver::Options o;
  o.threads = 1;
  ReverseResolver resolver(o, [](const flow::IpAddress& a) -> std::optional<std::string> {
    if (a.toString() == "10.0.0.1") return "client.example";
    if (a.toString() == "10.0.0.2") return "server.example";
    return std::nullopt;
  });
  const ReverseDnsEnricher enricher(resolver);
  enrich::ConnectionNames names;
  enricher.enrich(key("10.0.0.1", "10.0.0.2", 443), 0, names);  // queues both lookups
  resolver.waitIdleForTest();
  names = {};
  enricher.enrich(key("10.0.0.1", "10.0.0.2", 443), 0, names);
  EXPECT_EQ(names.local.hostname, "client.example");
  EXPECT_EQ(names.remote.hostname, "server.example");
  EXPECT_FALSE(names.domain);
}

TEST(DeepInspection, ExportsItsFamiliesAlways) {
  DeepInspection inspection;
  const auto families = inspection.metrics()->Collect();
  ASSERT_EQ(families.size(), 7u);  // the two counters, then inspectionCacheFamilies()
  EXPECT_EQ(families[0].name, "ayaflow_domains_resolved_total");
  EXPECT_EQ(families[1].name, "ayaflow_deep_inspect_packets_total");
  inspection.onPayload("x", 1, 0);  // too short: counted, ignored
  EXPECT_EQ(inspection.metrics()->Collect()[1].metric[0].counter.value, 1.0);
  EXPECT_EQ(families[2].name, "ayaflow_domain_names");
  EXPECT_EQ(families[6].name, "ayaflow_tls_streams_evicted_total");
}

}  // namespace
}  // namespace ayaflow::inspect
