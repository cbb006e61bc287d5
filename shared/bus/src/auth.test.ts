// Auth on: a real nats-server whose only users are the roles' nkey users (credentials.ts). Each role can
// do its job and is refused what it must not do, as an attacker holding that credential would try it.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { NodeStatus, PairwiseVerdict, SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { tempDir } from "@specloop/testkit";
import { connect, type NatsConnection, nkeys } from "nats";
import { type Bus, connectBus } from "./connection.js";
import { publicKeyOfSeedFile, writeBusCredentials } from "./credentials.js";
import { Heartbeats } from "./heartbeat.js";
import {
  HEARTBEAT_BUCKET,
  SPECULATOR_BUCKET,
  speculatorKey,
  TRACE_STREAM,
  traceSubject,
  VERDICT_STREAM,
  WEIGHTS_BUCKET,
} from "./names.js";
import { BUS_ROLES, type BusRole, inboxPrefix } from "./permissions.js";
import { isPermissionError } from "./provision.js";
import { SpeculatorRegistry } from "./registry.js";
import { consumeTraces } from "./subscriptions.js";
import { type SecuredTestBus, startSecuredTestBus } from "./test-auth.js";
import { sampleTrace, testLogger, testTraceLimits, waitFor } from "./test-support.js";
import { decodeVerdict, publishTrace, publishVerdict } from "./traces.js";

const MODEL = "m-auth";
let secured: SecuredTestBus;
const buses = new Map<BusRole, Bus>();
const bus = (role: BusRole) => buses.get(role) as Bus;

before(async () => {
  secured = await startSecuredTestBus();
  for (const role of ["node", "trainer", "verifier", "operator"] as const) {
    buses.set(role, await secured.open(role));
  }
  // What the trainer publishes; the attacks below try to replace or read it.
  const registry = await SpeculatorRegistry.open(bus("trainer").js);
  await registry.publish({ manifest: manifest("v1"), blob: new Uint8Array(200_000).fill(1) });
});

after(async () => {
  for (const b of buses.values()) await b.close();
  await secured?.stop();
});

function manifest(versionId: string): SpeculatorManifest {
  return SpeculatorManifest.fromPartial({
    modelId: MODEL,
    versionId,
    role: SpeculatorRole.SPECULATOR_ROLE_LIVE,
    architecture: "eagle-v1",
  });
}

/** The call fails because the server refused the credential the permission. */
async function refused(what: string, call: () => Promise<unknown>): Promise<void> {
  await assert.rejects(call(), (err: unknown) => {
    const chain: unknown[] = [err, (err as { cause?: unknown })?.cause];
    assert.ok(
      chain.some(
        (e) => isPermissionError(e) || (e instanceof Error && e.message.includes("Permissions Violation")),
      ),
      `${what}: expected a permissions violation, got ${String(err)}`,
    );
    return true;
  });
}

/** A core subscription the server refuses: it is closed and receives nothing published after it. */
async function subscriptionRefused(nc: NatsConnection, subject: string, publish: () => Promise<unknown>) {
  const sub = nc.subscribe(subject);
  let received = 0;
  void (async () => {
    for await (const _ of sub) received++;
  })().catch(() => undefined);
  await nc.flush();
  await publish();
  await waitFor(`the server to refuse a subscription to ${subject}`, () => sub.isClosed(), 3_000);
  assert.equal(received, 0, `${subject}: nothing may be received`);
}

describe("bus auth - connecting", () => {
  test("bus auth - no credential and an unknown nkey are refused", async () => {
    await assert.rejects(
      connect({ servers: secured.server.url, timeout: 2_000, reconnect: false }),
      /Authorization Violation/,
    );
    const dir = tempDir("specloop-stranger");
    try {
      const stranger = writeBusCredentials({ dir: dir.path, roles: ["node"] });
      await assert.rejects(
        connectBus(secured.config("node", { credentialsFile: stranger.credentialsFile("node") }), testLogger),
        /Authorization Violation/,
      );
    } finally {
      dir.dispose();
    }
  });

  test("bus auth - credentials are private files, kept across calls, rotation keeps the old key valid", async () => {
    const dir = tempDir("specloop-rotate");
    try {
      const first = writeBusCredentials({ dir: dir.path });
      for (const role of BUS_ROLES) {
        assert.equal(statSync(first.credentialsFile(role)).mode & 0o777, 0o600, role);
        assert.equal(publicKeyOfSeedFile(first.credentialsFile(role)), first.publicKey(role));
      }
      assert.equal(statSync(first.serverConfigFile).mode & 0o777, 0o600);
      const again = writeBusCredentials({ dir: dir.path });
      assert.equal(again.publicKey("node"), first.publicKey("node"));
      const rotated = writeBusCredentials({ dir: dir.path, rotate: ["node"] });
      assert.notEqual(rotated.publicKey("node"), first.publicKey("node"));
      assert.ok(rotated.serverConfig.includes(first.publicKey("node")), "the previous key stays valid");
      assert.ok(rotated.serverConfig.includes(rotated.publicKey("node")));
      assert.equal(rotated.publicKey("trainer"), first.publicKey("trainer"));
    } finally {
      dir.dispose();
    }
  });
});

