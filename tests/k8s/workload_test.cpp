// SPDX-License-Identifier: MIT OR Apache-2.0
// The workload rule: a pod's owner from its name and labels, as a kubelet's container runtime
// reports them (labels as the controllers of Kubernetes 1.29 set them).
#include "ayaflow/k8s/workload.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace ayaflow::k8s {
namespace {

using Labels = std::map<std::string, std::string>;

::testing::AssertionResult is(const Workload& got, const std::string& kind,
                              const std::string& name) {
  if (got.kind == kind && got.name == name) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "got " << got.kind << " '" << got.name << "', want " << kind << " '" << name << "'";
}

TEST(WorkloadRule, DeploymentFromTemplateHashAndName) {
  const Labels coredns{{"k8s-app", "kube-dns"}, {"pod-template-hash", "5d78c9869d"}};
  EXPECT_TRUE(is(workloadOf("coredns-5d78c9869d-8xkpm", coredns), "Deployment", "coredns"));
  // Dashes in the Deployment's name stay; the suffix may be any 5 lowercase letters/digits.
  const Labels web{{"app", "web"}, {"pod-template-hash", "7c9f8b6d54"}};
  EXPECT_TRUE(
      is(workloadOf("my-web-frontend-7c9f8b6d54-abcde", web), "Deployment", "my-web-frontend"));
  const Labels metrics{{"pod-template-hash", "6dc8b8d47"}};
  EXPECT_TRUE(
      is(workloadOf("metrics-server-6dc8b8d47-q2w9z", metrics), "Deployment", "metrics-server"));
}

TEST(WorkloadRule, TemplateHashWithANameThatDoesNotFitIsItsReplicaSet) {
  // A Deployment with a long name: "<deployment>-<hash>-" is cut to 58 characters before
  // the suffix, so the hash is not whole in the pod's name. The generated base is the
  // ReplicaSet's name, cut.
  const std::string deployment = "payments-reconciliation-worker-for-the-eu-region-shard";
  const std::string hash = "5f6d7c8b94";
  const std::string base = (deployment + "-" + hash + "-").substr(0, 58);
  const std::string pod = base + "x7k2p";
  ASSERT_EQ(pod.size(), 63u);
  const Labels l{{"pod-template-hash", hash}};
  EXPECT_TRUE(is(workloadOf(pod, l), "ReplicaSet", base.substr(0, base.find_last_not_of('-') + 1)));
  // The hash label set by hand on a ReplicaSet's pods (no Deployment): its name minus suffix.
  EXPECT_TRUE(
      is(workloadOf("legacy-rs-9m4tq", {{"pod-template-hash", "abc"}}), "ReplicaSet", "legacy-rs"));
  // Neither shape: the pod itself.
  EXPECT_TRUE(is(workloadOf("handmade", {{"pod-template-hash", "abc"}}), "Pod", "handmade"));
  // The hash in the name must be the label's.
  EXPECT_TRUE(is(workloadOf("coredns-5d78c9869d-8xkpm", {{"pod-template-hash", "64897985d"}}),
                 "ReplicaSet", "coredns-5d78c9869d"));
  // Suffix of 5 characters only.
  EXPECT_TRUE(is(workloadOf("coredns-5d78c9869d-8xkp", {{"pod-template-hash", "5d78c9869d"}}),
                 "Pod", "coredns-5d78c9869d-8xkp"));
  EXPECT_TRUE(is(workloadOf("coredns-5d78c9869d-8XKPM", {{"pod-template-hash", "5d78c9869d"}}),
                 "Pod", "coredns-5d78c9869d-8XKPM"));
}

TEST(WorkloadRule, DaemonSetFromRevisionAndGeneration) {
  const Labels proxy{{"controller-revision-hash", "7f9c8d6b5"},
                     {"k8s-app", "kube-proxy"},
                     {"pod-template-generation", "1"}};
  EXPECT_TRUE(is(workloadOf("kube-proxy-x7k2p", proxy), "DaemonSet", "kube-proxy"));
  EXPECT_TRUE(is(workloadOf("ayaflow-node-agent-4zq8r", proxy), "DaemonSet", "ayaflow-node-agent"));
  // A DaemonSet name cut to fit: the base is its first 58 characters.
  const std::string ds(60, 'd');
  EXPECT_TRUE(is(workloadOf(ds.substr(0, 58) + "b2c4d", proxy), "DaemonSet", ds.substr(0, 58)));
  // Not a generated name ("proxy" has a vowel: never generated): the pod itself.
  EXPECT_TRUE(is(workloadOf("kube-proxy", proxy), "Pod", "kube-proxy"));
  EXPECT_TRUE(is(workloadOf("fluentd", proxy), "Pod", "fluentd"));
}

TEST(WorkloadRule, StatefulSetFromRevisionAndOrdinal) {
  const Labels web0{{"app", "nginx"},
                    {"apps.kubernetes.io/pod-index", "0"},
                    {"controller-revision-hash", "web-6c5f4b7b8d"},
                    {"statefulset.kubernetes.io/pod-name", "web-0"}};
  EXPECT_TRUE(is(workloadOf("web-0", web0), "StatefulSet", "web"));
  // Older clusters: no pod-name label, the name alone.
  const Labels pg{{"controller-revision-hash", "postgres-primary-74d9f6c8b"}};
  EXPECT_TRUE(is(workloadOf("postgres-primary-12", pg), "StatefulSet", "postgres-primary"));
  // The pod-name label must be the pod's name; the ordinal decimal without leading zeros.
  EXPECT_TRUE(is(workloadOf("web-1", web0), "Pod", "web-1"));
  EXPECT_TRUE(is(workloadOf("web-01", pg), "Pod", "web-01"));
  EXPECT_TRUE(is(workloadOf("web-x", pg), "Pod", "web-x"));
  EXPECT_TRUE(is(workloadOf("web", pg), "Pod", "web"));
  EXPECT_TRUE(is(workloadOf("-0", pg), "Pod", "-0"));
}

TEST(WorkloadRule, JobAndCronJob) {
  // A CronJob's Job: "<cronjob>-<scheduled time in minutes since the epoch>".
  const Labels backup{
      {"batch.kubernetes.io/controller-uid", "5b1a2c3d-0000-4000-8000-000000000001"},
      {"batch.kubernetes.io/job-name", "backup-28391040"},
      {"controller-uid", "5b1a2c3d-0000-4000-8000-000000000001"},
      {"job-name", "backup-28391040"}};
  EXPECT_TRUE(is(workloadOf("backup-28391040-xk2lp", backup), "CronJob", "backup"));
  // Only the older label.
  EXPECT_TRUE(
      is(workloadOf("db-dump-nightly-28391040-9gh2k", {{"job-name", "db-dump-nightly-28391040"}}),
         "CronJob", "db-dump-nightly"));
  // A Job made by hand: its name. Fewer than 8 digits is not a schedule time.
  EXPECT_TRUE(
      is(workloadOf("migrate-v2-7tq9x", {{"job-name", "migrate-v2"}}), "Job", "migrate-v2"));
  EXPECT_TRUE(
      is(workloadOf("pi-1234567-abcde", {{"job-name", "pi-1234567"}}), "Job", "pi-1234567"));
  EXPECT_TRUE(is(workloadOf("x-2ab3c", {{"job-name", "-28391040"}}), "Job", "-28391040"));
  // The newer label wins when both are set.
  EXPECT_TRUE(
      is(workloadOf("p", {{"batch.kubernetes.io/job-name", "a"}, {"job-name", "b"}}), "Job", "a"));
}

TEST(WorkloadRule, EverythingElseIsThePodItself) {
  // Static pods (the kubelet's manifests) carry no controller labels.
  const Labels apiserver{{"component", "kube-apiserver"}, {"tier", "control-plane"}};
  EXPECT_TRUE(is(workloadOf("kube-apiserver-node-1", apiserver), "Pod", "kube-apiserver-node-1"));
  EXPECT_TRUE(is(workloadOf("debug-shell", {}), "Pod", "debug-shell"));
  EXPECT_TRUE(is(workloadOf("nginx-7c9f8b6d54-abcde", {{"app", "nginx"}}), "Pod",
                 "nginx-7c9f8b6d54-abcde"));  // a Deployment-like name is not enough
  EXPECT_TRUE(is(workloadOf("web-0", {{"app", "web"}}), "Pod", "web-0"));
}

TEST(WorkloadRule, PodNameCarriesNamespaceAndPod) {
  const enrich::PodName p =
      podName("kube-system", "coredns-5d78c9869d-8xkpm", {{"pod-template-hash", "5d78c9869d"}});
  EXPECT_EQ(p.ns, "kube-system");
  EXPECT_EQ(p.pod, "coredns-5d78c9869d-8xkpm");
  EXPECT_EQ(p.workload, "coredns");
  EXPECT_EQ(p.workload_kind, "Deployment");
}

}  // namespace
}  // namespace ayaflow::k8s
