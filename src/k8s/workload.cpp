// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/k8s/workload.h"

#include <utility>

namespace ayaflow::k8s {
namespace {

// The API server's generated names (metadata.generateName): the base, cut to 58 characters,
// then 5 random characters from this alphabet (no vowels, no 0, 1 or 3: no words, no
// look-alikes). Without an anchor (DaemonSet, a ReplicaSet's pods) only this alphabet tells a
// generated suffix from a word ("kube-proxy" is not "kube" + suffix). After the pod-template
// hash any 5 lowercase letters or digits are accepted: the hash already anchors the name.
constexpr std::string_view kSuffixAlphabet = "bcdfghjklmnpqrstvwxz2456789";
constexpr std::size_t kSuffixLength = 5;
constexpr std::size_t kMaxNameLength = 63;
constexpr std::size_t kMaxBaseLength = kMaxNameLength - kSuffixLength;

/// A suffix the API server could have generated.
bool isSuffix(std::string_view s) {
  if (s.size() != kSuffixLength) return false;
  for (char c : s) {
    if (kSuffixAlphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

/// 5 lowercase letters or digits.
bool isLooseSuffix(std::string_view s) {
  if (s.size() != kSuffixLength) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

bool allDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

const std::string* label(const std::map<std::string, std::string>& labels, const char* key) {
  const auto it = labels.find(key);
  return it == labels.end() ? nullptr : &it->second;
}

/// The generateName base of `pod` (its parent's name): `<base>-<suffix>`, or, for a name cut
/// to the limit, its first 58 characters (the parent's name cut, without a trailing '-').
/// Empty when `pod` does not look generated.
std::string_view generatedBase(std::string_view pod) {
  if (pod.size() <= kSuffixLength + 1) return {};
  const std::string_view suffix = pod.substr(pod.size() - kSuffixLength);
  if (!isSuffix(suffix)) return {};
  std::string_view base = pod.substr(0, pod.size() - kSuffixLength);
  if (base.back() == '-') {
    base.remove_suffix(1);
  } else if (pod.size() != kMaxNameLength) {
    return {};  // no '-' before the suffix: only a cut base ends that way
  }
  return base.size() <= kMaxBaseLength ? base : std::string_view{};
}

/// `<w>-H-<suffix>` -> w, else empty.
std::string_view deploymentOf(std::string_view pod, std::string_view hash) {
  if (hash.empty()) return {};
  const std::size_t tail = 1 + hash.size() + 1 + kSuffixLength;  // "-H-xxxxx"
  if (pod.size() <= tail) return {};
  const std::string_view end = pod.substr(pod.size() - tail);
  if (end[0] != '-' || end.substr(1, hash.size()) != hash || end[1 + hash.size()] != '-' ||
      !isLooseSuffix(end.substr(tail - kSuffixLength))) {
    return {};
  }
  return pod.substr(0, pod.size() - tail);
}

/// `<w>-<ordinal>` -> w (the ordinal in decimal without leading zeros), else empty.
std::string_view statefulSetOf(std::string_view pod) {
  const std::size_t dash = pod.rfind('-');
  if (dash == std::string_view::npos || dash == 0) return {};
  const std::string_view ordinal = pod.substr(dash + 1);
  if (!allDigits(ordinal) || (ordinal.size() > 1 && ordinal[0] == '0')) return {};
  return pod.substr(0, dash);
}

Workload make(std::string_view name, const char* kind) { return Workload{std::string(name), kind}; }

}  // namespace

Workload workloadOf(std::string_view pod, const std::map<std::string, std::string>& labels) {
  // 1. Deployment (its ReplicaSet's pods carry the template hash).
  if (const std::string* hash = label(labels, "pod-template-hash")) {
    if (const std::string_view w = deploymentOf(pod, *hash); !w.empty()) {
      return make(w, "Deployment");
    }
    if (const std::string_view rs = generatedBase(pod); !rs.empty()) {
      return make(rs, "ReplicaSet");
    }
    return make(pod, "Pod");
  }
  const std::string* revision = label(labels, "controller-revision-hash");
  // 2. DaemonSet: the revision hash and the template generation.
  if (revision != nullptr && label(labels, "pod-template-generation") != nullptr) {
    if (const std::string_view w = generatedBase(pod); !w.empty()) {
      return make(w, "DaemonSet");
    }
    return make(pod, "Pod");
  }
  // 3. StatefulSet: the revision hash, and a name with the pod's ordinal (which the
  // statefulset.kubernetes.io/pod-name label, when present, repeats).
  if (revision != nullptr) {
    const std::string* name_label = label(labels, "statefulset.kubernetes.io/pod-name");
    if (name_label == nullptr || *name_label == pod) {
      if (const std::string_view w = statefulSetOf(pod); !w.empty()) {
        return make(w, "StatefulSet");
      }
    }
    return make(pod, "Pod");
  }
  // 4. Job, and the CronJob that made it: `<cronjob>-<schedule time in minutes>`.
  const std::string* job = label(labels, "batch.kubernetes.io/job-name");
  if (job == nullptr) job = label(labels, "job-name");
  if (job != nullptr && !job->empty()) {
    const std::size_t dash = job->rfind('-');
    if (dash != std::string::npos && dash > 0 && job->size() - dash - 1 >= 8 &&
        allDigits(std::string_view(*job).substr(dash + 1))) {
      return make(std::string_view(*job).substr(0, dash), "CronJob");
    }
    return make(*job, "Job");
  }
  // 5. A bare pod, a static pod, or an owner the rule does not know.
  return make(pod, "Pod");
}

enrich::PodName podName(std::string ns, std::string pod,
                        const std::map<std::string, std::string>& labels) {
  Workload w = workloadOf(pod, labels);
  return enrich::PodName{std::move(ns), std::move(pod), std::move(w.name), std::move(w.kind)};
}

}  // namespace ayaflow::k8s
