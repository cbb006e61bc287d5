// The three services as real processes against a real nats-server started here: they start with the
// runtime kit, provision the bus, serve health and their API, keep their state in real SQLite files,
// heartbeat and consume traces over NATS, refuse bad config or an unreachable NATS with one line naming
// the problem, and stop cleanly on SIGTERM.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentials, status } from "@grpc/grpc-js";
import { Heartbeats, publishTrace } from "@specloop/bus";
import { openTestBus, sampleTrace, testBusConfig, traceSubject, waitFor } from "@specloop/bus/internal";
import { checkHealth } from "@specloop/cli";
import {
  type GetNodeStatusResponse,
  type GetTrainerStatusResponse,
  type GetTrainingConfigResponse,
  type GetVersionResponse,
  InferenceClient,
  type ListVersionsResponse,
  SERVICE_NAMES,
  SpeculatorTrainerClient,
  VerifierClient,
  VersionStatus,
} from "@specloop/proto";
import { openTrainerStore, speculatorVersions } from "@specloop/speculator-trainer/db";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { call, callError } from "./harness/grpc.js";
import { type ServiceProcess, spawnService } from "./harness/service-process.js";

const insecure = credentials.createInsecure();
let dir: TempDir;
let nats: NatsServer;
/** Environment every service gets: this test's NATS server. */
let busEnv: Record<string, string>;

before(async () => {
  dir = tempDir("specloop-services-");
  nats = await startNatsServer();
  busEnv = { SPECLOOP_BUS__URLS: nats.url, SPECLOOP_BUS__HEARTBEATS__TTL_MS: "2000" };
});
after(async () => {
  await nats.stop();
  dir.dispose();
});

describe("services - inference", () => {
  let node: ServiceProcess;
  before(async () => {
    node = await spawnService("inference", {
      env: { ...busEnv, SPECLOOP_NODE__ID: "node-a", SPECLOOP_NODE__HEARTBEAT_INTERVAL_MS: "200" },
    });
  });
  after(() => node.stop());

  test("services inference - health is SERVING for the server and the Inference service", async () => {
    assert.equal(
      (await checkHealth({ server: node.address, service: "", timeoutMs: 2000 })).status,
      "SERVING",
    );
    const svc = await checkHealth({
      server: node.address,
      service: SERVICE_NAMES.inference,
      timeoutMs: 2000,
    });
    assert.equal(svc.status, "SERVING");
  });

  test("services inference - GetNodeStatus reports the configured node and model", async () => {
    const client = new InferenceClient(node.address, insecure);
    const res = await call<GetNodeStatusResponse>((cb) => client.getNodeStatus({}, cb));
    client.close();
    assert.equal(res.status?.nodeId, "node-a");
    assert.equal(res.status?.modelId, "tiny-code");
    assert.ok((res.status?.uptimeSeconds ?? -1) >= 0);
  });

  test("services inference - heartbeats its status into the node bucket, and withdraws it on SIGTERM", async () => {
    const bus = await openTestBus(testBusConfig(nats.url));
    try {
      const heartbeats = await Heartbeats.open(bus.js);
      await waitFor("node-a heartbeat", async () =>
        (await heartbeats.live()).some((n) => n.nodeId === "node-a"),
      );
      assert.equal(await node.stop(), 0);
      const after = await heartbeats.live();
      assert.equal(
        after.some((n) => n.nodeId === "node-a"),
        false,
      );
    } finally {
      await bus.close();
    }
  });
});

// The store, API and intake of the trainer, with training off (the loop has its own tests, and its day-0
// version would take the live slot these tests fill by hand).
const storeOnly = () => ({ ...busEnv, SPECLOOP_TRAINER__ENABLED: "false" });

describe("services - speculator-trainer", () => {
  let trainer: ServiceProcess;
  let dbPath: string;
  before(async () => {
    dbPath = join(dir.path, "trainer.sqlite");
    trainer = await spawnService("speculator-trainer", {
      env: { ...storeOnly(), SPECLOOP_STORE__PATH: dbPath },
    });
  });
  after(() => trainer.stop());

  test("services trainer - a fresh store lists no versions and reports the default config", async () => {
    const client = new SpeculatorTrainerClient(trainer.address, insecure);
    const list = await call<ListVersionsResponse>((cb) =>
      client.listVersions({ statuses: [], limit: 0 }, cb),
    );
    const cfg = await call<GetTrainingConfigResponse>((cb) => client.getTrainingConfig({}, cb));
    client.close();
    assert.deepEqual(list.versions, []);
    assert.ok((cfg.config?.learningRate ?? 0) > 0);
  });

  test("services trainer - versions written to its SQLite file are served, newest first", async () => {
    const store = openTrainerStore(dbPath);
    const digest = "ab".repeat(32);
    store.db
      .insert(speculatorVersions)
      .values([
        {
          id: "v1",
          modelId: "tiny-code",
          architecture: "eagle-v1",
          sha256: digest,
          sizeBytes: 10,
          createdAt: new Date(1000),
          status: "retired",
        },
        {
          id: "v2",
          modelId: "tiny-code",
          architecture: "eagle-v1",
          sha256: digest,
          sizeBytes: 10,
          createdAt: new Date(2000),
          status: "live",
          parentId: "v1",
        },
      ])
      .run();
    store.close();
    const client = new SpeculatorTrainerClient(trainer.address, insecure);
    const all = await call<ListVersionsResponse>((cb) => client.listVersions({ statuses: [], limit: 0 }, cb));
    const live = await call<ListVersionsResponse>((cb) =>
      client.listVersions({ statuses: [VersionStatus.VERSION_STATUS_LIVE], limit: 0 }, cb),
    );
    const st = await call<GetTrainerStatusResponse>((cb) => client.getTrainerStatus({}, cb));
    const missing = await callError((cb) => client.getVersion({ versionId: "nope" }, cb));
    client.close();
    assert.deepEqual(
      all.versions.map((v) => v.versionId),
      ["v2", "v1"],
    );
    assert.deepEqual(
      live.versions.map((v) => v.parentVersionId),
      ["v1"],
    );
    assert.equal(st.status?.liveVersionId, "v2");
    assert.equal(missing.code, status.NOT_FOUND);
    assert.match(missing.details, /nope/);
  });

  test("services trainer - state survives a restart on the same file", async () => {
    assert.equal(await trainer.stop(), 0);
    trainer = await spawnService("speculator-trainer", {
      env: { ...storeOnly(), SPECLOOP_STORE__PATH: dbPath },
    });
    const client = new SpeculatorTrainerClient(trainer.address, insecure);
    const res = await call<GetVersionResponse>((cb) => client.getVersion({ versionId: "v2" }, cb));
    client.close();
    assert.equal(res.version?.status, VersionStatus.VERSION_STATUS_LIVE);
  });
});

