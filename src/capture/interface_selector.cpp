// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/interface_selector.h"

#include <fnmatch.h>

#include <algorithm>

namespace ayaflow::capture {
namespace {

bool matchesEntry(const std::string& entry, const std::string& name) {
  if (!InterfaceSelector::isPattern(entry)) return entry == name;
  return ::fnmatch(entry.c_str(), name.c_str(), 0) == 0;
}

}  // namespace

bool InterfaceSelector::isPattern(std::string_view entry) noexcept {
  return entry.find_first_of("*?[") != std::string_view::npos;
}

bool InterfaceSelector::matches(std::string_view name) const {
  const std::string n(name);
  const auto hit = [&n](const std::string& entry) { return matchesEntry(entry, n); };
  return std::any_of(include.begin(), include.end(), hit) &&
         std::none_of(exclude.begin(), exclude.end(), hit);
}

std::vector<std::string> InterfaceSelector::names() const {
  std::vector<std::string> out;
  for (const std::string& entry : include) {
    if (!isPattern(entry)) out.push_back(entry);
  }
  return out;
}

}  // namespace ayaflow::capture
