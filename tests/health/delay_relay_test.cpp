// SPDX-License-Identifier: MIT OR Apache-2.0
// The delay relay fixture itself: a TCP connection through it sees the configured round trip
// (the kernel's own smoothed RTT of the socket, TCP_INFO), over IPv4 and IPv6.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "delay_relay.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

int tcpListen(const std::string& addr, std::uint16_t port) {
  const bool v6 = addr.find(':') != std::string::npos;
  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 8) != 0) {
    throw std::runtime_error(std::string("listen: ") + std::strerror(errno));
  }
  return fd;
}

int tcpConnect(const std::string& addr, std::uint16_t port) {
  const bool v6 = addr.find(':') != std::string::npos;
  const int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
  }
  return fd;
}

void roundTrip(const DelayedLink& link, bool v6) {
  int listener = -1;
  link.inB([&] { listener = tcpListen(v6 ? link.v6B() : link.v4B(), 5001); });
  int client = -1;
  link.inA([&] { client = tcpConnect(v6 ? link.v6B() : link.v4B(), 5001); });
  const int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  // A few request/response exchanges so the smoothed RTT is made of several samples.
  char byte = 'x';
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(send(client, &byte, 1, 0), 1);
    ASSERT_EQ(recv(server, &byte, 1, MSG_WAITALL), 1);
    ASSERT_EQ(send(server, &byte, 1, 0), 1);
    ASSERT_EQ(recv(client, &byte, 1, MSG_WAITALL), 1);
  }
  tcp_info info{};
  socklen_t len = sizeof(info);
  ASSERT_EQ(getsockopt(client, IPPROTO_TCP, TCP_INFO, &info, &len), 0);
  // 10 ms each way: 20 ms plus the relay's scheduling, never less.
  EXPECT_GE(info.tcpi_rtt, 20000u);
  EXPECT_LT(info.tcpi_rtt, 25000u);
  EXPECT_GT(link.forwardedAtoB(), 0u);
  EXPECT_GT(link.forwardedBtoA(), 0u);
  close(client);
  close(server);
  close(listener);
}

TEST(DelayRelay, TcpRoundTripIsTwiceTheDelay) {
  AYAFLOW_REQUIRE_ROOT();
  DelayedLink link(std::chrono::milliseconds(10));
  roundTrip(link, false);
  roundTrip(link, true);
}

}  // namespace
}  // namespace ayaflow::test