describe("services - trainer trace intake", () => {
  test("services trainer - consumes its model's traces over NATS and counts a malformed one as rejected", async () => {
    const trainer = await spawnService("speculator-trainer", {
      env: { ...storeOnly(), SPECLOOP_STORE__PATH: join(dir.path, "intake.sqlite") },
    });
    const bus = await openTestBus(testBusConfig(nats.url));
    const client = new SpeculatorTrainerClient(trainer.address, insecure);
    try {
      await publishTrace(bus.js, sampleTrace("req-1"));
      await bus.js.publish(traceSubject("tiny-code"), new Uint8Array([0xff, 0x01, 0x02]));
      await publishTrace(bus.js, sampleTrace("req-2"));
      await publishTrace(bus.js, sampleTrace("req-other", "another-model"));
      let status: GetTrainerStatusResponse | undefined;
      await waitFor("trainer counters", async () => {
        status = await call<GetTrainerStatusResponse>((cb) => client.getTrainerStatus({}, cb));
        return (status.status?.tracesConsumed ?? 0) >= 2 && (status.status?.tracesRejected ?? 0) >= 1;
      });
      assert.equal(status?.status?.tracesConsumed, 2, "another model's trace is not this trainer's");
      assert.equal(status?.status?.tracesRejected, 1);
    } finally {
      client.close();
      await bus.close();
      assert.equal(await trainer.stop(), 0);
    }
  });
});

describe("services - verifier", () => {
  let verifier: ServiceProcess;
  before(async () => {
    verifier = await spawnService("verifier", {
      env: { SPECLOOP_STORE__PATH: join(dir.path, "verifier.sqlite") },
    });
  });
  after(() => verifier.stop());

  test("services verifier - GetTournament names the bad field and answers NOT_FOUND for an unknown id", async () => {
    const client = new VerifierClient(verifier.address, insecure);
    const empty = await callError((cb) => client.getTournament({ tournamentId: "" }, cb));
    const unknown = await callError((cb) => client.getTournament({ tournamentId: "t-404" }, cb));
    client.close();
    assert.equal(empty.code, status.INVALID_ARGUMENT);
    assert.match(empty.details, /tournament_id/);
    assert.equal(unknown.code, status.NOT_FOUND);
  });
});

describe("services - startup failures", () => {
  test("services startup - a bad config value exits 2 with one line naming the variable", async () => {
    const proc = await spawnService("verifier", {
      env: {
        ...busEnv,
        SPECLOOP_STORE__PATH: join(dir.path, "v2.sqlite"),
        SPECLOOP_SERVER__SHUTDOWN_GRACE_MS: "soon",
      },
      waitServing: false,
    });
    assert.equal(await proc.exited, 2);
    assert.match(proc.output().stderr, /SPECLOOP_SERVER__SHUTDOWN_GRACE_MS/);
    assert.equal(proc.output().stderr.trim().split("\n").length, 1);
  });

  test("services startup - an unusable store path exits 1 naming the path", async () => {
    const bad = join(dir.path, "trainer.sqlite", "inside-a-file.sqlite");
    const proc = await spawnService("speculator-trainer", {
      env: { SPECLOOP_STORE__PATH: bad },
      waitServing: false,
    });
    assert.equal(await proc.exited, 1);
    assert.match(proc.output().stderr, /inside-a-file\.sqlite/);
  });

  test("services startup - an unreachable NATS exits 1 with one line naming the URL", async () => {
    for (const name of ["inference", "speculator-trainer", "verifier"] as const) {
      const proc = await spawnService(name, {
        env: {
          SPECLOOP_BUS__URLS: "nats://127.0.0.1:1",
          SPECLOOP_BUS__CONNECT_TIMEOUT_MS: "1000",
          SPECLOOP_STORE__PATH: join(dir.path, `${name}-nonats.sqlite`),
        },
        waitServing: false,
      });
      assert.equal(await proc.exited, 1, name);
      assert.match(proc.output().stderr, /nats:\/\/127\.0\.0\.1:1/, name);
      assert.equal(proc.output().stderr.trim().split("\n").length, 1, name);
    }
  });
});
