// SPDX-License-Identifier: MIT OR Apache-2.0
// End to end as root: the real agent on a veth in its own namespace exports what it
// captures, and real third-party software reads it back. The ground truth is an AF_PACKET
// count on the link (LinkCounter); every figure must equal it exactly, per flow and in
// total, for IPv4 and IPv6, UDP and TCP:
//  - IPFIX over UDP to nfdump's nfcapd (nfdump reads its files), pmacct's nfacctd (print
//    plugin to a CSV file) and tshark decoding a capture of the same datagrams; nfcapd is
//    restarted and learns the templates again from the refresh;
//  - IPFIX over TCP to ipfixDump (libfixbuf-tools) behind socat TCP-LISTEN, and tshark;
//  - a TCP collector that never reads: only counted drops, capture totals stay exact;
//  - ClickHouse (a real clickhouse-server 18.16), aggregated mode: rows sum exactly.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent_checks.h"
#include "agent_process.h"
#include "clickhouse_server.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

using namespace std::chrono_literals;
using Counts = std::map<LinkCounter::Key, LinkCounter::Count>;
using Clock = std::chrono::steady_clock;

// ---- helpers ------------------------------------------------------------------------------

bool installed(const char* program) {
  return std::system((std::string("command -v ") + program + " >/dev/null 2>&1").c_str()) == 0;
}

/// A third-party program run for the test; output to a log file; killed with the object.
class Child {
 public:
  Child(std::vector<std::string> argv, std::string log) : log_(std::move(log)) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      std::_Exit(127);
    }
  }
  ~Child() { stop(SIGKILL); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// Signals the child's process group (as Ctrl-C does: tshark's dumpcap must see it to
  /// write out what it captured) and waits for the child (SIGKILL after 10 s).
  void stop(int signo = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(-pid_, signo);
    const auto deadline = Clock::now() + 10s;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(-pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
  }
  std::string log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

/// A private directory, removed with the object.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/ayaflow-export-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    if (std::getenv("AYAFLOW_KEEP_TEST_DIRS") != nullptr) return;  // for a failure's post-mortem
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

std::uint16_t freeUdpPort() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string run(const std::string& command) { return shOutput(command); }

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::uint8_t protocolNumber(std::string p) {
  for (char& c : p) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (p == "tcp" || p == "6") return 6;
  if (p == "udp" || p == "17") return 17;
  return 0;
}

/// Polls `pred` until it holds or `timeout`; returns whether it did.
template <typename Pred>
bool waitFor(Pred pred, std::chrono::milliseconds timeout = 30s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

/// Waits until a capture writing `pcap` records packets: tshark says it captures a little
/// before it does, so datagrams to the `probe` port (in its filter) are sent until one shows.
bool captureRunning(const Child& tshark, const std::string& pcap, std::uint16_t probe,
                    const char* started = "Capturing on") {
  if (!waitFor([&] {
        return tshark.log().find(started) != std::string::npos && std::filesystem::exists(pcap);
      })) {
    return false;
  }
  std::error_code ec;
  const auto initial = std::filesystem::file_size(pcap, ec);
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(probe);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = waitFor([&] {
    ::sendto(fd, "probe", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    std::this_thread::sleep_for(30ms);
    return std::filesystem::file_size(pcap, ec) > initial;
  });
  ::close(fd);
  return ok;
}

/// A TCP transfer through the veth: the host end connects from `client_port` to the peer
/// (listening on `server_port` inside the namespace), sends `bytes`, and both close.
void tcpTransfer(const VethPair& link, bool v6, std::uint16_t client_port,
                 std::uint16_t server_port, std::size_t bytes) {
  const int family = v6 ? AF_INET6 : AF_INET;
  const auto address = [&](const std::string& text, std::uint16_t port, sockaddr_storage& ss) {
    std::memset(&ss, 0, sizeof ss);
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      ::inet_pton(AF_INET6, text.c_str(), &a->sin6_addr);
      return static_cast<socklen_t>(sizeof *a);
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    ::inet_pton(AF_INET, text.c_str(), &a->sin_addr);
    return static_cast<socklen_t>(sizeof *a);
  };
  int listener = -1;
  link.inNamespace([&] {
    listener = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss;
    const socklen_t len = address(v6 ? link.peerV6() : link.peerV4(), server_port, ss);
    if (::bind(listener, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(listener, 1)) {
      throw std::runtime_error("tcp listen failed");
    }
  });
  std::thread server([&] {
    const int c = ::accept(listener, nullptr, nullptr);
    char buf[65536];
    while (::recv(c, buf, sizeof buf, 0) > 0) {
    }
    ::close(c);
  });
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage local, remote;
  const socklen_t llen = address(v6 ? link.hostV6() : link.hostV4(), client_port, local);
  const socklen_t rlen = address(v6 ? link.peerV6() : link.peerV4(), server_port, remote);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), llen) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&remote), rlen) != 0) {
    ::close(fd);
    server.detach();
    throw std::runtime_error("tcp connect failed");
  }
  const std::string data(bytes, 'x');
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, 0);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char buf[16];
  while (::recv(fd, buf, sizeof buf, 0) > 0) {
  }
  ::close(fd);
  server.join();
  ::close(listener);
}

