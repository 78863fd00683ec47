// SPDX-License-Identifier: MIT OR Apache-2.0
// Checks monitoring/ and docker-compose.monitoring.example.yml (run by check-monitoring.sh).
//   node validate-monitoring.mjs ROOT OUTDIR
// ROOT: the repository (or a copy of its monitoring files); OUTDIR: a scratch directory
// holding prometheus-k8s.yml (the uncommented Kubernetes job, made by check-monitoring.sh).
// Writes into OUTDIR, for promtool:
//   dashboard-rules.yml: every dashboard expression as a recording rule, with the Grafana
//     variables replaced (`promtool check rules`);
//   prometheus-k8s-promtool.yml: prometheus-k8s.yml with kubernetes_sd_configs (checked
//     here: Debian's promtool is built without Kubernetes discovery) replaced by a static
//     target (`promtool check config`).
// Exit status 1 with one line per finding on stderr.
import fs from "node:fs";
import path from "node:path";
import yaml from "js-yaml";

const [root, outDir] = process.argv.slice(2);
if (!root || !outDir) {
  console.error("usage: node validate-monitoring.mjs ROOT OUTDIR");
  process.exit(2);
}
let failures = 0;
const fail = (where, msg) => { console.error(`${where}: ${msg}`); failures++; };
const expect = (where, cond, msg) => { if (!cond) fail(where, msg); };
const rel = (p) => path.join(root, p);
const read = (p) => fs.readFileSync(rel(p), "utf8");

