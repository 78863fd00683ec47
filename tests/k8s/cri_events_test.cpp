// SPDX-License-Identifier: MIT OR Apache-2.0
// The pod watcher on a runtime that streams container events (CRI GetContainerEvents, as
// containerd 1.7+ and CRI-O do): an event makes it read the pods at once, without waiting
// for its next poll; stop() ends the stream. containerd 1.6 (the one Debian 12 has, used by
// the end-to-end tests) answers UNIMPLEMENTED, so the stream is served here by a small gRPC
// server of the CRI subset, on a unix socket (unit tier).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ayaflow/k8s/name_table.h"
#include "ayaflow/k8s/pod_watcher.h"
#include "cri_api.grpc.pb.h"

namespace ayaflow::k8s {
namespace {

namespace cri = runtime::v1;
using Clock = std::chrono::steady_clock;

/// Pods by (id, name, ip); events on demand.
class Runtime final : public cri::RuntimeService::Service {
 public:
  void addPod(const std::string& id, const std::string& name, const std::string& ip) {
    std::lock_guard<std::mutex> lock(mu_);
    auto* item = pods_.add_items();
    item->set_id(id);
    item->mutable_metadata()->set_name(name);
    item->mutable_metadata()->set_namespace_("shop");
    item->set_state(cri::SANDBOX_READY);
    item->set_created_at(1);
    ips_[id] = ip;
  }
  void emit() {
    std::lock_guard<std::mutex> lock(mu_);
    ++events_;
    cv_.notify_all();
  }
  int streams() {
    std::lock_guard<std::mutex> lock(mu_);
    return streams_;
  }

  grpc::Status ListPodSandbox(grpc::ServerContext*, const cri::ListPodSandboxRequest*,
                              cri::ListPodSandboxResponse* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    *out = pods_;
    return grpc::Status::OK;
  }
  grpc::Status PodSandboxStatus(grpc::ServerContext*, const cri::PodSandboxStatusRequest* req,
                                cri::PodSandboxStatusResponse* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    out->mutable_status()->set_id(req->pod_sandbox_id());
    out->mutable_status()->mutable_network()->set_ip(ips_[req->pod_sandbox_id()]);
    return grpc::Status::OK;
  }
  grpc::Status Version(grpc::ServerContext*, const cri::VersionRequest*,
                       cri::VersionResponse* out) override {
    out->set_runtime_name("test-runtime");
    return grpc::Status::OK;
  }
  grpc::Status GetContainerEvents(
      grpc::ServerContext* ctx, const cri::GetEventsRequest*,
      grpc::ServerWriter<cri::ContainerEventResponse>* writer) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++streams_;
    int sent = events_;
    while (!ctx->IsCancelled()) {
      cv_.wait_for(lock, std::chrono::milliseconds(20));
      while (sent < events_) {
        ++sent;
        cri::ContainerEventResponse event;
        event.set_container_id("c" + std::to_string(sent));
        lock.unlock();
        writer->Write(event);
        lock.lock();
      }
    }
    return grpc::Status::CANCELLED;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  cri::ListPodSandboxResponse pods_;
  std::map<std::string, std::string> ips_;
  int events_ = 0;
  int streams_ = 0;
};

bool named(const NameTable& table, const char* ip, const char* pod) {
  enrich::ConnectionNames names;
  flow::FlowKey key;
  key.local = *flow::IpAddress::parse(ip);
  table.enrich(key, 0, names);
  return names.local.pod && names.local.pod->pod == pod;
}

TEST(CriEvents, AnEventMakesThePodsReadAtOnceAndStopEndsTheStream) {
  char dir_template[] = "/tmp/ayaflow-cri-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string socket = std::string(dir_template) + "/cri.sock";
  Runtime runtime;
  runtime.addPod("a", "web-0", "10.9.0.2");
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&runtime);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_TRUE(server);

  NameTable table;
  PodWatcherOptions options;
  options.cri_socket = socket;
  options.refresh = std::chrono::minutes(5);  // no poll during the test: only events count
  PodWatcher watcher(options, table);
  watcher.start();
  const auto within = [](const std::function<bool()>& pred, std::chrono::milliseconds t) {
    const auto deadline = Clock::now() + t;
    while (Clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  };
  ASSERT_TRUE(within([&] { return named(table, "10.9.0.2", "web-0"); }, std::chrono::seconds(5)));
  ASSERT_TRUE(within([&] { return runtime.streams() == 1; }, std::chrono::seconds(5)));

  runtime.addPod("b", "web-1", "10.9.0.3");
  EXPECT_FALSE(named(table, "10.9.0.3", "web-1"));
  runtime.emit();
  EXPECT_TRUE(within([&] { return named(table, "10.9.0.3", "web-1"); }, std::chrono::seconds(2)));

  const auto stop_started = Clock::now();
  watcher.stop();
  EXPECT_LT(Clock::now() - stop_started, std::chrono::seconds(3));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::filesystem::remove_all(dir_template);
}

}  // namespace
}  // namespace ayaflow::k8s
