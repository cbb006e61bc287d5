import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import { ManifestRefusedError } from "./errors.js";
import { SPECULATOR_BUCKET, speculatorKey } from "./names.js";
import { type ManifestUpdate, SpeculatorRegistry } from "./registry.js";
import {
  MANIFEST_SIGNATURE_CONTEXT,
  ManifestSigner,
  ManifestVerifier,
  manifestSigningBytes,
  publicKeyId,
  writeSigningKey,
} from "./signing.js";
import { openTestBus, testBusConfig, waitFor } from "./test-support.js";

let dir: TempDir;
let server: NatsServer;
let bus: Bus;
let signer: ManifestSigner;
let trusted: ManifestVerifier;

before(async () => {
  dir = tempDir("specloop-signing");
  signer = ManifestSigner.fromFile(writeSigningKey(dir.path).keyFile);
  trusted = new ManifestVerifier([signer.publicKey]);
  server = await startNatsServer();
  bus = await openTestBus(testBusConfig(server.url));
});

after(async () => {
  await bus?.close();
  await server?.stop();
  dir?.dispose();
});

function manifest(
  modelId: string,
  versionId: string,
  config: Record<string, string> = {},
): SpeculatorManifest {
  return SpeculatorManifest.fromPartial({
    modelId,
    versionId,
    role: SpeculatorRole.SPECULATOR_ROLE_LIVE,
    architecture: "eagle-v1",
    config,
    sha256: "ab".repeat(32),
    sizeBytes: 10,
    objectName: `${modelId}/${versionId}.safetensors`,
  });
}

/** What the trainer hands publish() (sha256, size and object name are filled in there). */
function draft(modelId: string, versionId: string): SpeculatorManifest {
  return { ...manifest(modelId, versionId), sha256: "", sizeBytes: 0, objectName: "" };
}

describe("bus signing - keys and bytes", () => {
  test("bus signing - the signed bytes are the context, then the manifest with its map in key order", () => {
    const a = manifest("m", "v1", { b: "2", a: "1", "10": "x", "9": "y" });
    const b = manifest("m", "v1", { "9": "y", a: "1", "10": "x", b: "2" });
    const bytes = manifestSigningBytes(a);
    assert.deepEqual(bytes, manifestSigningBytes(b));
    assert.equal(
      Buffer.from(bytes.subarray(0, MANIFEST_SIGNATURE_CONTEXT.length)).toString(),
      MANIFEST_SIGNATURE_CONTEXT,
    );
    // The bytes after the context decode back to the manifest (they are its protobuf encoding).
    assert.deepEqual(SpeculatorManifest.decode(bytes.subarray(MANIFEST_SIGNATURE_CONTEXT.length)), a);
    assert.notDeepEqual(manifestSigningBytes({ ...a, canaryShare: 0.5 }), bytes);
  });

  test("bus signing - a key pair is made once, private 0600, and read back", () => {
    const again = writeSigningKey(dir.path);
    assert.equal(again.publicKey, signer.publicKey);
    assert.equal(statSync(again.keyFile).mode & 0o777, 0o600);
    assert.equal(readFileSync(again.publicKeyFile, "utf8").trim(), signer.publicKey);
    assert.equal(signer.keyId, publicKeyId(signer.publicKey));
    assert.match(signer.publicKey, /^ed25519:[A-Za-z0-9_-]{43}$/);
    const file = join(dir.path, "trusted.txt");
    writeFileSync(file, `# the trainer's key\n${signer.publicKey}  # rotated 2026\n\n`);
    const verifier = ManifestVerifier.fromConfig({ trustedKeys: [], trustedKeysFile: file });
    assert.deepEqual(verifier.keyIds, [signer.keyId]);
    assert.throws(() => new ManifestVerifier(["ed25519:short"]), /32 key bytes/);
  });

  test("bus signing - verify refuses unsigned, untrusted, tampered and non-Ed25519 signatures", () => {
    const m = manifest("m", "v1", { k: "v" });
    const sig = signer.sign(m);
    trusted.verify(m, sig);
    const reason = (fn: () => void) => {
      try {
        fn();
      } catch (err) {
        assert.ok(err instanceof ManifestRefusedError, String(err));
        return err.reason;
      }
      return "accepted";
    };
    assert.equal(
      reason(() => trusted.verify(m, undefined)),
      "unsigned",
    );
    const stranger = ManifestSigner.fromFile(writeSigningKey(dir.path, "stranger").keyFile);
    assert.equal(
      reason(() => trusted.verify(m, stranger.sign(m))),
      "unknown_key",
    );
    assert.equal(
      reason(() => trusted.verify({ ...m, sha256: "cd".repeat(32) }, sig)),
      "bad_signature",
    );
    assert.equal(
      reason(() => trusted.verify({ ...m, config: { k: "w" } }, sig)),
      "bad_signature",
    );
    assert.equal(
      reason(() => trusted.verify(m, { ...sig, value: "AAAA" })),
      "bad_signature",
    );
    assert.equal(
      reason(() => new ManifestVerifier([]).verify(m, sig)),
      "unknown_key",
    );
  });
});

describe("bus signing - the registry", () => {
  test("bus signing - a node's registry takes signed manifests and refuses the rest, counted by reason", async () => {
    const trainer = await SpeculatorRegistry.open(bus.js, { signer });
    const node = await SpeculatorRegistry.open(bus.js, { verifier: trusted });
    const unsigned = await SpeculatorRegistry.open(bus.js);
    const stranger = await SpeculatorRegistry.open(bus.js, {
      signer: ManifestSigner.fromFile(writeSigningKey(dir.path, "stranger").keyFile),
    });
    const model = "m-signed";
    await trainer.publish({ manifest: draft(model, "v1"), blob: randomBytes(256) });
    assert.equal((await node.current(model, "live"))?.versionId, "v1");

    const watch = await node.watch(model);
    const seen: ManifestUpdate[] = [];
    void (async () => {
      for await (const u of watch) seen.push(u);
    })();
    try {
      await waitFor("v1", () => seen.length === 1);
      await unsigned.publish({ manifest: draft(model, "unsigned"), blob: randomBytes(256) });
      await stranger.publish({ manifest: draft(model, "stranger"), blob: randomBytes(256) });
      // A signed manifest copied with one field changed (the blob it names): what an attacker with a bus
      // write credential but no signing key can do.
      const kv = await bus.js.views.kv(SPECULATOR_BUCKET, { bindOnly: true });
      let signedV1: { manifest: Record<string, unknown>; signature: unknown } | undefined;
      for await (const e of await kv.history({ key: speculatorKey(model, "live") })) {
        signedV1 ??= e.json();
      }
      assert.ok(signedV1 !== undefined);
      await kv.put(
        speculatorKey(model, "live"),
        JSON.stringify({ ...signedV1, manifest: { ...signedV1.manifest, sha256: "00".repeat(32) } }),
      );
      await trainer.publish({ manifest: draft(model, "v2"), blob: randomBytes(256) });
      await waitFor("v2 after the refusals", () => seen.length === 5);
      assert.deepEqual(
        seen.map((u) => u.refused?.reason ?? u.manifest?.versionId),
        ["v1", "unsigned", "unknown_key", "bad_signature", "v2"],
      );
    } finally {
      watch.stop();
    }
  });
});
