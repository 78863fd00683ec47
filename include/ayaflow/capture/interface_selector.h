// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "ayaflow/capture/link.h"

namespace ayaflow::capture {

/// Which network interfaces to capture on: names and shell-style patterns (`veth*`,
/// `cali*`, `eth[01]`, as fnmatch(3) without flags), minus exclusions. An interface is
/// selected when it matches an `include` entry and no `exclude` entry.
///
/// Entries without a wildcard character (`*`, `?`, `[`) are names: the agent expects those
/// interfaces to exist and reports them as missing while they do not.
///
/// The include entry `auto` selects what a Kubernetes node's traffic crosses: the pod
/// interfaces of the common CNIs (kAutoPodPatterns) and the node's uplinks (every interface
/// carrying a default route), never the loopback, bridges or tunnel devices (where packets
/// counted at the pods' interfaces and the uplinks pass again). A plain value type.
struct InterfaceSelector {
  static constexpr std::string_view kAuto = "auto";
  /// Host-side pod interfaces: veth (Flannel, kindnet, bridge plugin, Docker), cali (Calico),
  /// lxc (Cilium), gke (GKE), eni (AWS VPC CNI), azv (Azure CNI).
  static constexpr std::array<std::string_view, 6> kAutoPodPatterns = {"veth*", "cali*", "lxc*",
                                                                       "gke*",  "eni*",  "azv*"};

  std::vector<std::string> include;
  std::vector<std::string> exclude;

  /// By name alone: explicit entries only (`auto` needs the link, see selects()).
  bool matches(std::string_view name) const;
  /// The whole rule, `auto` included.
  bool selects(const Link& link) const;

  /// The `include` entries that are names, in order (not `auto`).
  std::vector<std::string> names() const;

  bool hasAuto() const;

  /// True when `entry` has a wildcard character.
  static bool isPattern(std::string_view entry) noexcept;
};

}  // namespace ayaflow::capture
