// Faults across processes on loopback: a nats-server, the speculator-trainer (its training paused: these
// tests are about the plumbing) and two inference nodes on the bundled model.
// - NATS stopped and restarted while both nodes serve: no client call fails, the nodes spool their traces
//   and publish them once NATS is back, and the trainer consumes every trace exactly once (counted end to
//   end: requests served = traces the trainer counted, and no more arrive later).
// - A version signed by a key the nodes do not trust, and one signed by the trainer's key whose weights are
//   corrupt, are refused by both nodes (counted in their metrics), which keep serving the live head.
// - A node killed with SIGKILL: the other keeps serving, and `specloop status` stops listing the dead one
//   as live (stale, then gone when its heartbeat entry expires).
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentials, Metadata } from "@grpc/grpc-js";
import { ManifestSigner, SpeculatorRegistry, writeSigningKey } from "@specloop/bus";
import { openTestBus, testBusConfig, waitFor } from "@specloop/bus/internal";
import { runCli } from "@specloop/cli/testing";
import { loadModelDir, randomEagleWeights } from "@specloop/engine";
import {
  Drafter,
  GenerateRequest,
  type GenerateResponse,
  type GetNodeStatusResponse,
  type GetTrainerStatusResponse,
  InferenceClient,
  SpeculatorManifest,
  SpeculatorRole,
  SpeculatorTrainerClient,
} from "@specloop/proto";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { call } from "./harness/grpc.js";
import { type ServiceProcess, spawnService } from "./harness/service-process.js";

const insecure = credentials.createInsecure();
const ADMIN_TOKEN = "faults-test-admin-token-0123456789";
const MODEL_DIR = new URL("../../models/tiny-code", import.meta.url).pathname;
const admin = new Metadata();
admin.set("authorization", `Bearer ${ADMIN_TOKEN}`);

interface Node {
  id: string;
  proc: ServiceProcess;
  metricsPort: number;
  client: InferenceClient;
}

let dir: TempDir;
let nats: NatsServer;
let trainer: ServiceProcess;
let trainerClient: SpeculatorTrainerClient;
let keys: { keyFile: string; publicKeyFile: string };
const nodes: Node[] = [];

function generate(
  node: Node,
  prompt: string,
  drafter: Drafter,
): Promise<{ tokens: number[]; version: string }> {
  return new Promise((resolve, reject) => {
    const chunks: GenerateResponse[] = [];
    const s = node.client.generate(
      GenerateRequest.fromPartial({ prompt, maxTokens: 12, domain: "python", speculation: { drafter } }),
    );
    s.on("data", (c: GenerateResponse) => chunks.push(c));
    s.on("error", reject);
    s.on("end", () =>
      resolve({
        tokens: chunks.flatMap((c) => c.tokenIds),
        version: chunks.at(-1)?.stats?.speculatorVersion ?? "",
      }),
    );
  });
}

async function trainerStatus() {
  return (await call<GetTrainerStatusResponse>((cb) => trainerClient.getTrainerStatus({}, cb))).status;
}

async function servedVersions(node: Node): Promise<string[]> {
  const st = await call<GetNodeStatusResponse>((cb) => node.client.getNodeStatus({}, cb));
  return (st.status?.speculators ?? []).map((m) => m.versionId);
}

