import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import { DigestMismatchError } from "./errors.js";
import { type ManifestUpdate, SpeculatorRegistry, sha256Hex } from "./registry.js";
import { openTestBus, testBusConfig } from "./test-support.js";

let server: NatsServer;
let bus: Bus;
let registry: SpeculatorRegistry;

before(async () => {
  server = await startNatsServer();
  bus = await openTestBus(testBusConfig(server.url));
  registry = await SpeculatorRegistry.open(bus.js);
});

after(async () => {
  await bus?.close();
  await server?.stop();
});

function manifest(
  modelId: string,
  versionId: string,
  role = SpeculatorRole.SPECULATOR_ROLE_LIVE,
): SpeculatorManifest {
  return SpeculatorManifest.fromPartial({
    modelId,
    versionId,
    role,
    architecture: "eagle-v1",
    config: { hidden_size: "64" },
    tensors: [{ name: "fc.weight", dtype: "F16", shape: [64, 128] }],
  });
}

test("bus registry - a 20 MB blob round-trips with its sha256 checked", async () => {
  const blob = randomBytes(20 * 1024 * 1024);
  const announced = await registry.publish({ manifest: manifest("Qwen/Qwen3-0.6B", "v1"), blob });
  assert.equal(announced.sha256, sha256Hex(blob));
  assert.equal(announced.sizeBytes, blob.length);
  const current = await registry.current("Qwen/Qwen3-0.6B", "live");
  assert.ok(current);
  assert.equal(current.versionId, "v1");
  assert.equal(current.sha256, announced.sha256);
  assert.deepEqual(current.tensors, announced.tensors);
  const fetched = await registry.fetchBlob(current);
  assert.equal(fetched.length, blob.length);
  assert.ok(Buffer.from(fetched).equals(blob));
  assert.equal(await registry.current("Qwen/Qwen3-0.6B", "canary"), undefined);
});

test("bus registry - a blob that does not match its manifest's digest is refused", async () => {
  const blob = randomBytes(64 * 1024);
  const announced = await registry.publish({ manifest: manifest("m-digest", "v1"), blob });
  const forged = { ...announced, sha256: sha256Hex(Buffer.from("something else")) };
  await assert.rejects(registry.fetchBlob(forged), (err: unknown) => {
    assert.ok(err instanceof DigestMismatchError);
    assert.equal(err.kind, "data_loss");
    assert.match(err.message, /sha256/);
    return true;
  });
  const wrongClaim = { ...manifest("m-digest", "v2"), sha256: forged.sha256 };
  await assert.rejects(registry.publish({ manifest: wrongClaim, blob }), DigestMismatchError);
});

test("bus registry - watch yields the current manifest, then a new one", async () => {
  await registry.publish({ manifest: manifest("m-watch", "v1"), blob: randomBytes(1024) });
  const watch = await registry.watch("m-watch");
  const seen: ManifestUpdate[] = [];
  const done = (async () => {
    for await (const update of watch) {
      seen.push(update);
      if (seen.length === 2) break;
    }
  })();
  await registry.publish({
    manifest: manifest("m-watch", "v2", SpeculatorRole.SPECULATOR_ROLE_CANARY),
    blob: randomBytes(1024),
  });
  await done;
  watch.stop();
  assert.deepEqual(
    seen.map((u) => [u.slot, u.manifest?.versionId]),
    [
      ["live", "v1"],
      ["canary", "v2"],
    ],
  );
});
