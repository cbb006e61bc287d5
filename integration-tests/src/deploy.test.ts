// The Kubernetes manifests under deploy/: every YAML parses and every object validates against the
// Kubernetes schemas (kubernetes-models); every kustomization names files that exist; every SPECLOOP_*
// variable a Deployment sets is a real key of that service's config schema; container ports are the
// services' default gRPC ports and the probes ask the gRPC health service on them. When kubectl is on the
// PATH, the overlay is also rendered with `kubectl kustomize` and the result validated.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { inferenceConfigSchema } from "@specloop/inference";
import { configLeaves } from "@specloop/runtime";
import { trainerConfigSchema } from "@specloop/speculator-trainer";
import { verifierConfigSchema } from "@specloop/verifier";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { ConfigMap, PersistentVolumeClaim, Service } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import type { z } from "zod";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const deployDir = join(root, "deploy");
const kustomizeDirs = [join(deployDir, "base"), join(deployDir, "overlays", "cpu")];

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
  "v1/PersistentVolumeClaim": PersistentVolumeClaim as unknown as Validator,
  "apps/v1/Deployment": Deployment as unknown as Validator,
  "apps/v1/StatefulSet": StatefulSet as unknown as Validator,
};

/** Service name (the Deployment's and the folder's) -> its config schema and default gRPC port. */
const SERVICES: Record<string, { schema: z.ZodObject; grpcPort: number }> = {
  inference: { schema: inferenceConfigSchema, grpcPort: 50051 },
  "speculator-trainer": { schema: trainerConfigSchema, grpcPort: 50052 },
  verifier: { schema: verifierConfigSchema, grpcPort: 50053 },
};

function defaultGrpcPort(schema: z.ZodObject): number {
  const server = schema.shape.server as z.ZodObject;
  return (server.shape.grpcPort as z.ZodType<number>).parse(undefined);
}

function parseYaml(text: string, where: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    assert.equal(doc.errors.length, 0, `${where}: ${doc.errors.map((e) => e.message).join("; ")}`);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null) out.push(value);
  }
  return out;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
    .map((f) => join(dir, f));
}

function readObjects(file: string): K8sObject[] {
  return parseYaml(readFileSync(file, "utf8"), relative(root, file));
}

function validateObject(obj: K8sObject, where: string): void {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const Model = MODELS[key];
  assert.ok(Model, `${where}: no validator for ${key} (${obj.metadata?.name})`);
  assert.doesNotThrow(() => new Model(obj).validate(), `${where}: ${key} ${obj.metadata?.name} is invalid`);
}

/** All objects of base/ and overlays/cpu/ that are manifests (not kustomizations). */
function manifestObjects(): { file: string; obj: K8sObject }[] {
  const out: { file: string; obj: K8sObject }[] = [];
  for (const dir of kustomizeDirs) {
    for (const file of yamlFiles(dir)) {
      for (const obj of readObjects(file)) {
        if (obj.kind === "Kustomization") continue;
        out.push({ file, obj });
      }
    }
  }
  return out;
}

function deployments(): K8sObject[] {
  return manifestObjects()
    .filter(({ file, obj }) => obj.kind === "Deployment" && dirname(file) === kustomizeDirs[0])
    .map(({ obj }) => obj);
}