/** A counter's value summed over the series whose labels include `labels`, from a node's /metrics. */
async function metric(node: Node, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

before(async () => {
  dir = tempDir("specloop-faults-");
  nats = await startNatsServer();
  keys = writeSigningKey(join(dir.path, "keys"));
  const tokens = join(dir.path, "tokens.yaml");
  writeFileSync(tokens, `- identity: test-admin\n  roles: [admin]\n  token: ${ADMIN_TOKEN}\n`);
  trainer = await spawnService("speculator-trainer", {
    env: {
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_STORE__PATH: join(dir.path, "trainer", "trainer.sqlite"),
      SPECLOOP_BUS__MANIFESTS__SIGNING_KEY_FILE: keys.keyFile,
      SPECLOOP_SERVER__AUTH__TOKENS_FILE: tokens,
      SPECLOOP_TRAINER__CPU_THREADS: "1",
    },
    timeoutMs: 120_000,
  });
  trainerClient = new SpeculatorTrainerClient(trainer.address, insecure);
  // The plumbing is under test, not learning: no training steps compete with the nodes for the cores.
  await call((cb) => trainerClient.pauseTraining({ actor: "faults test" }, admin, cb));
  for (const id of ["faults-node-a", "faults-node-b"]) {
    const metricsPort = await freePort();
    const proc = await spawnService("inference", {
      env: {
        SPECLOOP_BUS__URLS: nats.url,
        SPECLOOP_BUS__MANIFESTS__TRUSTED_KEYS_FILE: keys.publicKeyFile,
        SPECLOOP_BUS__SPOOL__DIR: join(dir.path, id, "spool"),
        SPECLOOP_NODE__ID: id,
        SPECLOOP_NODE__CPU_THREADS: "1",
        SPECLOOP_NODE__HEARTBEAT_INTERVAL_MS: "500",
        SPECLOOP_SERVER__METRICS_PORT: String(metricsPort),
      },
      timeoutMs: 120_000,
    });
    nodes.push({ id, proc, metricsPort, client: new InferenceClient(proc.address, insecure) });
  }
  const day0 = (await trainerStatus())?.liveVersionId ?? "";
  assert.ok(day0 !== "", "the trainer shipped a day-0 head");
  await waitFor(
    "both nodes serving the day-0 head",
    async () => (await Promise.all(nodes.map(servedVersions))).every((v) => v.includes(day0)),
    60_000,
  );
});

after(async () => {
  trainerClient?.close();
  for (const n of nodes) n.client.close();
  await Promise.all(nodes.map((n) => n.proc.stop()));
  await trainer?.stop();
  await nats?.stop();
  dir?.dispose();
});

describe("faults across processes", () => {
  test("faults - NATS restarted under load: no call fails, every trace reaches the trainer exactly once", async () => {
    const before = Number((await trainerStatus())?.tracesConsumed ?? 0);
    const prompts = ["def add(a, b):\n", "for i in range(10):\n", "class Stack:\n", "import os\n"];
    let served = 0;
    let stop = false;
    const load = nodes.map(async (node, n) => {
      for (let i = 0; !stop || i < 6; i++) {
        const drafter = i % 2 === 0 ? Drafter.DRAFTER_SUFFIX : Drafter.DRAFTER_NONE;
        const r = await generate(node, prompts[(i + n) % prompts.length] as string, drafter);
        assert.ok(r.tokens.length > 0);
        served++;
      }
    });
    await waitFor("traffic under way", () => served >= 4, 30_000);
    await nats.restart();
    await waitFor("traffic after the restart", () => served >= 12, 60_000);
    await nats.restart();
    stop = true;
    await Promise.all(load);
    const consumed = async () => Number((await trainerStatus())?.tracesConsumed ?? 0) - before;
    await waitFor(
      `the trainer to count all ${served} traces`,
      async () => (await consumed()) >= served,
      60_000,
    );
    // Nothing arrives twice later (a spool replay, a redelivery of an unacked trace).
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(await consumed(), served, "every trace consumed exactly once");
  });

  test("faults - an unsigned and a corrupt version are refused by both nodes, which keep serving the live head", async () => {
    const live = (await trainerStatus())?.liveVersionId ?? "";
    const bus = await openTestBus(testBusConfig(nats.url));
    try {
      const target = (await loadModelDir(MODEL_DIR)).config;
      const unknownKey = generateKeyPairSync("ed25519").privateKey;
      const forger = await SpeculatorRegistry.open(bus.js, { signer: new ManifestSigner(unknownKey) });
      const manifest = (versionId: string) =>
        SpeculatorManifest.fromPartial({
          modelId: "tiny-code",
          versionId,
          role: SpeculatorRole.SPECULATOR_ROLE_LIVE,
          architecture: "eagle-v1",
        });
      const refusedBefore = await Promise.all(
        nodes.map((n) => metric(n, "specloop_inference_speculator_manifests_refused_total")),
      );
      await forger.publish({ manifest: manifest("forged-1"), blob: randomEagleWeights(target, { seed: 5 }) });
      await waitFor(
        "both nodes refusing the manifest signed by an unknown key",
        async () => {
          const now = await Promise.all(
            nodes.map((n) => metric(n, "specloop_inference_speculator_manifests_refused_total")),
          );
          return now.every((v, i) => v > (refusedBefore[i] ?? 0));
        },
        20_000,
      );
      const trainerKey = await SpeculatorRegistry.open(bus.js, {
        signer: ManifestSigner.fromFile(keys.keyFile),
      });
      const corrupt = randomEagleWeights(target, { seed: 6 }).slice(0, 4096);
      await trainerKey.publish({ manifest: manifest("corrupt-1"), blob: corrupt });
      await waitFor(
        "both nodes refusing the corrupt weights",
        async () => {
          const now = await Promise.all(
            nodes.map((n) => metric(n, "specloop_inference_speculator_swaps_total", { outcome: "refused" })),
          );
          return now.every((v) => v > 0);
        },
        20_000,
      );
      for (const node of nodes) {
        const versions = await servedVersions(node);
        assert.ok(versions.includes(live) && !versions.some((v) => v === "forged-1" || v === "corrupt-1"));
        const r = await generate(node, "def add(a, b):\n", Drafter.DRAFTER_EAGLE);
        assert.equal(r.version, live, `${node.id} drafts with the live head`);
      }
    } finally {
      await bus.close();
    }
  });

  test("faults - SIGKILL of one node: the other keeps serving, and `specloop status` no longer lists the dead one live", async () => {
    const [alive, dead] = nodes as [Node, Node];
    const listed = await runCli(["status", "--json", "--nats", nats.url]);
    const ids = (JSON.parse(listed.stdout) as { nodes: { nodeId: string }[] }).nodes.map((n) => n.nodeId);
    assert.deepEqual(
      ids,
      [alive.id, dead.id],
      `both nodes report; node b said: ${dead.proc
        .output()
        .stdout.split("\n")
        .filter((l) => l.includes("heartbeat"))
        .join("\n")}`,
    );
    dead.proc.child.kill("SIGKILL");
    await dead.proc.exited;
    const r = await generate(alive, "def add(a, b):\n", Drafter.DRAFTER_SUFFIX);
    assert.ok(r.tokens.length > 0, "the other node serves");
    // Its heartbeat stops: `status` marks it stale, and drops it once the entry expires (the bucket's TTL).
    let status: { nodes: { nodeId: string; stale: boolean }[] } = { nodes: [] };
    await waitFor(
      "the dead node no longer reported live",
      async () => {
        const run = await runCli(["status", "--json", "--stale-after", "2000", "--nats", nats.url]);
        status = JSON.parse(run.stdout);
        const it = status.nodes.find((n) => n.nodeId === dead.id);
        return it === undefined || it.stale;
      },
      30_000,
    );
    assert.equal(
      status.nodes.find((n) => n.nodeId === alive.id)?.stale,
      false,
      "the live node is listed, not stale",
    );
    assert.ok((await generate(alive, "import os\n", Drafter.DRAFTER_NONE)).tokens.length > 0);
  });
});
