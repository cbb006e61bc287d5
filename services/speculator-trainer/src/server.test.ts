// The trainer's operator API on a real gRPC server over loopback, a real SQLite file and a real nats-server
// (the registry it announces through): admin RPCs need the admin token and record its identity; invalid
// transitions are FAILED_PRECONDITION; a version's events carry the gate's evidence.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { type Bus, SpeculatorRegistry } from "@specloop/bus";
import { openTestBus, testBusConfig } from "@specloop/bus/internal";
import { parseModelConfig, randomEagleWeights } from "@specloop/engine";
import {
  SERVICE_NAMES,
  SpeculatorRole,
  SpeculatorTrainerClient,
  SpeculatorTrainerService,
  TrainingConfig,
  VersionStatus,
} from "@specloop/proto";
import { createLogger, type GrpcServerHandle, startGrpcServer, TokenAuth } from "@specloop/runtime";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { openTrainerStore, type TrainerStore } from "./db/index.js";
import { TRAINER_ACTOR, VersionLifecycle, versionIdFor } from "./lifecycle.js";
import { trainerServer } from "./server.js";
import { TrainerStateStore } from "./state.js";

const TOKEN = "ops-token-0123456789abcdef";
const READ_TOKEN = "reader-token-0123456789abcd";
const target = parseModelConfig(
  JSON.parse(
    readFileSync(fileURLToPath(new URL("../../../models/tiny-code/config.json", import.meta.url)), "utf8"),
  ),
);

let nats: NatsServer;
let bus: Bus;
let dir: TempDir;
let store: TrainerStore;
let server: GrpcServerHandle;
let client: SpeculatorTrainerClient;
let lifecycle: VersionLifecycle;
let registry: SpeculatorRegistry;

