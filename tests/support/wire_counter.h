// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Ground truth that stays exact with segmentation and receive offloads on. With TSO, GSO or
// GRO a device's capture tap sees kernel buffers that stand for several wire packets, as the
// agent's hook does, so counting frames (LinkCounter) would count fewer packets than the
// wire. An AF_PACKET socket with PACKET_VNET_HDR receives, before each frame, the
// virtio_net_hdr that describes its buffer (GSO type and segment size); the counter expands
// every buffer into the segments a NIC (or the kernel's software segmentation) puts on the
// wire, from the frame's own headers, independently of the kernel's gso_segs the agent reads.

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "netns.h"

namespace ayaflow::test {

/// struct virtio_net_hdr, as a PACKET_VNET_HDR socket puts it before each frame (fields in the
/// host's byte order on little-endian machines). Spelt out here: the kernel's header names a
/// field `class` and does not compile as C++.
struct VnetHeader {
  std::uint8_t flags = 0;
  std::uint8_t gso_type = 0;  // one of the kVnetGso* values, maybe | kVnetGsoEcn
  std::uint16_t hdr_len = 0;  // a hint (the buffer's linear part), not the header length
  std::uint16_t gso_size = 0;
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;
};
static_assert(sizeof(VnetHeader) == 10, "struct virtio_net_hdr is 10 bytes");
constexpr std::uint8_t kVnetGsoNone = 0;
constexpr std::uint8_t kVnetGsoTcpV4 = 1;
constexpr std::uint8_t kVnetGsoUdp = 3;  // UFO: IP fragments
constexpr std::uint8_t kVnetGsoTcpV6 = 4;
constexpr std::uint8_t kVnetGsoUdpL4 = 5;  // UDP segmentation (USO)
constexpr std::uint8_t kVnetGsoEcn = 0x80;

/// The wire packets one captured buffer stands for.
struct WireFrame {
  LinkCounter::Key key;
  std::uint64_t packets = 0;  // wire segments: 1, or ceil(payload / gso_size) for a GSO buffer
  std::uint64_t bytes = 0;    // the sum of those segments' IP lengths
};

/// Expands one buffer read from a PACKET_VNET_HDR socket: `vnet` is its header, `ip` its IP
/// packet (the frame after the Ethernet header), of which `captured` bytes were read. Nullopt
/// for anything but TCP/UDP over IPv4, or IPv6 (without extension headers) with `count_ipv6`.
/// Throws std::invalid_argument for a GSO type it cannot expand exactly (UFO fragments).
std::optional<WireFrame> expandWireFrame(const VnetHeader& vnet, const std::uint8_t* ip,
                                         std::size_t captured, bool count_ipv6);

/// Counts the wire packets and IP bytes of every TCP/UDP buffer crossing one device, both
/// ways, by 5-tuple, through an AF_PACKET socket with PACKET_VNET_HDR and a 32 MiB receive
/// buffer. stop() fails loudly (throws) if the kernel dropped a single frame for this socket
/// (PACKET_STATISTICS tp_drops), so a figure it returns is the device's exact traffic.
class WireCounter {
 public:
  struct Result {
    std::map<LinkCounter::Key, LinkCounter::Count> counts;
    std::uint64_t frames = 0;  // TCP/UDP buffers read
    /// Buffers of more than one segment, [0] received by the device, [1] sent by it.
    std::array<std::uint64_t, 2> super_frames{};
    std::uint64_t largest = 0;  // the most segments one buffer stood for
  };

  /// Captures on `device` in the root namespace, or in `link`'s namespace if not null.
  WireCounter(const std::string& device, const VethPair* link, bool count_ipv6);
  ~WireCounter();
  WireCounter(const WireCounter&) = delete;
  WireCounter& operator=(const WireCounter&) = delete;

  /// Wire packets and bytes counted so far (to see the traffic settle).
  LinkCounter::Count total();
  /// Stops capturing (after the traffic), then checks that nothing was dropped.
  Result stop();

 private:
  void loop();
  std::string device_;
  int fd_ = -1;
  int ifindex_ = 0;
  bool count_ipv6_;
  std::thread thread_;
  std::mutex mutex_;
  bool stop_ = false;
  std::optional<std::string> error_;
  Result result_;
};

}  // namespace ayaflow::test