/// The traffic every test sends: UDP both ways and a TCP transfer, IPv4 and IPv6, each
/// flow on its own ports (base+...), so flows are told apart by ports alone.
void sendTraffic(const VethPair& link, std::uint16_t base) {
  udpExchange(link, false, static_cast<std::uint16_t>(base + 1),
              static_cast<std::uint16_t>(base + 2), 40, 120, 25, 900);
  udpExchange(link, true, static_cast<std::uint16_t>(base + 3),
              static_cast<std::uint16_t>(base + 4), 30, 300, 20, 700);
  tcpTransfer(link, false, static_cast<std::uint16_t>(base + 5),
              static_cast<std::uint16_t>(base + 6), 200000);
  tcpTransfer(link, true, static_cast<std::uint16_t>(base + 7),
              static_cast<std::uint16_t>(base + 8), 150000);
}

std::string describe(const Counts& c) {
  std::ostringstream out;
  for (const auto& [k, v] : c) {
    out << k.src << ":" << k.sport << " -> " << k.dst << ":" << k.dport << " p" << int(k.proto)
        << " = " << v.packets << " pkts " << v.bytes << " bytes\n";
  }
  return out.str();
}

void expectSame(const Counts& truth, const Counts& got, const std::string& who) {
  EXPECT_EQ(linkTotals(got).packets, linkTotals(truth).packets) << who;
  EXPECT_EQ(linkTotals(got).bytes, linkTotals(truth).bytes) << who;
  EXPECT_EQ(describe(got), describe(truth)) << who << " per flow";
}

/// Keyed by ports and protocol only (tshark lists addresses apart from the rest).
Counts byPorts(const Counts& c) {
  Counts out;
  for (const auto& [k, v] : c) {
    LinkCounter::Key p{"", "", k.sport, k.dport, k.proto};
    out[p].packets += v.packets;
    out[p].bytes += v.bytes;
  }
  return out;
}

/// nfdump's records of a directory of nfcapd files.
Counts readNfdump(const std::string& dir) {
  Counts out;
  const std::string text =
      run("nfdump -R " + dir + " -q -N -o 'fmt:%sa|%da|%sp|%dp|%pr|%pkt|%byt' 2>&1");
  for (const std::string& line : split(text, '\n')) {
    const auto f = split(line, '|');
    if (f.size() != 7) continue;
    LinkCounter::Key k{trim(f[0]), trim(f[1]), static_cast<std::uint16_t>(std::stoul(trim(f[2]))),
                       static_cast<std::uint16_t>(std::stoul(trim(f[3]))),
                       protocolNumber(trim(f[4]))};
    out[k].packets += std::stoull(trim(f[5]));
    out[k].bytes += std::stoull(trim(f[6]));
  }
  return out;
}

/// pmacct's print plugin CSV (appended every refresh): summed per flow.
Counts readPmacct(const std::string& file) {
  Counts out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto f = split(line, ',');
    if (f.size() != 7 || f[0] == "SRC_IP") continue;
    LinkCounter::Key k{f[0], f[1], static_cast<std::uint16_t>(std::stoul(f[2])),
                       static_cast<std::uint16_t>(std::stoul(f[3])), protocolNumber(f[4])};
    out[k].packets += std::stoull(f[5]);
    out[k].bytes += std::stoull(f[6]);
  }
  return out;
}

