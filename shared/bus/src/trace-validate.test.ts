import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Drafter, Trace } from "@specloop/proto";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import { TraceRejectedError } from "./errors.js";
import { consumeTraces } from "./subscriptions.js";
import { openTestBus, sampleTrace, testBusConfig, testLogger, waitFor } from "./test-support.js";
import { chunkTrace } from "./trace-chunks.js";
import { type TraceLimits, validateTraceContent } from "./trace-validate.js";
import { encodeTrace, publishTrace } from "./traces.js";

const limits: TraceLimits = { vocabSize: 8192, maxTokens: 2048, maxDraftTokens: 16, maxTopk: 8 };

/** A trace as a node writes it: a tree step, top-k rows, fp16 hidden rows. */
function goodTrace(requestId = "good"): Trace {
  return sampleTrace(requestId, "m-validate", {
    promptTokenIds: [1, 2, 3],
    outputTokenIds: [10, 11, 12, 13],
    steps: [
      {
        outputOffset: 0,
        speculatorVersion: "v1",
        drafter: Drafter.DRAFTER_EAGLE,
        proposedTokenIds: [10, 11, 20, 12],
        parents: [-1, 0, 0, 1],
        draftProbs: [0.9, 0.5, 0.1, 1],
        acceptedIndices: [0, 1, 3],
        bonusTokenId: 13,
        topk: 2,
        targetTopkIds: [10, 5, 11, 6, 20, 7, 12, 8],
        targetTopkLogprobs: [-0.1, -2, -0.2, -3, -1, -1.5, 0, Number.NEGATIVE_INFINITY],
      },
    ],
    hidden: { layers: [3], hiddenSize: 4, firstPosition: 0, numPositions: 3, data: Buffer.alloc(24) },
  });
}

function reasonOf(trace: Trace): string {
  try {
    validateTraceContent(trace, limits);
    return "accepted";
  } catch (err) {
    assert.ok(err instanceof TraceRejectedError, String(err));
    return `${err.reason} ${err.field}`;
  }
}

const step = (t: Trace) => t.steps[0] as Trace["steps"][number];
const withStep = (change: Partial<Trace["steps"][number]>) => {
  const t = goodTrace();
  return { ...t, steps: [{ ...step(t), ...change }] };
};

test("bus trace validation - what a node writes is accepted, chunked or whole", () => {
  assert.equal(reasonOf(goodTrace()), "accepted");
  const long = sampleTrace("long", "m", {
    promptTokenIds: Array.from({ length: 300 }, (_, i) => i),
    outputTokenIds: Array.from({ length: 1_500 }, (_, i) => 100 + i),
    steps: Array.from({ length: 500 }, (_, i) => ({
      ...step(goodTrace()),
      outputOffset: i * 3,
    })),
  });
  const chunks = chunkTrace(long, 8 * 1024);
  assert.ok(chunks.length > 3);
  for (const chunk of chunks) assert.equal(reasonOf(chunk), "accepted");
});

test("bus trace validation - forged ids, shapes and sizes are refused, naming the field", () => {
  const cases: [string, Trace][] = [
    ["vocabulary output_token_ids", { ...goodTrace(), outputTokenIds: [10, 99_999] }],
    ["vocabulary prompt_token_ids", { ...goodTrace(), promptTokenIds: [8192] }],
    ["vocabulary steps[0].proposed_token_ids", withStep({ proposedTokenIds: [10, 11, 20, 99_999] })],
    ["vocabulary steps[0].bonus_token_id", withStep({ bonusTokenId: 10_000 })],
    ["vocabulary steps[0].target_topk_ids", withStep({ targetTopkIds: [10, 5, 11, 6, 20, 7, 12, 9_000] })],
    ["shape steps[0].parents", withStep({ parents: [-1, 0, 0] })],
    ["shape steps[0].parents", withStep({ parents: [-1, 0, 3, 1] })],
    ["shape steps[0].draft_probs", withStep({ draftProbs: [0.9, Number.NaN, 0.1, 1] })],
    ["shape steps[0].draft_probs", withStep({ draftProbs: [0.9, 1.5, 0.1, 1] })],
    ["shape steps[0].accepted_indices", withStep({ acceptedIndices: [0, 2, 3] })],
    ["shape steps[0].accepted_indices", withStep({ acceptedIndices: [7] })],
    ["shape steps[0].target_topk_ids", withStep({ targetTopkIds: [10, 5] })],
    [
      "shape steps[0].target_topk_logprobs",
      withStep({ targetTopkLogprobs: [0.5, -2, -0.2, -3, -1, -1.5, 0, 0] }),
    ],
    ["shape hidden.data", { ...goodTrace(), hidden: { ...goodTrace().hidden!, data: Buffer.alloc(23) } }],
    [
      "size prompt_token_ids + output_token_ids",
      { ...goodTrace(), outputTokenIds: new Array(2_046).fill(1) },
    ],
    ["size steps[0].proposed_token_ids", withStep({ proposedTokenIds: new Array(17).fill(1) })],
    ["size steps[0].topk", withStep({ topk: 9 })],
    ["size hidden.hidden_size", { ...goodTrace(), hidden: { ...goodTrace().hidden!, hiddenSize: 100_000 } }],
  ];
  for (const [want, trace] of cases) assert.equal(reasonOf(trace), want);
});

let server: NatsServer;
let bus: Bus;

before(async () => {
  server = await startNatsServer();
  bus = await openTestBus(testBusConfig(server.url));
});

after(async () => {
  await bus?.close();
  await server?.stop();
});

test("bus trace validation - a consumer terminates and counts forged traces, and goes on", async () => {
  const handled: string[] = [];
  const refused: string[] = [];
  const consumer = await consumeTraces(bus, {
    durable: "validate-test",
    modelId: "m-validate",
    limits,
    logger: testLogger,
    handler: (t) => {
      handled.push(t.requestId);
      return "ack";
    },
    onPoison: (_delivery, err) => {
      refused.push(err instanceof TraceRejectedError ? err.reason : "undecodable");
    },
  });
  try {
    // The probe of the issue: token id 99999 in a well-formed trace (published raw, past any publisher check).
    const forged = { ...goodTrace("forged"), outputTokenIds: [99_999, 5] };
    await bus.js.publish("specloop.traces.m-validate", Trace.encode(forged).finish());
    await publishTrace(bus.js, withStep({ parents: [-1, 5, 0, 1] }));
    await bus.js.publish("specloop.traces.m-validate", encodeTrace(goodTrace("after")));
    await waitFor("the good trace after the forged ones", () => handled.includes("after"));
    assert.deepEqual(handled, ["after"]);
    assert.deepEqual(refused, ["vocabulary", "shape"]);
    assert.equal(consumer.stats().poison, 2);
    assert.equal(consumer.stats().terminated, 2);
  } finally {
    await consumer.stop();
  }
});