function call<T>(fn: (cb: (err: ServiceError | null, res: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}
async function refused(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("the call succeeded where a refusal was expected");
}
const md = (token: string) => {
  const m = new Metadata();
  m.set("authorization", `Bearer ${token}`);
  return m;
};
const admin = md(TOKEN);

function newVersion(step: number, parent?: string) {
  return lifecycle.create({
    id: versionIdFor("tiny-code", step),
    parentId: parent,
    blob: randomEagleWeights(target, { seed: step }),
    architecture: "eagle-v1",
    samplesSeen: step * 8,
    trainingSteps: step,
    offline: undefined,
  });
}

before(async () => {
  nats = await startNatsServer();
  bus = await openTestBus(testBusConfig(nats.url));
  registry = await SpeculatorRegistry.open(bus.js);
  dir = tempDir("trainer-api");
  store = openTrainerStore(join(dir.path, "trainer.sqlite"));
  lifecycle = new VersionLifecycle({
    db: store.db,
    modelId: "tiny-code",
    registry,
    blobDir: join(dir.path, "versions"),
  });
  const auth = new TokenAuth([
    { identity: "ops", roles: ["admin"], token: TOKEN },
    { identity: "reader", roles: [], token: READ_TOKEN },
  ]);
  server = await startGrpcServer({
    port: 0,
    logger: createLogger("trainer-api-test", "warn"),
    services: [
      {
        name: SERVICE_NAMES.trainer,
        definition: SpeculatorTrainerService,
        implementation: trainerServer({
          db: store.db,
          modelId: "tiny-code",
          lifecycle,
          state: new TrainerStateStore(store.db, "tiny-code"),
          auth,
          backlog: async () => 0,
        }),
      },
    ],
  });
  client = new SpeculatorTrainerClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
});

after(async () => {
  client?.close();
  await server?.shutdown("done");
  store?.close();
  await bus?.close();
  await nats?.stop();
  dir?.dispose();
});

describe("trainer API", () => {
  it("refuses admin RPCs without a token (UNAUTHENTICATED) or without the admin role (PERMISSION_DENIED)", async () => {
    const none = await refused(call((cb) => client.pauseTraining({ actor: "mallory" }, cb)));
    assert.equal(none.code, status.UNAUTHENTICATED);
    const reader = await refused(call((cb) => client.pauseTraining({ actor: "ops" }, md(READ_TOKEN), cb)));
    assert.equal(reader.code, status.PERMISSION_DENIED);
    const wrong = await refused(
      call((cb) => client.rollbackVersion({ actor: "", reason: "" }, md("x".repeat(24)), cb)),
    );
    assert.equal(wrong.code, status.UNAUTHENTICATED);
    // Reads stay open.
    const st = await call<{ status?: { paused: boolean } }>((cb) => client.getTrainerStatus({}, cb));
    assert.equal(st.status?.paused, false);
  });

  it("promotes, canaries and rolls back, announcing on the bus and recording the authenticated identity", async () => {
    const v1 = newVersion(1);
    const p1 = await call<{ version?: { status: VersionStatus } }>((cb) =>
      client.promoteVersion(
        { versionId: v1.id, role: SpeculatorRole.SPECULATOR_ROLE_LIVE, actor: "spoofed", reason: "day 0" },
        admin,
        cb,
      ),
    );
    assert.equal(p1.version?.status, VersionStatus.VERSION_STATUS_LIVE);
    assert.equal((await registry.current("tiny-code", "live"))?.versionId, v1.id);
    const v2 = newVersion(2, v1.id);
    await call((cb) =>
      client.promoteVersion(
        { versionId: v2.id, role: SpeculatorRole.SPECULATOR_ROLE_CANARY, actor: "", reason: "try it" },
        admin,
        cb,
      ),
    );
    assert.equal((await registry.current("tiny-code", "canary"))?.versionId, v2.id);
    await call((cb) =>
      client.promoteVersion(
        { versionId: v2.id, role: SpeculatorRole.SPECULATOR_ROLE_LIVE, actor: "", reason: "" },
        admin,
        cb,
      ),
    );
    assert.equal((await registry.current("tiny-code", "live"))?.versionId, v2.id);
    assert.equal(
      await registry.current("tiny-code", "canary"),
      undefined,
      "a promoted canary leaves the slot",
    );
    const rb = await call<{ live?: { versionId: string }; retired?: { versionId: string } }>((cb) =>
      client.rollbackVersion({ actor: "", reason: "slower in prod" }, admin, cb),
    );
    assert.equal(rb.live?.versionId, v1.id);
    assert.equal(rb.retired?.versionId, v2.id);
    assert.equal((await registry.current("tiny-code", "live"))?.versionId, v1.id);
    const got = await call<{ events: { action: string; actor: string }[] }>((cb) =>
      client.getVersion({ versionId: v1.id }, cb),
    );
    assert.deepEqual(
      got.events.map((e) => e.action),
      ["create", "promote", "retire", "rollback"],
    );
    assert.ok(
      got.events.slice(1).every((e) => e.actor === "ops"),
      "the token's identity, not the request's actor field",
    );
  });

  it("answers invalid transitions with FAILED_PRECONDITION and unknown versions with NOT_FOUND", async () => {
    const retired = lifecycle.withStatus("rejected");
    assert.ok(retired !== undefined);
    const again = await refused(
      call((cb) =>
        client.promoteVersion({ versionId: retired.id, role: 0 as never, actor: "", reason: "" }, admin, cb),
      ),
    );
    assert.equal(again.code, status.FAILED_PRECONDITION);
    const missing = await refused(call((cb) => client.getVersion({ versionId: "nope" }, cb)));
    assert.equal(missing.code, status.NOT_FOUND);
    // v1 is live and nothing was live before it: no rollback target.
    const noPrevious = await refused(
      call((cb) => client.rollbackVersion({ actor: "", reason: "" }, admin, cb)),
    );
    assert.equal(noPrevious.code, status.FAILED_PRECONDITION);
    assert.match(noPrevious.details, /no previous live version/);
  });

  it("pins the live version: promotion and rollback wait until it is unpinned", async () => {
    await call((cb) => client.pinVersion({ actor: "", reason: "freeze for the launch" }, admin, cb));
    const v3 = newVersion(3);
    const blocked = await refused(
      call((cb) =>
        client.promoteVersion({ versionId: v3.id, role: 0 as never, actor: "", reason: "" }, admin, cb),
      ),
    );
    assert.equal(blocked.code, status.FAILED_PRECONDITION);
    assert.match(blocked.details, /pinned/);
    await call((cb) => client.unpinVersion({ actor: "" }, admin, cb));
    await call((cb) =>
      client.promoteVersion({ versionId: v3.id, role: 0 as never, actor: "", reason: "" }, admin, cb),
    );
    assert.equal(lifecycle.withStatus("live")?.id, v3.id);
  });

  it("pauses, resumes and updates the training config within bounds, naming a bad field", async () => {
    const paused = await call<{ status?: { paused: boolean } }>((cb) =>
      client.pauseTraining({ actor: "" }, admin, cb),
    );
    assert.equal(paused.status?.paused, true);
    await call((cb) => client.resumeTraining({ actor: "" }, admin, cb));
    const cfg = await call<{ config?: { learningRate: number; batchSize: number } }>((cb) =>
      client.updateTrainingConfig(
        {
          config: TrainingConfig.fromPartial({ learningRate: 1e-4, batchSize: 7 }),
          updateFields: ["learning_rate"],
        },
        admin,
        cb,
      ),
    );
    assert.equal(cfg.config?.learningRate, 1e-4);
    assert.notEqual(cfg.config?.batchSize, 7, "only the named field changes");
    const bad = await refused(
      call((cb) =>
        client.updateTrainingConfig(
          { config: TrainingConfig.fromPartial({ canaryShare: 2 }), updateFields: ["canary_share"] },
          admin,
          cb,
        ),
      ),
    );
    assert.equal(bad.code, status.INVALID_ARGUMENT);
    assert.match(bad.details, /canary_share/);
  });

  it("stores the gate's evidence with its decision and serves it", async () => {
    const v4 = newVersion(4);
    await lifecycle.canary(v4.id, 0.1, TRAINER_ACTOR, "canary");
    await lifecycle.reject(v4.id, TRAINER_ACTOR, "slower than live: 0.800x tokens/s", {
      samples: [40, 41],
      meanLogTokensPerSecond: [4.4, 4.6],
      difference: -0.22,
      intervalLow: -0.3,
      intervalHigh: -0.14,
      statistic: 120,
      threshold: 20,
      acceptedPerPass: [1.1, 2.2],
      speedup: 0.8,
      domains: ["python"],
    });
    const got = await call<{
      events: { action: string; evidence?: { statistic: number; samples: number[] } }[];
    }>((cb) => client.getVersion({ versionId: v4.id }, cb));
    const decision = got.events.find((e) => e.action === "reject");
    assert.equal(decision?.evidence?.statistic, 120);
    assert.deepEqual(decision?.evidence?.samples, [40, 41]);
  });
});
