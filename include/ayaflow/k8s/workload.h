// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "ayaflow/enrich/enricher.h"

namespace ayaflow::k8s {

/// A pod's owning workload, as far as its name and labels tell.
struct Workload {
  std::string name;  ///< the workload's name; the pod's own name for kind "Pod"
  std::string kind;  ///< "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job",
                     ///< "CronJob" or "Pod"
};

/// The workload rule. The container runtime (CRI) carries a pod's name, namespace and labels
/// but no owner references, so the owner is read from the naming conventions of Kubernetes'
/// built-in controllers and the labels they put on every pod they create. First match wins:
///
/// 1. label `pod-template-hash` = H (set by the Deployment controller on its ReplicaSet's
///    pods): a pod named `<w>-H-<suffix>` belongs to Deployment `<w>` (its ReplicaSet is
///    `<w>-H`). A pod whose name does not have that shape (the ReplicaSet's name was cut to
///    fit the 63-character pod name limit, or the label was set by hand) is named after the
///    ReplicaSet it came from: kind "ReplicaSet", its name minus the random suffix.
/// 2. labels `controller-revision-hash` and `pod-template-generation` (DaemonSet): a pod named
///    `<w>-<suffix>` belongs to DaemonSet `<w>`.
/// 3. label `controller-revision-hash` (StatefulSet; also `statefulset.kubernetes.io/
///    pod-name`, which equals the pod's name): a pod named `<w>-<ordinal>` belongs to
///    StatefulSet `<w>`.
/// 4. label `batch.kubernetes.io/job-name` or `job-name` = J: Job J; when J is `<c>-<8 or
///    more digits>` (the CronJob controller names each Job after its schedule time in minutes
///    since the epoch) CronJob `<c>`.
/// 5. anything else (bare pods, static pods, pods of controllers the rule does not know, a
///    name that does not fit its labels): kind "Pod", the pod's own name.
///
/// `<suffix>` is the 5 random characters the API server appends to a generated name
/// (metadata.generateName, whose base it first cuts to 58 characters so the name fits in 63),
/// from its alphabet "bcdfghjklmnpqrstvwxz2456789"; after the pod-template hash, which anchors
/// the name, any 5 lowercase letters or digits. A name that does not fit
/// falls through to the next rule, so the rule never names a workload the pod's labels and
/// name do not both point at.
///
/// Limits: owners other than these controllers (Argo Rollouts, OpenKruise, operators that
/// create pods themselves) show as the controller whose labels their pods copy, or as "Pod";
/// a Deployment or DaemonSet whose generated pod names were cut to 63 characters shows as a
/// "ReplicaSet" or "Pod" named by the cut name; a Job created by hand whose name ends in
/// `-<8+ digits>` shows as a CronJob.
Workload workloadOf(std::string_view pod, const std::map<std::string, std::string>& labels);

/// The PodName of a pod (see enrich::PodName): its namespace and name, and its workload by
/// the rule above.
enrich::PodName podName(std::string ns, std::string pod,
                        const std::map<std::string, std::string>& labels);

}  // namespace ayaflow::k8s
