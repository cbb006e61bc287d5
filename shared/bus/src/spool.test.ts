// The spool against a real nats-server that is stopped and started again: nothing offered is lost,
// order is kept, the bound holds, and a process that closes with messages waiting hands them on.
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import { BusConflictError } from "./errors.js";
import { TRACE_STREAM, traceSubject } from "./names.js";
import { SpooledPublisher, type SpoolMessage } from "./spool.js";
import { openTestBus, testBusConfig, testLogger, waitFor } from "./test-support.js";

let server: NatsServer;
let bus: Bus;
let dir: TempDir;

before(async () => {
  server = await startNatsServer();
  bus = await openTestBus(testBusConfig(server.url));
  dir = tempDir("specloop-spool");
});

after(async () => {
  await bus?.close();
  await server?.stop();
  dir?.dispose();
});

function message(model: string, i: number, bytes = 200): SpoolMessage {
  const data = new Uint8Array(bytes);
  new DataView(data.buffer).setUint32(0, i);
  return { subject: traceSubject(model), data, msgId: `${model}-${i}` };
}

/** The numbers stored on a model's subject, in stream order. */
async function stored(model: string): Promise<number[]> {
  const info = await bus.jsm.streams.info(TRACE_STREAM, { subjects_filter: traceSubject(model) });
  const expected = info.state.subjects?.[traceSubject(model)] ?? 0;
  const out: number[] = [];
  if (expected === 0) return out;
  const consumer = await bus.js.consumers.get(TRACE_STREAM, { filterSubjects: traceSubject(model) });
  while (out.length < expected) {
    for await (const m of await consumer.fetch({ max_messages: 1_000, expires: 1_000 })) {
      out.push(new DataView(m.data.buffer, m.data.byteOffset).getUint32(0));
    }
  }
  return out;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("bus spool - the server stopped for 3 s under load: every message stored once, in order", async () => {
  const spool = SpooledPublisher.open(bus, {
    dir: join(dir.path, "outage"),
    maxBytes: 64 * 1024 ** 2,
    logger: testLogger,
    publishTimeoutMs: 1_000,
  });
  let offered = 0;
  let refusedOffers = 0;
  const producer = (async () => {
    // About 500 messages a second for 5 s, never waiting on the bus.
    for (let tick = 0; tick < 250; tick++) {
      for (let j = 0; j < 10; j++) {
        const t0 = performance.now();
        if (!spool.offer(message("m-outage", offered++))) refusedOffers++;
        assert.ok(performance.now() - t0 < 100, "offer never waits");
      }
      await sleep(20);
    }
  })();
  await sleep(1_000);
  await server.kill();
  await sleep(3_000);
  await server.start();
  await producer;
  assert.ok(await spool.flush(30_000), "everything published once the server is back");
  const stats = spool.stats();
  await spool.close();
  assert.equal(refusedOffers, 0);
  assert.ok(stats.spooled > 0, "messages went to disk while the server was away");
  assert.equal(stats.published, offered);
  assert.deepEqual(await stored("m-outage"), range(offered));
});

test("bus spool - over its bound it drops what comes and counts it; what it kept is all stored", async () => {
  await server.kill();
  const dropped: string[] = [];
  const spool = SpooledPublisher.open(bus, {
    dir: join(dir.path, "bound"),
    maxBytes: 20 * 1024,
    logger: testLogger,
    publishTimeoutMs: 500,
    onDropped: (m, reason) => dropped.push(`${m.msgId}:${reason}`),
  });
  const accepted: number[] = [];
  for (let i = 0; i < 200; i++) if (spool.offer(message("m-bound", i, 1_000))) accepted.push(i);
  assert.ok(accepted.length > 10 && accepted.length < 30, `${accepted.length} accepted`);
  assert.equal(spool.stats().dropped.full, 200 - accepted.length);
  assert.equal(dropped.length, 200 - accepted.length);
  assert.ok(dropped.every((d) => d.endsWith(":full")));
  // All or nothing: a batch that does not fit is dropped whole.
  assert.equal(spool.offer([message("m-bound", 900, 1_000), message("m-bound", 901, 1_000)]), false);
  await server.start();
  assert.ok(await spool.flush(30_000));
  await spool.close();
  assert.deepEqual(await stored("m-bound"), accepted);
});

test("bus spool - closed with messages waiting, the next open() publishes them; one process per directory", async () => {
  await server.kill();
  const where = join(dir.path, "handover");
  const first = SpooledPublisher.open(bus, { dir: where, maxBytes: 1024 ** 2, logger: testLogger });
  assert.throws(
    () => SpooledPublisher.open(bus, { dir: where, maxBytes: 1024 ** 2, logger: testLogger }),
    BusConflictError,
  );
  for (let i = 0; i < 100; i++) assert.ok(first.offer(message("m-handover", i)));
  await first.close();
  assert.ok(readdirSync(where).some((f) => f.endsWith(".spool")));
  await server.start();
  const second = SpooledPublisher.open(bus, { dir: where, maxBytes: 1024 ** 2, logger: testLogger });
  for (let i = 100; i < 110; i++) assert.ok(second.offer(message("m-handover", i)));
  assert.ok(await second.flush(30_000));
  await second.close();
  assert.deepEqual(await stored("m-handover"), range(110));
  assert.ok(!readdirSync(where).some((f) => f.endsWith(".spool")), "published segments are removed");
});

test("bus spool - a message the stream refuses is dropped as rejected and the rest go on", async () => {
  const dropped: string[] = [];
  const spool = SpooledPublisher.open(bus, {
    dir: "",
    maxBytes: 8 * 1024 ** 2,
    logger: testLogger,
    onDropped: (m, reason) => dropped.push(`${m.msgId}:${reason}`),
  });
  spool.offer(message("m-refused", 0));
  // Over the test stream's 256 KiB message limit.
  spool.offer(message("m-refused", 1, 300 * 1024));
  spool.offer(message("m-refused", 2));
  assert.ok(await spool.flush(10_000));
  await spool.close();
  assert.deepEqual(dropped, ["m-refused-1:rejected"]);
  assert.deepEqual(await stored("m-refused"), [0, 2]);
});

test("bus spool - without a directory, memory holds what waits through a short outage", async () => {
  const spool = SpooledPublisher.open(bus, {
    dir: "",
    maxBytes: 8 * 1024 ** 2,
    logger: testLogger,
    publishTimeoutMs: 500,
  });
  await server.kill();
  for (let i = 0; i < 300; i++) spool.offer(message("m-memory", i));
  await sleep(1_000);
  await server.start();
  await waitFor("the memory spool to drain", () => spool.stats().pendingBytes === 0, 30_000);
  await spool.close();
  assert.equal(spool.stats().spooled, 0);
  assert.deepEqual(await stored("m-memory"), range(300));
  assert.ok(!existsSync(join(dir.path, "m-memory")));
});