/// tshark's decoding of the IPFIX messages in a capture (`decode_as`: "udp.port==N,cflow"),
/// keyed by ports and protocol; the addresses seen go to `addresses`.
Counts readTshark(const std::string& pcap, const std::string& decode_as,
                  std::set<std::string>* addresses) {
  Counts out;
  const std::string text =
      run("tshark -r " + pcap + " -d " + decode_as +
          " -T fields -E separator='|' -E occurrence=a -E aggregator=';' "
          "-e cflow.srcport -e cflow.dstport -e cflow.protocol "
          "-e cflow.packets -e cflow.octets -e cflow.srcaddr "
          "-e cflow.dstaddr -e cflow.srcaddrv6 -e cflow.dstaddrv6 2>/dev/null");
  for (const std::string& line : split(text, '\n')) {
    const auto f = split(line, '|');
    if (f.size() < 5 || f[0].empty()) continue;
    const auto sp = split(f[0], ';'), dp = split(f[1], ';'), pr = split(f[2], ';'),
               pk = split(f[3], ';'), oc = split(f[4], ';');
    for (std::size_t i = 0;
         i < sp.size() && i < dp.size() && i < pr.size() && i < pk.size() && i < oc.size(); ++i) {
      LinkCounter::Key k{"", "", static_cast<std::uint16_t>(std::stoul(sp[i])),
                         static_cast<std::uint16_t>(std::stoul(dp[i])),
                         static_cast<std::uint8_t>(std::stoul(pr[i]))};
      out[k].packets += std::stoull(pk[i]);
      out[k].bytes += std::stoull(oc[i]);
    }
    for (std::size_t col = 5; col < f.size() && addresses != nullptr; ++col) {
      for (const std::string& a : split(f[col], ';')) {
        if (!a.empty()) addresses->insert(a);
      }
    }
  }
  return out;
}

/// "fd00:0213::0001" -> "fd00:213::1" (ipfixDump prints IPv6 groups in full).
std::string canonical(const std::string& text) {
  in6_addr a6{};
  if (text.find(':') != std::string::npos && ::inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    char out[INET6_ADDRSTRLEN];
    return ::inet_ntop(AF_INET6, &a6, out, sizeof out);
  }
  return text;
}

/// ipfixDump's data records of templates 256/257, keyed by ports and protocol.
Counts readIpfixDump(const std::string& text) {
  Counts out;
  LinkCounter::Key k{};
  LinkCounter::Count c{};
  bool in_record = false;
  const auto finish = [&] {
    if (in_record) {
      out[k].packets += c.packets;
      out[k].bytes += c.bytes;
    }
    in_record = false;
  };
  const auto value = [](const std::string& line) {
    return trim(line.substr(line.find(" : ") + 3));
  };
  for (const std::string& line : split(text, '\n')) {
    if (line.rfind("--- ", 0) == 0) finish();
    if (line.find("tid:   256") != std::string::npos ||
        line.find("tid:   257") != std::string::npos) {
      if (line.find("count:") != std::string::npos &&
          line.find("field count") == std::string::npos) {
        in_record = true;
        k = LinkCounter::Key{};
        c = LinkCounter::Count{};
      }
    }
    if (!in_record || line.find(" : ") == std::string::npos) continue;
    if (line.find("sourceIPv4Address") != std::string::npos ||
        line.find("sourceIPv6Address") != std::string::npos) {
      k.src = canonical(value(line));
    } else if (line.find("destinationIPv4Address") != std::string::npos ||
               line.find("destinationIPv6Address") != std::string::npos) {
      k.dst = canonical(value(line));
    } else if (line.find("sourceTransportPort") != std::string::npos) {
      k.sport = static_cast<std::uint16_t>(std::stoul(value(line)));
    } else if (line.find("destinationTransportPort") != std::string::npos) {
      k.dport = static_cast<std::uint16_t>(std::stoul(value(line)));
    } else if (line.find("protocolIdentifier") != std::string::npos) {
      k.proto = static_cast<std::uint8_t>(std::stoul(value(line)));
    } else if (line.find("packetDeltaCount") != std::string::npos) {
      c.packets = std::stoull(value(line));
    } else if (line.find("octetDeltaCount") != std::string::npos) {
      c.bytes = std::stoull(value(line));
    }
  }
  finish();
  return out;
}

std::string ipfixMetric(const char* family, const char* extra = "") {
  return std::string(family) + "{sink=\"ipfix\"" + extra + "}";
}

