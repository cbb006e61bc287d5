import assert from "node:assert/strict";
import { test } from "node:test";
import { Drafter, FinishReason, type Trace } from "@specloop/proto";
import { sampleTrace } from "./test-support.js";
import { TraceAssembler } from "./trace-assemble.js";
import { chunkTrace } from "./trace-chunks.js";

function longTrace(requestId: string): Trace {
  return sampleTrace(requestId, "m", {
    promptTokenIds: Array.from({ length: 300 }, (_, i) => i),
    outputTokenIds: Array.from({ length: 1_200 }, (_, i) => 1_000 + i),
    steps: Array.from({ length: 400 }, (_, i) => ({
      outputOffset: 1 + i * 3,
      speculatorVersion: "v1",
      drafter: Drafter.DRAFTER_EAGLE,
      proposedTokenIds: [1, 2, 3],
      parents: [-1, 0, 1],
      draftProbs: [0.5, 0.5, 0.5],
      acceptedIndices: [0, 1],
      bonusTokenId: 7,
      topk: 2,
      targetTopkIds: [1, 2, 3, 4, 5, 6],
      targetTopkLogprobs: [-0.1, -2, -0.1, -2, -0.1, -2],
    })),
    finishReason: FinishReason.FINISH_REASON_STOP,
    timings: { queueMs: 1, prefillMs: 2, draftMs: 3, verifyMs: 4, totalMs: 10 },
    hidden: {
      layers: [3],
      hiddenSize: 8,
      firstPosition: 50,
      numPositions: 400,
      data: Buffer.from(Array.from({ length: 400 * 16 }, (_, i) => i % 251)),
    },
  });
}

test("bus trace assembly - chunks in any order join into the whole trace", () => {
  const trace = longTrace("req-a");
  const chunks = chunkTrace(trace, 8 * 1024);
  assert.ok(chunks.length > 4);
  // Reversed, and interleaved with another request's chunks.
  const other = chunkTrace(longTrace("req-b"), 8 * 1024);
  const a = new TraceAssembler();
  const done: Trace[] = [];
  const order = [...chunks].reverse();
  for (let i = 0; i < Math.max(order.length, other.length); i++) {
    for (const c of [order[i], other[i]]) {
      if (c === undefined) continue;
      const whole = a.add(c);
      if (whole) done.push(whole);
    }
  }
  assert.equal(done.length, 2);
  const whole = done.find((t) => t.requestId === "req-a") as Trace;
  assert.deepEqual(whole.outputTokenIds, trace.outputTokenIds);
  assert.deepEqual(whole.promptTokenIds, trace.promptTokenIds);
  assert.equal(whole.steps.length, trace.steps.length);
  assert.deepEqual(whole.hidden?.data, trace.hidden?.data);
  assert.equal(whole.hidden?.firstPosition, 50);
  assert.deepEqual(whole.timings, trace.timings);
  assert.equal(whole.finishReason, FinishReason.FINISH_REASON_STOP);
  assert.deepEqual(a.stats(), { assembled: 2, dropped: 0, pending: 0 });
});

test("bus trace assembly - partial traces are bounded: too many or too old are dropped and counted", () => {
  const a = new TraceAssembler({ maxPending: 2, maxAgeMs: 1_000 });
  const parts = ["r1", "r2", "r3"].map((r) => chunkTrace(longTrace(r), 8 * 1024));
  for (const p of parts) assert.equal(a.add(p[0] as Trace, 0), undefined);
  assert.deepEqual(a.stats(), { assembled: 0, dropped: 1, pending: 2 });
  // r1 was dropped: its remaining chunks never complete it.
  for (const c of (parts[0] as Trace[]).slice(1)) assert.equal(a.add(c, 10), undefined);
  // Everything older than maxAgeMs goes.
  a.add(sampleTrace("single"), 5_000);
  assert.equal(a.stats().pending, 0);
  assert.ok(a.stats().dropped >= 3);
});

test("bus trace assembly - a single-chunk trace passes straight through", () => {
  const a = new TraceAssembler();
  const t = sampleTrace("one");
  assert.equal(a.add(t), t);
});