describe("bus auth - node", () => {
  test("bus auth - a node publishes traces and heartbeats, reads speculators and weights, consumes traces", async () => {
    const node = bus("node");
    await publishTrace(node.js, sampleTrace("auth-node-1", MODEL));
    const heartbeats = await Heartbeats.open(node.js);
    await heartbeats.report(NodeStatus.fromPartial({ nodeId: "auth-node" }));
    const registry = await SpeculatorRegistry.open(node.js);
    const current = await registry.current(MODEL, "live");
    assert.equal(current?.versionId, "v1");
    assert.equal((await registry.fetchBlob(current as SpeculatorManifest)).length, 200_000);
    const watch = await registry.watch(MODEL);
    for await (const update of watch) {
      assert.equal(update.manifest?.versionId, "v1");
      break;
    }
    watch.stop();
    const seen: string[] = [];
    const consumer = await consumeTraces(node, {
      limits: testTraceLimits,
      durable: "auth-node-fleet",
      modelId: MODEL,
      logger: testLogger,
      handler: (t) => {
        seen.push(t.requestId);
        return "ack";
      },
    });
    try {
      await waitFor("the node to consume the trace", () => seen.includes("auth-node-1"));
    } finally {
      await consumer.stop();
    }
  });

  test("bus auth - a node credential cannot put a manifest or a blob, nor touch the streams", async () => {
    const node = bus("node");
    const kv = await node.js.views.kv(SPECULATOR_BUCKET, { bindOnly: true });
    await refused("kv put of a manifest", () =>
      kv.put(speculatorKey(MODEL, "live"), JSON.stringify(SpeculatorManifest.toJSON(manifest("evil")))),
    );
    const store = await node.js.views.os(WEIGHTS_BUCKET);
    await refused("object put of a blob", () => store.putBlob({ name: "evil" }, new Uint8Array(1000)));
    const registry = await SpeculatorRegistry.open(node.js);
    await refused("registry publish", () =>
      registry.publish({ manifest: manifest("evil"), blob: new Uint8Array(1000) }),
    );
    await refused("stream delete", () => node.jsm.streams.delete(TRACE_STREAM));
    await refused("stream purge", () => node.jsm.streams.purge(TRACE_STREAM));
    await refused("verdicts", () =>
      publishVerdict(
        node.js,
        PairwiseVerdict.fromPartial({ tournamentId: "t", modelId: MODEL, candidateA: "a", candidateB: "b" }),
      ),
    );
    // Nothing changed: the trainer's v1 is still what every node sees, and no "evil" object exists.
    const trainerRegistry = await SpeculatorRegistry.open(bus("trainer").js);
    assert.equal((await trainerRegistry.current(MODEL, "live"))?.versionId, "v1");
    const trainerStore = await bus("trainer").js.views.os(WEIGHTS_BUCKET);
    assert.equal(await trainerStore.info("evil"), null);
  });
});

describe("bus auth - trainer", () => {
  test("bus auth - the trainer writes speculators and consumes traces, but cannot inject traces", async () => {
    const trainer = bus("trainer");
    const registry = await SpeculatorRegistry.open(trainer.js);
    const announced = await registry.publish({ manifest: manifest("v2"), blob: new Uint8Array(10).fill(2) });
    assert.equal((await registry.current(MODEL, "live"))?.versionId, announced.versionId);
    await publishTrace(bus("node").js, sampleTrace("auth-trainer-1", MODEL));
    const seen: string[] = [];
    const consumer = await consumeTraces(trainer, {
      limits: testTraceLimits,
      durable: "auth-trainer",
      modelId: MODEL,
      logger: testLogger,
      handler: (t) => {
        seen.push(t.requestId);
        return "ack";
      },
    });
    try {
      await waitFor("the trainer to consume", () => seen.includes("auth-trainer-1"));
    } finally {
      await consumer.stop();
    }
    await refused("trace injection", () => publishTrace(trainer.js, sampleTrace("forged", MODEL)));
    await refused("stream delete", () => trainer.jsm.streams.delete(TRACE_STREAM));
  });
});