/// Raw mode: waits until the SQLite history holds `packets` packets (every record the
/// pipeline made; a GSO buffer is one record of several packets), then until the IPFIX
/// exporter has sent as many records as the history stored. Returns that record count.
std::uint64_t waitExported(AgentProcess& agent, std::uint64_t packets) {
  const auto stored = [&](const char* what) {
    const auto row = queryRow(agent.dbPath(), std::string("SELECT ") + what + " FROM packets");
    return row.empty() || row[0].empty() ? std::uint64_t{0} : std::stoull(row[0]);
  };
  EXPECT_TRUE(waitFor([&] { return stored("coalesce(sum(packet_count), 0)") == packets; }))
      << stored("sum(packet_count)") << " of " << packets;
  const std::uint64_t records = stored("count(*)");
  EXPECT_EQ(waitForMetric(agent, ipfixMetric("ayaflow_export_records_total"), records), records);
  return records;
}

class ExportE2E : public ::testing::Test {
 protected:
  void SetUp() override { AYAFLOW_REQUIRE_ROOT(); }

  /// Skips (fails under CI) without one of `programs`.
  bool require(std::initializer_list<const char*> programs) {
    for (const char* p : programs) {
      if (!installed(p)) {
        if (inCi()) {
          ADD_FAILURE() << p << " is not installed (CI forbids skipping)";
        }
        return false;
      }
    }
    return true;
  }
};

TEST_F(ExportE2E, IpfixUdpToNfcapdNfacctdAndTsharkExact) {
  if (!require({"nfcapd", "nfdump", "nfacctd", "tshark"})) GTEST_SKIP() << "collectors missing";
  TempDir dir;
  const std::uint16_t nf_port = freeUdpPort(), pm_port = freeUdpPort();
  std::filesystem::create_directories(dir.path + "/nf1");
  std::filesystem::create_directories(dir.path + "/nf2");
  auto nfcapd = std::make_unique<Child>(
      std::vector<std::string>{"nfcapd", "-w", dir.path + "/nf1", "-p", std::to_string(nf_port),
                               "-b", "127.0.0.1", "-t", "3600"},
      dir.path + "/nfcapd.log");
  {
    std::ofstream conf(dir.path + "/nfacctd.conf");
    conf << "daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: " << pm_port
         << "\nplugins: print\naggregate: src_host, dst_host, src_port, dst_port, proto\n"
         << "print_output: csv\nprint_output_file: " << dir.path << "/pmacct.csv\n"
         << "print_output_file_append: true\nprint_refresh_time: 1\n";
  }
  Child nfacctd({"nfacctd", "-f", dir.path + "/nfacctd.conf"}, dir.path + "/nfacctd.log");
  const std::uint16_t probe = freeUdpPort();
  Child tshark({"tshark", "-i", "lo", "-s", "2048", "-B", "16", "-f",
                "udp port " + std::to_string(nf_port) + " or udp port " + std::to_string(probe),
                "-w", dir.path + "/ipfix.pcap"},
               dir.path + "/tshark.log");
  // The capture must hold the first messages (TCP: the stream's start, with the templates).
  ASSERT_TRUE(captureRunning(tshark, dir.path + "/ipfix.pcap", probe)) << tshark.log();

  VethPair link(171);
  auto counter = std::make_unique<LinkCounter>(link, true);
  AgentProcess agent(
      {"--interface", link.host(), "--enable-ipv6", "--quiet", "--ipfix-collector",
       "127.0.0.1:" + std::to_string(nf_port) + ",127.0.0.1:" + std::to_string(pm_port),
       "--ipfix-flush-interval", "50", "--ipfix-template-refresh", "1"});
  agent.waitReady();
  sendTraffic(link, 41000);
  const Counts truth = counter->stop();
  const Totals total = linkTotals(truth);
  ASSERT_GT(total.packets, 200u);
  const std::uint64_t records = waitExported(agent, total.packets);

  // nfacctd prints every second; its rows add up to the truth.
  EXPECT_TRUE(waitFor([&] {
    return linkTotals(readPmacct(dir.path + "/pmacct.csv")).packets == total.packets;
  })) << nfacctd.log();
  expectSame(truth, readPmacct(dir.path + "/pmacct.csv"), "nfacctd");

  // nfcapd writes its file when it stops.
  nfcapd->stop(SIGTERM);
  expectSame(truth, readNfdump(dir.path + "/nf1"), "nfcapd/nfdump");

  // tshark decodes the very datagrams nfcapd got.
  tshark.stop(SIGINT);
  std::set<std::string> addresses;
  expectSame(byPorts(truth),
             readTshark(dir.path + "/ipfix.pcap", "udp.port==" + std::to_string(nf_port) + ",cflow",
                        &addresses),
             "tshark");
  EXPECT_EQ(addresses,
            (std::set<std::string>{link.hostV4(), link.peerV4(), link.hostV6(), link.peerV6()}));

  // A collector restarted knows nothing: the templates come again within the refresh.
  nfcapd = std::make_unique<Child>(
      std::vector<std::string>{"nfcapd", "-w", dir.path + "/nf2", "-p", std::to_string(nf_port),
                               "-b", "127.0.0.1", "-t", "3600"},
      dir.path + "/nfcapd2.log");
  // Templates are sent every second: after two, the new nfcapd has them.
  const std::uint64_t bytes_before =
      metricValue(agent.get("/metrics").body, ipfixMetric("ayaflow_export_bytes_total"));
  ASSERT_TRUE(waitFor([&] {
    return metricValue(agent.get("/metrics").body, ipfixMetric("ayaflow_export_bytes_total")) >
           bytes_before + 2 * 1000;  // two refreshes of template messages (over 1 KB each)
  }));
  counter = std::make_unique<LinkCounter>(link, true);
  udpExchange(link, false, 42001, 42002, 15, 222, 5, 333);
  const Counts truth2 = counter->stop();
  EXPECT_GT(waitExported(agent, total.packets + linkTotals(truth2).packets), records);
  nfcapd->stop(SIGTERM);
  expectSame(truth2, readNfdump(dir.path + "/nf2"), "nfcapd after a restart");

  const std::string metrics = agent.get("/metrics").body;
  EXPECT_EQ(
      metricValue(metrics, ipfixMetric("ayaflow_export_dropped_total", ",reason=\"queue_full\"")),
      0u);
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.waitExit(10s), std::optional<int>(0)) << agent.log();
}

