import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { loadConfig } from "@specloop/runtime";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import { nanos } from "nats";
import { z } from "zod";
import { busConfig, busConfigSchema } from "./config.js";
import { type Bus, connectBus } from "./connection.js";
import { HEARTBEAT_BUCKET, kvStreamName, TRACE_STREAM } from "./names.js";
import { provisionBus } from "./provision.js";
import { sampleTrace, testBusConfig, testLogger } from "./test-support.js";
import { publishTrace } from "./traces.js";

let server: NatsServer;
let bus: Bus;

before(async () => {
  server = await startNatsServer();
  bus = await connectBus(testBusConfig(server.url), testLogger);
});

after(async () => {
  await bus?.close();
  await server?.stop();
});

test("bus provision - twice is idempotent, a changed limit is applied and data kept", async () => {
  const config = testBusConfig(server.url);
  const first = await provisionBus(bus, config, testLogger);
  assert.ok(
    Object.values(first).every((a) => a === "created"),
    JSON.stringify(first),
  );
  assert.equal(Object.keys(first).length, 5);
  await publishTrace(bus.js, sampleTrace("kept", "m"));

  const second = await provisionBus(bus, config, testLogger);
  assert.ok(
    Object.values(second).every((a) => a === "unchanged"),
    JSON.stringify(second),
  );

  const changed = testBusConfig(server.url, {
    traceStream: {
      ...config.traceStream,
      maxBytes: 32 * 1024 ** 2,
      maxAgeMs: 600_000,
      duplicateWindowMs: 60_000,
    },
    heartbeats: { ...config.heartbeats, ttlMs: 3_000 },
  });
  const third = await provisionBus(bus, changed, testLogger);
  assert.equal(third[TRACE_STREAM], "updated");
  assert.equal(third[kvStreamName(HEARTBEAT_BUCKET)], "updated");
  const info = await bus.jsm.streams.info(TRACE_STREAM);
  assert.equal(info.config.max_bytes, 32 * 1024 ** 2);
  assert.equal(info.config.max_age, nanos(600_000));
  assert.equal(info.config.duplicate_window, nanos(60_000));
  assert.equal(info.state.messages, 1);
  const hb = await bus.jsm.streams.info(kvStreamName(HEARTBEAT_BUCKET));
  assert.equal(hb.config.max_age, nanos(3_000));

  const fourth = await provisionBus(bus, changed, testLogger);
  assert.ok(
    Object.values(fourth).every((a) => a === "unchanged"),
    JSON.stringify(fourth),
  );
});

test("bus provision - config defaults and environment names", () => {
  const config = busConfig();
  assert.deepEqual(config.urls, ["nats://127.0.0.1:4222"]);
  assert.equal(config.traceStream.maxMessageBytes, 1_000_000);
  assert.throws(() => busConfig({ heartbeats: { ttlMs: 10 } }));
  const loaded = loadConfig(z.object({ bus: busConfigSchema }), {
    env: {
      SPECLOOP_BUS__URLS: "nats://a:4222,nats://b:4222",
      SPECLOOP_BUS__TRACE_STREAM__MAX_BYTES: "1234",
      SPECLOOP_BUS__HEARTBEATS__TTL_MS: "2500",
    },
  });
  assert.deepEqual(loaded.bus.urls, ["nats://a:4222", "nats://b:4222"]);
  assert.equal(loaded.bus.traceStream.maxBytes, 1234);
  assert.equal(loaded.bus.traceStream.maxAgeMs, config.traceStream.maxAgeMs);
  assert.equal(loaded.bus.heartbeats.ttlMs, 2500);
});
