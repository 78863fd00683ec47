// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// A real ClickHouse server (Debian's clickhouse-server) for a test binary: its own
// directory, configuration and loopback ports; stopped and started again at will (outage
// tests), removed with the object.

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace ayaflow::test {

class ClickHouseServer {
 public:
  /// The server binary, or "" when it is not installed.
  static std::string binary();

  /// Starts the server and waits until it answers /ping; throws on failure. Users: `default`
  /// without a password, and `ayaflow` with password `s3cret`. `tls`: an HTTPS port as well,
  /// with a certificate for localhost/127.0.0.1 signed by a CA of its own (caFile()).
  explicit ClickHouseServer(bool tls = false);
  ~ClickHouseServer();  ///< stops the server, removes its directory
  ClickHouseServer(const ClickHouseServer&) = delete;
  ClickHouseServer& operator=(const ClickHouseServer&) = delete;

  /// Stops the server (SIGKILL, waits for the exit); acknowledged data stays.
  void stop();
  /// Starts it again on the same port and directory, waits until it answers.
  void start();
  bool running() const { return pid_ > 0; }

  std::uint16_t httpPort() const { return http_port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
  /// https://localhost:port (tls only).
  std::string httpsUrl() const { return "https://localhost:" + std::to_string(https_port_); }
  /// The PEM file of the CA that signed the server's certificate (tls only).
  std::string caFile() const { return dir_ + "/ca.pem"; }
  /// Runs `sql` over HTTP; returns the body (TabSeparated unless the query says).
  /// Throws with the server's message on an error status.
  std::string query(const std::string& sql) const;
  /// query() of a single unsigned number.
  std::uint64_t number(const std::string& sql) const;

 private:
  std::string dir_;
  std::uint16_t http_port_ = 0, tcp_port_ = 0, https_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace ayaflow::test
