// SPDX-License-Identifier: MIT OR Apache-2.0
// EnricherChain: sources in order, the first to name a field wins (unit tier).
#include "ayaflow/enrich/enricher.h"

#include <gtest/gtest.h>

namespace ayaflow::enrich {
namespace {

class Fixed final : public Enricher {
 public:
  Fixed(std::optional<std::string> domain, std::optional<std::string> remote)
      : domain_(std::move(domain)), remote_(std::move(remote)) {}
  void enrich(const flow::FlowKey& key, std::int64_t, ConnectionNames& names) const override {
    ++calls;
    last_key = key;
    if (!names.domain) names.domain = domain_;
    if (!names.remote.hostname) names.remote.hostname = remote_;
  }
  mutable int calls = 0;
  mutable flow::FlowKey last_key;

 private:
  std::optional<std::string> domain_, remote_;
};

TEST(EnricherChain, RunsEverySourceInOrderAndTheFirstNameWins) {
  Fixed first("first.example", std::nullopt);
  Fixed second("second.example", "host.example");
  EnricherChain chain;
  EXPECT_TRUE(chain.empty());
  chain.add(first);
  chain.add(second);
  EXPECT_FALSE(chain.empty());
  flow::FlowKey key;
  key.remote_port = 443;
  ConnectionNames names;
  chain.enrich(key, 0, names);
  EXPECT_EQ(names.domain, "first.example");
  EXPECT_EQ(names.remote.hostname, "host.example");
  EXPECT_FALSE(names.local.hostname);
  EXPECT_EQ(first.calls, 1);
  EXPECT_EQ(second.calls, 1);
  EXPECT_EQ(second.last_key, key);
  EXPECT_FALSE(names.empty());
}

TEST(EnricherChain, AnEmptyChainNamesNothing) {
  EnricherChain chain;
  ConnectionNames names;
  chain.enrich(flow::FlowKey{}, 0, names);
  EXPECT_TRUE(names.empty());
}

}  // namespace
}  // namespace ayaflow::enrich
