// SPDX-License-Identifier: MIT OR Apache-2.0
// udp_flood: IPv4 UDP traffic generator for the agent benchmark (bench/rss_bench.sh).
//
//   udp_flood SRC_ADDR DST_ADDR:PORT RATE SECONDS FLOWS PAYLOAD
//
// Sends UDP datagrams with PAYLOAD bytes (0-1472) from SRC_ADDR to DST_ADDR for SECONDS
// seconds, RATE packets per second (0: as fast as it can), cycling round-robin through
// FLOWS distinct flows: flow f has source port 1024 + f % 64512 and destination port
// PORT + f / 64512, so up to 64512 flows share PORT and more spread over the next ports.
// It writes whole IP packets to one raw socket (needs root or CAP_NET_RAW), so any number
// of flows costs one socket, and sends them in batches of up to 64 with sendmmsg().
// At the end it prints one line, "packets=N bytes=M seconds=S", where N counts the packets
// the kernel accepted and M their IP lengths (what the agent's byte counters add up).
// Exit status: 0 on success, 2 on bad arguments, 1 on a socket error.
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
constexpr std::uint64_t kFirstSourcePort = 1024;
constexpr std::uint64_t kPortsPerDestination = 65536 - kFirstSourcePort;

int usage(const char* why) {
  std::fprintf(stderr,
               "udp_flood: %s\n"
               "usage: udp_flood SRC_ADDR DST_ADDR:PORT RATE SECONDS FLOWS PAYLOAD\n"
               "  RATE packets/s (0 = max), FLOWS >= 1 distinct flows, PAYLOAD 0-%zu bytes\n",
               why, kMaxPayload);
  return 2;
}

using ayaflow::bench::nowNs;
using ayaflow::bench::parseEndpoints;
using ayaflow::bench::parseUnsigned;
using ayaflow::bench::sleepUntilNs;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) return usage("expected 6 arguments");
  in_addr src{}, dst{};
  std::uint64_t port = 0, rate = 0, seconds = 0, flows = 0, payload = 0;
  if (const char* bad = parseEndpoints(argv[1], argv[2], src, dst, port)) return usage(bad);
  if (!parseUnsigned(argv[3], 100000000, rate)) return usage("RATE: not a number");
  if (!parseUnsigned(argv[4], 86400, seconds) || seconds == 0) {
    return usage("SECONDS: not a number of seconds (1-86400)");
  }
  if (!parseUnsigned(argv[5], 1ULL << 32, flows) || flows == 0) {
    return usage("FLOWS: not a number of flows (>= 1)");
  }
  if (port + (flows - 1) / kPortsPerDestination > 65535) {
    return usage("FLOWS: too many flows for PORT (destination ports would pass 65535)");
  }
  if (!parseUnsigned(argv[6], kMaxPayload, payload)) return usage("PAYLOAD: out of range");

  // IPPROTO_RAW implies IP_HDRINCL: we write the IP header; the kernel fills in the
  // checksum and, since id is 0, the id.
  const int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) {
    std::fprintf(stderr, "udp_flood: raw socket: %s (needs root or CAP_NET_RAW)\n",
                 std::strerror(errno));
    return 1;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr = dst;

  // kBatch prebuilt packets; only the ports change from one flow to the next. The UDP
  // checksum is 0 ("none"), which IPv4 allows.
  const std::size_t ip_len = sizeof(iphdr) + sizeof(udphdr) + payload;
  std::vector<unsigned char> packets(kBatch * ip_len, 'x');
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  for (std::size_t k = 0; k < kBatch; ++k) {
    unsigned char* p = packets.data() + k * ip_len;
    iphdr ip{};
    ip.version = 4;
    ip.ihl = 5;
    ip.tot_len = htons(static_cast<std::uint16_t>(ip_len));
    ip.frag_off = htons(IP_DF);
    ip.ttl = 64;
    ip.protocol = IPPROTO_UDP;
    ip.saddr = src.s_addr;
    ip.daddr = dst.s_addr;
    std::memcpy(p, &ip, sizeof ip);
    iov[k].iov_base = p;
    iov[k].iov_len = ip_len;
    msgs[k].msg_hdr.msg_name = &to;
    msgs[k].msg_hdr.msg_namelen = sizeof to;
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
  }

  const std::uint64_t start = nowNs();
  const std::uint64_t end = start + seconds * 1000000000ULL;
  constexpr std::uint64_t kTickNs = 1000000;  // paced: sleep at least 1 ms, then catch up
  std::uint64_t sent = 0;
  std::uint64_t next_flow = 0;
  for (;;) {
    const std::uint64_t now = nowNs();
    if (now >= end) break;
    std::uint64_t n = kBatch;
    if (rate != 0) {
      // Packets due by now at the requested rate (128-bit to avoid overflow).
      const auto due = static_cast<std::uint64_t>(static_cast<unsigned __int128>(now - start) *
                                                  rate / 1000000000ULL);
      n = due > sent ? std::min<std::uint64_t>(due - sent, kBatch) : 0;
      if (n == 0) {
        const auto next_due =
            start + static_cast<std::uint64_t>(static_cast<unsigned __int128>(sent + 1) *
                                               1000000000ULL / rate);
        sleepUntilNs(std::min(std::max(next_due, now + kTickNs), end));
        continue;
      }
    }
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t f = (next_flow + k) % flows;
      udphdr udp{};
      udp.source = htons(static_cast<std::uint16_t>(kFirstSourcePort + f % kPortsPerDestination));
      udp.dest = htons(static_cast<std::uint16_t>(port + f / kPortsPerDestination));
      udp.len = htons(static_cast<std::uint16_t>(sizeof(udphdr) + payload));
      std::memcpy(packets.data() + k * ip_len + sizeof(iphdr), &udp, sizeof udp);
    }
    const int r = sendmmsg(fd, msgs.data(), static_cast<unsigned>(n), 0);
    if (r < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) continue;  // try again
      std::fprintf(stderr, "udp_flood: sendmmsg to %s: %s\n", argv[2], std::strerror(errno));
      close(fd);
      return 1;
    }
    sent += static_cast<std::uint64_t>(r);
    next_flow = (next_flow + static_cast<std::uint64_t>(r)) % flows;
  }
  const double elapsed = static_cast<double>(nowNs() - start) / 1e9;
  close(fd);
  std::printf("packets=%llu bytes=%llu seconds=%.3f\n", static_cast<unsigned long long>(sent),
              static_cast<unsigned long long>(sent * ip_len), elapsed);
  return 0;
}
