// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/interface_set.h"

#include <net/if.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

namespace ayaflow::capture {

std::vector<Link> listLinks() {
  struct if_nameindex* list = ::if_nameindex();
  if (list == nullptr) AYAFLOW_SYSTEM_ERROR(errno, "list network interfaces");
  std::vector<Link> links;
  for (const struct if_nameindex* i = list; i->if_index != 0 && i->if_name != nullptr; ++i) {
    links.push_back(Link{static_cast<int>(i->if_index), i->if_name});
  }
  ::if_freenameindex(list);
  std::sort(links.begin(), links.end(),
            [](const Link& a, const Link& b) { return a.ifindex < b.ifindex; });
  return links;
}

InterfaceSet::InterfaceSet(InterfaceSelector selector, Attacher& attacher)
    : selector_(std::move(selector)), attacher_(attacher) {}

InterfaceSet::~InterfaceSet() = default;

void InterfaceSet::start(const std::vector<Link>& links) {
  std::vector<const Link*> selected;
  for (const Link& link : links) {
    if (selector_.matches(link.name)) selected.push_back(&link);
  }
  // Every interface first: one that cannot be captured on stops start-up before any attach.
  for (const Link* link : selected) attacher_.check(*link);
  try {
    for (const Link* link : selected) {
      attached_.emplace(link->ifindex, Attached{link->name, attacher_.attach(*link)});
    }
  } catch (...) {
    attached_.clear();  // detaches what was attached
    throw;
  }
  recount(links);
}

void InterfaceSet::update(const std::vector<Link>& links) {
  if (stopped_) return;
  std::map<int, const Link*> present;
  for (const Link& link : links) present.emplace(link.ifindex, &link);

  for (auto it = attached_.begin(); it != attached_.end();) {
    const auto p = present.find(it->first);
    const bool still = p != present.end() && p->second->name == it->second.name;
    if (still) {
      ++it;
      continue;
    }
    logger("capture")->warn("{} (ifindex {}) is gone: not capturing on it until it is back",
                            it->second.name, it->first);
    it = attached_.erase(it);  // detaches what is left
  }
  for (auto it = failed_.begin(); it != failed_.end();) {
    const auto p = present.find(it->first);
    it = p == present.end() || p->second->name != it->second ? failed_.erase(it) : std::next(it);
  }

  for (const Link& link : links) {
    if (!selector_.matches(link.name) || attached_.count(link.ifindex) != 0) continue;
    if (const auto f = failed_.find(link.ifindex); f != failed_.end() && f->second == link.name) {
      continue;
    }
    try {
      attacher_.check(link);
      attached_.emplace(link.ifindex, Attached{link.name, attacher_.attach(link)});
    } catch (const std::exception& e) {
      failed_[link.ifindex] = link.name;
      logger("capture")->error("{} could not be attached: {}", link.name, e.what());
    }
  }
  recount(links);
}

void InterfaceSet::detachAll() {
  stopped_ = true;
  attached_.clear();
  attached_count_.store(0, std::memory_order_relaxed);
}

void InterfaceSet::recount(const std::vector<Link>& links) {
  std::set<std::string> configured;
  for (std::string& name : selector_.names()) {
    if (selector_.matches(name)) configured.insert(std::move(name));
  }
  for (const Link& link : links) {
    if (selector_.matches(link.name)) configured.insert(link.name);
  }
  configured_count_.store(configured.size(), std::memory_order_relaxed);
  attached_count_.store(attached_.size(), std::memory_order_relaxed);
}

std::size_t InterfaceSet::attached() const noexcept {
  return attached_count_.load(std::memory_order_relaxed);
}

std::size_t InterfaceSet::configured() const noexcept {
  return configured_count_.load(std::memory_order_relaxed);
}

std::vector<Link> InterfaceSet::attachedLinks() const {
  std::vector<Link> out;
  for (const auto& [ifindex, a] : attached_) out.push_back(Link{ifindex, a.name});
  return out;
}

}  // namespace ayaflow::capture
