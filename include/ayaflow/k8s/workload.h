// SPDX-License-Identifier: MIT OR Apache-2.0
// TEMPORARY (lead): replaced by the workload rule from wip-metrics on merge.
#pragma once

#include <map>
#include <string>

#include "ayaflow/enrich/enricher.h"

namespace ayaflow::k8s {

inline enrich::PodName podName(std::string ns, std::string pod,
                               const std::map<std::string, std::string>&) {
  return enrich::PodName{std::move(ns), pod, pod, "Pod"};
}

}  // namespace ayaflow::k8s
