// The Kubernetes deploy under deploy/, checked three ways.
//
// From the sources (always): every YAML parses and every full object validates against the Kubernetes
// schemas (kubernetes-models); every kustomization names files that exist; the workloads are the services,
// non-root, with requests, limits and gRPC probes on their gRPC ports; every SPECLOOP_* variable a workload
// gets (its env, the bus ConfigMap's bus.env, an overlay's patch) loads through that service's config schema.
//
// Rendered with `kubectl kustomize` (skipped where kubectl is not on the PATH): every overlay, alone and with
// the monitoring component, renders and every object validates (the PrometheusRule and ServiceMonitor, whose
// kinds are CRDs, by their structure); NATS is a 3-server cluster with routes, a headless Service and a PDB,
// and every stream and bucket is R3; the gpu overlay asks for nvidia.com/gpu and the webgpu backend.
//
// Stood up on loopback (also needs kubectl): docs/OPERATIONS.md's credentials block is run as written
// (kubectl in dry-run) and its Secrets carry every key the pods read; three nats-servers run nats.conf as a
// cluster with those credentials; the three services start from the cpu overlay's rendered env and mounts
// (the Secrets' files laid out where the pods would see them); the trainer provisions every stream R3 on the
// cluster; and every metric name the alerts and the dashboard use is one the running services export.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, posix, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { connectBus } from "@specloop/bus";
import { inferenceConfigSchema } from "@specloop/inference";
import { bearerMetadata, configLeaves, createLogger, loadConfig, TokenAuth } from "@specloop/runtime";
import { trainerConfigSchema } from "@specloop/speculator-trainer";
import { freePort, type TempDir, tempDir } from "@specloop/testkit";
import { verifierConfigSchema } from "@specloop/verifier";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import type { z } from "zod";
import { type ServiceName, type ServiceProcess, spawnService } from "./harness/service-process.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const deployDir = join(root, "deploy");
const baseDir = join(deployDir, "base");
const OVERLAYS = ["cpu", "gpu"] as const;
const monitoringDir = join(deployDir, "components", "monitoring");
const operationsDoc = join(root, "docs", "OPERATIONS.md");
/** NATS servers in the cluster, and so the replicas of every stream and bucket. */
const NATS_SERVERS = 3;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are free-form until validated
  [key: string]: any;
}

type Validator = new (data: K8sObject) => { validate(): void };
const MODELS: Record<string, Validator> = {
  "v1/Service": Service as unknown as Validator,
  "v1/ConfigMap": ConfigMap as unknown as Validator,
  "v1/Secret": Secret as unknown as Validator,
  "v1/Namespace": Namespace as unknown as Validator,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim as unknown as Validator,
  "apps/v1/Deployment": Deployment as unknown as Validator,
  "apps/v1/StatefulSet": StatefulSet as unknown as Validator,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget as unknown as Validator,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler as unknown as Validator,
};
/** Kinds of the Prometheus Operator's CRDs: kubernetes-models has no schema for them; checked by hand. */
const CRD_CHECKS: Record<string, (obj: K8sObject, all: K8sObject[]) => void> = {
  "monitoring.coreos.com/v1/PrometheusRule": checkPrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": checkServiceMonitor,
};

/** Service name (its workload's and Service's) -> its config schema and default gRPC port. */
const SERVICES: Record<ServiceName, { schema: z.ZodObject; grpcPort: number }> = {
  inference: { schema: inferenceConfigSchema, grpcPort: 50051 },
  "speculator-trainer": { schema: trainerConfigSchema, grpcPort: 50052 },
  verifier: { schema: verifierConfigSchema, grpcPort: 50053 },
};
const isService = (name: string | undefined): name is ServiceName =>
  name !== undefined && Object.hasOwn(SERVICES, name);

const hasKubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;
const NO_KUBECTL = "kubectl is not on the PATH";

// ---------------------------------------------------------------------------------------------------------
// Reading manifests

function parseYaml(text: string, where: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    assert.equal(doc.errors.length, 0, `${where}: ${doc.errors.map((e) => e.message).join("; ")}`);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null) out.push(value);
  }
  return out;
}

function readObjects(file: string): K8sObject[] {
  return parseYaml(readFileSync(file, "utf8"), relative(root, file));
}

/** Every folder under deploy/ holding a kustomization.yaml. */
function kustomizeDirs(dir = deployDir): string[] {
  const out: string[] = existsSync(join(dir, "kustomization.yaml")) ? [dir] : [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...kustomizeDirs(path));
  }
  return out;
}

function kustomization(dir: string): K8sObject {
  const [k] = readObjects(join(dir, "kustomization.yaml"));
  assert.ok(k, `${relative(root, dir)}: empty kustomization.yaml`);
  return k;
}

/** The manifests a kustomization lists as resources (files, not folders), and its patches. */
function sourceObjects(dir: string): { resources: K8sObject[]; patches: K8sObject[] } {
  const k = kustomization(dir);
  const files = (k.resources ?? [])
    .map((r: string) => join(dir, r))
    .filter((p: string) => p.endsWith(".yaml"));
  const patches = (k.patches ?? []).flatMap((p: { path?: string }) =>
    p.path === undefined ? [] : readObjects(join(dir, p.path)),
  );
  return { resources: files.flatMap(readObjects), patches };
}

/** KEY=VALUE lines of a kustomize env file (comments and blank lines skipped). */
function readEnvFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    const eq = line.indexOf("=");
    assert.ok(eq > 0, `${relative(root, file)}: not KEY=VALUE: ${line}`);
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

function validateObject(obj: K8sObject, where: string, all: K8sObject[] = []): void {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const crd = CRD_CHECKS[key];
  if (crd) {
    crd(obj, all);
    return;
  }
  const Model = MODELS[key];
  assert.ok(Model, `${where}: no validator for ${key} (${obj.metadata?.name})`);
  assert.doesNotThrow(() => new Model(obj).validate(), `${where}: ${key} ${obj.metadata?.name} is invalid`);
}

function kubectlKustomize(dir: string): K8sObject[] {
  const out = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
  assert.equal(out.status, 0, `kubectl kustomize ${relative(root, dir)}: ${out.stderr}`);
  return parseYaml(out.stdout, `kubectl kustomize ${relative(root, dir)}`);
}

