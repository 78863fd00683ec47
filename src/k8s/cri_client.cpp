// SPDX-License-Identifier: MIT OR Apache-2.0
// The only file of the agent that speaks gRPC.
#include "ayaflow/k8s/cri_client.h"

#include <grpcpp/grpcpp.h>

#include <mutex>
#include <utility>

#include "cri_api.grpc.pb.h"

namespace ayaflow::k8s {
namespace {

namespace cri = runtime::v1;

std::string normaliseEndpoint(std::string endpoint) {
  if (endpoint.compare(0, 1, "/") == 0) return "unix://" + endpoint;
  return endpoint;
}

[[noreturn]] void fail(const char* call, const grpc::Status& status) {
  throw CriError(static_cast<int>(status.error_code()),
                 std::string("CRI ") + call + ": " + status.error_message() + " (gRPC status " +
                     std::to_string(static_cast<int>(status.error_code())) + ")");
}

}  // namespace

bool CriError::unimplemented() const noexcept {
  return grpc_code_ == static_cast<int>(grpc::StatusCode::UNIMPLEMENTED);
}

struct CriClient::Impl {
  Impl(std::string ep, std::chrono::milliseconds t) : endpoint(std::move(ep)), timeout(t) {
    grpc::ChannelArguments args;
    // A runtime that restarts is reached again within a second or two, not after gRPC's
    // default backoff (up to 120 s).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Pod lists of a busy node: 16 MiB is far above any real one, and bounds the agent's memory.
    args.SetMaxReceiveMessageSize(16 << 20);
    channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
    stub = cri::RuntimeService::NewStub(channel);
  }

  void deadline(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  }

  const std::string endpoint;
  const std::chrono::milliseconds timeout;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<cri::RuntimeService::Stub> stub;
  std::mutex events_mutex;
  grpc::ClientContext* events = nullptr;  // events_mutex; the stream in progress
  bool events_cancelled = false;          // events_mutex
};

CriClient::CriClient(std::string endpoint, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(normaliseEndpoint(std::move(endpoint)), timeout)) {}

CriClient::~CriClient() = default;

const std::string& CriClient::endpoint() const noexcept { return impl_->endpoint; }

std::string CriClient::version() {
  grpc::ClientContext ctx;
  impl_->deadline(ctx);
  cri::VersionRequest req;
  req.set_version("v1");
  cri::VersionResponse resp;
  const grpc::Status st = impl_->stub->Version(&ctx, req, &resp);
  if (!st.ok()) fail("Version", st);
  return resp.runtime_name() + " " + resp.runtime_version() + " (CRI " +
         resp.runtime_api_version() + ")";
}

std::vector<Sandbox> CriClient::listSandboxes() {
  grpc::ClientContext ctx;
  impl_->deadline(ctx);
  cri::ListPodSandboxRequest req;
  cri::ListPodSandboxResponse resp;
  const grpc::Status st = impl_->stub->ListPodSandbox(&ctx, req, &resp);
  if (!st.ok()) fail("ListPodSandbox", st);
  std::vector<Sandbox> out;
  out.reserve(static_cast<std::size_t>(resp.items_size()));
  for (const cri::PodSandbox& item : resp.items()) {
    Sandbox s;
    s.id = item.id();
    s.ns = item.metadata().namespace_();
    s.name = item.metadata().name();
    s.uid = item.metadata().uid();
    s.ready = item.state() == cri::SANDBOX_READY;
    s.created_ns = item.created_at();
    s.labels.insert(item.labels().begin(), item.labels().end());
    out.push_back(std::move(s));
  }
  return out;
}

SandboxNetwork CriClient::sandboxNetwork(const std::string& sandbox_id) {
  grpc::ClientContext ctx;
  impl_->deadline(ctx);
  cri::PodSandboxStatusRequest req;
  req.set_pod_sandbox_id(sandbox_id);
  cri::PodSandboxStatusResponse resp;
  const grpc::Status st = impl_->stub->PodSandboxStatus(&ctx, req, &resp);
  if (!st.ok()) fail("PodSandboxStatus", st);
  SandboxNetwork net;
  const cri::PodSandboxStatus& status = resp.status();
  net.host_network = status.linux().namespaces().options().network() == cri::NODE;
  if (!status.network().ip().empty()) net.ips.push_back(status.network().ip());
  for (const cri::PodIP& ip : status.network().additional_ips()) {
    if (!ip.ip().empty()) net.ips.push_back(ip.ip());
  }
  return net;
}

void CriClient::watchEvents(const std::function<void()>& on_event) {
  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> lock(impl_->events_mutex);
    if (impl_->events_cancelled) return;
    impl_->events = &ctx;
  }
  struct Clear {
    Impl& impl;
    ~Clear() {
      std::lock_guard<std::mutex> lock(impl.events_mutex);
      impl.events = nullptr;
    }
  } clear{*impl_};
  cri::GetEventsRequest req;
  std::unique_ptr<grpc::ClientReader<cri::ContainerEventResponse>> reader =
      impl_->stub->GetContainerEvents(&ctx, req);
  cri::ContainerEventResponse event;
  while (reader->Read(&event)) on_event();
  const grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::CANCELLED) {
    std::lock_guard<std::mutex> lock(impl_->events_mutex);
    if (impl_->events_cancelled) return;
  }
  if (!st.ok()) fail("GetContainerEvents", st);
}

void CriClient::cancelEvents() {
  std::lock_guard<std::mutex> lock(impl_->events_mutex);
  impl_->events_cancelled = true;
  if (impl_->events != nullptr) impl_->events->TryCancel();
}

const std::vector<std::string>& defaultCriSockets() {
  static const std::vector<std::string> sockets = {
      "/run/containerd/containerd.sock",
      "/run/crio/crio.sock",
      "/var/run/containerd/containerd.sock",
      "/var/run/crio/crio.sock",
  };
  return sockets;
}

}  // namespace ayaflow::k8s
