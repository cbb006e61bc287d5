// The trainer's trace intake over a real nats-server with auth on (the trainer's credential) and a real
// SQLite store: one consumer per model, each seeing all of its model's traces and none of another's;
// forged traces are terminated and counted as rejected; the consumer goes away with its trainer.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Bus, publishTrace, type RunningConsumer, trainerTracesConsumer } from "@specloop/bus";
import { sampleTrace, TRACE_STREAM, testLogger, traceSubject, waitFor } from "@specloop/bus/internal";
import { type SecuredTestBus, startSecuredTestBus } from "@specloop/bus/testing";
import { Trace } from "@specloop/proto";
import { type TempDir, tempDir } from "@specloop/testkit";
import { eq } from "drizzle-orm";
import { openTrainerStore, type TrainerStore, trainerState } from "./db/index.js";
import { defaultIntakeConfig, startTraceIntake } from "./intake.js";

let secured: SecuredTestBus;
let node: Bus;
let trainer: Bus;
let dir: TempDir;
let store: TrainerStore;
const intakes: RunningConsumer[] = [];

before(async () => {
  dir = tempDir("specloop-intake");
  store = openTrainerStore(join(dir.path, "trainer.sqlite"));
  secured = await startSecuredTestBus();
  node = await secured.open("node");
  trainer = await secured.open("trainer");
});

after(async () => {
  for (const i of intakes) await i.stop();
  await node?.close();
  await trainer?.close();
  await secured?.stop();
  store?.close();
  dir?.dispose();
});

function state(modelId: string) {
  return store.db.select().from(trainerState).where(eq(trainerState.modelId, modelId)).get();
}

test("intake - one consumer per model: two models' trainers each count all of their own traces", async () => {
  const intake = { ...defaultIntakeConfig(), consumerInactiveMs: 60_000 };
  intakes.push(await startTraceIntake(trainer, store.db, "model-a", testLogger, intake));
  intakes.push(await startTraceIntake(trainer, store.db, "model-b", testLogger, intake));
  for (let i = 0; i < 5; i++) await publishTrace(node.js, sampleTrace(`a-${i}`, "model-a"));
  for (let i = 0; i < 3; i++) await publishTrace(node.js, sampleTrace(`b-${i}`, "model-b"));
  await waitFor(
    "both models' traces",
    () => state("model-a")?.tracesConsumed === 5 && state("model-b")?.tracesConsumed === 3,
  );
  for (const model of ["model-a", "model-b"]) {
    const info = await trainer.jsm.consumers.info(TRACE_STREAM, trainerTracesConsumer(model));
    assert.equal(info.config.filter_subject, traceSubject(model));
    assert.equal(info.config.inactive_threshold, 60_000 * 1_000_000);
  }
});

test("intake - a forged trace is terminated and counted as rejected, the next one consumed", async () => {
  const before = state("model-a");
  const forged = sampleTrace("forged", "model-a", { outputTokenIds: [4, 99_999] });
  // Published raw, as a holder of a node credential could: no publisher-side check stands in the way.
  await node.js.publish(traceSubject("model-a"), Trace.encode(forged).finish());
  const tooLong = sampleTrace("too-long", "model-a", {
    outputTokenIds: new Array(defaultIntakeConfig().maxTokens).fill(1),
  });
  await publishTrace(node.js, tooLong);
  await publishTrace(node.js, sampleTrace("after", "model-a"));
  await waitFor(
    "the trace after the forged ones",
    () => state("model-a")?.tracesConsumed === (before?.tracesConsumed ?? 0) + 1,
  );
  assert.equal(state("model-a")?.tracesRejected, (before?.tracesRejected ?? 0) + 2);
});

test("intake - a trace delivered again (its consumer lost and made anew) is acked, not counted or trained twice", async () => {
  const intake = { ...defaultIntakeConfig(), consumerInactiveMs: 60_000 };
  const trained: string[] = [];
  const onTrace = (t: Trace) => trained.push(t.requestId);
  let running = await startTraceIntake(trainer, store.db, "model-c", testLogger, intake, onTrace);
  for (let i = 0; i < 4; i++) await publishTrace(node.js, sampleTrace(`c-${i}`, "model-c"));
  await waitFor("the first four traces", () => state("model-c")?.tracesConsumed === 4);
  await running.stop();
  // The durable consumer is gone (an operator, or the server's inactivity threshold): the one made anew
  // delivers the model's whole stream again, stream sequences unchanged.
  const admin = await secured.open("admin");
  try {
    await admin.jsm.consumers.delete(TRACE_STREAM, trainerTracesConsumer("model-c"));
  } finally {
    await admin.close();
  }
  running = await startTraceIntake(trainer, store.db, "model-c", testLogger, intake, onTrace);
  intakes.push(running);
  await publishTrace(node.js, sampleTrace("c-4", "model-c"));
  // Deliveries come in stream order: once c-4 is in, the four delivered again have been handled.
  await waitFor("the fifth trace", () => trained.includes("c-4"));
  assert.deepEqual(trained, ["c-0", "c-1", "c-2", "c-3", "c-4"], "each trace trained on once");
  assert.equal(state("model-c")?.tracesConsumed, 5, "each trace counted once");
});