/** An overlay with the monitoring component added, as docs/OPERATIONS.md tells a user to write one. */
function renderWithMonitoring(overlay: string, scratch: string): K8sObject[] {
  const dir = join(scratch, `${overlay}-monitoring`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "kustomization.yaml"),
    [
      "apiVersion: kustomize.config.k8s.io/v1beta1",
      "kind: Kustomization",
      "resources:",
      `  - ${relative(dir, join(deployDir, "overlays", overlay))}`,
      "components:",
      `  - ${relative(dir, monitoringDir)}`,
      "",
    ].join("\n"),
  );
  return kubectlKustomize(dir);
}

const find = (objects: K8sObject[], kind: string, name: string): K8sObject | undefined =>
  objects.find((o) => o.kind === kind && o.metadata?.name === name);

function mustFind(objects: K8sObject[], kind: string, name: string): K8sObject {
  const obj = find(objects, kind, name);
  assert.ok(obj, `no ${kind} ${name}`);
  return obj;
}

/** The Deployments and StatefulSets that run a specloop service. */
function workloads(objects: K8sObject[]): K8sObject[] {
  return objects.filter(
    (o) => (o.kind === "Deployment" || o.kind === "StatefulSet") && isService(o.metadata?.name),
  );
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string };
    configMapKeyRef?: { name: string; key: string };
  };
}

/** $(VAR) references, expanded as the kubelet does from the variables defined before. */
function expandRefs(value: string, env: Record<string, string>): string {
  return value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
}

/**
 * A container's environment as the kubelet would build it: envFrom ConfigMaps first, then env in order;
 * `resolve` answers what a valueFrom names (a field of the pod, a key of a Secret or ConfigMap).
 */
function containerEnv(
  container: K8sObject,
  configMaps: (name: string) => Record<string, string>,
  resolve: (ref: NonNullable<EnvVar["valueFrom"]>, name: string) => string,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    assert.ok(from.configMapRef?.name, `${container.name}: only configMapRef envFrom is expected`);
    Object.assign(env, configMaps(from.configMapRef.name));
  }
  for (const v of (container.env ?? []) as EnvVar[]) {
    env[v.name] = v.valueFrom ? resolve(v.valueFrom, v.name) : expandRefs(v.value ?? "", env);
  }
  return env;
}

/** The ConfigMaps of a rendering, by name (generated names carry their hash suffix, as envFrom does). */
function renderedConfigMaps(objects: K8sObject[]): (name: string) => Record<string, string> {
  return (name) => mustFind(objects, "ConfigMap", name).data ?? {};
}

/** Loads a service's config from an environment; throws the loader's ConfigError naming the key. */
function loadServiceConfig(service: ServiceName, env: Record<string, string>): Record<string, unknown> {
  const keys = new Set(configLeaves(SERVICES[service].schema).map((l) => l.env));
  for (const name of Object.keys(env)) {
    if (name.startsWith("SPECLOOP_")) assert.ok(keys.has(name), `${service}: ${name} is not a config key`);
  }
  return loadConfig(SERVICES[service].schema, { env }) as Record<string, unknown>;
}

const placeholder = (_ref: unknown, name: string) => `from-${name.toLowerCase()}`;

// ---------------------------------------------------------------------------------------------------------
// The Prometheus Operator's kinds, and PromQL's metric names

const DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;
const SEVERITIES = new Set(["info", "warning", "critical"]);

function checkPrometheusRule(obj: K8sObject): void {
  const name = obj.metadata?.name;
  assert.ok(name, "PrometheusRule: metadata.name");
  const groups = obj.spec?.groups;
  assert.ok(Array.isArray(groups) && groups.length > 0, `PrometheusRule ${name}: spec.groups`);
  const alerts = new Set<string>();
  const groupNames = new Set<string>();
  for (const group of groups) {
    assert.equal(typeof group.name, "string", `PrometheusRule ${name}: a group without a name`);
    assert.ok(!groupNames.has(group.name), `PrometheusRule ${name}: group ${group.name} twice`);
    groupNames.add(group.name);
    assert.ok(Array.isArray(group.rules) && group.rules.length > 0, `group ${group.name}: rules`);
    for (const rule of group.rules) {
      const where = `${group.name}/${rule.alert ?? rule.record}`;
      const keys = Object.keys(rule);
      const allowed = ["alert", "expr", "for", "labels", "annotations", "keep_firing_for"];
      assert.deepEqual(
        keys.filter((k) => !allowed.includes(k)),
        [],
        `${where}: fields a PrometheusRule alert does not have`,
      );
      assert.match(rule.alert, /^[A-Z][A-Za-z0-9]+$/, `${where}: alert name`);
      assert.ok(!alerts.has(rule.alert), `${where}: alert name used twice`);
      alerts.add(rule.alert);
      assert.ok(typeof rule.expr === "string" && rule.expr.trim() !== "", `${where}: expr`);
      if (rule.for !== undefined) assert.match(rule.for, DURATION, `${where}: for`);
      assert.ok(
        SEVERITIES.has(rule.labels?.severity),
        `${where}: labels.severity is one of ${[...SEVERITIES]}`,
      );
      for (const k of ["summary", "description"]) {
        assert.ok(typeof rule.annotations?.[k] === "string" && rule.annotations[k] !== "", `${where}: ${k}`);
      }
      for (const v of [...Object.values(rule.labels ?? {}), ...Object.values(rule.annotations ?? {})]) {
        assert.equal(typeof v, "string", `${where}: label and annotation values are strings`);
      }
    }
  }
}

function checkServiceMonitor(obj: K8sObject, all: K8sObject[]): void {
  const name = obj.metadata?.name;
  const selector: Record<string, string> = obj.spec?.selector?.matchLabels ?? {};
  assert.ok(Object.keys(selector).length > 0, `ServiceMonitor ${name}: spec.selector.matchLabels`);
  const endpoints = obj.spec?.endpoints;
  assert.ok(Array.isArray(endpoints) && endpoints.length > 0, `ServiceMonitor ${name}: spec.endpoints`);
  for (const e of endpoints) {
    if (e.interval !== undefined) assert.match(e.interval, DURATION, `ServiceMonitor ${name}: interval`);
  }
  if (all.length === 0) return;
  // Every service's Service is selected and has the named port: Prometheus scrapes all three.
  for (const service of Object.keys(SERVICES)) {
    const svc = mustFind(all, "Service", service);
    for (const [k, v] of Object.entries(selector)) {
      assert.equal(svc.metadata?.labels?.[k], v, `ServiceMonitor ${name} does not select Service ${service}`);
    }
    for (const e of endpoints) {
      assert.ok(
        svc.spec.ports.some((p: { name: string }) => p.name === e.port),
        `Service ${service} has no port ${e.port}`,
      );
    }
  }
}