describe("deploy - manifests", () => {
  test("deploy - every YAML parses and every full object validates against the Kubernetes schemas", () => {
    const objects = manifestObjects();
    assert.ok(objects.length >= 8, `expected the base's objects, found ${objects.length}`);
    for (const { file, obj } of objects) {
      assert.ok(obj.apiVersion && obj.kind && obj.metadata?.name, `${relative(root, file)}: incomplete`);
      // A strategic-merge patch is partial by design: its full form is checked in the rendering test.
      if (file.includes(join("overlays", "cpu"))) continue;
      validateObject(obj, relative(root, file));
      assert.equal(obj.metadata?.namespace, undefined, `${obj.metadata?.name}: the base is namespace-free`);
    }
  });

  test("deploy - every resource, patch and generated file a kustomization names exists", () => {
    for (const dir of kustomizeDirs) {
      const [k] = readObjects(join(dir, "kustomization.yaml"));
      assert.ok(k, `${relative(root, dir)}: empty kustomization.yaml`);
      assert.equal(k.kind, "Kustomization");
      const named: string[] = [
        ...(k.resources ?? []),
        ...(k.patches ?? []).map((p: { path?: string }) => p.path).filter(Boolean),
        ...(k.configMapGenerator ?? []).flatMap((g: { files?: string[] }) => g.files ?? []),
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

  test("deploy - every Deployment is one of the services, with recommended labels and non-root pods", () => {
    const found = deployments().map((d) => d.metadata?.name);
    assert.deepEqual(found.sort(), Object.keys(SERVICES).sort());
    for (const d of deployments()) {
      assert.equal(d.metadata?.labels?.["app.kubernetes.io/name"], d.metadata?.name);
      assert.equal(
        d.spec.template.spec.securityContext?.runAsNonRoot,
        true,
        `${d.metadata?.name}: runAsNonRoot`,
      );
      const [c] = d.spec.template.spec.containers;
      assert.deepEqual(c.args, [`services/${d.metadata?.name}/dist/main.js`]);
      assert.ok(c.resources?.requests && c.resources?.limits, `${d.metadata?.name}: requests and limits`);
    }
    const trainer = deployments().find((d) => d.metadata?.name === "speculator-trainer");
    assert.equal(trainer?.spec.strategy?.type, "Recreate");
  });

  test("deploy - every SPECLOOP_* variable a Deployment sets is a real key of that service's config", () => {
    const overlay = readObjects(join(deployDir, "overlays", "cpu", "inference-cpu.yaml"));
    for (const d of [...deployments(), ...overlay]) {
      const name = d.metadata?.name ?? "";
      const svc = SERVICES[name];
      assert.ok(svc, `unknown service ${name}`);
      const keys = new Set(configLeaves(svc.schema).map((l) => l.env));
      for (const c of d.spec.template.spec.containers) {
        for (const env of c.env ?? []) {
          if (!env.name.startsWith("SPECLOOP_")) continue;
          assert.ok(keys.has(env.name), `${name}: ${env.name} is not a config key of ${name}`);
        }
      }
    }
  });

  test("deploy - container ports are the default gRPC ports and the probes ask gRPC health there", () => {
    for (const d of deployments()) {
      const name = d.metadata?.name ?? "";
      const svc = SERVICES[name]!;
      assert.equal(defaultGrpcPort(svc.schema), svc.grpcPort, `${name}: the schema's default gRPC port`);
      const [c] = d.spec.template.spec.containers;
      const grpc = c.ports.find((p: { name: string }) => p.name === "grpc");
      assert.equal(grpc?.containerPort, svc.grpcPort, `${name}: grpc containerPort`);
      assert.ok(
        c.ports.some((p: { name: string }) => p.name === "metrics"),
        `${name}: a named metrics port`,
      );
      const envPort = c.env.find((e: { name: string }) => e.name === "SPECLOOP_SERVER__GRPC_PORT")?.value;
      assert.equal(envPort, String(svc.grpcPort), `${name}: SPECLOOP_SERVER__GRPC_PORT`);
      for (const probe of ["readinessProbe", "livenessProbe"]) {
        assert.equal(
          c[probe]?.grpc?.port,
          svc.grpcPort,
          `${name}: ${probe} is a gRPC probe on ${svc.grpcPort}`,
        );
      }
    }
    const services = manifestObjects()
      .filter(({ obj }) => obj.kind === "Service")
      .map(({ obj }) => obj);
    for (const [name, svc] of Object.entries(SERVICES)) {
      const s = services.find((o) => o.metadata?.name === name);
      assert.ok(s, `a Service for ${name}`);
      assert.equal(s.spec.ports.find((p: { name: string }) => p.name === "grpc")?.port, svc.grpcPort);
    }
  });

  test("deploy - the overlay renders with kubectl kustomize and its output validates", (t) => {
    const which = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
    if (which.status !== 0) {
      t.skip("kubectl is not on the PATH");
      return;
    }
    const out = spawnSync("kubectl", ["kustomize", join(deployDir, "overlays", "cpu")], { encoding: "utf8" });
    assert.equal(out.status, 0, out.stderr);
    const objects = parseYaml(out.stdout, "kubectl kustomize deploy/overlays/cpu");
    for (const obj of objects) validateObject(obj, "rendered overlay");
    const inference = objects.find((o) => o.kind === "Deployment" && o.metadata?.name === "inference");
    const base = deployments().find((d) => d.metadata?.name === "inference");
    const cpu = (r: K8sObject) => r.spec.template.spec.containers[0].resources.requests.cpu;
    assert.ok(inference && base);
    assert.notEqual(cpu(inference), cpu(base), "the overlay changes the inference node's CPU");
    assert.ok(objects.some((o) => o.kind === "StatefulSet" && o.metadata?.name === "nats"));
  });
});