describe("bus auth - verifier and operator", () => {
  test("bus auth - the verifier publishes verdicts and reads no trace, manifest or weights", async () => {
    const verifier = bus("verifier");
    const ack = await publishVerdict(
      verifier.js,
      PairwiseVerdict.fromPartial({ tournamentId: "t1", modelId: MODEL, candidateA: "a", candidateB: "b" }),
    );
    assert.ok(ack.seq > 0);
    await refused("trace consumer", () =>
      consumeTraces(verifier, {
        limits: testTraceLimits,
        durable: "auth-verifier",
        logger: testLogger,
        handler: () => "ack",
      }),
    );
    await refused("trace get", () => verifier.jsm.streams.getMessage(TRACE_STREAM, { seq: 1 }));
    const registry = await SpeculatorRegistry.open(verifier.js);
    await refused("manifest get", () => registry.current(MODEL, "live"));
    await refused("registry publish", () =>
      registry.publish({ manifest: manifest("evil"), blob: new Uint8Array(1000) }),
    );
    await subscriptionRefused(verifier.nc, traceSubject(MODEL), () =>
      publishTrace(bus("node").js, sampleTrace("auth-sniffed-v", MODEL)),
    );
  });

  test("bus auth - the operator reads status, heartbeats and manifests, never traces or weights", async () => {
    const operator = bus("operator");
    await Heartbeats.open(bus("node").js).then((h) =>
      h.report(NodeStatus.fromPartial({ nodeId: "auth-op-node" })),
    );
    const heartbeats = await Heartbeats.open(operator.js);
    assert.ok((await heartbeats.live()).some((s) => s.nodeId === "auth-op-node"));
    const registry = await SpeculatorRegistry.open(operator.js);
    const current = await registry.current(MODEL, "live");
    assert.ok(current !== undefined);
    assert.ok((await operator.jsm.streams.info(TRACE_STREAM)).state.messages > 0);
    // The verdict dataset, the way `specloop verdicts export` reads it (an ordered consumer).
    await publishVerdict(
      bus("verifier").js,
      PairwiseVerdict.fromPartial({ tournamentId: "t-op", modelId: MODEL, candidateA: "a", candidateB: "b" }),
    );
    const verdicts = await operator.js.consumers.get(VERDICT_STREAM);
    const tournaments: string[] = [];
    for await (const m of await verdicts.fetch({ max_messages: 100, expires: 1_000 })) {
      tournaments.push(decodeVerdict(m.data).tournamentId);
    }
    assert.ok(tournaments.includes("t-op"), `read ${tournaments}`);
    await refused("blob", () => registry.fetchBlob(current as SpeculatorManifest));
    await refused("trace consumer", () =>
      consumeTraces(operator, {
        limits: testTraceLimits,
        durable: "auth-operator",
        logger: testLogger,
        handler: () => "ack",
      }),
    );
    await refused("trace get", () => operator.jsm.streams.getMessage(TRACE_STREAM, { seq: 1 }));
    await refused("trace direct get", () =>
      operator.nc.request(`$JS.API.DIRECT.GET.${TRACE_STREAM}`, JSON.stringify({ seq: 1 }), {
        timeout: 2_000,
      }),
    );
    const kv = await operator.js.views.kv(HEARTBEAT_BUCKET, { bindOnly: true });
    await refused("heartbeat forgery", () => kv.put("auth-op-node", "{}"));
    await subscriptionRefused(operator.nc, ">", () =>
      publishTrace(bus("node").js, sampleTrace("auth-sniffed-o", MODEL)),
    );
  });

  test("bus auth - no role listens on another's inbox (where pull consumers deliver traces)", async () => {
    const trainerInbox = `${inboxPrefix(secured.credentials.publicKey("trainer"))}.>`;
    await subscriptionRefused(bus("operator").nc, trainerInbox, () => bus("operator").nc.flush());
    await subscriptionRefused(bus("verifier").nc, "_INBOX.>", () => bus("verifier").nc.flush());
    // Each user's own prefix is derived from its seed, the way the server config lists it.
    const seed = nkeys.createUser();
    assert.ok(inboxPrefix(seed.getPublicKey()).startsWith("_INBOX_U"));
  });
});