TEST_F(ExportE2E, IpfixTcpToIpfixDumpAndTsharkExact) {
  if (!require({"socat", "ipfixDump", "tshark", "text2pcap"})) {
    GTEST_SKIP() << "socat/ipfixDump/tshark missing";
  }
  TempDir dir;
  const std::uint16_t port = freePort();
  Child socat({"socat", "-u", "TCP-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr",
               "OPEN:" + dir.path + "/stream.ipfix,creat,trunc"},
              dir.path + "/socat.log");
  VethPair link(172);
  LinkCounter counter(link, true);
  ASSERT_TRUE(waitFor([&] {
    return run("ss -Htln 'sport = :" + std::to_string(port) + "'").find("LISTEN") !=
           std::string::npos;
  }));
  AgentProcess agent({"--interface", link.host(), "--enable-ipv6", "--quiet", "--ipfix-collector",
                      "127.0.0.1:" + std::to_string(port), "--ipfix-transport", "tcp",
                      "--ipfix-flush-interval", "50"});
  agent.waitReady();
  sendTraffic(link, 43000);
  const Counts truth = counter.stop();
  const Totals total = linkTotals(truth);
  waitExported(agent, total.packets);
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.waitExit(10s), std::optional<int>(0)) << agent.log();
  socat.stop(SIGTERM);

  const std::string dump = run("ipfixDump --rfc5610 --in " + dir.path + "/stream.ipfix 2>&1");
  expectSame(truth, readIpfixDump(dump), "ipfixDump");
  // RFC 5610: ipfixDump learnt ayaflow's elements by name from the type records.
  EXPECT_NE(dump.find("ayaflowSourcePod"), std::string::npos);
  EXPECT_NE(dump.find("ayaflowTcpState"), std::string::npos);
  EXPECT_EQ(dump.find("_alienInformationElement"), std::string::npos);

  // tshark decodes the very byte stream the collector received, laid into TCP segments of
  // a capture by text2pcap (a live capture of loopback drops 64 KiB segments under load).
  {
    std::ifstream in(dir.path + "/stream.ipfix", std::ios::binary);
    const std::string stream(std::istreambuf_iterator<char>(in), {});
    std::ofstream hex(dir.path + "/stream.hex");
    char text[16];
    for (std::size_t at = 0; at < stream.size(); ++at) {
      const std::size_t offset = at % 1400;  // a new segment every 1400 bytes
      if (offset % 16 == 0) {
        std::snprintf(text, sizeof text, "%06zx", offset);
        hex << (at == 0 ? "" : "\n") << text;
      }
      std::snprintf(text, sizeof text, " %02x", static_cast<unsigned char>(stream[at]));
      hex << text;
    }
    hex << "\n";
  }
  run("text2pcap -q -T 40000,4739 " + dir.path + "/stream.hex " + dir.path + "/stream.pcap");
  expectSame(byPorts(truth), readTshark(dir.path + "/stream.pcap", "tcp.port==4739,cflow", nullptr),
             "tshark (TCP)");
}

