// The node's bus wiring (fleet.ts) under attack and outage, with auth on: a real nats-server whose only
// users are the roles' nkey users, the node on its node credential, the real engine on the bundled model,
// the real gRPC API on loopback. Manifests not signed by the trusted key and malformed registry entries
// are refused and counted, hot-swap goes on and a restarted node loads the newest valid entry; forged
// fleet traces are refused at intake; the fleet consumer is named by the bus and removed once its node
// is gone; traces of requests served while NATS was stopped are all published, in order.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { credentials } from "@grpc/grpc-js";
import {
  type Bus,
  type ManifestRefusedError,
  ManifestSigner,
  nodeSuffixConsumer,
  SpeculatorRegistry,
} from "@specloop/bus";
import {
  SPECULATOR_BUCKET,
  speculatorKey,
  TRACE_STREAM,
  traceSubject,
  waitFor,
} from "@specloop/bus/internal";
import { type SecuredTestBus, startSecuredTestBus } from "@specloop/bus/testing";
import { randomEagleWeights } from "@specloop/engine";
import {
  Drafter,
  InferenceClient,
  InferenceService,
  SERVICE_NAMES,
  SpeculatorManifest,
  SpeculatorRole,
  Trace,
} from "@specloop/proto";
import { createLogger, type GrpcServerHandle, loadConfig, startGrpcServer } from "@specloop/runtime";
import { type TempDir, tempDir } from "@specloop/testkit";
import { Registry } from "prom-client";
import { inferenceConfigSchema } from "./config.js";
import { InferenceNode } from "./node.js";
import { inferenceServer } from "./server.js";
import type { SwapOutcome } from "./speculators.js";
import { generateStream } from "./testing.js";

const MODELS = fileURLToPath(new URL("../../../models/", import.meta.url));
const NODE_ID = "node-fleet";
const logger = createLogger("fleet-test", "error");
const signer = new ManifestSigner(generateKeyPairSync("ed25519").privateKey);

let secured: SecuredTestBus;
let admin: Bus;
let trainer: SpeculatorRegistry;
let spoolDir: TempDir;

interface RunningNode {
  node: InferenceNode;
  bus: Bus;
  metrics: Registry;
  outcomes: SwapOutcome[];
  client: InferenceClient;
  server: GrpcServerHandle;
  close(): Promise<void>;
}
let running: RunningNode;
/** Connections the tests open as other roles (closed at the end: an open one would reconnect forever). */
const others: Bus[] = [];
async function connectAs(role: "trainer" | "node"): Promise<Bus> {
  const bus = await secured.open(role);
  others.push(bus);
  return bus;
}

/** A node on the node credential, trusting the trainer's key, its spool and fleet consumer configured. */
async function openNode(): Promise<RunningNode> {
  const config = loadConfig(inferenceConfigSchema, {
    env: {
      SPECLOOP_NODE__ID: NODE_ID,
      SPECLOOP_NODE__MODEL_DIR: `${MODELS}tiny-code`,
      SPECLOOP_NODE__BACKEND: "cpu",
      SPECLOOP_NODE__CPU_THREADS: "1",
      SPECLOOP_SPECULATION__DRAFT_MODEL_DIR: "",
      SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "32",
      SPECLOOP_TRACES__FEATURE_SAMPLE_SHARE: "0",
      SPECLOOP_BUS__URLS: secured.server.url,
      SPECLOOP_BUS__CREDENTIALS_FILE: secured.credentials.credentialsFile("node"),
      SPECLOOP_BUS__MANIFESTS__TRUSTED_KEYS: signer.publicKey,
      SPECLOOP_BUS__SPOOL__DIR: spoolDir.path,
      SPECLOOP_BUS__FLEET_CONSUMER__INACTIVE_THRESHOLD_MS: "2000",
    },
  });
  const bus = await secured.open("node", { credentialsFile: config.bus.credentialsFile });
  const metrics = new Registry();
  const outcomes: SwapOutcome[] = [];
  const node = await InferenceNode.open({
    config,
    logger,
    registry: metrics,
    bus,
    onSwap: (o) => outcomes.push(o),
  }).catch(async (err: unknown) => {
    await bus.close();
    throw err;
  });
  const server = await startGrpcServer({
    port: 0,
    logger,
    services: [
      { name: SERVICE_NAMES.inference, definition: InferenceService, implementation: inferenceServer(node) },
    ],
  });
  const client = new InferenceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  return {
    node,
    bus,
    metrics,
    outcomes,
    client,
    server,
    async close() {
      client.close();
      await server.shutdown("test done");
      await node.close();
      await bus.close();
    },
  };
}

