// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/k8s/pod_watcher.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/common/thread.h"
#include "ayaflow/k8s/cri_client.h"
#include "ayaflow/k8s/workload.h"

namespace ayaflow::k8s {
namespace {

std::int64_t nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool isSocket(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

struct PodWatcher::Impl {
  Impl(PodWatcherOptions o, NameTable& t)
      : options(std::move(o)),
        table(t),
        node(options.node_name.empty() ? nullptr
                                       : std::make_shared<const std::string>(options.node_name)) {}

  /// One sandbox the watcher knows.
  struct Known {
    std::shared_ptr<const enrich::PodName> pod;
    std::vector<flow::IpAddress> ips;
    std::int64_t from_ms = 0;
    std::int64_t until_ms = Tenure{}.until_ms;
    bool host_network = false;
    bool ended() const noexcept { return until_ms != Tenure{}.until_ms; }
  };

  // ---- refresh thread ----

  /// The client of the runtime, made (or found, with "auto") when needed. Refresh thread.
  std::shared_ptr<CriClient> client() {
    std::lock_guard<std::mutex> lock(mutex);
    if (current) return current;
    std::string endpoint;
    if (options.cri_socket == "auto") {
      for (const std::string& path : defaultCriSockets()) {
        if (isSocket(path)) {
          endpoint = path;
          break;
        }
      }
      if (endpoint.empty()) {
        if (!reported_missing) {
          reported_missing = true;
          logger("k8s")->info(
              "pod names: no container runtime socket found (looked for {}); connections are "
              "not named by pod until one appears (or set --cri-socket)",
              fmt::join(defaultCriSockets(), ", "));
        }
        return nullptr;
      }
    } else {
      endpoint = options.cri_socket;
    }
    current = std::make_shared<CriClient>(endpoint, options.timeout);
    stats.endpoint = current->endpoint();
    events_cv.notify_all();
    return current;
  }

  void refresh() {
    const std::shared_ptr<CriClient> cri = client();
    bool changed = false;
    const std::int64_t now = nowMs();
    if (cri) {
      try {
        const bool was_up = isUp();
        const std::vector<Sandbox> sandboxes = cri->listSandboxes();
        changed = apply(*cri, sandboxes, now);
        if (!was_up) {
          std::string version;
          try {
            version = cri->version();
          } catch (const CriError&) {
            version = "version unknown";
          }
          logger("k8s")->info("pod names: container runtime at {} answers ({}); {} pods",
                              cri->endpoint(), version, livePods());
        }
        std::lock_guard<std::mutex> lock(mutex);
        stats.up = true;
        ++stats.refreshes;
        outage_reported = false;
      } catch (const CriError& e) {
        std::lock_guard<std::mutex> lock(mutex);
        stats.up = false;
        ++stats.errors;
        if (!outage_reported) {
          outage_reported = true;
          logger("k8s")->warn(
              "pod names: container runtime at {} cannot be reached: {}; connections are "
              "counted as before, new pods are not named until it answers (retrying every {} "
              "ms)",
              cri->endpoint(), e.what(), options.refresh.count());
        }
      }
    }
    changed = prune(now) || changed;
    if (node && options.node_addresses) {
      try {
        std::vector<flow::IpAddress> addrs = options.node_addresses();
        std::sort(
            addrs.begin(), addrs.end(),
            [](const flow::IpAddress& x, const flow::IpAddress& y) { return x.bytes < y.bytes; });
        if (addrs != node_addrs) {
          node_addrs = std::move(addrs);
          changed = true;
        }
      } catch (const std::exception& e) {
        logger("k8s")->debug("pod names: the node's addresses: {}", e.what());
      }
    }
    // The node's addresses are named only on a Kubernetes node: once there is a container
    // runtime to read (configured, or found by "auto"). A plain host shows no names.
    const bool name_node = node != nullptr && cri != nullptr;
    if (name_node != node_named) {
      node_named = name_node;
      changed = true;
    }
    if (changed || !published) publishIndex();
  }

  bool isUp() {
    std::lock_guard<std::mutex> lock(mutex);
    return stats.up;
  }

  std::uint64_t livePods() {
    std::lock_guard<std::mutex> lock(mutex);
    return stats.pods;
  }

  /// Applies a pod list: new ready sandboxes get their IPs read, stopped or vanished ones
  /// end their tenure. Returns whether anything changed. Throws CriError.
  bool apply(CriClient& cri, const std::vector<Sandbox>& sandboxes, std::int64_t now) {
    bool changed = false;
    std::set<std::string> listed;
    for (const Sandbox& s : sandboxes) {
      listed.insert(s.id);
      auto it = known.find(s.id);
      if (s.ready && (it == known.end() || it->second.ended())) {
        SandboxNetwork net;
        try {
          net = cri.sandboxNetwork(s.id);
        } catch (const CriError& e) {
          // Removed between the list and the status: it is gone, not an outage.
          if (e.code() == 5 /* NOT_FOUND */) continue;
          throw;
        }
        Known k;
        k.pod = std::make_shared<const enrich::PodName>(podName(s.ns, s.name, s.labels));
        k.host_network = net.host_network;
        for (const std::string& text : net.ips) {
          if (auto ip = flow::IpAddress::parse(text)) k.ips.push_back(*ip);
        }
        // A sandbox that came back (ready after stopped) starts a new tenure now.
        k.from_ms = it == known.end() ? s.created_ns / 1000000 : now;
        known[s.id] = std::move(k);
        changed = true;
      } else if (!s.ready && it != known.end() && !it->second.ended()) {
        it->second.until_ms = now;
        changed = true;
      }
    }
    for (auto& [id, k] : known) {
      if (!k.ended() && listed.count(id) == 0) {
        k.until_ms = now;
        changed = true;
      }
    }
    std::uint64_t pods = 0, host = 0;
    for (const auto& [id, k] : known) {
      if (k.ended()) continue;
      if (k.host_network) {
        ++host;
      } else if (!k.ips.empty()) {
        ++pods;
      }
    }
    std::lock_guard<std::mutex> lock(mutex);
    stats.pods = pods;
    stats.host_network_pods = host;
    return changed;
  }

  /// Forgets pods gone for longer than `retain`.
  bool prune(std::int64_t now) {
    const std::int64_t horizon = now - static_cast<std::int64_t>(options.retain.count());
    bool changed = false;
    for (auto it = known.begin(); it != known.end();) {
      if (it->second.ended() && it->second.until_ms < horizon) {
        it = known.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    return changed;
  }

  void publishIndex() {
    auto index = std::make_shared<NameIndex>();
    for (const auto& [id, k] : known) {
      for (const flow::IpAddress& ip : k.ips) {
        index->pods[ip].push_back(Tenure{k.pod, k.from_ms, k.until_ms});
      }
    }
    index->node_addresses.insert(node_addrs.begin(), node_addrs.end());
    if (node_named) index->node = node;
    table.publish(std::move(index));
    published = true;
  }

  void runRefresh() {
    common::setUpThread("ayaflow-pods", true);
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      wake = false;
      lock.unlock();
      try {
        refresh();
      } catch (const std::exception& e) {
        logger("k8s")->error("pod names: refresh failed: {}", e.what());
      }
      lock.lock();
      // After a nudge (a new pod interface), read again every 200 ms for a few seconds: the
      // runtime reports the pod's IP only once its network is set up.
      const auto now = std::chrono::steady_clock::now();
      const auto wait = now < burst_until ? std::min<std::chrono::milliseconds>(
                                                options.refresh, std::chrono::milliseconds(200))
                                          : options.refresh;
      cv.wait_for(lock, wait, [this] { return stopping || wake; });
    }
  }

  // ---- events thread ----

  void runEvents() {
    common::setUpThread("ayaflow-podevt", true);
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      if (!current) {
        events_cv.wait(lock, [this] { return stopping || current; });
        continue;
      }
      std::shared_ptr<CriClient> cri = current;
      lock.unlock();
      bool unimplemented = false;
      try {
        cri->watchEvents([this] { refreshSoon(); });
      } catch (const CriError& e) {
        unimplemented = e.unimplemented();
      }
      lock.lock();
      if (unimplemented) {
        logger("k8s")->info(
            "pod names: the runtime streams no container events (CRI GetContainerEvents); "
            "the pod list is read every {} ms",
            options.refresh.count());
        return;
      }
      events_cv.wait_for(lock, options.refresh, [this] { return stopping; });
    }
  }

  void refreshSoon() {
    std::lock_guard<std::mutex> lock(mutex);
    wake = true;
    burst_until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    cv.notify_all();
  }

  const PodWatcherOptions options;
  NameTable& table;
  const std::shared_ptr<const std::string> node;

  // Refresh thread only.
  std::map<std::string, Known> known;
  std::vector<flow::IpAddress> node_addrs;  // sorted
  bool published = false;
  bool node_named = false;
  bool outage_reported = false;
  bool reported_missing = false;

  mutable std::mutex mutex;
  std::condition_variable cv, events_cv;
  bool stopping = false;                              // mutex
  bool wake = false;                                  // mutex
  std::chrono::steady_clock::time_point burst_until;  // mutex
  std::shared_ptr<CriClient> current;                 // mutex
  Stats stats;                                        // mutex
  std::thread refresher, events;
};

PodWatcher::PodWatcher(PodWatcherOptions options, NameTable& table)
    : impl_(std::make_shared<Impl>(std::move(options), table)) {}

PodWatcher::~PodWatcher() { stop(); }

void PodWatcher::start() {
  Impl& s = *impl_;
  if (s.refresher.joinable()) return;
  s.refresher = std::thread([&s] { s.runRefresh(); });
  s.events = std::thread([&s] { s.runEvents(); });
}

void PodWatcher::stop() {
  Impl& s = *impl_;
  std::shared_ptr<CriClient> cri;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stopping = true;
    cri = s.current;
    s.cv.notify_all();
    s.events_cv.notify_all();
  }
  if (cri) cri->cancelEvents();
  if (s.refresher.joinable()) s.refresher.join();
  if (s.events.joinable()) s.events.join();
}

void PodWatcher::refreshSoon() { impl_->refreshSoon(); }

PodWatcher::Stats PodWatcher::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->stats;
}

void PodWatcher::refreshForTest() { impl_->refresh(); }

std::vector<prometheus::MetricFamily> criFamilies(const PodWatcher::Stats& st) {
  common::MetricFamilies f;
  // Only once there is a runtime to reach (configured, or found by "auto"): a host without
  // one is not a runtime that is down.
  if (st.endpoint.empty()) return f.take();
  f.gauge("ayaflow_cri_up",
          "1 when the latest read of the node's container runtime (CRI) succeeded; 0 while it "
          "cannot be reached (connections are then counted without new pod names). Absent "
          "while --cri-socket auto finds no runtime",
          st.up ? 1.0 : 0.0);
  f.counter("ayaflow_cri_errors_total",
            "Failed calls to the node's container runtime (CRI) while reading pods", st.errors);
  f.gauge("ayaflow_cri_pods",
          "Pods running on this node with their own network namespace whose IPs name "
          "connections",
          static_cast<double>(st.pods));
  return f.take();
}

std::shared_ptr<const prometheus::Collectable> PodWatcher::metrics() const {
  std::weak_ptr<Impl> weak = impl_;
  return std::make_shared<common::CallbackCollectable>([weak] {
    const std::shared_ptr<Impl> s = weak.lock();
    if (!s) return std::vector<prometheus::MetricFamily>{};
    Stats st;
    {
      std::lock_guard<std::mutex> lock(s->mutex);
      st = s->stats;
    }
    return criFamilies(st);
  });
}

}  // namespace ayaflow::k8s
