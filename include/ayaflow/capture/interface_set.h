// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ayaflow/capture/interface_selector.h"
#include "ayaflow/capture/link.h"

namespace ayaflow::capture {

/// Our programs on one interface; destroying it detaches them.
class Attachment {
 public:
  virtual ~Attachment() = default;
};

/// Puts the capture programs on interfaces. The real one attaches the TC programs
/// (TcAttacher); tests use a fake.
class Attacher {
 public:
  virtual ~Attacher() = default;
  /// Throws (SystemError, one line naming the interface) when the interface cannot be
  /// captured on, before anything is attached anywhere.
  virtual void check(const Link& link) = 0;
  /// Attaches; throws SystemError naming the interface and the failed step.
  virtual std::unique_ptr<Attachment> attach(const Link& link) = 0;
  /// The once-per-node roles (ifindex -> AYAFLOW_ROLE_*) after every change: the whole
  /// table, replacing the previous one. Throws SystemError if the kernel refuses.
  virtual void setRoles(const std::map<int, std::uint8_t>& roles) { (void)roles; }
};

/// The once-per-node roles (AYAFLOW_ROLE_* in ayaflow/abi/event.h) of `links`, given which
/// of them are attached: attached interfaces count (COUNT), except bridges and tunnel
/// devices while other interfaces are attached (OBSERVE); a bridge that is not attached but
/// has an attached port, and, with `decapsulate`, a tunnel device that is not attached while
/// an uplink (an interface with a default route, or a NIC) is, re-deliver packets counted
/// already (REENTRY). Other interfaces have no role.
std::map<int, std::uint8_t> countingRoles(const std::vector<Link>& links,
                                          const std::set<int>& attached, bool decapsulate);

/// The interfaces captured on: follows the kernel's interfaces (fed by the link watcher)
/// and keeps one Attachment on each interface the selector selects.
///
/// - An attached interface that is gone (deleted, or renamed so that it no longer matches)
///   is released with a warning; an interface that appears and matches is attached. An
///   interface deleted and created again under its name has a new ifindex: it is attached
///   again. A failed attach is logged once per (ifindex, name) and retried only for a new one.
/// - After every change the attacher gets the interfaces' counting roles (countingRoles()).
/// - configured(): the selector's names plus every other present interface it selects;
///   attached() falls short of it while a named interface is missing or an attach failed.
///
/// Ownership: borrows the attacher, which must outlive it. Thread: one owning thread (the
/// ingest thread); attached() and configured() may be read from any thread.
class InterfaceSet {
 public:
  /// `decapsulate`: the program parses tunnelled packets to their inner headers (see
  /// countingRoles()).
  InterfaceSet(InterfaceSelector selector, Attacher& attacher, bool decapsulate = true);
  ~InterfaceSet();
  InterfaceSet(const InterfaceSet&) = delete;
  InterfaceSet& operator=(const InterfaceSet&) = delete;

  /// Start-up: checks every selected interface of `links`, then attaches each. Throws on the
  /// first failure, leaving nothing attached.
  void start(const std::vector<Link>& links);

  /// After a change of the interfaces: releases the gone, attaches the new.
  void update(const std::vector<Link>& links);

  /// Releases every attachment; update() then does nothing.
  void detachAll();

  std::size_t attached() const noexcept;
  std::size_t configured() const noexcept;
  /// The interfaces attached now, by ifindex.
  std::vector<Link> attachedLinks() const;

 private:
  struct Attached {
    std::string name;
    std::unique_ptr<Attachment> attachment;
  };

  void recount(const std::vector<Link>& links);

  const InterfaceSelector selector_;
  Attacher& attacher_;
  const bool decapsulate_;
  std::map<int, Attached> attached_;   // by ifindex
  std::map<int, std::string> failed_;  // attach failed for this (ifindex, name): not retried
  bool stopped_ = false;
  std::atomic<std::size_t> attached_count_{0};
  std::atomic<std::size_t> configured_count_{0};
};

}  // namespace ayaflow::capture