TEST_F(ExportE2E, CollectorThatDoesNotReadCostsOnlyCountedDrops) {
  // A TCP listener nobody accepts from: the kernel completes the handshake and buffers a
  // little, then every write waits; the agent must give up, count, and keep capturing.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  VethPair link(173);
  LinkCounter counter(link, true);
  AgentProcess agent({"--interface", link.host(), "--enable-ipv6", "--quiet", "--ipfix-collector",
                      "127.0.0.1:" + std::to_string(ntohs(a.sin_port)), "--ipfix-transport", "tcp",
                      "--ipfix-flush-interval", "20"});
  agent.waitReady();
  sendTraffic(link, 44000);
  // Many small records: far more than the collector's socket and ours can buffer.
  const int udp = udpSocket(link.hostV4(), 44100);
  for (int i = 0; i < 30000; ++i) udpSend(udp, link.peerV4(), 44101, 16);
  ::close(udp);
  const Totals truth = linkTotals(counter.stop());
  const nlohmann::json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
  const auto stored = [&](const char* what) {
    const auto row = queryRow(agent.dbPath(), std::string("SELECT ") + what + " FROM packets");
    return row.empty() || row[0].empty() ? std::uint64_t{0} : std::stoull(row[0]);
  };
  ASSERT_TRUE(waitFor([&] { return stored("coalesce(sum(packet_count), 0)") == truth.packets; }));
  const std::uint64_t records = stored("count(*)");
  // Every record is either in a message the socket took or dropped with a reason.
  const auto accounted = [&] {
    const std::string m = agent.get("/metrics").body;
    std::uint64_t n = metricValue(m, ipfixMetric("ayaflow_export_records_total"));
    for (const char* reason : {"queue_full", "send_failed", "stopped"}) {
      n += metricValue(m, ipfixMetric("ayaflow_export_dropped_total",
                                      (std::string(",reason=\"") + reason + "\"").c_str()));
    }
    return n;
  };
  EXPECT_TRUE(waitFor([&] { return accounted() == records; })) << accounted() << " of " << records;
  const std::string m = agent.get("/metrics").body;
  EXPECT_GT(
      metricValue(m, ipfixMetric("ayaflow_export_dropped_total", ",reason=\"send_failed\"")) +
          metricValue(m, ipfixMetric("ayaflow_export_dropped_total", ",reason=\"queue_full\"")),
      0u);
  EXPECT_GT(metricValue(m, ipfixMetric("ayaflow_export_errors_total")), 0u);
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.waitExit(15s), std::optional<int>(0)) << agent.log();
  ::close(fd);
}