/** PromQL's own words, so that every other identifier in an expression is a metric name. */
const PROMQL_WORDS = new Set([
  ...["sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "group"],
  ...[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "absent",
    "absent_over_time",
  ],
  ...[
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
  ],
  ...[
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "clamp",
    "abs",
    "time",
    "timestamp",
    "vector",
    "scalar",
  ],
  ...[
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
  ],
]);

/** The metric names a PromQL expression reads. */
function promqlMetricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "$1 ")
    .replace(/\b\d+(\.\d+)?\b/g, " ");
  return (stripped.match(/[A-Za-z_:][A-Za-z0-9_:]*/g) ?? []).filter((w) => !PROMQL_WORDS.has(w));
}

/** Series Prometheus writes itself for every target it scrapes (no service exports them). */
const SCRAPE_SERIES = new Set(["up"]);

/** `# TYPE name type` lines of a Prometheus text exposition: the metrics a process registered. */
function exposedMetrics(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

/** Whether a series name is one of the exported metrics (a histogram's _bucket, _sum and _count too). */
function isExported(series: string, exported: Map<string, string>): boolean {
  if (exported.has(series)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  return m !== null && ["histogram", "summary"].includes(exported.get(m[1]!) ?? "");
}

interface DashboardQuery {
  where: string;
  expr: string;
}

/** Every query a dashboard runs: panel targets and template variable queries. */
function dashboardQueries(dashboard: K8sObject): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const panel of dashboard.panels ?? []) {
    for (const t of panel.targets ?? []) out.push({ where: `panel "${panel.title}"`, expr: t.expr });
  }
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    // Grafana's label_values(metric, label): the metric is a series name, the label is not.
    const lv = /^label_values\((\w+),\s*\w+\)$/.exec(q ?? "");
    assert.ok(lv, `template variable ${v.name}: a label_values(metric, label) query`);
    out.push({ where: `variable ${v.name}`, expr: lv[1]! });
  }
  return out;
}

function checkDashboard(dashboard: K8sObject): void {
  assert.equal(typeof dashboard.uid, "string", "dashboard uid");
  assert.equal(typeof dashboard.title, "string", "dashboard title");
  const variables = new Set((dashboard.templating?.list ?? []).map((v: { name: string }) => v.name));
  assert.ok(variables.has("datasource") && variables.has("namespace"), "datasource and namespace variables");
  const ids = new Set<number>();
  let queries = 0;
  for (const panel of dashboard.panels) {
    assert.ok(Number.isInteger(panel.id) && !ids.has(panel.id), `panel ${panel.title}: a unique id`);
    ids.add(panel.id);
    const g = panel.gridPos;
    assert.ok(g && g.w > 0 && g.h > 0 && g.x + g.w <= 24, `panel ${panel.title}: gridPos within 24 columns`);
    if (panel.type === "row") continue;
    assert.ok(panel.targets?.length > 0, `panel ${panel.title}: queries`);
    for (const t of panel.targets) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template
      assert.equal(panel.datasource?.uid, "${datasource}", `panel ${panel.title}: the datasource variable`);
      assert.ok(t.expr.includes('namespace=~"$namespace"'), `panel ${panel.title}: filtered by $namespace`);
      queries++;
    }
  }
  assert.ok(queries >= 10, `the dashboard has ${queries} queries`);
}

// ---------------------------------------------------------------------------------------------------------
// From the sources

