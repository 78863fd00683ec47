// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include "ayaflow/flow/packet.h"

namespace ayaflow::flow {

/// Receives decoded packets (events and kernel flow-table entries) from capture.
/// Called on the ingest thread for every packet: must never block and should not allocate.
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  virtual void onPacket(const Packet& packet) noexcept = 0;
};

}  // namespace ayaflow::flow
