// The head's training thread against the same training in process, on the bundled model: the thread is
// only a transport (same seed and traces, same losses and the same blob), the service's event loop keeps
// turning while a step runs there, and a batch the target cannot take fails its step without killing it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eagleConfigFor, type LoadedModel, type Model, trainerTarget } from "@specloop/engine";
import { Trace } from "@specloop/proto";
import { HeadTrainingThread, LocalHeadTraining } from "./head-training.js";
import { loadTestTarget, TEST_MODEL_DIR as MODEL, pythonTraces, type TestTarget } from "./testing.js";

const OPTIONS = { seed: 7, lr: 1e-3 };
let t: TestTarget;
let loaded: LoadedModel;
let target: Model;
let traces: Trace[];

before(async () => {
  t = await loadTestTarget();
  ({ loaded, target } = t);
  traces = await pythonTraces(t, 4);
});

after(() => t?.backend.destroy());

function openThread() {
  return HeadTrainingThread.open({
    modelDir: MODEL,
    backend: "cpu",
    cpuThreads: 1,
    featureLayers: [],
    exampleMaxTokens: 64,
    start: { from: "new" },
    options: OPTIONS,
  });
}

describe("head training thread", () => {
  it("learns exactly as the training in process does: same losses, same blob, same checkpoint step", async () => {
    const head = eagleConfigFor(loaded.config);
    const local = new LocalHeadTraining(
      target,
      trainerTarget(loaded),
      { featureLayers: head.featureLayers, maxTokens: 64 },
      head,
      { from: "new" },
      OPTIONS,
    );
    const thread = await openThread();
    try {
      for (let i = 0; i < 3; i++) {
        const a = await local.step(traces);
        const b = await thread.step(traces);
        assert.equal(b.loss, a.loss, `step ${i}: the thread's loss equals the process's`);
        assert.equal(b.tokens, a.tokens);
      }
      assert.equal(thread.stepCount, 3);
      assert.deepEqual(await thread.exportBlob(), await local.exportBlob());
      const ev = await thread.evaluate(traces);
      assert.ok((ev?.simulatedAcceptedPerPass ?? 0) >= 1);
      assert.equal(await thread.evaluate([]), undefined);
      // Resumed from the thread's checkpoint in process, the next step is the one the thread would take.
      const resumed = new LocalHeadTraining(
        target,
        trainerTarget(loaded),
        { featureLayers: head.featureLayers, maxTokens: 64 },
        head,
        { from: "checkpoint", bytes: await thread.checkpoint() },
        OPTIONS,
      );
      assert.equal(resumed.stepCount, 3);
      assert.equal((await resumed.step(traces)).loss, (await thread.step(traces)).loss);
    } finally {
      await thread.close();
    }
  });

  it("keeps the caller's event loop turning while a step runs, and survives a batch it cannot take", async () => {
    const thread = await openThread();
    try {
      let ticks = 0;
      let longestGapMs = 0;
      let last = performance.now();
      const timer = setInterval(() => {
        const now = performance.now();
        longestGapMs = Math.max(longestGapMs, now - last);
        last = now;
        ticks++;
      }, 5);
      const t0 = performance.now();
      for (let i = 0; i < 2; i++) await thread.step(traces);
      const stepMs = (performance.now() - t0) / 2;
      clearInterval(timer);
      assert.ok(
        ticks >= 4,
        `the caller's timers fired ${ticks} times during two steps of ${stepMs.toFixed(0)} ms`,
      );
      assert.ok(
        longestGapMs < stepMs,
        `the caller's longest stall (${longestGapMs.toFixed(0)} ms) is shorter than one step (${stepMs.toFixed(0)} ms)`,
      );
      const bad = Trace.fromPartial({
        requestId: "bad",
        promptTokenIds: [1, 2],
        outputTokenIds: [1 << 30, 3, 4],
      });
      await assert.rejects(thread.step([bad]), /./, "a batch the target cannot take fails its step");
      const steps = thread.stepCount;
      await thread.step(traces);
      assert.equal(thread.stepCount, steps + 1, "the thread takes the next step after a failed one");
    } finally {
      await thread.close();
    }
  });
});