describe("deploy - sources", () => {
  const dirs = kustomizeDirs();

  test("deploy - base, overlays cpu and gpu and the monitoring component are there", () => {
    const names = dirs.map((d) => relative(deployDir, d)).sort();
    assert.deepEqual(names, ["base", "components/monitoring", "overlays/cpu", "overlays/gpu"]);
  });

  test("deploy - every resource, patch and generated file a kustomization names exists", () => {
    for (const dir of dirs) {
      const k = kustomization(dir);
      assert.ok(["Kustomization", "Component"].includes(k.kind), `${relative(root, dir)}: ${k.kind}`);
      const named: string[] = [
        ...(k.resources ?? []),
        ...(k.components ?? []),
        ...(k.patches ?? []).map((p: { path?: string }) => p.path).filter(Boolean),
        ...(k.configMapGenerator ?? []).flatMap((g: { files?: string[]; envs?: string[] }) => [
          ...(g.files ?? []),
          ...(g.envs ?? []),
        ]),
      ];
      assert.ok(named.length > 0, `${relative(root, dir)}: names nothing`);
      for (const entry of named) {
        const path = join(dir, entry.includes("=") ? entry.split("=")[1]! : entry);
        assert.ok(
          existsSync(path),
          `${relative(root, dir)}/kustomization.yaml names ${entry}, which is missing`,
        );
      }
    }
  });

  test("deploy - every full object validates (kubernetes-models; the CRDs by structure), namespace-free", () => {
    let count = 0;
    for (const dir of dirs) {
      for (const obj of sourceObjects(dir).resources) {
        validateObject(obj, relative(root, dir));
        assert.equal(obj.metadata?.namespace, undefined, `${obj.metadata?.name}: no namespace in deploy/`);
        count++;
      }
    }
    assert.ok(count >= 14, `expected the base's and the component's objects, found ${count}`);
    const kinds = new Set(dirs.flatMap((d) => sourceObjects(d).resources.map((o) => o.kind)));
    for (const kind of [
      "PodDisruptionBudget",
      "HorizontalPodAutoscaler",
      "PrometheusRule",
      "ServiceMonitor",
    ]) {
      assert.ok(kinds.has(kind), `a ${kind}`);
    }
  });

  test("deploy - the workloads are the services: non-root, args, requests and limits, gRPC probes and ports", () => {
    const objects = sourceObjects(baseDir).resources;
    const found = workloads(objects).map((w) => w.metadata?.name);
    assert.deepEqual(found.sort(), Object.keys(SERVICES).sort());
    for (const w of workloads(objects)) {
      const name = w.metadata?.name as ServiceName;
      const svc = SERVICES[name];
      const pod = w.spec.template.spec;
      assert.equal(w.metadata?.labels?.["app.kubernetes.io/name"], name);
      assert.equal(pod.securityContext?.runAsNonRoot, true, `${name}: runAsNonRoot`);
      assert.ok(pod.securityContext?.runAsUser > 0, `${name}: a non-root uid`);
      const [c] = pod.containers;
      assert.deepEqual(c.args, [`services/${name}/dist/main.js`]);
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${name}: no privilege escalation`);
      assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${name}: requests`);
      assert.ok(c.resources?.limits?.cpu && c.resources?.limits?.memory, `${name}: limits`);
      const defaultPort = (svc.schema.shape.server as z.ZodObject).shape.grpcPort as z.ZodType<number>;
      assert.equal(defaultPort.parse(undefined), svc.grpcPort, `${name}: the schema's default gRPC port`);
      assert.equal(c.ports.find((p: { name: string }) => p.name === "grpc")?.containerPort, svc.grpcPort);
      assert.ok(
        c.ports.some((p: { name: string }) => p.name === "metrics"),
        `${name}: a metrics port`,
      );
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        assert.equal(
          c[probe]?.grpc?.port,
          svc.grpcPort,
          `${name}: ${probe} is a gRPC probe on ${svc.grpcPort}`,
        );
      }
      const s = mustFind(objects, "Service", name);
      assert.equal(s.spec.ports.find((p: { name: string }) => p.name === "grpc")?.port, svc.grpcPort);
    }
    const trainer = mustFind(objects, "Deployment", "speculator-trainer");
    assert.equal(trainer.spec.replicas, 1, "one trainer");
    assert.equal(trainer.spec.strategy?.type, "Recreate", "never two trainers, even during an upgrade");
    const hpa = mustFind(objects, "HorizontalPodAutoscaler", "verifier");
    assert.deepEqual(
      { kind: hpa.spec.scaleTargetRef.kind, name: hpa.spec.scaleTargetRef.name },
      { kind: "StatefulSet", name: "verifier" },
    );
    assert.equal(
      mustFind(objects, "StatefulSet", "verifier").spec.replicas,
      undefined,
      "the verifier's count is the autoscaler's (a replicas field would reset it on every apply)",
    );
  });

  test("deploy - every workload's environment (env, bus.env, each overlay's patch) loads through its config schema", () => {
    const bus = readEnvFile(join(baseDir, "bus.env"));
    const configMaps = (name: string) => {
      assert.equal(name, "specloop-bus", `envFrom names ${name}, which only the base generates`);
      return bus;
    };
    const base = workloads(sourceObjects(baseDir).resources);
    for (const overlay of [undefined, ...OVERLAYS]) {
      const patches =
        overlay === undefined ? [] : sourceObjects(join(deployDir, "overlays", overlay)).patches;
      for (const w of base) {
        const name = w.metadata?.name as ServiceName;
        const container = structuredClone(w.spec.template.spec.containers[0]);
        // The overlay's patch, merged as a strategic merge patch merges env: by name.
        const patch = patches.find((p) => p.kind === w.kind && p.metadata?.name === name);
        for (const v of (patch?.spec.template.spec.containers[0].env ?? []) as EnvVar[]) {
          container.env = [...container.env.filter((e: EnvVar) => e.name !== v.name), v];
        }
        const env = containerEnv(container, configMaps, placeholder);
        const config = loadServiceConfig(name, env) as { bus: Record<string, { replicas?: number }> };
        for (const section of ["traceStream", "verdictStream", "speculators", "weights", "heartbeats"]) {
          assert.equal(config.bus[section]?.replicas, NATS_SERVERS, `${name}: bus.${section}.replicas`);
        }
      }
    }
  });

  test("deploy - an unknown variable or a bad value fails the load (the check above can fail)", () => {
    assert.throws(() => loadServiceConfig("inference", { SPECLOOP_NODE__BAKEND: "cpu" }), /not a config key/);
    assert.throws(() => loadServiceConfig("inference", { SPECLOOP_BUS__TRACE_STREAM__REPLICAS: "7" }));
  });

  test("deploy - nats.conf listens on the ports the StatefulSet and Services name, and routes every server", () => {
    const conf = readFileSync(join(baseDir, "nats.conf"), "utf8");
    const objects = sourceObjects(baseDir).resources;
    const nats = mustFind(objects, "StatefulSet", "nats");
    const ports = Object.fromEntries(
      nats.spec.template.spec.containers[0].ports.map((p: { name: string; containerPort: number }) => [
        p.name,
        p.containerPort,
      ]),
    );
    assert.match(conf, new RegExp(`^port: ${ports.client}$`, "m"), "client port");
    assert.match(conf, new RegExp(`^http_port: ${ports.monitor}$`, "m"), "monitor port");
    assert.match(conf, new RegExp(`^cluster \\{[^}]*\\n  port: ${ports.cluster}\\n`, "m"), "cluster port");
    assert.equal(nats.spec.replicas, NATS_SERVERS);
    const env = nats.spec.template.spec.containers[0].env as EnvVar[];
    for (let i = 0; i < NATS_SERVERS; i++) {
      assert.match(conf, new RegExp(`^    \\$NATS_ROUTE_${i}$`, "m"), `nats.conf routes to server ${i}`);
      const route = env.find((e) => e.name === `NATS_ROUTE_${i}`)?.value ?? "";
      assert.equal(
        route,
        `nats://route:$(NATS_ROUTE_PASSWORD)@nats-${i}.${nats.spec.serviceName}:${ports.cluster}`,
        `NATS_ROUTE_${i}`,
      );
    }
    const headless = mustFind(objects, "Service", nats.spec.serviceName);
    assert.equal(headless.spec.clusterIP, "None", "the StatefulSet's Service is headless");
    assert.equal(headless.spec.publishNotReadyAddresses, true, "peers resolve before they are ready");
    const pdb = mustFind(objects, "PodDisruptionBudget", "nats");
    assert.deepEqual(pdb.spec.selector.matchLabels, nats.spec.selector.matchLabels);
    assert.ok(pdb.spec.maxUnavailable < Math.ceil((NATS_SERVERS + 1) / 2), "the PDB keeps a quorum");
  });
});

// ---------------------------------------------------------------------------------------------------------
// Rendered