before(async () => {
  spoolDir = tempDir("specloop-node-spool");
  secured = await startSecuredTestBus();
  admin = await secured.open("admin");
  trainer = await SpeculatorRegistry.open((await connectAs("trainer")).js, { signer });
  running = await openNode();
});

after(async () => {
  await running?.close();
  for (const bus of others) await bus.close();
  await admin?.close();
  await secured?.stop();
  spoolDir?.dispose();
});

function head(versionId: string, role = SpeculatorRole.SPECULATOR_ROLE_LIVE): SpeculatorManifest {
  return SpeculatorManifest.fromPartial({ modelId: "tiny-code", versionId, role, architecture: "eagle-v1" });
}

const blob = (seed: number) => randomEagleWeights(running.node.model.config, { seed });

async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const metric = await running.metrics.getSingleMetric(name)?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return match?.value ?? 0;
}

function outcomeOf(outcomes: SwapOutcome[], version: string): SwapOutcome | undefined {
  return outcomes.find((o) => o.versionId === version);
}

describe("fleet - signed manifests and the registry watch", () => {
  it("refuses a manifest the trusted key did not sign, counted by reason, and keeps serving", async () => {
    await trainer.publish({ manifest: head("signed-1"), blob: blob(1) });
    await waitFor("signed-1", () => outcomeOf(running.outcomes, "signed-1")?.outcome === "swapped", 20_000);
    // A holder of a trainer credential without the signing key, and one signing with another key.
    const unsigned = await SpeculatorRegistry.open((await connectAs("trainer")).js);
    const stranger = await SpeculatorRegistry.open((await connectAs("trainer")).js, {
      signer: new ManifestSigner(generateKeyPairSync("ed25519").privateKey),
    });
    const before = running.outcomes.length;
    await unsigned.publish({ manifest: head("attacker-1"), blob: blob(2) });
    await stranger.publish({ manifest: head("attacker-2"), blob: blob(3) });
    await waitFor("two refusals", () => running.outcomes.length >= before + 2, 20_000);
    const refused = running.outcomes
      .slice(before)
      .map((o) => (o.error as ManifestRefusedError | undefined)?.reason);
    assert.deepEqual(refused, ["unsigned", "unknown_key"]);
    assert.equal(outcomeOf(running.outcomes, "attacker-1"), undefined, "never downloaded or swapped");
    assert.equal(running.node.eagle.version, "signed-1");
    const name = "specloop_inference_speculator_manifests_refused_total";
    assert.equal(await counter(name, { role: "live", reason: "unsigned" }), 1);
    assert.equal(await counter(name, { role: "live", reason: "unknown_key" }), 1);
    const chunks = await generateStream(running.client, {
      prompt: "def f(x):",
      maxTokens: 6,
      speculation: { drafter: Drafter.DRAFTER_EAGLE },
    });
    assert.equal(chunks.at(-1)?.stats?.speculatorVersion, "signed-1");
  });

  it("refuses a malformed entry and goes on; after a restart it loads the newest valid one", async () => {
    const kv = await (await connectAs("trainer")).js.views.kv(SPECULATOR_BUCKET, { bindOnly: true });
    const before = running.outcomes.length;
    await kv.put(speculatorKey("tiny-code", "canary"), "not json");
    await waitFor("the refusal", () => running.outcomes.length > before, 20_000);
    const reasonOf = (o: SwapOutcome | undefined) => (o?.error as ManifestRefusedError | undefined)?.reason;
    assert.equal(reasonOf(running.outcomes[before]), "malformed");
    await trainer.publish({
      manifest: head("canary-1", SpeculatorRole.SPECULATOR_ROLE_CANARY),
      blob: blob(4),
    });
    await waitFor(
      "canary-1 after the bad entry",
      () => outcomeOf(running.outcomes, "canary-1")?.outcome === "swapped",
      20_000,
    );

    // The newest live entry is garbage: a restarted node must still load signed-1, the newest valid.
    await kv.put(speculatorKey("tiny-code", "live"), "{ broken");
    await running.close();
    running = await openNode();
    await waitFor(
      "both heads after the restart",
      () =>
        outcomeOf(running.outcomes, "signed-1")?.outcome === "swapped" &&
        outcomeOf(running.outcomes, "canary-1")?.outcome === "swapped",
      30_000,
    );
    assert.equal(running.node.eagle.version, "signed-1");
    assert.ok(
      running.outcomes.some((o) => (o.error as ManifestRefusedError | undefined)?.reason === "malformed"),
    );
  });
});

