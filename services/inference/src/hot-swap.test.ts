// The node with NATS: a real nats-server (JetStream), the real engine on the bundled model, the real gRPC
// API on loopback. Speculator heads are swapped every 200 ms under 16 concurrent streams and the output
// stays exactly the target's; bad blobs are refused while the node keeps serving; every finished request
// publishes its trace; fleet traces feed the suffix tree.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type Bus, consumeTraces, ManifestSigner, SpeculatorRegistry } from "@specloop/bus";
import { openTestBus, testBusConfig, testTraceLimits, waitFor } from "@specloop/bus/internal";
import { GREEDY, generate, randomEagleWeights } from "@specloop/engine";
import {
  Drafter,
  type GenerateResponse,
  type InferenceClient,
  SpeculatorManifest,
  SpeculatorRole,
  type Trace,
} from "@specloop/proto";
import { createLogger } from "@specloop/runtime";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import type { InferenceNode } from "./node.js";
import type { SwapOutcome } from "./speculators.js";
import { generateStream, startTestNode, type TestNode } from "./testing.js";

const _ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const logger = createLogger("hot-swap-test", "warn");
let nats: NatsServer;
let bus: Bus;
let node: InferenceNode;
let t: TestNode;
let client: InferenceClient;
let registry: SpeculatorRegistry;
const outcomes: SwapOutcome[] = [];

before(async () => {
  nats = await startNatsServer();
  const busConfig = testBusConfig(nats.url);
  bus = await openTestBus(busConfig);
  // The trainer's key: the node trusts it, and refuses manifests it did not sign.
  const signer = new ManifestSigner(generateKeyPairSync("ed25519").privateKey);
  registry = await SpeculatorRegistry.open(bus.js, { signer });
  t = await startTestNode(
    {
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_BUS__MANIFESTS__TRUSTED_KEYS: signer.publicKey,
      SPECLOOP_NODE__ID: "node-a",
      SPECLOOP_SPECULATION__DRAFT_MODEL_DIR: "",
      SPECLOOP_SPECULATION__MAX_DRAFT_TOKENS: "4",
      SPECLOOP_SPECULATION__BUDGET: "max",
      SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "64",
      SPECLOOP_SCHEDULER__MAX_BATCH: "16",
      SPECLOOP_TRACES__FEATURE_SAMPLE_SHARE: "1",
    },
    { bus, onSwap: (o) => outcomes.push(o) },
  );
  ({ node, client } = t);
});

after(async () => {
  await t?.close();
  await bus?.close();
  await nats?.stop();
});

function publishHead(versionId: string, blob: Uint8Array, role = SpeculatorRole.SPECULATOR_ROLE_LIVE) {
  return registry.publish({
    manifest: SpeculatorManifest.fromPartial({
      modelId: "tiny-code",
      versionId,
      role,
      architecture: "eagle-v1",
      canaryShare: 0.5,
    }),
    blob,
  });
}

const stream = (req: Record<string, unknown>) => generateStream(client, req);

/** Every trace of the node's model, collected by a durable consumer of its own (stop it when done). */
async function collectTraces(durable: string) {
  const seen: Trace[] = [];
  const consumer = await consumeTraces(bus, {
    modelId: "tiny-code",
    durable,
    limits: testTraceLimits,
    logger,
    handler: (t) => {
      seen.push(t);
      return "ack";
    },
  });
  return { seen, consumer };
}

const swapped = (version: string) => outcomes.some((o) => o.versionId === version && o.outcome === "swapped");

