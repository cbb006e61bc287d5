// npm start's bus: the files writeLocalBus makes, a real nats-server run with its config file, provisioned
// by the admin credential, each service configured only through the SPECLOOP_* variables env() gives it.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { after, before, test } from "node:test";
import { SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { loadConfig } from "@specloop/runtime";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { connect } from "nats";
import { z } from "zod";
import { type BusConfig, busConfigSchema } from "./config.js";
import { connectBus } from "./connection.js";
import { type LocalBus, provisionLocalBus, type ServiceRole, writeLocalBus } from "./local.js";
import { SpeculatorRegistry } from "./registry.js";
import { ManifestSigner, ManifestVerifier } from "./signing.js";
import { testLogger } from "./test-support.js";

let dir: TempDir;
let local: LocalBus;
let server: NatsServer;

before(async () => {
  dir = tempDir("specloop-local");
  const port = await freePort();
  local = writeLocalBus({ dataDir: dir.path, host: "127.0.0.1", port });
  server = await startNatsServer({ port, configFile: local.serverConfigFile });
  await provisionLocalBus(local);
});

after(async () => {
  await server?.stop();
  dir?.dispose();
});

/** A service's bus section, from its environment alone (as the service would load it). */
function configOf(role: ServiceRole): BusConfig {
  const env = { SPECLOOP_BUS__URLS: local.url, ...local.env(role) };
  return loadConfig(z.object({ bus: busConfigSchema }), { env }).bus;
}

test("local bus - files are private and kept across runs; no credential, no connection", async () => {
  for (const file of [
    local.serverConfigFile,
    local.signingKey.keyFile,
    local.credentials.credentialsFile("node"),
  ]) {
    assert.equal(statSync(file).mode & 0o777, 0o600, file);
  }
  const again = writeLocalBus({ dataDir: dir.path, host: "127.0.0.1", port: server.port });
  assert.equal(again.signingKey.publicKey, local.signingKey.publicKey);
  assert.equal(again.credentials.publicKey("trainer"), local.credentials.publicKey("trainer"));
  await assert.rejects(connect({ servers: local.url, reconnect: false }), /Authorization Violation/);
});

test("local bus - the trainer signs with its key file, the node trusts the public key file", async () => {
  const trainerConfig = configOf("trainer");
  const nodeConfig = configOf("node");
  assert.ok(nodeConfig.spool.dir.startsWith(dir.path));
  const trainer = await connectBus(trainerConfig, testLogger);
  const node = await connectBus(nodeConfig, testLogger);
  try {
    const signer = ManifestSigner.fromConfig(trainerConfig.manifests);
    assert.ok(signer !== undefined);
    const published = await SpeculatorRegistry.open(trainer.js, { signer });
    await published.publish({
      manifest: SpeculatorManifest.fromPartial({
        modelId: "tiny-code",
        versionId: "local-1",
        role: SpeculatorRole.SPECULATOR_ROLE_LIVE,
      }),
      blob: new Uint8Array(64),
    });
    const seen = await SpeculatorRegistry.open(node.js, {
      verifier: ManifestVerifier.fromConfig(nodeConfig.manifests),
    });
    assert.equal((await seen.current("tiny-code", "live"))?.versionId, "local-1");
    await assert.rejects(
      seen.publish({
        manifest: SpeculatorManifest.fromPartial({
          modelId: "tiny-code",
          versionId: "forged",
          role: SpeculatorRole.SPECULATOR_ROLE_LIVE,
        }),
        blob: new Uint8Array(64),
      }),
      /Permissions Violation/,
    );
  } finally {
    await trainer.close();
    await node.close();
  }
});
