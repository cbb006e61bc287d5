import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Drafter, FinishReason, Trace } from "@specloop/proto";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import type { RunningConsumer } from "./consumer.js";
import { InvalidMessageError, MessageTooLargeError } from "./errors.js";
import { TRACE_STREAM, traceSubject } from "./names.js";
import { consumeTraces, readRecentTraces } from "./subscriptions.js";
import {
  openTestBus,
  sampleTrace,
  testBusConfig,
  testLogger,
  testTraceLimits,
  waitFor,
} from "./test-support.js";
import { chunkTrace, chunkTraceId } from "./trace-chunks.js";
import { publishTrace } from "./traces.js";

let server: NatsServer;
let bus: Bus;
const consumers: RunningConsumer[] = [];

before(async () => {
  server = await startNatsServer();
  bus = await openTestBus(testBusConfig(server.url));
});

after(async () => {
  await Promise.all(consumers.map((c) => c.stop()));
  await bus?.close();
  await server?.stop();
});

async function consume(
  modelId: string,
  handler: (trace: Trace, deliveryCount: number) => "ack" | "term" | { nak: number },
): Promise<RunningConsumer> {
  const c = await consumeTraces(bus, {
    limits: testTraceLimits,
    durable: `test-${modelId}`,
    modelId,
    logger: testLogger,
    ackWaitMs: 5_000,
    handler: (trace, delivery) => handler(trace, delivery.deliveryCount),
  });
  consumers.push(c);
  return c;
}

test("bus traces - publish and consume with ack", async () => {
  const seen: Trace[] = [];
  const c = await consume("model-ack", (t) => {
    seen.push(t);
    return "ack";
  });
  const trace = sampleTrace("req-1", "model-ack", { domain: "code" });
  const res = await publishTrace(bus.js, trace);
  assert.equal(res.duplicate, false);
  assert.ok(res.seq > 0);
  await waitFor("the trace", () => c.stats().acked === 1);
  assert.deepEqual(seen, [trace]);
  assert.deepEqual(c.stats(), {
    delivered: 1,
    acked: 1,
    nakked: 0,
    terminated: 0,
    poison: 0,
    handlerErrors: 0,
  });
  await c.stop();
});

test("bus traces - redelivery after nak", async () => {
  const counts: number[] = [];
  const c = await consume("model-nak", (_t, deliveryCount) => {
    counts.push(deliveryCount);
    return deliveryCount === 1 ? { nak: 50 } : "ack";
  });
  await publishTrace(bus.js, sampleTrace("req-nak", "model-nak"));
  await waitFor("the redelivery", () => c.stats().acked === 1);
  assert.deepEqual(counts, [1, 2]);
  assert.equal(c.stats().nakked, 1);
  await c.stop();
});

test("bus traces - a handler that throws gets its message redelivered", async () => {
  let calls = 0;
  const c = await consumeTraces(bus, {
    limits: testTraceLimits,
    durable: "test-throws",
    modelId: "model-throws",
    logger: testLogger,
    errorNakDelayMs: 50,
    handler: () => {
      calls++;
      if (calls === 1) throw new Error("boom");
      return "ack";
    },
  });
  consumers.push(c);
  await publishTrace(bus.js, sampleTrace("req-throw", "model-throws"));
  await waitFor("the retry", () => c.stats().acked === 1);
  assert.equal(c.stats().handlerErrors, 1);
  assert.equal(c.stats().nakked, 1);
  await c.stop();
});

test("bus traces - a repeated Nats-Msg-Id is reported duplicate and consumed once", async () => {
  const ids: string[] = [];
  const c = await consume("model-dup", (t) => {
    ids.push(t.traceId);
    return "ack";
  });
  const trace = sampleTrace("req-dup", "model-dup");
  const first = await publishTrace(bus.js, trace);
  const second = await publishTrace(bus.js, trace);
  assert.equal(first.duplicate, false);
  assert.equal(second.duplicate, true);
  assert.equal(second.seq, first.seq);
  await publishTrace(bus.js, sampleTrace("req-dup-2", "model-dup"));
  await waitFor("both traces", () => c.stats().acked === 2);
  assert.deepEqual(ids, ["req-dup:0", "req-dup-2:0"]);
  await c.stop();
});

test("bus traces - a malformed message is terminated and counted, later traces still consumed", async () => {
  const ids: string[] = [];
  const c = await consume("model-poison", (t) => {
    ids.push(t.traceId);
    return "ack";
  });
  const subject = traceSubject("model-poison");
  await bus.js.publish(subject, new TextEncoder().encode("this is not a protobuf trace"));
  // Valid protobuf, but no trace_id / request_id.
  await bus.js.publish(subject, Trace.encode(Trace.fromPartial({ modelId: "model-poison" })).finish());
  await publishTrace(bus.js, sampleTrace("req-good", "model-poison"));
  await waitFor("the good trace", () => c.stats().acked === 1);
  const stats = c.stats();
  assert.equal(stats.poison, 2);
  assert.equal(stats.terminated, 2);
  assert.equal(stats.delivered, 3);
  assert.deepEqual(ids, ["req-good:0"]);
  await c.stop();
});

test("bus traces - publish refuses a trace without ids or over the size limit", async () => {
  await assert.rejects(publishTrace(bus.js, sampleTrace("r", "m", { traceId: "" })), InvalidMessageError);
  await assert.rejects(publishTrace(bus.js, sampleTrace("r", "", {})), /model_id: is required/);
  const big = sampleTrace("req-big", "m", {
    outputTokenIds: Array.from({ length: 5_000 }, (_, i) => i + 100_000),
  });
  await assert.rejects(publishTrace(bus.js, big, { maxMessageBytes: 4_096 }), (err: unknown) => {
    assert.ok(err instanceof MessageTooLargeError);
    assert.equal(err.kind, "resource_exhausted");
    assert.match(err.message, /over the limit of 4096 bytes/);
    return true;
  });
});

