// SPDX-License-Identifier: MIT OR Apache-2.0
// Connection admission and eviction (admission.h): which pool an accepted connection gets,
// and which waiting connection makes room for it.
#include "admission.h"

#include <algorithm>
#include <utility>

namespace ayaflow::api::detail {

std::size_t Admission::reserveCapacity() const {
  return std::min(limits_.reserve_connections, limits_.max_connections / 4);
}

std::size_t Admission::generalCapacity() const {
  return std::max<std::size_t>(1, limits_.max_connections - reserveCapacity());
}

Pool Admission::admit(const Connection* key, std::weak_ptr<Connection> session, const PeerKey& peer,
                      std::shared_ptr<Connection>& victim) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return Pool::kStopping;
  const std::size_t per_client = limits_.max_connections_per_client;
  const auto peer_it = per_peer_.find(peer);
  const std::size_t peer_count = peer_it == per_peer_.end() ? 0 : peer_it->second;
  bool room = false;
  if (per_client != 0 && peer_count >= per_client) {
    room = evictOldestLocked(&peer, victim);  // the peer pays with its own oldest
  } else if (general_ < generalCapacity()) {
    room = true;
  } else {
    room = evictOldestLocked(nullptr, victim);
  }
  if (room) {
    ++general_;
    ++per_peer_[peer];
    sessions_.emplace(key, Slot{std::move(session), peer, Pool::kGeneral, ConnState::kWaiting,
                                Clock::now(), true});
    return Pool::kGeneral;
  }
  if (reserve_ < reserveCapacity()) {
    ++reserve_;
    sessions_.emplace(
        key, Slot{std::move(session), peer, Pool::kReserve, ConnState::kBusy, Clock::now(), true});
    return Pool::kReserve;
  }
  return Pool::kRejected;
}

void Admission::setState(const Connection* key, ConnState state) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  it->second.state = state;
  if (state == ConnState::kWaiting) it->second.since = Clock::now();
}

bool Admission::transfer(const Connection* from, const Connection* to,
                         std::weak_ptr<Connection> session) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = sessions_.find(from);
  if (stopping_ || it == sessions_.end()) return false;
  Slot slot = std::move(it->second);
  sessions_.erase(it);
  slot.conn = std::move(session);
  slot.state = ConnState::kPinned;
  sessions_.emplace(to, std::move(slot));
  return true;
}

void Admission::unregisterSession(const Connection* key) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  releaseLocked(it->second);
  sessions_.erase(it);
}

std::size_t Admission::activeCount() {
  std::lock_guard<std::mutex> lock(mutex_);
  return sessions_.size();
}

std::vector<std::shared_ptr<Connection>> Admission::liveSessions() {
  std::vector<std::shared_ptr<Connection>> out;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& entry : sessions_) {
    if (auto session = entry.second.conn.lock()) out.push_back(std::move(session));
  }
  return out;
}

void Admission::setStopping() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
}

void Admission::releaseLocked(Slot& slot) {
  if (!slot.counted) return;
  slot.counted = false;
  if (slot.pool == Pool::kReserve) {
    --reserve_;
    return;
  }
  --general_;
  const auto it = per_peer_.find(slot.peer);
  if (it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
}

bool Admission::evictOldestLocked(const PeerKey* peer, std::shared_ptr<Connection>& victim) {
  Slot* oldest = nullptr;
  for (auto& [key, slot] : sessions_) {
    if (!slot.counted || slot.pool != Pool::kGeneral || slot.state != ConnState::kWaiting) {
      continue;
    }
    if (peer != nullptr && slot.peer != *peer) continue;
    if (oldest == nullptr || slot.since < oldest->since) oldest = &slot;
  }
  if (oldest == nullptr) return false;
  victim = oldest->conn.lock();
  releaseLocked(*oldest);
  evicted_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace ayaflow::api::detail
