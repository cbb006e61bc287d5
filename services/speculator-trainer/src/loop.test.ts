// The training loop on the bundled model with real parts: a real nats-server (the registry it announces
// through), a real SQLite file, the engine's target and head trainer. Traces are the target's own greedy
// outputs for bundled python prompts; the gate's traffic is traces shaped as nodes publish them.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Bus, SpeculatorRegistry } from "@specloop/bus";
import { openTestBus, testBusConfig } from "@specloop/bus/internal";
import { eagleConfigFor, type LoadedModel, type Model, trainerTarget } from "@specloop/engine";
import { Drafter, SpeculatorRole, Trace, TrainingConfig } from "@specloop/proto";
import { createLogger } from "@specloop/runtime";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { openTrainerStore, type TrainerStore } from "./db/index.js";
import { defaultGateOptions } from "./gate.js";
import { HeadTrainingThread, LocalHeadTraining } from "./head-training.js";
import { VersionLifecycle, versionIdFor } from "./lifecycle.js";
import { TrainerLoop } from "./loop.js";
import { TrainerStateStore } from "./state.js";
import { loadTestTarget, TEST_MODEL_DIR as MODEL, pythonTraces, type TestTarget } from "./testing.js";

let nats: NatsServer;
let bus: Bus;
let dir: TempDir;
let store: TrainerStore;
let t: TestTarget;
let loaded: LoadedModel;
let target: Model;
let registry: SpeculatorRegistry;
let traces: Trace[];

function parts() {
  const lifecycle = new VersionLifecycle({
    db: store.db,
    modelId: "tiny-code",
    registry,
    blobDir: join(dir.path, "versions"),
  });
  const state = new TrainerStateStore(store.db, "tiny-code");
  return { lifecycle, state };
}

/** The loop with its head trained in process, or on the training thread as the service runs it. */
async function openLoop(p = parts(), on: "process" | "thread" = "process") {
  const head = eagleConfigFor(loaded.config);
  return {
    ...p,
    loop: await TrainerLoop.open({
      modelId: "tiny-code",
      openHead: async (start, options) =>
        on === "thread"
          ? HeadTrainingThread.open({
              modelDir: MODEL,
              backend: "cpu",
              cpuThreads: 1,
              featureLayers: [],
              exampleMaxTokens: 64,
              start,
              options,
            })
          : new LocalHeadTraining(
              target,
              trainerTarget(loaded),
              { featureLayers: head.featureLayers, maxTokens: 64 },
              head,
              start,
              options,
            ),
      lifecycle: p.lifecycle,
      state: p.state,
      logger: createLogger("loop-test", "warn"),
      gate: { ...defaultGateOptions(), minSamples: 10 },
      checkpointDir: join(dir.path, "ckpt"),
      bufferCapacity: 64,
    }),
  };
}

/** A request as a node traces it when an eagle head drafted it. */
function servedTrace(
  version: string,
  role: SpeculatorRole,
  tokensPerSecond: number,
  domain = "python",
): Trace {
  const outputs = 33;
  return Trace.fromPartial({
    requestId: `${version}-${Math.random()}`,
    domain,
    speculatorRole: role,
    promptTokenIds: [1, 2, 3],
    outputTokenIds: Array.from({ length: outputs }, (_, i) => 10 + i),
    steps: Array.from({ length: 8 }, (_, i) => ({
      outputOffset: i * 4,
      drafter: Drafter.DRAFTER_EAGLE,
      speculatorVersion: version,
      proposedTokenIds: [5, 6, 7],
      parents: [-1, 0, 1],
      draftProbs: [1, 1, 1],
      acceptedIndices: [0, 1, 2],
      bonusTokenId: 9,
    })),
    timings: { draftMs: 0, verifyMs: ((outputs - 1) / tokensPerSecond) * 1000 * (0.9 + 0.2 * Math.random()) },
  });
}

