// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/interface_selector.h"

#include <fnmatch.h>

#include <algorithm>

namespace ayaflow::capture {
namespace {

bool matchesEntry(std::string_view entry, const std::string& name) {
  if (!InterfaceSelector::isPattern(entry)) return entry == name;
  return ::fnmatch(std::string(entry).c_str(), name.c_str(), 0) == 0;
}

}  // namespace

bool InterfaceSelector::isPattern(std::string_view entry) noexcept {
  return entry.find_first_of("*?[") != std::string_view::npos;
}

bool InterfaceSelector::hasAuto() const {
  return std::find(include.begin(), include.end(), kAuto) != include.end();
}

bool InterfaceSelector::matches(std::string_view name) const {
  const std::string n(name);
  const auto hit = [&n](const std::string& entry) {
    return entry != kAuto && matchesEntry(entry, n);
  };
  return std::any_of(include.begin(), include.end(), hit) &&
         std::none_of(exclude.begin(), exclude.end(), hit);
}

bool InterfaceSelector::selects(const Link& link) const {
  if (matches(link.name)) return true;
  if (!hasAuto()) return false;
  const auto hit = [&link](const auto& entry) { return matchesEntry(entry, link.name); };
  if (std::any_of(exclude.begin(), exclude.end(), hit)) return false;
  if (link.loopback || isRedeliveryKind(link.kind)) return false;
  return link.default_route || std::any_of(kAutoPodPatterns.begin(), kAutoPodPatterns.end(), hit);
}

std::vector<std::string> InterfaceSelector::names() const {
  std::vector<std::string> out;
  for (const std::string& entry : include) {
    if (entry != kAuto && !isPattern(entry)) out.push_back(entry);
  }
  return out;
}

}  // namespace ayaflow::capture
