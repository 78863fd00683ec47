// SPDX-License-Identifier: MIT OR Apache-2.0
// The tracing probes' /metrics families, read from the kernel at each scrape.
//
// Absent vs zero: ayaflow_health_probe_up{probe} is 1 for a probe that is attached and 0
// for one switched on that the kernel lacks (so an alert can tell "no drops" from "cannot
// see drops"); a probe switched off has no sample at all. The figures of a probe that is
// not attached (ayaflow_drops_total, ayaflow_tcp_retransmits_total) are absent rather than
// a misleading 0.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ayaflow/common/metrics.h"
#include "ayaflow/health/health_probes.h"

namespace ayaflow::health {

std::vector<prometheus::MetricFamily> healthFamilies(const HealthStats& st) {
  using prometheus::MetricType;
  using Families = common::MetricFamilies;
  Families families;
  std::vector<prometheus::ClientMetric> up;
  for (Probe probe : kProbes) {
    const ProbeStatus& s = st.probes[static_cast<int>(probe)];
    if (!s.enabled) continue;
    up.push_back(
        Families::sample(MetricType::Gauge, s.attached ? 1.0 : 0.0, {{"probe", probeName(probe)}}));
  }
  families.add("ayaflow_health_probe_up",
               "Kernel tracing probes: 1 attached, 0 switched on but missing in this kernel "
               "(absent when switched off).",
               MetricType::Gauge, std::move(up));
  if (st.probes[static_cast<int>(Probe::Drops)].attached) {
    // Bounded by the kernel's enum (a few hundred values at most): only reasons seen.
    std::vector<prometheus::ClientMetric> drops;
    for (const auto& [name, count] : st.drops) {
      drops.push_back(
          Families::sample(MetricType::Counter, static_cast<double>(count), {{"reason", name}}));
    }
    families.add("ayaflow_drops_total",
                 "IPv4/IPv6 TCP and UDP packets the kernel dropped on this node, by the "
                 "kernel's drop reason (skb:kfree_skb; exact; ordinary frees without a reason "
                 "are not drops and not counted).",
                 MetricType::Counter, std::move(drops));
    families.add(
        "ayaflow_drop_flows_overflow_total",
        "Drops counted in ayaflow_drops_total but not attributed to a flow, by cause: "
        "map_full (the kernel's drop_flows map was full), rate (past the per-CPU attribution "
        "budget, in a drop storm).",
        MetricType::Counter,
        {Families::sample(MetricType::Counter, static_cast<double>(st.totals.drop_flow_overflow),
                          {{"cause", "map_full"}}),
         Families::sample(MetricType::Counter,
                          static_cast<double>(st.totals.drop_flow_rate_limited),
                          {{"cause", "rate"}})});
  }
  if (st.probes[static_cast<int>(Probe::Retransmits)].attached) {
    families.counter("ayaflow_tcp_retransmits_total",
                     "TCP segments retransmitted by this node's sockets (tcp:tcp_retransmit_skb, "
                     "segments of each retransmitted buffer; exact).",
                     st.totals.retrans_segs);
  }
  return families.take();
}

HealthStats HealthProbes::stats() const {
  HealthStats st;
  st.probes = status_;
  const bool drops = status(Probe::Drops).attached;
  if (drops || status(Probe::Retransmits).attached) st.totals = totals();  // one read
  if (drops) {
    for (const auto& [slot, count] : dropTotals()) {
      st.drops.emplace_back(
          slot == AYAFLOW_DROP_REASON_SLOTS - 1 && !reasonNames().all().count(slot)
              ? std::string("OTHER")
              : reasonNames().name(slot),
          count);
    }
  }
  return st;
}

std::shared_ptr<const prometheus::Collectable> HealthProbes::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [this] { return healthFamilies(stats()); });
}

}  // namespace ayaflow::health