describe("fleet - the fleet consumer", () => {
  it("refuses forged traces at intake, counted; the suffix tree never holds their tokens", async () => {
    const tokens = running.node.suffix.fleetStats().tokens;
    const prompt = await running.node.tokenizer.encode("for (int i = 0; i < n; i++) {");
    const forged = Trace.fromPartial({
      traceId: "forged:0",
      requestId: "forged",
      chunkIndex: 0,
      final: true,
      modelId: "tiny-code",
      nodeId: "elsewhere",
      promptTokenIds: prompt,
      outputTokenIds: [5, 99_999, 7, 8],
    });
    // A node credential may publish traces: the consumer, not the bus, stands between them and the tree.
    await running.bus.js.publish(traceSubject("tiny-code"), Trace.encode(forged).finish(), {
      msgID: "forged:0",
    });
    const name = "specloop_inference_fleet_traces_rejected_total";
    await waitFor(
      "the forged trace's refusal",
      async () => (await counter(name, { reason: "vocabulary" })) === 1,
      20_000,
    );
    assert.equal(running.node.suffix.fleetStats().tokens, tokens, "nothing of the forged trace was ingested");
    // A request whose context matches the forged one, and a concurrent one without speculation, succeed.
    const [suffix, plain] = await Promise.all([
      generateStream(running.client, {
        promptTokenIds: [...prompt, 5],
        maxTokens: 6,
        speculation: { drafter: Drafter.DRAFTER_SUFFIX },
      }),
      generateStream(running.client, {
        prompt: "x = 1",
        maxTokens: 6,
        speculation: { drafter: Drafter.DRAFTER_NONE },
      }),
    ]);
    assert.ok(suffix.flatMap((c) => c.tokenIds).length > 0);
    assert.ok(plain.flatMap((c) => c.tokenIds).length > 0);
  });

  it("is named by the bus, starts from a recent window, and is removed once its node is gone", async () => {
    const name = nodeSuffixConsumer(NODE_ID);
    const info = await admin.jsm.consumers.info(TRACE_STREAM, name);
    assert.equal(info.config.deliver_policy, "by_start_time");
    const start = Date.parse(info.config.opt_start_time ?? "");
    const window = 10 * 60_000;
    assert.ok(Math.abs(Date.now() - window - start) < 5 * 60_000, `starts at ${info.config.opt_start_time}`);
    assert.equal(info.config.inactive_threshold, 2_000 * 1_000_000);
    const names: string[] = [];
    for await (const c of admin.jsm.consumers.list(TRACE_STREAM)) names.push(c.name);
    assert.ok(
      !names.some((n) => n.startsWith("fleet-suffix-")),
      `no consumer named outside the bus: ${names}`,
    );

    await running.close();
    const gone = async () => {
      for await (const c of admin.jsm.consumers.list(TRACE_STREAM)) if (c.name === name) return false;
      return true;
    };
    await waitFor("the server to remove the gone node's consumer", gone, 20_000);
    running = await openNode();
  });
});

describe("fleet - traces while NATS is away", () => {
  it("publishes every trace of the requests served while the server was stopped, in order", async () => {
    const served: string[] = [];
    const serve = async (until: () => boolean) => {
      while (!until()) {
        const label = `outage-${served.length}`;
        await generateStream(running.client, {
          requestId: label,
          prompt: `x${served.length} = `,
          maxTokens: 4,
          speculation: { drafter: Drafter.DRAFTER_NONE },
        });
        served.push(label);
      }
    };
    await serve(() => served.length >= 5);
    await secured.server.kill();
    try {
      const downAt = Date.now();
      await serve(() => Date.now() - downAt > 3_000 && served.length >= 15);
      const files = readdirSync(join(spoolDir.path, `traces-${NODE_ID}`));
      assert.ok(
        files.some((f) => f.endsWith(".spool")),
        `traces went to the spool while the server was away: ${files}`,
      );
    } finally {
      await secured.server.start();
    }
    await serve(() => served.length >= 25);

    const stored = async (): Promise<string[]> => {
      const labels: string[] = [];
      const consumer = await admin.js.consumers.get(TRACE_STREAM, {
        filterSubjects: traceSubject("tiny-code"),
      });
      for (;;) {
        let got = 0;
        for await (const m of await consumer.fetch({ max_messages: 500, expires: 1_000 })) {
          got++;
          const label = Trace.decode(m.data).clientRequestId;
          if (label.startsWith("outage-")) labels.push(label);
        }
        if (got === 0) return labels;
      }
    };
    let labels: string[] = [];
    await waitFor(
      "every trace in the stream",
      async () => {
        // The admin connection may still be reconnecting: a failed read is tried again.
        labels = await stored().catch(() => labels);
        return labels.length >= served.length;
      },
      60_000,
    );
    assert.deepEqual(labels, served, "every trace once, in the order the requests finished");
    const drops = await running.metrics.getSingleMetric("specloop_inference_trace_drops_total")?.get();
    assert.equal(drops?.values.reduce((n, v) => n + v.value, 0) ?? 0, 0);
  });
});
