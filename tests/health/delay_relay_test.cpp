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
