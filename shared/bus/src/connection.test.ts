import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Trace } from "@specloop/proto";
import { freePort, type NatsServer, startNatsServer } from "@specloop/testkit";
import { type Bus, connectBus } from "./connection.js";
import { BusUnavailableError } from "./errors.js";
import { consumeTraces } from "./subscriptions.js";
import {
  openTestBus,
  sampleTrace,
  testBusConfig,
  testLogger,
  testTraceLimits,
  waitFor,
} from "./test-support.js";
import { publishTrace } from "./traces.js";

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

test("bus connection - an unreachable server fails fast with the URL in the message", async () => {
  const url = `nats://127.0.0.1:${await freePort()}`;
  const started = Date.now();
  await assert.rejects(connectBus(testBusConfig(url), testLogger), (err: unknown) => {
    assert.ok(err instanceof BusUnavailableError);
    assert.equal(err.kind, "unavailable");
    assert.ok(err.message.includes(url), err.message);
    return true;
  });
  assert.ok(Date.now() - started < 3_000, `took ${Date.now() - started} ms`);
});

test("bus connection - the consumer survives a server restart and keeps consuming", async () => {
  const ids: string[] = [];
  const consumer = await consumeTraces(bus, {
    limits: testTraceLimits,
    durable: "test-restart",
    modelId: "m-restart",
    logger: testLogger,
    handler: (t: Trace) => {
      ids.push(t.traceId);
      return "ack";
    },
  });
  try {
    await publishTrace(bus.js, sampleTrace("before", "m-restart"));
    await waitFor("the trace before the restart", () => ids.length === 1);
    const reconnected = (async () => {
      for await (const s of bus.nc.status()) if (s.type === "reconnect") return true;
      return false;
    })();
    await server.restart();
    assert.equal(await reconnected, true);
    // Publishing right after the restart can race the stream's recovery: retry until acked.
    await waitFor(
      "a publish after the restart",
      () =>
        publishTrace(bus.js, sampleTrace("after", "m-restart"), { timeoutMs: 1_000 }).then(
          () => true,
          () => false,
        ),
      20_000,
    );
    await waitFor("the trace after the restart", () => ids.includes("after:0"), 20_000);
    assert.deepEqual(ids, ["before:0", "after:0"]);
    assert.equal(consumer.stats().acked, 2);
  } finally {
    await consumer.stop();
  }
});