describe("hot-swap", () => {
  it("serves eagle once a head is published, and stays exact while heads swap every 200 ms under 16 streams", async () => {
    const target = node.model.config;
    await publishHead("v0", randomEagleWeights(target, { seed: 0 }));
    await waitFor("the first head to be swapped in", () => swapped("v0"), 10_000);

    const prompts = await Promise.all(
      Array.from({ length: 16 }, (_, i) => node.tokenizer.encode(`def f${i}(x):\n    return x * ${i}\n`)),
    );
    const plain = await generate(
      node.model,
      prompts.map((prompt) => ({ prompt, maxTokens: 40, stopTokenIds: [], sampling: GREEDY })),
    );
    let version = 1;
    const published: Promise<unknown>[] = [];
    const timer = setInterval(() => {
      const v = `v${version++}`;
      published.push(publishHead(v, randomEagleWeights(target, { seed: version })));
    }, 200);
    let results: GenerateResponse[][];
    try {
      results = await Promise.all(
        prompts.map((p) =>
          stream({
            promptTokenIds: p,
            maxTokens: 40,
            sampling: { stopTokenIds: [] },
            speculation: { drafter: Drafter.DRAFTER_EAGLE },
          }),
        ),
      );
    } finally {
      clearInterval(timer);
      await Promise.all(published);
    }
    results.forEach((chunks, i) => {
      const tokens = chunks.flatMap((c) => c.tokenIds);
      const want = plain.outputs[i]?.tokens ?? [];
      const eos = want.findIndex((t) => target.eosTokenIds.includes(t));
      assert.deepEqual(tokens, eos >= 0 ? want.slice(0, eos + 1) : want, `stream ${i}`);
      assert.equal(chunks.at(-1)?.stats?.drafter, Drafter.DRAFTER_EAGLE);
    });
    await waitFor("several swaps", () => outcomes.filter((o) => o.outcome === "swapped").length >= 3, 10_000);
    // The last one published is the one served once the swaps settle.
    const last = `v${version - 1}`;
    await waitFor(`${last} to be swapped in`, () => swapped(last), 10_000);
    const versions = new Set(results.flatMap((r) => r.map((c) => c.stats?.speculatorVersion ?? "")));
    assert.ok(versions.size >= 1 && ![...versions].includes(""), `drafted by versions ${[...versions]}`);
  });

  it("refuses a truncated, a garbage and a wrong-shape blob, and keeps serving the head it had", async () => {
    await publishHead("good", randomEagleWeights(node.model.config, { seed: 42 }));
    await waitFor("the good head", () => swapped("good"), 10_000);
    const good = randomEagleWeights(node.model.config, { seed: 43 });
    const wrongShape = randomEagleWeights(
      { ...node.model.config, hiddenSize: node.model.config.hiddenSize * 2 },
      { seed: 1 },
    );
    const bad: [string, Uint8Array][] = [
      ["truncated", good.subarray(0, good.length - 1000)],
      ["garbage", new Uint8Array(4096).fill(7)],
      ["wrong-shape", wrongShape],
    ];
    for (const [v, blob] of bad) {
      await publishHead(v, blob);
      await waitFor(`the ${v} blob's outcome`, () => outcomes.some((o) => o.versionId === v), 10_000);
      const o = outcomes.find((x) => x.versionId === v);
      assert.equal(o?.outcome, "refused", `${v} was ${o?.outcome}`);
      assert.ok((o?.error?.message ?? "") !== "", `${v}: the refusal says why`);
    }
    const chunks = await stream({
      prompt: "int main(void) {",
      maxTokens: 8,
      speculation: { drafter: Drafter.DRAFTER_EAGLE },
    });
    assert.equal(chunks.at(-1)?.stats?.speculatorVersion, "good");
    assert.equal(node.eagle.version, "good");
    assert.ok(node.status().speculators.some((m) => m.versionId === "good"));
  });

  it("serves hybrid with the live head: each step names its drafter (suffix on repeats, eagle elsewhere) and output stays plain", async () => {
    const { seen, consumer } = await collectTraces("test-hybrid");
    try {
      const prompts = [
        "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\ndef add(a, b):\n",
        "import os\n",
      ];
      const tokens = await Promise.all(prompts.map((p) => node.tokenizer.encode(p)));
      const plain = await generate(
        node.model,
        tokens.map((prompt) => ({ prompt, maxTokens: 24, stopTokenIds: [], sampling: GREEDY })),
      );
      const ids = prompts.map((_, i) => `hybrid-req-${i}`);
      const results = await Promise.all(
        tokens.map((promptTokenIds, i) =>
          stream({
            requestId: ids[i] as string,
            promptTokenIds,
            maxTokens: 24,
            sampling: { stopTokenIds: [] },
            speculation: { drafter: Drafter.DRAFTER_HYBRID },
          }),
        ),
      );
      results.forEach((chunks, i) => {
        const want = plain.outputs[i]?.tokens ?? [];
        const eos = want.findIndex((t) => node.model.config.eosTokenIds.includes(t));
        assert.deepEqual(
          chunks.flatMap((c) => c.tokenIds),
          eos >= 0 ? want.slice(0, eos + 1) : want,
          `request ${i}`,
        );
        assert.equal(chunks.at(-1)?.stats?.drafter, Drafter.DRAFTER_HYBRID);
      });
      await waitFor(
        "both traces",
        () => ids.every((id) => seen.some((t) => t.clientRequestId === id)),
        10_000,
      );
      const steps = seen.filter((t) => ids.includes(t.clientRequestId)).flatMap((t) => t.steps);
      const suffix = steps.filter((s) => s.drafter === Drafter.DRAFTER_SUFFIX);
      const eagle = steps.filter((s) => s.drafter === Drafter.DRAFTER_EAGLE);
      assert.ok(
        suffix.length > 0 && eagle.length > 0,
        `${suffix.length} suffix and ${eagle.length} eagle steps`,
      );
      assert.ok(
        suffix.every((s) => s.speculatorVersion === ""),
        "suffix steps name no speculator version",
      );
      assert.ok(
        eagle.every((s) => s.speculatorVersion !== ""),
        "eagle steps name the head that drafted",
      );
    } finally {
      await consumer.stop();
    }
  });

  it("routes a share of eagle requests to the canary and says so in the trace", async () => {
    await publishHead(
      "canary-1",
      randomEagleWeights(node.model.config, { seed: 99 }),
      SpeculatorRole.SPECULATOR_ROLE_CANARY,
    );
    await waitFor("the canary head", () => swapped("canary-1"), 10_000);
    const { seen, consumer } = await collectTraces("test-canary");
    try {
      const ids = Array.from({ length: 12 }, (_, i) => `canary-req-${i}`);
      const responses = await Promise.all(
        ids.map((requestId) =>
          stream({
            requestId,
            prompt: "x = 1\n",
            maxTokens: 6,
            speculation: { drafter: Drafter.DRAFTER_EAGLE },
          }),
        ),
      );
      await waitFor(
        "every trace",
        () => ids.every((id) => seen.some((t) => t.clientRequestId === id)),
        10_000,
      );
      const ours = seen.filter((t) => ids.includes(t.clientRequestId));
      const canary = ours.filter((t) => t.speculatorRole === SpeculatorRole.SPECULATOR_ROLE_CANARY);
      assert.ok(
        canary.length > 0 && canary.length < ours.length,
        `${canary.length} of ${ours.length} on the canary`,
      );
      for (const t of canary) {
        assert.ok(
          t.steps.every((s) => s.speculatorVersion === "canary-1"),
          "canary traces' steps name the canary",
        );
        // The answer's last chunk names the version that drafted it too (after the routing is released).
        const last = responses[ids.indexOf(t.clientRequestId)]?.at(-1);
        assert.equal(last?.stats?.speculatorVersion, "canary-1", `${t.clientRequestId}: the last chunk`);
      }
    } finally {
      await consumer.stop();
    }
  });
});

