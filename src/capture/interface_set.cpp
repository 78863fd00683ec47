// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/interface_set.h"

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>

#include "ayaflow/abi/event.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

namespace ayaflow::capture {

std::map<int, std::uint8_t> countingRoles(const std::vector<Link>& links,
                                          const std::set<int>& attached, bool decapsulate) {
  bool other_attached = false;  // an attached interface that is not a bridge or tunnel
  bool uplink_attached = false;
  std::set<int> masters_of_attached;
  for (const Link& link : links) {
    if (attached.count(link.ifindex) == 0) continue;
    if (!isRedeliveryKind(link.kind)) other_attached = true;
    if (link.default_route || (link.kind.empty() && !link.loopback)) uplink_attached = true;
    if (link.master != 0) masters_of_attached.insert(link.master);
  }
  std::map<int, std::uint8_t> roles;
  for (const Link& link : links) {
    const bool redelivers = isRedeliveryKind(link.kind);
    if (attached.count(link.ifindex) != 0) {
      roles[link.ifindex] =
          redelivers && other_attached ? AYAFLOW_ROLE_OBSERVE : AYAFLOW_ROLE_COUNT;
    } else if (isBridgeKind(link.kind) ? masters_of_attached.count(link.ifindex) != 0
                                       : redelivers && decapsulate && uplink_attached) {
      roles[link.ifindex] = AYAFLOW_ROLE_REENTRY;
    }
  }
  return roles;
}

InterfaceSet::InterfaceSet(InterfaceSelector selector, Attacher& attacher, bool decapsulate)
    : selector_(std::move(selector)), attacher_(attacher), decapsulate_(decapsulate) {}

InterfaceSet::~InterfaceSet() = default;

void InterfaceSet::start(const std::vector<Link>& links) {
  std::vector<const Link*> selected;
  for (const Link& link : links) {
    if (selector_.selects(link)) selected.push_back(&link);
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
    if (!selector_.selects(link) || attached_.count(link.ifindex) != 0) continue;
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
  std::set<int> attached;
  for (const Link& link : links) {
    if (selector_.selects(link)) configured.insert(link.name);
    if (attached_.count(link.ifindex) != 0) attached.insert(link.ifindex);
  }
  configured_count_.store(configured.size(), std::memory_order_relaxed);
  attached_count_.store(attached_.size(), std::memory_order_relaxed);
  attacher_.setRoles(countingRoles(links, attached, decapsulate_));
}

std::size_t InterfaceSet::attached() const noexcept {
  return attached_count_.load(std::memory_order_relaxed);
}

std::size_t InterfaceSet::configured() const noexcept {
  return configured_count_.load(std::memory_order_relaxed);
}

std::vector<Link> InterfaceSet::attachedLinks() const {
  std::vector<Link> out;
  for (const auto& [ifindex, a] : attached_) {
    Link link;
    link.ifindex = ifindex;
    link.name = a.name;
    out.push_back(std::move(link));
  }
  return out;
}

}  // namespace ayaflow::capture
