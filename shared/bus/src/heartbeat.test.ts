import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { NodeStatus } from "@specloop/proto";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import { Heartbeats } from "./heartbeat.js";
import { openTestBus, testBusConfig, waitFor } from "./test-support.js";

let server: NatsServer;
let bus: Bus;

before(async () => {
  server = await startNatsServer();
  bus = await openTestBus(testBusConfig(server.url, { heartbeats: { ttlMs: 1_000 } }));
});

after(async () => {
  await bus?.close();
  await server?.stop();
});

test("bus heartbeat - live nodes are listed until their TTL expires", async () => {
  const hb = await Heartbeats.open(bus.js);
  await hb.report(NodeStatus.fromPartial({ nodeId: "node/a", modelId: "tiny-code", backend: "cpu" }));
  await hb.report(NodeStatus.fromPartial({ nodeId: "node-b", modelId: "tiny-code", backend: "webgpu" }));
  const live = await hb.live();
  assert.deepEqual(live.map((s) => s.nodeId).sort(), ["node-b", "node/a"]);
  assert.ok(live[0]?.reportedAt instanceof Date);
  await hb.withdraw("node-b");
  assert.deepEqual(
    (await hb.live()).map((s) => s.nodeId),
    ["node/a"],
  );
  await waitFor("the heartbeat to expire", async () => (await hb.live()).length === 0, 5_000);
});
