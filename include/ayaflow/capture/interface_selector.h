// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ayaflow::capture {

/// Which network interfaces to capture on: names and shell-style patterns (`veth*`,
/// `cali*`, `eth[01]`, as fnmatch(3) without flags), minus exclusions. An interface is
/// selected when it matches an `include` entry and no `exclude` entry.
///
/// Entries without a wildcard character (`*`, `?`, `[`) are names: the agent expects those
/// interfaces to exist and reports them as missing while they do not. A plain value type.
struct InterfaceSelector {
  std::vector<std::string> include;
  std::vector<std::string> exclude;

  bool matches(std::string_view name) const;

  /// The `include` entries that are names, in order.
  std::vector<std::string> names() const;

  /// True when `entry` has a wildcard character.
  static bool isPattern(std::string_view entry) noexcept;
};

}  // namespace ayaflow::capture
