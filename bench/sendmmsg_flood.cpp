// SPDX-License-Identifier: MIT OR Apache-2.0
// sendmmsg_flood: as-fast-as-possible IPv4 UDP generator for bench/compare.sh.
//
//   sendmmsg_flood SRC_ADDR DST_ADDR:PORT SECONDS FLOWS PAYLOAD [RATE]
//
// Sends UDP datagrams of PAYLOAD bytes (0-1472) from SRC_ADDR to DST_ADDR for SECONDS
// seconds through ordinary UDP sockets (SOCK_DGRAM: no root needed, the kernel builds the
// headers), in batches of 64 with one sendmmsg() call per batch. RATE packets/s, 0 or
// absent meaning as fast as the kernel accepts them: the machine's ceiling.
//
// Flows: one socket per 60 000 flows, each bound to its own ephemeral source port; flow f
// goes out of socket f / 60000 to destination port PORT + f % 60000. Consecutive packets
// cycle round-robin through the flows, so every flow gets the same share.
//
// At the end it prints one line, "packets=N bytes=M seconds=S rate=R", where N counts the
// datagrams the kernel accepted, M their IP lengths (what the agent's byte counters add up)
// and R = N / S. Exit status: 0 on success, 2 on bad arguments, 1 on a socket error.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"

namespace {

constexpr std::size_t kBatch = 64;
constexpr std::size_t kMaxPayload = 1500 - sizeof(iphdr) - sizeof(udphdr);
constexpr std::uint64_t kPortsPerSocket = 60000;
constexpr std::uint64_t kMaxFlows = 32 * kPortsPerSocket;

int usage(const char* why) {
  std::fprintf(stderr,
               "sendmmsg_flood: %s\n"
               "usage: sendmmsg_flood SRC_ADDR DST_ADDR:PORT SECONDS FLOWS PAYLOAD [RATE]\n"
               "  FLOWS 1-%llu, PAYLOAD 0-%zu bytes, RATE packets/s (0 or absent = max)\n",
               why, static_cast<unsigned long long>(kMaxFlows), kMaxPayload);
  return 2;
}

using ayaflow::bench::nowNs;
using ayaflow::bench::parseEndpoints;
using ayaflow::bench::parseUnsigned;
using ayaflow::bench::sleepUntilNs;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) return usage("expected 5 or 6 arguments");
  in_addr src{}, dst{};
  std::uint64_t port = 0, seconds = 0, flows = 0, payload = 0, rate = 0;
  if (const char* bad = parseEndpoints(argv[1], argv[2], src, dst, port)) return usage(bad);
  if (!parseUnsigned(argv[3], 86400, seconds) || seconds == 0) {
    return usage("SECONDS: not a number of seconds (1-86400)");
  }
  if (!parseUnsigned(argv[4], kMaxFlows, flows) || flows == 0) {
    return usage("FLOWS: not a number of flows");
  }
  if (port + std::min(flows, kPortsPerSocket) - 1 > 65535) {
    return usage("FLOWS: too many flows for PORT (destination ports would pass 65535)");
  }
  if (!parseUnsigned(argv[5], kMaxPayload, payload)) return usage("PAYLOAD: out of range");
  if (argc == 7 && !parseUnsigned(argv[6], 100000000, rate)) return usage("RATE: not a number");

  const std::size_t socket_count = static_cast<std::size_t>((flows - 1) / kPortsPerSocket + 1);
  std::vector<int> fds;
  for (std::size_t s = 0; s < socket_count; ++s) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr = src;
    if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
      std::fprintf(stderr, "sendmmsg_flood: socket bound to %s: %s\n", argv[1],
                   std::strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }

  // One batch of messages, all pointing at the same payload; only the destination of each
  // message changes from batch to batch.
  std::vector<unsigned char> data(std::max<std::uint64_t>(payload, 1), 'x');
  iovec iov{data.data(), static_cast<std::size_t>(payload)};
  std::vector<sockaddr_in> to(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  for (std::size_t k = 0; k < kBatch; ++k) {
    to[k].sin_family = AF_INET;
    to[k].sin_addr = dst;
    msgs[k].msg_hdr.msg_name = &to[k];
    msgs[k].msg_hdr.msg_namelen = sizeof to[k];
    msgs[k].msg_hdr.msg_iov = &iov;
    msgs[k].msg_hdr.msg_iovlen = 1;
  }

  const std::uint64_t start = nowNs();
  const std::uint64_t end = start + seconds * 1000000000ULL;
  std::uint64_t sent = 0;
  std::uint64_t next_flow = 0;
  std::uint64_t calls = 0;
  std::uint64_t now = start;
  while (now < end) {
    // One socket per call: the batch stops at the next socket boundary.
    const std::size_t sock = static_cast<std::size_t>(next_flow / kPortsPerSocket);
    const std::uint64_t socket_end = std::min<std::uint64_t>((sock + 1) * kPortsPerSocket, flows);
    std::uint64_t n = std::min<std::uint64_t>(kBatch, socket_end - next_flow);
    if (rate != 0) {
      const auto due = static_cast<std::uint64_t>(static_cast<unsigned __int128>(now - start) *
                                                  rate / 1000000000ULL);
      if (due <= sent) {
        sleepUntilNs(nowNs() + 1000000);  // 1 ms, then catch up
        now = nowNs();
        continue;
      }
      n = std::min(n, due - sent);
    }
    for (std::uint64_t k = 0; k < n; ++k) {
      to[k].sin_port = htons(static_cast<std::uint16_t>(port + (next_flow + k) % kPortsPerSocket));
    }
    const int r = sendmmsg(fds[sock], msgs.data(), static_cast<unsigned>(n), 0);
    if (r < 0) {
      // ENOBUFS/EAGAIN: the qdisc or socket buffer is full; ECONNREFUSED: an ICMP error
      // from an earlier datagram. None of these is fatal for a flood.
      if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR && errno != ECONNREFUSED) {
        std::fprintf(stderr, "sendmmsg_flood: sendmmsg to %s: %s\n", argv[2], std::strerror(errno));
        return 1;
      }
    } else {
      sent += static_cast<std::uint64_t>(r);
      next_flow = (next_flow + static_cast<std::uint64_t>(r)) % flows;
    }
    // The clock is read every 16 calls (about 1000 packets) at full rate.
    if (rate != 0 || (++calls & 15) == 0) now = nowNs();
  }
  const double elapsed = static_cast<double>(nowNs() - start) / 1e9;
  for (const int fd : fds) close(fd);
  const std::uint64_t ip_len = sizeof(iphdr) + sizeof(udphdr) + payload;
  std::printf("packets=%llu bytes=%llu seconds=%.3f rate=%.0f\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(sent * ip_len),
              elapsed, elapsed > 0 ? static_cast<double>(sent) / elapsed : 0.0);
  return 0;
}
