// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <string>

namespace ayaflow::common {

/// Interface name for `ifindex`: "other" for 0 (the kernel's overflow slot), the name from
/// if_indextoname(), or "ifindex_<n>" when the interface no longer exists. Answers are
/// reused for 5 s (thread-safe): an interface renamed or removed shows its new label once
/// its entry is older than that.
std::string interfaceLabel(std::uint32_t ifindex);

}  // namespace ayaflow::common
