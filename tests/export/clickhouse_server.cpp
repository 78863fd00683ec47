// SPDX-License-Identifier: MIT OR Apache-2.0
#include "clickhouse_server.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "http_client.h"

namespace ayaflow::test {
namespace {

using Clock = std::chrono::steady_clock;

std::uint16_t pickPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string encode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace

std::string ClickHouseServer::binary() {
  for (const char* path : {"/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return {};
}

ClickHouseServer::ClickHouseServer(bool tls) {
  if (binary().empty()) throw std::runtime_error("clickhouse-server is not installed");
  char tmpl[] = "/tmp/ayaflow-clickhouse-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  http_port_ = pickPort();
  tcp_port_ = pickPort();
  std::filesystem::create_directories(dir_ + "/data");
  std::filesystem::create_directories(dir_ + "/tmp");
  std::string tls_config;
  if (tls) {
    https_port_ = pickPort();
    // A CA of its own, and the server's certificate for localhost and 127.0.0.1.
    const std::string d = dir_;
    const std::string cmd =
        "cd " + d +
        " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=ayaflow-test-ca 2>/dev/null"
        " && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=localhost 2>/dev/null"
        " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile san.ext 2>/dev/null"
        " && chmod 644 server.key";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl failed");
    tls_config = "  <https_port>" + std::to_string(https_port_) +
                 "</https_port>\n"
                 "  <openSSL><server><certificateFile>" +
                 d + "/server.pem</certificateFile><privateKeyFile>" + d +
                 "/server.key</privateKeyFile><verificationMode>none</verificationMode>"
                 "<loadDefaultCAFile>false</loadDefaultCAFile><cacheSessions>true</cacheSessions>"
                 "<disableProtocols>sslv2,sslv3</disableProtocols>"
                 "<preferServerCiphers>true</preferServerCiphers></server></openSSL>\n";
  }
  {
    std::ofstream users(dir_ + "/users.xml");
    const char* user_tail =
        "<networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota>";
    users << "<?xml version=\"1.0\"?>\n<yandex>\n"
          << "  <profiles><default><max_memory_usage>10000000000</max_memory_usage>"
          << "</default></profiles>\n"
          << "  <users>\n"
          << "    <default><password></password>" << user_tail << "</default>\n"
          << "    <ayaflow><password>s3cret</password>" << user_tail << "</ayaflow>\n"
          << "  </users>\n"
          << "  <quotas><default><interval><duration>3600</duration><queries>0</queries>"
          << "<errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows>"
          << "<execution_time>0</execution_time></interval></default></quotas>\n"
          << "</yandex>\n";
  }
  std::ofstream config(dir_ + "/config.xml");
  config << "<?xml version=\"1.0\"?>\n<yandex>\n"
         << "  <logger><level>warning</level><log>" << dir_ << "/server.log</log><errorlog>" << dir_
         << "/error.log</errorlog><console>0</console></logger>\n"
         << "  <http_port>" << http_port_ << "</http_port>\n"
         << "  <tcp_port>" << tcp_port_ << "</tcp_port>\n"
         << "  <listen_host>127.0.0.1</listen_host>\n"
         << "  <path>" << dir_ << "/data/</path>\n"
         << "  <tmp_path>" << dir_ << "/tmp/</tmp_path>\n"
         << "  <users_config>" << dir_ << "/users.xml</users_config>\n"
         << tls_config << "  <mark_cache_size>5368709</mark_cache_size>\n"
         << "  <default_profile>default</default_profile>\n"
         << "  <default_database>default</default_database>\n"
         << "</yandex>\n";
  config.close();
  start();
}

ClickHouseServer::~ClickHouseServer() {
  try {
    stop();
  } catch (...) {
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void ClickHouseServer::start() {
  if (pid_ > 0) return;
  const std::string bin = binary();
  const std::string config = "--config-file=" + dir_ + "/config.xml";
  const std::string out = dir_ + "/stdout.log";
  pid_ = ::fork();
  if (pid_ == 0) {
    std::freopen(out.c_str(), "a", stdout);
    std::freopen(out.c_str(), "a", stderr);
    ::execl(bin.c_str(), bin.c_str(), config.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  if (pid_ < 0) throw std::runtime_error("fork failed");
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    try {
      const HttpResult r = httpGet("127.0.0.1", http_port_, "/ping", std::chrono::seconds(2));
      if (r.status == 200) return;
    } catch (const std::exception&) {
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("clickhouse-server exited at start-up; see " + out);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("clickhouse-server did not answer /ping within 60 s");
}

void ClickHouseServer::stop() {
  if (pid_ <= 0) return;
  // SIGKILL: an outage as abrupt as a crash (an acknowledged INSERT is already on disk), and
  // no wait for the server's graceful shutdown of open connections.
  ::kill(pid_, SIGKILL);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
}

std::string ClickHouseServer::query(const std::string& sql) const {
  const HttpResult r = httpRequest("127.0.0.1", http_port_, "POST", "/?query=" + encode(sql),
                                   {{"Content-Length", "0"}}, {}, std::chrono::seconds(30));
  if (r.status != 200) throw std::runtime_error("ClickHouse: " + sql + ": " + r.body);
  return r.body;
}

std::uint64_t ClickHouseServer::number(const std::string& sql) const {
  return std::strtoull(query(sql).c_str(), nullptr, 10);
}

}  // namespace ayaflow::test