TEST_F(ExportE2E, ClickHouseRowsSumExactlyAggregated) {
  if (ClickHouseServer::binary().empty()) {
    if (inCi()) FAIL() << "clickhouse-server is not installed (CI forbids skipping)";
    GTEST_SKIP() << "clickhouse-server is not installed";
  }
  ClickHouseServer server;
  VethPair link(174);
  LinkCounter counter(link, true);
  AgentProcess agent({"--interface", link.host(), "--enable-ipv6", "--quiet",
                      "--aggregation-window", "1", "--clickhouse-url", server.url(),
                      "--clickhouse-create-table", "--clickhouse-table", "e2e_flows",
                      "--clickhouse-flush-interval", "50", "--node-name", "node-e2e"});
  agent.waitReady();
  sendTraffic(link, 45000);
  const Counts truth = counter.stop();
  const Totals total = linkTotals(truth);
  const auto stored = [&] {
    try {
      return server.number("SELECT sum(packets) FROM default.e2e_flows");
    } catch (const std::exception&) {
      return std::uint64_t{0};
    }
  };
  ASSERT_TRUE(waitFor([&] { return stored() >= total.packets; })) << stored();
  Counts got;
  const std::string rows = server.query(
      "SELECT src, dst, src_port, dst_port, protocol, sum(packets), sum(bytes) FROM "
      "default.e2e_flows GROUP BY src, dst, src_port, dst_port, protocol");
  for (const std::string& line : split(rows, '\n')) {
    const auto f = split(line, '\t');
    if (f.size() != 7) continue;
    LinkCounter::Key k{f[0], f[1], static_cast<std::uint16_t>(std::stoul(f[2])),
                       static_cast<std::uint16_t>(std::stoul(f[3])),
                       static_cast<std::uint8_t>(std::stoul(f[4]))};
    got[k].packets += std::stoull(f[5]);
    got[k].bytes += std::stoull(f[6]);
  }
  expectSame(truth, got, "ClickHouse");
  EXPECT_EQ(server.query("SELECT DISTINCT node FROM default.e2e_flows"), "node-e2e\n");
  EXPECT_EQ(server.number("SELECT count() FROM default.e2e_flows WHERE interface = '" +
                          link.host() + "'"),
            server.number("SELECT count() FROM default.e2e_flows"));
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.waitExit(10s), std::optional<int>(0)) << agent.log();
  // Nothing more after the stop (the aggregation's last windows were already final).
  EXPECT_EQ(stored(), total.packets);
}

TEST_F(ExportE2E, ClickHouseThatHangsCostsOnlyCountedDrops) {
  // A listening socket nobody accepts from: connections succeed, requests are taken by the
  // kernel, no answer ever comes. Capture must stay exact; records are counted, not lost.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  VethPair link(175);
  LinkCounter counter(link, true);
  AgentProcess agent({"--interface", link.host(), "--enable-ipv6", "--quiet", "--clickhouse-url",
                      "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)),
                      "--clickhouse-flush-interval", "20", "--clickhouse-spool-records", "1000"});
  agent.waitReady();
  sendTraffic(link, 46000);
  const int udp = udpSocket(link.hostV4(), 46100);
  for (int i = 0; i < 20000; ++i) udpSend(udp, link.peerV4(), 46101, 16);
  ::close(udp);
  const Totals truth = linkTotals(counter.stop());
  const nlohmann::json stats = waitForStats(agent, truth.packets);
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
  const auto stored = [&](const char* what) {
    const auto row = queryRow(agent.dbPath(), std::string("SELECT ") + what + " FROM packets");
    return row.empty() || row[0].empty() ? std::uint64_t{0} : std::stoull(row[0]);
  };
  ASSERT_TRUE(waitFor([&] { return stored("coalesce(sum(packet_count), 0)") == truth.packets; }));
  const std::uint64_t records = stored("count(*)");
  const auto metric = [&](const std::string& m, const char* family, const char* extra = "") {
    return metricValue(m, std::string(family) + "{sink=\"clickhouse\"" + extra + "}");
  };
  // The first INSERT waits for its answer until the 10 s timeout; meanwhile records wait in
  // the hand-off. Then the spool (1000 records) takes one INSERT and the rest are dropped,
  // counted. Nothing is delivered; what is not waiting in the spool or the queue is dropped.
  const auto settled = [&] {
    const std::string m = agent.get("/metrics").body;
    const std::uint64_t dropped =
        metric(m, "ayaflow_export_dropped_total", ",reason=\"queue_full\"") +
        metric(m, "ayaflow_export_dropped_total", ",reason=\"spool_full\"");
    return metric(m, "ayaflow_export_errors_total") >= 1 && dropped > 0 &&
           dropped + metric(m, "ayaflow_export_spool_records") +
                   metric(m, "ayaflow_export_queue_depth") ==
               records;
  };
  EXPECT_TRUE(waitFor(settled, 60s)) << agent.get("/metrics").body;
  EXPECT_EQ(metric(agent.get("/metrics").body, "ayaflow_export_records_total"), 0u);
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.waitExit(30s), std::optional<int>(0)) << agent.log();
  ::close(fd);
}

}  // namespace
}  // namespace ayaflow::test