before(async () => {
  nats = await startNatsServer();
  bus = await openTestBus(testBusConfig(nats.url));
  registry = await SpeculatorRegistry.open(bus.js);
  dir = tempDir("trainer-loop");
  store = openTrainerStore(join(dir.path, "trainer.sqlite"));
  t = await loadTestTarget();
  ({ loaded, target } = t);
  traces = await pythonTraces(t, 8);
  new TrainerStateStore(store.db, "tiny-code").updateConfig(
    TrainingConfig.fromPartial({ batchSize: 4, publishEverySteps: 2, canaryShare: 0.5 }),
    ["batch_size", "publish_every_steps", "canary_share"],
    "test",
  );
});

after(async () => {
  store?.close();
  t?.backend.destroy();
  await bus?.close();
  await nats?.stop();
  dir?.dispose();
});

describe("trainer loop", () => {
  it("ships a day-0 head live at once, trains on traces (on the training thread), publishes a canary with offline metrics, checkpoints", async () => {
    const { loop, lifecycle } = await openLoop(parts(), "thread");
    const day0 = lifecycle.withStatus("live");
    assert.equal(day0?.id, versionIdFor("tiny-code", 0));
    assert.equal((await registry.current("tiny-code", "live"))?.versionId, day0?.id);
    for (const t of traces) loop.offer(t);
    while (loop.stepCount < 2) assert.ok(await loop.tick(), "a step runs once the buffer holds a batch");
    const canary = lifecycle.withStatus("canary");
    assert.equal(canary?.id, versionIdFor("tiny-code", 2));
    assert.equal(canary?.parentId, day0?.id);
    assert.ok((canary?.offlineMetrics?.simulatedAcceptedPerPass ?? 0) >= 1);
    assert.equal((await registry.current("tiny-code", "canary"))?.versionId, canary?.id);
    assert.ok(existsSync(join(dir.path, "ckpt", "head.ckpt")));
    await loop.stop();
  });

  it("resumes from the checkpoint with its step, and a re-publish is the same version", async () => {
    const { loop, lifecycle } = await openLoop();
    assert.equal(loop.stepCount, 2);
    const before = lifecycle.get(versionIdFor("tiny-code", 2));
    const again = lifecycle.create({
      id: versionIdFor("tiny-code", 2),
      parentId: undefined,
      blob: new Uint8Array(8),
      architecture: "eagle-v1",
      samplesSeen: 0,
      trainingSteps: 2,
      offline: undefined,
    });
    assert.equal(again.sha256, before.sha256, "an existing id is kept as it was");
  });

  it("promotes a canary measured faster on live traffic, with the evidence stored", async () => {
    const { loop, lifecycle } = await openLoop();
    const live = lifecycle.withStatus("live")?.id as string;
    const canary = lifecycle.withStatus("canary")?.id as string;
    for (let i = 0; i < 40; i++) {
      loop.offer(servedTrace(live, SpeculatorRole.SPECULATOR_ROLE_LIVE, 100));
      loop.offer(servedTrace(canary, SpeculatorRole.SPECULATOR_ROLE_CANARY, 150));
    }
    await loop.tick();
    assert.equal(lifecycle.withStatus("live")?.id, canary);
    assert.equal((await registry.current("tiny-code", "live"))?.versionId, canary);
    const promote = lifecycle.events(canary).find((e) => e.action === "promote");
    assert.ok(promote?.evidence !== undefined && promote.evidence !== null);
    assert.ok((promote?.evidence?.speedup ?? 0) > 1.2);
  });

  it("rolls live back when its acceptance collapses, and pauses on request", async () => {
    const { loop, lifecycle, state } = await openLoop();
    const live = lifecycle.withStatus("live")?.id as string;
    for (let i = 0; i < 60; i++) {
      const t = servedTrace(live, SpeculatorRole.SPECULATOR_ROLE_LIVE, 100);
      for (const s of t.steps) s.acceptedIndices = [];
      loop.offer(t);
    }
    await loop.tick();
    assert.notEqual(lifecycle.withStatus("live")?.id, live);
    assert.equal(lifecycle.get(live).status, "rejected");
    state.setPaused(true, "test");
    const steps = loop.stepCount;
    for (const t of traces) loop.offer(t);
    await loop.tick();
    assert.equal(loop.stepCount, steps, "a paused trainer does not step");
    state.setPaused(false, "test");
  });
});
