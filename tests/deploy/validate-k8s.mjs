// SPDX-License-Identifier: MIT OR Apache-2.0
// Validates k8s/*.yaml against the Kubernetes schemas (kubernetes-models)
// and checks what a node agent needs. Usage: node validate-k8s.mjs FILE...
import fs from "node:fs";
import yaml from "js-yaml";
import { Namespace, ConfigMap, Secret } from "kubernetes-models/v1";
import { DaemonSet } from "kubernetes-models/apps/v1";

const kinds = { "v1/Namespace": Namespace, "v1/ConfigMap": ConfigMap, "v1/Secret": Secret, "apps/v1/DaemonSet": DaemonSet };
let failures = 0;
const fail = (file, msg) => { console.error(`${file}: ${msg}`); failures++; };
const expect = (file, cond, msg) => { if (!cond) fail(file, msg); };

for (const file of process.argv.slice(2)) {
  const docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter(Boolean);
  let daemonsets = 0;
  for (const doc of docs) {
    const Model = kinds[`${doc.apiVersion}/${doc.kind}`];
    if (!Model) { fail(file, `unexpected ${doc.apiVersion}/${doc.kind}`); continue; }
    try { new Model(doc).validate(); } catch (e) { fail(file, `${doc.kind} ${doc.metadata?.name}: ${e.message}`); }
    if (doc.kind !== "DaemonSet") continue;
    daemonsets++;
    const pod = doc.spec.template.spec;
    const c = pod.containers[0];
    const ann = doc.spec.template.metadata.annotations || {};
    expect(file, pod.hostNetwork === true, "hostNetwork must be true");
    expect(file, pod.dnsPolicy === "ClusterFirstWithHostNet", "dnsPolicy must be ClusterFirstWithHostNet");
    const add = c.securityContext?.capabilities?.add || [];
    for (const cap of ["BPF", "NET_ADMIN", "PERFMON"]) expect(file, add.includes(cap), `capability ${cap} missing`);
    expect(file, !add.includes("SYS_ADMIN"), "SYS_ADMIN is not needed on kernels >= 5.8");
    expect(file, c.resources?.requests?.memory === "32Mi" && c.resources?.requests?.cpu === "50m", "requests 32Mi/50m");
    expect(file, c.resources?.limits?.memory === "128Mi" && c.resources?.limits?.cpu === "500m", "limits 128Mi/500m");
    for (const probe of ["livenessProbe", "readinessProbe"]) {
      expect(file, c[probe]?.httpGet?.path === "/api/health", `${probe} must GET /api/health`);
    }
    expect(file, ann["prometheus.io/scrape"] === "true" && ann["prometheus.io/path"] === "/metrics", "Prometheus scrape annotations");
    expect(file, (pod.terminationGracePeriodSeconds ?? 30) >= 5, "termination grace period must cover the 2 s shutdown");
    expect(file, doc.spec.updateStrategy?.type === "RollingUpdate", "RollingUpdate strategy");
    const hostPaths = (pod.volumes || []).filter((v) => v.hostPath).map((v) => v.hostPath.path);
    expect(file, hostPaths.includes("/sys/fs/bpf"), "/sys/fs/bpf hostPath");
    const mounts = Object.fromEntries((c.volumeMounts || []).map((m) => [m.name, m.mountPath]));
    const dataVol = (pod.volumes || []).find((v) => v.hostPath && v.hostPath.path === "/var/lib/ayaflow");
    expect(file, dataVol && mounts[dataVol.name], "a hostPath volume for the database, mounted");
    // Pod names: the runtime sockets' directories, read only, at the paths --cri-socket auto
    // looks at; the node's name from the downward API.
    for (const dir of ["/run/containerd", "/run/crio"]) {
      const vol = (pod.volumes || []).find((v) => v.hostPath && v.hostPath.path === dir);
      const mount = vol && (c.volumeMounts || []).find((m) => m.name === vol.name);
      expect(file, mount && mount.mountPath === dir && mount.readOnly === true, `${dir} mounted read-only at ${dir}`);
    }
    const nodeName = (c.env || []).find((e) => e.name === "AYAFLOW_NODE_NAME");
    expect(file, nodeName?.valueFrom?.fieldRef?.fieldPath === "spec.nodeName", "AYAFLOW_NODE_NAME from spec.nodeName");
    const env = c.envFrom ? "envFrom" : null;
    const args = (c.args || []).join(" ");
    expect(file, env || args.includes("--config"), "interface chosen through configuration (env ConfigMap or --config)");
  }
  expect(file, daemonsets === 1, "exactly one DaemonSet");
  if (failures === 0) console.log(`${file}: ok (${docs.length} objects)`);
}
process.exit(failures === 0 ? 0 : 1);