describe("traces", () => {
  it("every finished request publishes one with its steps, target top-k and sampled hidden features", async () => {
    const { seen, consumer } = await collectTraces("test-traces");
    try {
      const chunks = await stream({
        requestId: "traced-1",
        prompt: "for (int i = 0; i < n; i++) {",
        maxTokens: 12,
        domain: "c",
        speculation: { drafter: Drafter.DRAFTER_SUFFIX },
      });
      await waitFor("the trace", () => seen.some((t) => t.clientRequestId === "traced-1"), 10_000);
      const t = seen.find((x) => x.clientRequestId === "traced-1") as Trace;
      assert.equal(t.nodeId, "node-a");
      assert.equal(t.domain, "c");
      assert.deepEqual(
        t.outputTokenIds,
        chunks.flatMap((c) => c.tokenIds),
      );
      assert.equal(
        t.promptTokenIds.length,
        node.tokenizer.encodePrompt("for (int i = 0; i < n; i++) {").length,
      );
      for (const s of t.steps) {
        assert.equal(s.targetTopkIds.length, s.proposedTokenIds.length * s.topk);
        assert.equal(s.topk, 8);
        assert.ok(s.acceptedIndices.every((i) => i < s.proposedTokenIds.length));
      }
      // Every request's features are sampled here (share 1): one fp16 row per output position but the last.
      assert.ok(t.hidden !== undefined);
      assert.equal(t.hidden?.hiddenSize, node.model.config.hiddenSize);
      assert.equal(t.hidden?.data.length, (t.hidden?.numPositions ?? 0) * node.model.config.hiddenSize * 2);
      assert.ok((t.hidden?.numPositions ?? 0) >= t.outputTokenIds.length - 1);
      // The fleet consumer fed this node's own output into its suffix tree.
      await waitFor("the fleet tree to hold tokens", () => node.suffix.fleetStats().tokens > 0, 10_000);
    } finally {
      await consumer.stop();
    }
  });
});