test("bus traces - chunking splits a long trace under the byte limit", () => {
  const hiddenData = Buffer.from(Array.from({ length: 200 * 16 }, (_, i) => i % 251));
  const outputs = Array.from({ length: 3_000 }, (_, i) => 1_000 + i);
  const steps = Array.from({ length: 1_000 }, (_, i) => ({
    outputOffset: 1 + i * 3,
    proposedTokenIds: [1, 2, 3, 4],
    parents: [-1, 0, 1, 2],
    draftProbs: [0.5, 0.5, 0.5, 0.5],
    acceptedIndices: [0, 1],
    bonusTokenId: 7,
    topk: 2,
    targetTopkIds: [1, 2, 3, 4, 5, 6, 7, 8],
    targetTopkLogprobs: [-0.1, -2, -0.1, -2, -0.1, -2, -0.1, -2],
  }));
  const trace = sampleTrace("req-long", "m", {
    promptTokenIds: Array.from({ length: 500 }, (_, i) => i),
    outputTokenIds: outputs,
    steps: steps.map((s) => ({ ...s, speculatorVersion: "v1", drafter: Drafter.DRAFTER_EAGLE })),
    finishReason: FinishReason.FINISH_REASON_STOP,
    // fp16 rows for output positions 100..299: 1 layer x 8 hidden x 2 bytes.
    hidden: { layers: [3], hiddenSize: 8, firstPosition: 100, numPositions: 200, data: hiddenData },
  });
  const limit = 16 * 1024;
  assert.ok(Trace.encode(trace).finish().length > 4 * limit);
  const chunks = chunkTrace(trace, limit);
  assert.ok(chunks.length > 5, `expected several chunks, got ${chunks.length}`);
  chunks.forEach((c, i) => {
    assert.ok(Trace.encode(c).finish().length <= limit, `chunk ${i} is over the limit`);
    assert.equal(c.traceId, chunkTraceId("req-long", i));
    assert.equal(c.chunkIndex, i);
    assert.equal(c.final, i === chunks.length - 1);
    assert.equal(c.promptTokenIds.length, i === 0 ? 500 : 0);
  });
  assert.deepEqual(
    chunks.flatMap((c) => c.outputTokenIds),
    outputs,
  );
  assert.equal(
    chunks.reduce((n, c) => n + c.steps.length, 0),
    1_000,
  );
  assert.equal(chunks[0]?.outputOffset, 0);
  for (const c of chunks.slice(1)) assert.equal(c.outputOffset, c.steps[0]?.outputOffset);
  assert.equal(chunks.at(-1)?.finishReason, trace.finishReason);
  // Hidden rows follow their output positions into the chunks, none lost or repeated.
  const rows = chunks.flatMap((c) => (c.hidden ? [c.hidden] : []));
  assert.ok(rows.length >= 1);
  assert.equal(rows[0]?.firstPosition, 100);
  assert.ok(Buffer.concat(rows.map((h) => h.data)).equals(hiddenData));
  for (const h of rows) assert.equal(h.data.length, h.numPositions * 16);
  assert.deepEqual(
    chunkTrace(sampleTrace("short", "m")).map((c) => [c.traceId, c.final]),
    [["short:0", true]],
  );
  assert.throws(() => chunkTrace(trace, 200), MessageTooLargeError);
});

test("bus traces - a model's recent traces read back up to a sequence: whole, newest kept, other models' left out", async () => {
  const consumersBefore = (await bus.jsm.streams.info(TRACE_STREAM)).state.consumer_count;
  const acks: number[] = [];
  for (let i = 0; i < 6; i++) {
    acks.push((await publishTrace(bus.js, sampleTrace(`recent-${i}`, "recent-model"))).seq);
    await publishTrace(bus.js, sampleTrace(`other-${i}`, "other-model"));
  }
  // One request published in two chunks (a long trace): read back joined.
  const long = sampleTrace("recent-long", "recent-model", {
    outputTokenIds: Array.from({ length: 1500 }, (_, i) => 200 + (i % 3000)),
  });
  const chunks = chunkTrace(long, 1024);
  assert.ok(chunks.length > 1, `${chunks.length} chunks`);
  for (const c of chunks) acks.push((await publishTrace(bus.js, c)).seq);
  await publishTrace(bus.js, sampleTrace("recent-after", "recent-model"));
  const toSeq = acks.at(-1) as number;
  const all = await readRecentTraces(bus, {
    modelId: "recent-model",
    limits: testTraceLimits,
    toSeq,
    scan: 1000,
    max: 100,
  });
  assert.deepEqual(
    all.map((t) => t.requestId),
    ["recent-0", "recent-1", "recent-2", "recent-3", "recent-4", "recent-5", "recent-long"],
    "this model's traces up to toSeq, in order, the chunked one joined; none after toSeq",
  );
  assert.deepEqual(all.at(-1)?.outputTokenIds, long.outputTokenIds);
  const newest = await readRecentTraces(bus, {
    modelId: "recent-model",
    limits: testTraceLimits,
    toSeq,
    scan: 1000,
    max: 2,
  });
  assert.deepEqual(
    newest.map((t) => t.requestId),
    ["recent-5", "recent-long"],
  );
  const info = await bus.jsm.streams.info(TRACE_STREAM);
  assert.equal(info.state.consumer_count, consumersBefore, "the read leaves no consumer behind");
});
