import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import { DigestMismatchError, ManifestRefusedError } from "./errors.js";
import { SPECULATOR_BUCKET, speculatorKey, WEIGHTS_BUCKET } from "./names.js";
import { type ManifestUpdate, type ManifestWatch, SpeculatorRegistry, sha256Hex } from "./registry.js";
import { openTestBus, testBusConfig, waitFor } from "./test-support.js";

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

/** Collects a watch's updates in the background. */
function collect(watch: ManifestWatch): ManifestUpdate[] {
  const seen: ManifestUpdate[] = [];
  void (async () => {
    for await (const update of watch) seen.push(update);
  })();
  return seen;
}

const describeUpdate = (u: ManifestUpdate) =>
  u.refused !== undefined
    ? `${u.slot}:refused:${u.refused.reason}`
    : `${u.slot}:${u.manifest?.versionId ?? "cleared"}`;

test("bus registry - a malformed entry is refused and reported, and the watch goes on", async () => {
  await registry.publish({ manifest: manifest("m-bad", "v1"), blob: randomBytes(1024) });
  const watch = await registry.watch("m-bad");
  const seen = collect(watch);
  try {
    await waitFor("the current manifest", () => seen.length === 1);
    const kv = await bus.js.views.kv(SPECULATOR_BUCKET, { bindOnly: true });
    await kv.put(speculatorKey("m-bad", "canary"), "not json");
    await kv.put(speculatorKey("m-bad", "live"), JSON.stringify({ manifest: { modelId: "someone-else" } }));
    await registry.publish({
      manifest: manifest("m-bad", "v2", SpeculatorRole.SPECULATOR_ROLE_CANARY),
      blob: randomBytes(1024),
    });
    await waitFor("v2 after the bad entries", () => seen.length === 4);
    assert.deepEqual(seen.map(describeUpdate), [
      "live:v1",
      "canary:refused:malformed",
      "live:refused:mismatch",
      "canary:v2",
    ]);
    await assert.rejects(registry.current("m-bad", "live"), ManifestRefusedError);
  } finally {
    watch.stop();
  }
});

test("bus registry - a new watch starts from the newest valid entry of each slot's history", async () => {
  const kv = await bus.js.views.kv(SPECULATOR_BUCKET, { bindOnly: true });
  await registry.publish({ manifest: manifest("m-restart", "v1"), blob: randomBytes(1024) });
  await registry.publish({ manifest: manifest("m-restart", "v2"), blob: randomBytes(1024) });
  await kv.put(speculatorKey("m-restart", "live"), "{ not json");
  await registry.publish({
    manifest: manifest("m-restart", "c1", SpeculatorRole.SPECULATOR_ROLE_CANARY),
    blob: randomBytes(1024),
  });
  await kv.delete(speculatorKey("m-restart", "canary"));
  const watch = await registry.watch("m-restart");
  const seen = collect(watch);
  try {
    await waitFor("the initial state", () => seen.length === 2);
    // The refusal newer than v2 is reported; v2, not v1, is what a restarted node loads; the canary
    // was cleared after c1, so nothing is loaded there.
    assert.deepEqual(seen.map(describeUpdate), ["live:refused:malformed", "live:v2"]);
    await registry.publish({ manifest: manifest("m-restart", "v3"), blob: randomBytes(1024) });
    await waitFor("v3", () => seen.length === 3);
    assert.equal(describeUpdate(seen[2] as ManifestUpdate), "live:v3");
  } finally {
    watch.stop();
  }
});

test("bus registry - clear empties a slot: current() finds nothing and a watcher sees the slot cleared", async () => {
  await registry.publish({
    manifest: manifest("m-clear", "c1", SpeculatorRole.SPECULATOR_ROLE_CANARY),
    blob: randomBytes(256),
  });
  assert.equal((await registry.current("m-clear", "canary"))?.versionId, "c1");
  const watch = await registry.watch("m-clear");
  const seen = collect(watch);
  try {
    await waitFor("the canary", () => seen.length === 1);
    await registry.clear("m-clear", "canary");
    await waitFor("the clear", () => seen.length === 2);
    assert.equal(seen[1]?.manifest, undefined);
    assert.equal(seen[1]?.refused, undefined);
    assert.equal(await registry.current("m-clear", "canary"), undefined);
  } finally {
    watch.stop();
  }
});

test("bus registry - re-announcing a version stores its blob once: a node reading it meanwhile gets it whole", async () => {
  const blob = randomBytes(4 * 1024 * 1024);
  const first = await registry.publish({ manifest: manifest("m-reannounce", "v7"), blob });
  const os = await bus.js.views.os(WEIGHTS_BUCKET);
  const before = await os.info(first.objectName);
  // The trainer restarts and re-announces live while a node downloads the blob.
  const reading = registry.fetchBlob(first);
  const again = await registry.publish({ manifest: manifest("m-reannounce", "v7"), blob });
  assert.ok(Buffer.from(await reading).equals(blob), "the download that overlapped the re-announce is whole");
  const after = await os.info(first.objectName);
  assert.equal(after?.nuid, before?.nuid, "the object was not written again");
  assert.equal(again.sha256, first.sha256);
  // A different blob under the same version id is stored (a corrupt upload being replaced).
  const other = randomBytes(1024);
  const replaced = await registry.publish({ manifest: manifest("m-reannounce", "v7"), blob: other });
  assert.ok(Buffer.from(await registry.fetchBlob(replaced)).equals(other));
});