// ---------------------------------------------------------------- exported families
// Each component declares its families in its own source file, as the first argument of a
// MetricFamilies call (counter, gauge, labelledCounter, add): collect them from src/.
const sourceFiles = (dir) => fs.readdirSync(rel(dir), { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? sourceFiles(path.join(dir, e.name))
    : e.name.endsWith(".cpp") ? [path.join(dir, e.name)] : []);
const metricsSource = "src/**/*.cpp";
const families = [...new Set(sourceFiles("src").flatMap((f) =>
  [...read(f).matchAll(/\.(?:counter|gauge|labelledCounter|add)\(\s*"((?:ayaflow|process)_[a-z0-9_]+)"/g)]
    .map((m) => m[1])))].sort();
for (const spec of ["ayaflow_packets_total", "ayaflow_bytes_total", "ayaflow_active_connections",
  "ayaflow_domains_resolved_total", "ayaflow_deep_inspect_packets_total"]) {
  expect(metricsSource, families.includes(spec), `cannot find the fixed family ${spec}`);
}
expect(metricsSource, families.length >= 40, `only ${families.length} families found`);

// ---------------------------------------------------------------- dashboard
const dashFile = "monitoring/grafana/dashboards/ayaflow.json";
let dash;
try {
  dash = JSON.parse(read(dashFile));
} catch (e) {
  fail(dashFile, `not JSON: ${e.message}`);
  dash = { panels: [], templating: { list: [] } };
}
const DS_UID = "${DS_PROMETHEUS}";
expect(dashFile, dash.schemaVersion >= 36 && dash.schemaVersion <= 39, `schemaVersion ${dash.schemaVersion}, want ~38`);
expect(dashFile, typeof dash.uid === "string" && dash.uid.length > 0 && dash.uid.length <= 40, "a fixed uid (<= 40 characters)");
expect(dashFile, dash.id === null || dash.id === undefined, "id must be null so the dashboard imports anywhere");
const vars = Object.fromEntries((dash.templating?.list || []).map((v) => [v.name, v]));
expect(dashFile, vars.DS_PROMETHEUS?.type === "datasource" && vars.DS_PROMETHEUS?.query === "prometheus",
  "a datasource variable DS_PROMETHEUS of type prometheus");
expect(dashFile, vars.instance?.type === "query" && vars.instance?.includeAll && vars.instance?.multi,
  "a multi-value `instance` query variable with All");
expect(dashFile, vars.job?.type === "query", "a `job` query variable");
for (const v of Object.values(vars)) {
  if (v.type === "query") expect(dashFile, v.datasource?.uid === DS_UID, `variable ${v.name}: datasource must be ${DS_UID}`);
}

// Grafana's built-in interval variables and the dashboard's own, as Grafana would expand
// them (multi-value regex for $instance with All).
const substitutions = {
  __rate_interval: "1m", __interval: "15s", __range: "1h", __range_s: "3600", __range_ms: "3600000",
  job: "ayaflow", instance: ".+",
};
const expand = (expr, where) =>
  expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (all, braced, bare) => {
    const name = braced || bare;
    if (name in substitutions && (name.startsWith("__") || name in vars)) return substitutions[name];
    fail(where, `unknown variable ${all}`);
    return all;
  });

const flat = [];
for (const p of dash.panels || []) {
  flat.push(p);
  for (const inner of p.panels || []) flat.push(inner);
}
const ids = new Set();
const used = new Set();
const rules = [];
let lostStat = false;
let y = 0;
for (const p of flat) {
  const where = `${dashFile}: panel ${p.id} "${p.title}"`;
  expect(where, Number.isInteger(p.id) && !ids.has(p.id), "panel ids must be unique integers");
  ids.add(p.id);
  const g = p.gridPos || {};
  expect(where, [g.x, g.y, g.w, g.h].every(Number.isInteger) && g.x >= 0 && g.w > 0 && g.x + g.w <= 24,
    "gridPos inside the 24-column grid");
  if (p.type === "row") continue;
  expect(where, ["timeseries", "stat", "gauge", "bargauge", "table"].includes(p.type), `panel type ${p.type}`);
  expect(where, p.datasource?.uid === DS_UID, `datasource must be ${DS_UID}`);
  expect(where, (p.targets || []).length > 0, "no queries");
  for (const t of p.targets || []) {
    const tw = `${where} ${t.refId}`;
    expect(tw, t.datasource === undefined || t.datasource.uid === DS_UID, `target datasource must be ${DS_UID}`);
    expect(tw, typeof t.expr === "string" && t.expr.trim() !== "", "empty expr");
    if (typeof t.expr !== "string") continue;
    const promql = expand(t.expr, tw);
    // A histogram family is queried through its _bucket series (histogram_quantile).
    for (const m of promql.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
      used.add(m[0]);
      if (m[0].endsWith("_bucket")) used.add(m[0].slice(0, -"_bucket".length));
    }
    rules.push({ record: `dashboard:panel_${p.id}:${t.refId}`, expr: promql });
    if (p.type === "stat" && /\bayaflow_events_lost_total\b/.test(t.expr)) {
      const steps = p.fieldConfig?.defaults?.thresholds?.steps || [];
      const base = steps.find((s) => s.value === null || s.value === undefined);
      const red = steps.find((s) => s.color === "red" && typeof s.value === "number");
      if (base && base.color !== "red" && red && red.value > 0 && red.value <= 1 &&
          p.fieldConfig?.defaults?.color?.mode === "thresholds") lostStat = true;
    }
  }
  y = Math.max(y, (g.y || 0) + (g.h || 0));
}
expect(dashFile, lostStat, "a stat panel on ayaflow_events_lost_total that turns red when > 0");
for (const f of families) {
  expect(dashFile, used.has(f), `no panel queries ${f} (exported by ${metricsSource})`);
}
fs.writeFileSync(path.join(outDir, "dashboard-rules.yml"),
  yaml.dump({ groups: [{ name: "dashboard", rules }] }, { lineWidth: -1 }));

// ---------------------------------------------------------------- Grafana provisioning
const dsFile = "monitoring/grafana/provisioning/datasources/prometheus.yml";
const dsDoc = yaml.load(read(dsFile));
const datasource = (dsDoc?.datasources || []).find((d) => d.type === "prometheus");
expect(dsFile, dsDoc?.apiVersion === 1 && datasource, "apiVersion 1 and a prometheus datasource");
const provFile = "monitoring/grafana/provisioning/dashboards/ayaflow.yml";
const provDoc = yaml.load(read(provFile));
const provider = (provDoc?.providers || []).find((p) => p.type === "file");
expect(provFile, provDoc?.apiVersion === 1 && provider?.options?.path, "apiVersion 1 and a file provider with options.path");

// ---------------------------------------------------------------- compose example
const composeFile = "docker-compose.monitoring.example.yml";
const compose = yaml.load(read(composeFile)) || {};
const svc = compose.services || {};
for (const name of ["agent", "prometheus", "grafana"]) expect(composeFile, svc[name], `service ${name} missing`);
const agent = svc.agent || {};
const prom = svc.prometheus || {};
const graf = svc.grafana || {};
expect(composeFile, agent.build?.dockerfile === "docker/Dockerfile" && fs.existsSync(rel(path.join(agent.build?.context || "", "docker/Dockerfile"))),
  "agent: build from docker/Dockerfile");
expect(composeFile, agent.network_mode === "host", "agent: network_mode host (to see the host's interfaces)");
for (const cap of ["BPF", "NET_ADMIN", "PERFMON"]) {
  expect(composeFile, (agent.cap_add || []).includes(cap) || agent.privileged === true, `agent: capability ${cap}`);
}
// Bind mounts "SRC:DST[:ro]": relative sources must exist; returns {dst: src}.
const mounts = (service, name) => {
  const out = {};
  for (const v of service.volumes || []) {
    const [src, dst] = typeof v === "string" ? v.split(":") : [v.source, v.target];
    if (src.startsWith(".")) expect(composeFile, fs.existsSync(rel(src)), `${name}: mounts ${src}, which does not exist`);
    else if (!src.startsWith("/")) expect(composeFile, (compose.volumes || {})[src] !== undefined, `${name}: volume ${src} not declared`);
    out[dst] = src;
  }
  return out;
};
const agentMounts = mounts(agent, "agent");
expect(composeFile, agentMounts["/sys/fs/bpf"] === "/sys/fs/bpf", "agent: /sys/fs/bpf mounted");
const dbPath = agent.environment?.AYAFLOW_DB_PATH || "";
expect(composeFile, Object.keys(agentMounts).some((d) => dbPath.startsWith(`${d}/`)), "agent: a volume holding AYAFLOW_DB_PATH");
const agentPort = String(agent.environment?.AYAFLOW_PORT || "3000");

const promMounts = mounts(prom, "prometheus");
const promArgs = (prom.command || []).join(" ");
const configPath = /--config\.file=(\S+)/.exec(promArgs)?.[1] || "/etc/prometheus/prometheus.yml";
expect(composeFile, promMounts[configPath] === "./monitoring/prometheus/prometheus.yml",
  `prometheus: ${configPath} must be ./monitoring/prometheus/prometheus.yml`);
const promConfig = yaml.load(read("monitoring/prometheus/prometheus.yml"));
for (const ruleFile of promConfig.rule_files || []) {
  const inContainer = path.posix.join(path.posix.dirname(configPath), ruleFile);
  expect(composeFile, promMounts[inContainer] === `./monitoring/prometheus/${ruleFile}`,
    `prometheus: rule file ${ruleFile} must be mounted at ${inContainer}`);
}
const promPort = /--web\.listen-address=\S*:(\d+)/.exec(promArgs)?.[1] || "9090";
expect(composeFile, prom.network_mode === "host", "prometheus: network_mode host (reaches the agent at localhost)");
const staticJob = (promConfig.scrape_configs || []).find((j) => j.job_name === "ayaflow" && j.static_configs);
const targets = (staticJob?.static_configs || []).flatMap((c) => c.targets || []);
expect("monitoring/prometheus/prometheus.yml", staticJob && promConfig.global?.scrape_interval === "15s",
  "a static job `ayaflow` and scrape_interval 15s");
expect(composeFile, targets.includes(`localhost:${agentPort}`), `prometheus.yml must scrape localhost:${agentPort}`);

const grafMounts = mounts(graf, "grafana");
expect(composeFile, grafMounts["/etc/grafana/provisioning"] === "./monitoring/grafana/provisioning",
  "grafana: ./monitoring/grafana/provisioning at /etc/grafana/provisioning");
expect(composeFile, provider && grafMounts[provider.options.path] === "./monitoring/grafana/dashboards",
  `grafana: ./monitoring/grafana/dashboards at the provider's path ${provider?.options?.path}`);
expect(composeFile, fs.existsSync(rel(path.join("monitoring/grafana/dashboards", path.basename(dashFile)))), "dashboard file");
const grafPort = String(graf.environment?.GF_SERVER_HTTP_PORT || "3000");
if (graf.network_mode === "host") {
  expect(composeFile, grafPort !== agentPort, `grafana: port ${grafPort} clashes with the agent on the host network`);
  expect(dsFile, datasource?.url === `http://localhost:${promPort}`, `datasource url must be http://localhost:${promPort}`);
}
expect(dsFile, datasource?.jsonData?.timeInterval === promConfig.global?.scrape_interval,
  "jsonData.timeInterval must equal the scrape interval");

// ---------------------------------------------------------------- Kubernetes job
// Apply the (uncommented) pod-discovery job's relabelling to the DaemonSet's pod, as
// Prometheus would (keep/replace, anchored regexes, ";" separator).
const k8sConfigFile = path.join(outDir, "prometheus-k8s.yml");
const k8sConfig = yaml.load(fs.readFileSync(k8sConfigFile, "utf8")) || {};
const k8sJob = (k8sConfig.scrape_configs || []).find((j) => j.kubernetes_sd_configs);
const dsDocs = yaml.loadAll(read("k8s/daemonset.yaml")).filter(Boolean);
const daemonset = dsDocs.find((d) => d.kind === "DaemonSet");
const relabel = (labels, configs) => {
  for (const c of configs) {
    const value = (c.source_labels || []).map((l) => labels[l] ?? "").join(c.separator ?? ";");
    const re = new RegExp(`^(?:${c.regex ?? "(.*)"})$`);
    const m = re.exec(value);
    const action = c.action || "replace";
    if (action === "keep") { if (!m) return null; continue; }
    if (action === "drop") { if (m) return null; continue; }
    if (action !== "replace") throw new Error(`action ${action} not simulated`);
    if (!m) continue;
    const out = (c.replacement ?? "$1").replace(/\$\{?(\d+)\}?/g, (_, i) => m[Number(i)] ?? "");
    if (out === "") delete labels[c.target_label]; else labels[c.target_label] = out;
  }
  return labels;
};
const where = `${k8sConfigFile} (the commented job of monitoring/prometheus/prometheus.yml)`;
if (!k8sJob || !daemonset) {
  fail(where, "no kubernetes_sd job, or no DaemonSet in k8s/daemonset.yaml");
} else {
  expect(where, k8sJob.job_name === "ayaflow", "job_name must be ayaflow (the alerts use job=\"ayaflow\")");
  // kubernetes_sd_configs as Prometheus' Go types accept it (the keys used here).
  const sdKeys = ["role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"];
  for (const sd of k8sJob.kubernetes_sd_configs) {
    expect(where, sd.role === "pod", "kubernetes_sd_configs: role must be pod (a DaemonSet's pods)");
    for (const key of Object.keys(sd)) expect(where, sdKeys.includes(key), `kubernetes_sd_configs: unknown key ${key}`);
    const names = sd.namespaces?.names;
    expect(where, !sd.namespaces || (Array.isArray(names) && names.every((n) => typeof n === "string")),
      "kubernetes_sd_configs: namespaces.names must be a list of strings");
    const ns = daemonset?.metadata?.namespace;
    expect(where, !names || names.includes(ns), `kubernetes_sd_configs: namespaces must include the DaemonSet's ${ns}`);
  }
  const forPromtool = { ...k8sConfig, scrape_configs: k8sConfig.scrape_configs.map((j) => {
    if (!j.kubernetes_sd_configs) return j;
    const { kubernetes_sd_configs: _, ...rest } = j;
    return { ...rest, static_configs: [{ targets: ["10.1.2.3:3000"] }] };
  }) };
  fs.writeFileSync(path.join(outDir, "prometheus-k8s-promtool.yml"), yaml.dump(forPromtool, { lineWidth: -1 }));
  const tmpl = daemonset.spec.template;
  const meta = (podIp) => {
    const labels = { __address__: `${podIp.includes(":") ? `[${podIp}]` : podIp}:3000`, __metrics_path__: "/metrics",
      __meta_kubernetes_pod_ip: podIp, __meta_kubernetes_pod_node_name: "node-1", __meta_kubernetes_pod_name: "ayaflow-x" };
    const name = (s) => s.replace(/[^a-zA-Z0-9_]/g, "_");
    for (const [k, v] of Object.entries(tmpl.metadata.labels || {})) labels[`__meta_kubernetes_pod_label_${name(k)}`] = v;
    for (const [k, v] of Object.entries(tmpl.metadata.annotations || {})) labels[`__meta_kubernetes_pod_annotation_${name(k)}`] = v;
    return labels;
  };
  const ann = tmpl.metadata.annotations || {};
  for (const [ip, address] of [["10.1.2.3", `10.1.2.3:${ann["prometheus.io/port"]}`],
    ["fd00::1:2", `[fd00::1:2]:${ann["prometheus.io/port"]}`]]) {
    const got = relabel(meta(ip), k8sJob.relabel_configs || []);
    expect(where, got !== null, `drops the DaemonSet's pod (${ip})`);
    if (!got) continue;
    expect(where, got.__address__ === address, `pod ${ip}: __address__ ${got.__address__}, want ${address}`);
    expect(where, got.__metrics_path__ === ann["prometheus.io/path"], `pod ${ip}: path ${got.__metrics_path__}`);
    expect(where, got.node === "node-1", `pod ${ip}: no node label`);
  }
  const off = meta("10.1.2.3");
  off.__meta_kubernetes_pod_annotation_prometheus_io_scrape = "false";
  expect(where, relabel(off, k8sJob.relabel_configs || []) === null, "scrapes a pod annotated prometheus.io/scrape: \"false\"");
  const other = meta("10.1.2.4");
  other.__meta_kubernetes_pod_label_app_kubernetes_io_name = "something-else";
  expect(where, relabel(other, k8sJob.relabel_configs || []) === null, "scrapes pods that are not ayaflow's");
}

if (failures === 0) {
  console.log(`monitoring: ok (${families.length} families, ${rules.length} dashboard queries, compose services ${Object.keys(svc).join(", ")})`);
}
process.exit(failures === 0 ? 0 : 1);
