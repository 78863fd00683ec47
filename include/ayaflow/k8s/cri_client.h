// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ayaflow::k8s {

/// A failed CRI call: the runtime is unreachable (UNAVAILABLE), too slow (DEADLINE_EXCEEDED),
/// or answered with an error. what() carries the gRPC status and the runtime's message.
class CriError : public std::runtime_error {
 public:
  CriError(int grpc_code, const std::string& what)
      : std::runtime_error(what), grpc_code_(grpc_code) {}
  /// The gRPC status code (grpc::StatusCode).
  int code() const noexcept { return grpc_code_; }
  /// The runtime does not offer the call (e.g. GetContainerEvents before containerd 1.7).
  bool unimplemented() const noexcept;

 private:
  int grpc_code_;
};

/// A pod sandbox as ListPodSandbox lists it.
struct Sandbox {
  std::string id;
  std::string ns, name, uid;    ///< the pod's metadata
  bool ready = false;           ///< SANDBOX_READY (a stopped sandbox has given up its IPs)
  std::int64_t created_ns = 0;  ///< Unix ns
  std::map<std::string, std::string> labels;
};

/// The network of a pod sandbox, from PodSandboxStatus.
struct SandboxNetwork {
  std::vector<std::string> ips;  ///< the pod's IPs as text (IPv4 and/or IPv6); empty if none
  bool host_network = false;     ///< network namespace mode NODE (hostNetwork: true)
};

/// A client of a container runtime's CRI RuntimeService (containerd, CRI-O) over its unix
/// socket. Read-only: the agent lists pods and reads their status; it never changes them.
/// gRPC stays behind this header.
///
/// Threads: every call may run concurrently with the others (gRPC channels and stubs are
/// thread-safe); cancelEvents() may be called from any thread. Errors: calls throw CriError.
class CriClient {
 public:
  /// `endpoint` is "unix:///run/containerd/containerd.sock" (or a path, which gets "unix://").
  /// Connects lazily; every unary call gives up after `timeout`.
  explicit CriClient(std::string endpoint,
                     std::chrono::milliseconds timeout = std::chrono::seconds(2));
  ~CriClient();
  CriClient(const CriClient&) = delete;
  CriClient& operator=(const CriClient&) = delete;

  const std::string& endpoint() const noexcept;

  /// "containerd 1.6.20 (CRI v1)".
  std::string version();
  /// Every pod sandbox the runtime knows, ready or not.
  std::vector<Sandbox> listSandboxes();
  /// IPs and network mode of one sandbox.
  SandboxNetwork sandboxNetwork(const std::string& sandbox_id);
  /// Streams GetContainerEvents, calling `on_event` for each event (from the calling thread),
  /// until the stream ends (returns) or cancelEvents(). Throws CriError when the stream
  /// fails or the runtime does not implement it (unimplemented()).
  void watchEvents(const std::function<void()>& on_event);
  /// Ends a watchEvents() in progress (it then returns); harmless when none is.
  void cancelEvents();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The sockets of the common runtimes, in the order `--cri-socket auto` tries them.
const std::vector<std::string>& defaultCriSockets();

}  // namespace ayaflow::k8s