describe("deploy - rendered with kubectl kustomize", () => {
  let scratch: TempDir;
  const rendered = new Map<string, K8sObject[]>();
  before(() => {
    if (!hasKubectl) return;
    scratch = tempDir("specloop-deploy-render-");
    for (const overlay of OVERLAYS) {
      rendered.set(overlay, kubectlKustomize(join(deployDir, "overlays", overlay)));
      rendered.set(`${overlay}+monitoring`, renderWithMonitoring(overlay, scratch.path));
    }
  });
  after(() => scratch?.dispose());

  test("deploy - every overlay, alone and with monitoring, renders and every object validates", (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    for (const [name, objects] of rendered) {
      const seen = new Set<string>();
      for (const obj of objects) {
        validateObject(obj, name, objects);
        const id = `${obj.kind}/${obj.metadata?.name}`;
        assert.ok(!seen.has(id), `${name}: ${id} twice`);
        seen.add(id);
        assert.equal(
          obj.metadata?.labels?.["app.kubernetes.io/part-of"],
          "specloop",
          `${name}: ${id} part-of`,
        );
      }
      for (const kind of ["StatefulSet", "PodDisruptionBudget", "HorizontalPodAutoscaler"]) {
        assert.ok(
          objects.some((o) => o.kind === kind),
          `${name}: a ${kind}`,
        );
      }
    }
    const withMonitoring = rendered.get("gpu+monitoring") ?? [];
    for (const kind of ["PrometheusRule", "ServiceMonitor"]) {
      assert.ok(
        withMonitoring.some((o) => o.kind === kind),
        `gpu+monitoring: a ${kind}`,
      );
    }
    const dashboard = mustFind(withMonitoring, "ConfigMap", "specloop-grafana-dashboard");
    assert.equal(dashboard.metadata?.labels?.grafana_dashboard, "1", "the label Grafana's sidecar loads");
    checkDashboard(JSON.parse(dashboard.data["specloop.json"]));
  });

  test("deploy - rendered environments load, and point the nodes at the R3 bus and the backend of their overlay", (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    const backends = { cpu: "cpu", gpu: "webgpu" } as const;
    for (const overlay of OVERLAYS) {
      const objects = rendered.get(overlay) ?? [];
      for (const w of workloads(objects)) {
        const name = w.metadata?.name as ServiceName;
        const env = containerEnv(
          w.spec.template.spec.containers[0],
          renderedConfigMaps(objects),
          placeholder,
        );
        const config = loadServiceConfig(name, env) as {
          bus: { urls: string[]; traceStream: { replicas: number } };
          node?: { backend: string };
        };
        assert.deepEqual(config.bus.urls, ["nats://nats:4222"], `${overlay} ${name}: the nats Service`);
        assert.equal(config.bus.traceStream.replicas, NATS_SERVERS, `${overlay} ${name}: R3`);
        if (name === "inference")
          assert.equal(config.node?.backend, backends[overlay], `${overlay}: backend`);
      }
    }
  });

  test("deploy - the gpu overlay asks for nvidia.com/gpu on GPU nodes; the cpu overlay asks for none", (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    const gpu = mustFind(rendered.get("gpu") ?? [], "Deployment", "inference").spec.template.spec;
    const resources = gpu.containers[0].resources;
    assert.equal(resources.requests["nvidia.com/gpu"], "1", "requests nvidia.com/gpu");
    assert.equal(resources.limits["nvidia.com/gpu"], "1", "limits nvidia.com/gpu (equal to the request)");
    assert.ok(Object.keys(gpu.nodeSelector ?? {}).length > 0, "a node selector for GPU nodes");
    assert.ok(
      (gpu.tolerations ?? []).some((t: { key: string }) => t.key === "nvidia.com/gpu"),
      "tolerates the GPU nodes' taint",
    );
    const cpuText = JSON.stringify(rendered.get("cpu"));
    assert.ok(!cpuText.includes("nvidia.com/gpu"), "the cpu overlay asks for no GPU");
    // Only the inference node is moved to GPUs.
    for (const w of workloads(rendered.get("gpu") ?? [])) {
      if (w.metadata?.name === "inference") continue;
      assert.ok(!JSON.stringify(w).includes("nvidia.com/gpu"), `${w.metadata?.name} stays on CPU nodes`);
    }
  });

  test("deploy - the trainer and each verifier replica keep their SQLite on a volume of their own", (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    const objects = rendered.get("cpu") ?? [];
    for (const name of ["speculator-trainer", "verifier"] as const) {
      const w = workloads(objects).find((o) => o.metadata?.name === name);
      assert.ok(w);
      const env = containerEnv(w.spec.template.spec.containers[0], renderedConfigMaps(objects), placeholder);
      const store = (loadServiceConfig(name, env) as { store: { path: string } }).store.path;
      const mount = w.spec.template.spec.containers[0].volumeMounts.find((m: { mountPath: string }) =>
        store.startsWith(`${m.mountPath}/`),
      );
      assert.ok(mount, `${name}: ${store} is on a mounted volume`);
      const volume = w.spec.template.spec.volumes?.find((v: { name: string }) => v.name === mount.name);
      const claimTemplate = (w.spec.volumeClaimTemplates ?? []).find(
        (v: K8sObject) => v.metadata?.name === mount.name,
      );
      assert.ok(
        volume?.persistentVolumeClaim || claimTemplate,
        `${name}: ${mount.name} is a persistent volume`,
      );
      if (volume?.persistentVolumeClaim)
        mustFind(objects, "PersistentVolumeClaim", volume.persistentVolumeClaim.claimName);
    }
  });

  test("deploy - every metric name in the alerts and the dashboard is a PromQL metric, not a word", (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    // The extraction the services test below relies on: it finds the metrics and nothing else.
    assert.deepEqual(
      promqlMetricNames(
        'sum by (namespace, drafter) (rate(a_total{drafter!="none", x=~"$v"}[5m])) / 64 * 1024 unless on (pod) up == 0',
      ),
      ["a_total", "up"],
    );
    const objects = rendered.get("cpu+monitoring") ?? [];
    const rule = mustFind(objects, "PrometheusRule", "specloop");
    for (const group of rule.spec.groups) {
      for (const r of group.rules)
        assert.ok(promqlMetricNames(r.expr).length > 0, `${r.alert}: reads a metric`);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// Stood up on loopback: the documented Secrets, NATS from nats.conf, the services from the rendered env

/** The ```sh block of docs/OPERATIONS.md that follows the marker saying this test runs it. */
function credentialsBlock(): string {
  const doc = readFileSync(operationsDoc, "utf8");
  const m = /<!-- deploy\.test\.ts runs this block[^>]*-->\s*```sh\n([\s\S]*?)```/.exec(doc);
  assert.ok(m, "docs/OPERATIONS.md: the credentials block and its marker");
  return m[1]!;
}

/** Runs the block with kubectl in client dry-run; returns the objects its kubectl lines would create. */
function runCredentialsBlock(home: string): K8sObject[] {
  // The block runs scripts/bus-credentials.mjs, which imports @specloop/bus's build.
  assert.ok(existsSync(join(root, "shared", "bus", "dist", "index.js")), "run `npm run build` first");
  const out = join(home, "kubectl-out.yaml");
  const shim = `kubectl() { command kubectl "$@" --dry-run=client -o yaml >> "$KUBECTL_OUT"; echo --- >> "$KUBECTL_OUT"; }`;
  const run = spawnSync("bash", ["-c", `set -euo pipefail\n${shim}\n${credentialsBlock()}`], {
    cwd: root,
    env: { ...process.env, HOME: home, KUBECTL_OUT: out },
    encoding: "utf8",
  });
  assert.equal(run.status, 0, `the credentials block failed: ${run.stderr}`);
  return parseYaml(readFileSync(out, "utf8"), "the credentials block");
}

/** A Secret's or ConfigMap's entries as text. */
function entries(obj: K8sObject): Record<string, string> {
  if (obj.kind === "ConfigMap") return obj.data ?? {};
  return Object.fromEntries(
    Object.entries((obj.data ?? {}) as Record<string, string>).map(([k, v]) => [
      k,
      Buffer.from(v, "base64").toString("utf8"),
    ]),
  );
}

interface NatsProcess {
  child: ChildProcess;
  clientPort: number;
  monitorPort: number;
  clusterPort: number;
  log: string[];
}

/** nats.conf made runnable beside two others on one machine: each replaced text must occur exactly once. */
function loopbackNatsConf(conf: string, at: Record<string, [string, string]>): string {
  let out = conf;
  for (const [what, [pattern, replacement]] of Object.entries(at)) {
    assert.equal(out.match(new RegExp(pattern, "gm"))?.length, 1, `nats.conf: one ${what}`);
    out = out.replace(new RegExp(pattern, "m"), replacement);
  }
  return out;
}

async function startNatsServer(dir: string, env: Record<string, string>): Promise<NatsProcess> {
  const log: string[] = [];
  const child = spawn("nats-server", ["-c", join(dir, "config", "nats.conf")], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const clientPort = Number(env.CLIENT_PORT);
  const monitorPort = Number(env.MONITOR_PORT);
  const clusterPort = Number(env.CLUSTER_PORT ?? 0);
  let ready = false;
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    if (chunk.includes("Server is ready")) ready = true;
    log.push(...chunk.split("\n").filter((l) => l !== ""));
    if (log.length > 60) log.splice(0, log.length - 60);
  });
  const deadline = Date.now() + 20_000;
  while (!ready) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`nats-server in ${dir} did not start:\n${log.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, clientPort, monitorPort, clusterPort, log };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  return (await res.json()) as Record<string, unknown>;
}

async function eventually<T>(what: string, fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

describe("deploy - stood up on loopback", () => {
  let scratch: TempDir;
  let documented: K8sObject[] = [];
  let objects: K8sObject[] = [];
  let secretsDir = "";
  const nats: NatsProcess[] = [];
  const services = new Map<ServiceName, { proc: ServiceProcess; metricsPort: number }>();

  before(async () => {
    if (!hasKubectl) return;
    scratch = tempDir("specloop-deploy-loopback-");
    documented = runCredentialsBlock(scratch.path);
    secretsDir = join(scratch.path, "specloop-secrets");
    objects = [
      ...kubectlKustomize(join(deployDir, "overlays", "cpu")),
      ...renderWithMonitoring("cpu", scratch.path).filter((o) => o.apiVersion.startsWith("monitoring.")),
    ];
    const byName = (kind: string, name: string) => {
      const obj = find(documented, kind, name) ?? find(objects, kind, name);
      assert.ok(obj, `neither the docs' credentials block nor the rendering makes ${kind} ${name}`);
      return entries(obj);
    };

    // NATS: the StatefulSet's servers, each from nats.conf with its Secret's files where the pod mounts them.
    const statefulSet = mustFind(objects, "StatefulSet", "nats");
    const conf = readFileSync(join(baseDir, "nats.conf"), "utf8");
    const container = statefulSet.spec.template.spec.containers[0];
    // Ports picked free can be taken before a server binds them (other tests on this machine): retry.
    for (let attempt = 1; ; attempt++) {
      const picked = await distinctFreePorts(3 * NATS_SERVERS);
      const ports = Array.from({ length: NATS_SERVERS }, (_, i) => ({
        client: picked[3 * i]!,
        monitor: picked[3 * i + 1]!,
        cluster: picked[3 * i + 2]!,
      }));
      try {
        for (let i = 0; i < NATS_SERVERS; i++) {
          const dir = join(scratch.path, `nats-${i}`);
          rmSync(dir, { recursive: true, force: true });
          const authMount = container.volumeMounts.find((m: { name: string }) => m.name === "auth");
          const authVolume = statefulSet.spec.template.spec.volumes.find(
            (v: { name: string }) => v.name === "auth",
          );
          mkdirSync(join(dir, "config"), { recursive: true });
          mkdirSync(join(dir, basename(authMount.mountPath)), { recursive: true });
          for (const [key, text] of Object.entries(byName("Secret", authVolume.secret.secretName))) {
            writeFileSync(join(dir, basename(authMount.mountPath), key), text);
          }
          writeFileSync(
            join(dir, "config", "nats.conf"),
            loopbackNatsConf(conf, {
              "client port": ["^port: 4222$", `port: ${ports[i]!.client}\nhost: 127.0.0.1`],
              "monitor port": ["^http_port: 8222$", `http: 127.0.0.1:${ports[i]!.monitor}`],
              "cluster port": ["^  port: 6222$", `  port: ${ports[i]!.cluster}\n  host: 127.0.0.1`],
              "store dir": ["/data/jetstream", join(dir, "jetstream")],
              "pid file": ["/var/run/nats/nats\\.pid", join(dir, "nats.pid")],
            }),
          );
          const env = containerEnv(
            container,
            () => ({}),
            (ref, name) => {
              if (ref.fieldRef?.fieldPath === "metadata.name") return `nats-${i}`;
              if (ref.secretKeyRef) {
                const value = byName("Secret", ref.secretKeyRef.name)[ref.secretKeyRef.key];
                assert.ok(
                  value !== undefined,
                  `${name}: Secret ${ref.secretKeyRef.name} has no ${ref.secretKeyRef.key}`,
                );
                return value;
              }
              throw new Error(`nats ${name}: unexpected valueFrom`);
            },
          );
          // The route URLs name nats-N.nats-headless:6222; here server N listens on its loopback port.
          for (let j = 0; j < NATS_SERVERS; j++) {
            const route = `NATS_ROUTE_${j}`;
            const host = `nats-${j}.${statefulSet.spec.serviceName}:6222`;
            assert.ok(env[route]?.includes(`@${host}`), `${route} = ${env[route]}`);
            env[route] = env[route]!.replace(host, `127.0.0.1:${ports[j]!.cluster}`);
          }
          env.CLIENT_PORT = String(ports[i]!.client);
          env.MONITOR_PORT = String(ports[i]!.monitor);
          env.CLUSTER_PORT = String(ports[i]!.cluster);
          nats.push(await startNatsServer(dir, env));
        }
        break;
      } catch (err) {
        for (const n of nats.splice(0)) await stopProcess(n.child);
        if (attempt >= 3 || !/address already in use/.test(String(err))) throw err;
      }
    }

    // The services, as the cpu overlay runs them: each mount laid out under the scratch dir, each path in
    // their env moved there, on the loopback NATS cluster; the trainer first (it provisions the bus).
    const urls = nats.map((n) => `nats://127.0.0.1:${n.clientPort}`).join(",");
    for (const name of ["speculator-trainer", "inference", "verifier"] as const) {
      const w = workloads(objects).find((o) => o.metadata?.name === name);
      assert.ok(w);
      const pod = w.spec.template.spec;
      const c = pod.containers[0];
      const podDir = join(scratch.path, name);
      const mounts: [string, string][] = [];
      for (const m of c.volumeMounts as { name: string; mountPath: string }[]) {
        const local = join(podDir, m.mountPath);
        mkdirSync(local, { recursive: true });
        mounts.push([m.mountPath, local]);
        const volume = (pod.volumes ?? []).find((v: { name: string }) => v.name === m.name);
        const claim = (w.spec.volumeClaimTemplates ?? []).find((v: K8sObject) => v.metadata?.name === m.name);
        assert.ok(volume || claim, `${name}: volume ${m.name}`);
        const source = volume?.secret
          ? byName("Secret", volume.secret.secretName)
          : volume?.configMap
            ? byName("ConfigMap", volume.configMap.name)
            : {};
        for (const [key, text] of Object.entries(source)) {
          writeFileSync(join(local, key), text);
          if (volume?.secret) chmodSync(join(local, key), volume.secret.defaultMode ?? 0o644);
        }
      }
      const env = containerEnv(c, renderedConfigMaps(objects), (ref, varName) => {
        if (ref.fieldRef?.fieldPath === "metadata.name") return `${name}-0`;
        throw new Error(`${name} ${varName}: unexpected valueFrom`);
      });
      for (const [key, value] of Object.entries(env)) {
        const mount = mounts.find(([path]) => value === path || value.startsWith(`${path}/`));
        if (mount) env[key] = join(mount[1], posix.relative(mount[0], value));
      }
      const metricsPort = await freePort();
      delete env.SPECLOOP_SERVER__GRPC_PORT;
      env.SPECLOOP_SERVER__METRICS_PORT = String(metricsPort);
      env.SPECLOOP_BUS__URLS = urls;
      env.SPECLOOP_LOG__LEVEL = "warn";
      const proc = await spawnService(name, { env, timeoutMs: 120_000 });
      services.set(name, { proc, metricsPort });
    }
  });

  after(async () => {
    for (const { proc } of services.values()) await proc.stop();
    for (const n of nats) await stopProcess(n.child);
    scratch?.dispose();
  });

  test("deploy - the documented credentials make every Secret and ConfigMap the pods reference, with the keys they read", (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    for (const obj of documented) validateObject(obj, "docs/OPERATIONS.md credentials block");
    const generated = new Set(objects.filter((o) => o.kind === "ConfigMap").map((o) => o.metadata?.name));
    const referenced = new Map<string, { kind: string; keys: Set<string> }>();
    const need = (kind: string, name: string, key?: string) => {
      const entry = referenced.get(name) ?? { kind, keys: new Set<string>() };
      if (key !== undefined) entry.keys.add(key);
      referenced.set(name, entry);
    };
    for (const w of objects.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet")) {
      const pod = w.spec.template.spec;
      for (const c of pod.containers) {
        for (const v of (c.env ?? []) as EnvVar[]) {
          if (v.valueFrom?.secretKeyRef)
            need("Secret", v.valueFrom.secretKeyRef.name, v.valueFrom.secretKeyRef.key);
        }
        // Every file path the service reads from a mounted Secret or ConfigMap names one of its keys.
        for (const m of c.volumeMounts ?? []) {
          const volume = (pod.volumes ?? []).find((v: { name: string }) => v.name === m.name);
          const ref = volume?.secret
            ? { kind: "Secret", name: volume.secret.secretName }
            : volume?.configMap && !generated.has(volume.configMap.name)
              ? { kind: "ConfigMap", name: volume.configMap.name }
              : undefined;
          if (!ref) continue;
          need(ref.kind, ref.name);
          for (const v of (c.env ?? []) as EnvVar[]) {
            if (v.value?.startsWith(`${m.mountPath}/`))
              need(ref.kind, ref.name, posix.relative(m.mountPath, v.value));
          }
          // NATS reads its users through nats.conf's include, relative to the config's mount.
          if (w.metadata?.name === "nats" && m.name === "auth") {
            const include = /^include "(.+)"$/m.exec(readFileSync(join(baseDir, "nats.conf"), "utf8"))?.[1];
            assert.ok(include, "nats.conf includes its users");
            const config = c.volumeMounts.find((v: { name: string }) => v.name === "config");
            const path = posix.join(config.mountPath, include);
            assert.ok(path.startsWith(`${m.mountPath}/`), `${path} is under the auth mount`);
            need(ref.kind, ref.name, posix.relative(m.mountPath, path));
          }
        }
      }
    }
    assert.ok(referenced.size >= 9, `the pods reference ${referenced.size} objects`);
    const made = documented.filter((o) => o.kind === "Secret" || o.kind === "ConfigMap");
    assert.deepEqual(
      made.map((o) => o.metadata?.name).sort(),
      [...referenced.keys()].sort(),
      "the documented objects are exactly the ones the pods reference",
    );
    for (const [name, { kind, keys }] of referenced) {
      const obj = mustFind(made, kind, name);
      assert.equal(obj.metadata?.namespace, "specloop", `${name}: in the namespace the docs deploy to`);
      for (const key of keys) assert.ok(key in entries(obj), `${kind} ${name} has no key ${key}`);
    }
    assert.match(
      entries(mustFind(made, "Secret", "nats-routes")).password ?? "",
      /^[0-9a-f]{64}$/,
      "URL-safe",
    );
  });

  test("deploy - the documented token files give the admin role to the trainer's and run-code to the verifier's", (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    for (const [file, role, other] of [
      ["trainer-tokens.yaml", "admin", "run-code"],
      ["verifier-tokens.yaml", "run-code", "admin"],
    ] as const) {
      const path = join(secretsDir, file);
      const auth = TokenAuth.fromConfig({ tokens: [], tokensFile: path });
      const token = /token: (\S+)/.exec(readFileSync(path, "utf8"))?.[1];
      assert.ok(token, `${file}: a token`);
      assert.ok(auth.require(bearerMetadata(token), role), `${file}: the ${role} role`);
      assert.throws(() => auth.require(bearerMetadata(token), other), `${file}: not the ${other} role`);
    }
  });

  test("deploy - nats.conf forms one JetStream cluster of every server, with routes authenticated", async (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    for (const n of nats) {
      const jsz = await eventually(
        `server on ${n.clientPort} in a cluster of ${NATS_SERVERS}`,
        async () => {
          const j = await getJson(`http://127.0.0.1:${n.monitorPort}/jsz`);
          const meta = j.meta_cluster as { cluster_size?: number; leader?: string } | undefined;
          assert.equal(meta?.cluster_size, NATS_SERVERS);
          assert.ok(meta?.leader, "a meta leader");
          return j;
        },
        30_000,
      );
      assert.ok(jsz);
      const routez = await getJson(`http://127.0.0.1:${n.monitorPort}/routez`);
      assert.ok((routez.num_routes as number) >= NATS_SERVERS - 1, `routes: ${n.log.join("\n")}`);
      assert.ok(
        n.log.every((l) => !/authorization violation/i.test(l)),
        `no refused route: ${n.log.join("\n")}`,
      );
    }
    // A server with the same nats.conf but not the route password is refused by every one of them.
    const dir = join(scratch.path, "nats-intruder");
    const [client, monitor, cluster] = [await freePort(), await freePort(), await freePort()];
    mkdirSync(join(dir, "config"), { recursive: true });
    mkdirSync(join(dir, "auth"), { recursive: true });
    writeFileSync(
      join(dir, "auth", "auth.conf"),
      readFileSync(join(scratch.path, "nats-0", "auth", "auth.conf")),
    );
    writeFileSync(
      join(dir, "config", "nats.conf"),
      readFileSync(join(scratch.path, "nats-0", "config", "nats.conf"), "utf8")
        .replace(/^port: \d+$/m, `port: ${client}`)
        .replace(/^http: .*$/m, `http: 127.0.0.1:${monitor}`)
        .replace(/^ {2}port: \d+$/m, `  port: ${cluster}`)
        .replaceAll(join(scratch.path, "nats-0"), dir),
    );
    const routes = Object.fromEntries(
      nats.map((n, i) => [`NATS_ROUTE_${i}`, `nats://route:not-the-password@127.0.0.1:${n.clusterPort}`]),
    );
    const intruder = await startNatsServer(dir, {
      ...routes,
      POD_NAME: "nats-intruder",
      NATS_ROUTE_PASSWORD: "not-the-password",
      CLIENT_PORT: String(client),
      MONITOR_PORT: String(monitor),
    });
    try {
      await eventually(
        "every server refuses the intruder's route",
        async () => {
          for (const n of nats) {
            assert.ok(
              n.log.some((l) => /Router connection closed: Authentication Failure/.test(l)),
              `server on ${n.clientPort}:\n${n.log.join("\n")}\nintruder:\n${intruder.log.join("\n")}`,
            );
          }
        },
        15_000,
      );
      for (const n of nats) {
        const routez = await getJson(`http://127.0.0.1:${n.monitorPort}/routez`);
        assert.equal(
          routez.num_routes,
          NATS_SERVERS - 1,
          `server on ${n.clientPort}: only its peers' routes`,
        );
      }
    } finally {
      await stopProcess(intruder.child);
    }
  });

  test("deploy - the trainer, configured as deployed, provisions every stream and bucket R3 across the servers", async (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    const bus = await connectBus(
      {
        urls: nats.map((n) => `nats://127.0.0.1:${n.clientPort}`),
        name: "deploy-test",
        connectTimeoutMs: 5_000,
        reconnectWaitMs: 250,
        credentialsFile: join(secretsDir, "credentials", "admin.nk"),
      },
      createLogger("deploy-test", "silent"),
    );
    try {
      const streams: { name: string; replicas: number; peers: number }[] = [];
      for await (const s of bus.jsm.streams.list()) {
        streams.push({
          name: s.config.name,
          replicas: s.config.num_replicas,
          peers: 1 + (s.cluster?.replicas?.length ?? 0),
        });
      }
      const names = streams.map((s) => s.name).sort();
      assert.ok(names.length >= 5, `the trainer provisioned the bus: ${names.join(", ")}`);
      for (const s of streams)
        assert.deepEqual(s, { name: s.name, replicas: NATS_SERVERS, peers: NATS_SERVERS });
    } finally {
      await bus.close();
    }
  });

  test("deploy - every metric the alerts and the dashboard read is one the running services export", async (t) => {
    if (!hasKubectl) return t.skip(NO_KUBECTL);
    const exported = new Map<string, string>();
    for (const [name, { metricsPort }] of services) {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(res.status, 200, `${name} /metrics`);
      const own = exposedMetrics(await res.text());
      assert.ok(own.has("grpc_server_handled_total"), `${name} exports its gRPC metrics`);
      for (const [k, v] of own) exported.set(k, v);
    }
    assert.ok(exported.has("specloop_inference_accepted_per_pass") && exported.has("specloop_trainer_steps"));
    const rule = mustFind(objects, "PrometheusRule", "specloop");
    const dashboard = JSON.parse(
      readFileSync(join(monitoringDir, "grafana-dashboard.json"), "utf8"),
    ) as K8sObject;
    const queries: DashboardQuery[] = [
      ...rule.spec.groups.flatMap((g: { rules: { alert: string; expr: string }[] }) =>
        g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
      ),
      ...dashboardQueries(dashboard),
    ];
    const used = new Set<string>();
    for (const q of queries) {
      for (const series of promqlMetricNames(q.expr)) {
        assert.ok(
          isExported(series, exported) || SCRAPE_SERIES.has(series),
          `${q.where} reads ${series}, which no service exports`,
        );
        used.add(series.replace(/_(bucket|sum|count)$/, ""));
      }
    }
    // The four the issue names: acceptance collapse, trace drops, a stale node, a stuck canary.
    for (const alert of [
      "SpecloopAcceptanceCollapse",
      "SpecloopTraceDrops",
      "SpecloopNodeStale",
      "SpecloopCanaryStuck",
    ]) {
      assert.ok(
        queries.some((q) => q.where === `alert ${alert}`),
        `an alert ${alert}`,
      );
    }
    assert.ok(used.size >= 20, `the dashboard and alerts read ${used.size} metrics`);
  });
});
