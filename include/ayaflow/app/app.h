// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <memory>

#include "ayaflow/app/config.h"

namespace ayaflow::app {

/// The agent: loads and attaches the BPF programs, drains the ring buffer
/// into the connection map on an ingest thread, and serves the HTTP API.
/// Construction does all control-plane work and throws (ConfigError,
/// SystemError) with a one-line message on failure, leaving nothing
/// attached. run() blocks until SIGINT or SIGTERM (or requestStop()), then
/// stops serving, detaches, drains the last events and returns 0.
class App {
 public:
  explicit App(Config config);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  int run();
  /// Thread-safe: ends run() as a signal would.
  void requestStop();
  /// The bound HTTP port (useful with port 0).
  std::uint16_t httpPort() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::app
