import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { and, asc, desc, eq, getTableColumns, getTableName, inArray } from "drizzle-orm";
import type { SQLiteTable } from "drizzle-orm/sqlite-core";
import {
  type NewSpeculatorVersion,
  openTrainerStore,
  speculatorVersions,
  type TrainerStore,
  type TrainingConfig,
  trainerState,
  versionEvents,
} from "./index.js";

let root: string;
let store: TrainerStore;
let fileNo = 0;
before(() => {
  root = mkdtempSync(join(tmpdir(), "specloop-trainer-db-"));
});
beforeEach(() => {
  store?.close();
  fileNo += 1;
  store = openTrainerStore(join(root, `trainer-${fileNo}.sqlite`));
});
after(() => {
  store?.close();
  rmSync(root, { recursive: true, force: true });
});

const SHA = "ab".repeat(32);

function version(id: string, fields: Partial<NewSpeculatorVersion> = {}): NewSpeculatorVersion {
  return { id, modelId: "qwen3-0.6b", architecture: "eagle3", sha256: SHA, sizeBytes: 1024, ...fields };
}

describe("trainer db - schema", () => {
  test("trainer db - the committed migrations create every column the schema declares", () => {
    for (const table of [speculatorVersions, versionEvents, trainerState] as SQLiteTable[]) {
      const name = getTableName(table);
      const inFile = store.db.$client.pragma(`table_info(${name})`) as { name: string }[];
      const declared = Object.values(getTableColumns(table)).map((c) => c.name);
      assert.deepEqual(inFile.map((c) => c.name).sort(), declared.sort(), name);
    }
    assert.equal(store.migrationsApplied > 0, true);
  });

  test("trainer db - versions are found by model and status, newest first, through the index", () => {
    const t0 = Date.UTC(2025, 0, 1);
    store.db
      .insert(speculatorVersions)
      .values([
        version("v1", { status: "retired", createdAt: new Date(t0) }),
        version("v2", { status: "live", parentId: "v1", createdAt: new Date(t0 + 1000) }),
        version("v3", { status: "candidate", parentId: "v2", createdAt: new Date(t0 + 2000) }),
        version("v4", { status: "candidate", parentId: "v2", createdAt: new Date(t0 + 3000) }),
        version("other", { modelId: "llama-3.2-1b", status: "candidate", createdAt: new Date(t0 + 4000) }),
      ])
      .run();
    const where = and(
      eq(speculatorVersions.modelId, "qwen3-0.6b"),
      inArray(speculatorVersions.status, ["candidate", "live"]),
    );
    const query = store.db
      .select()
      .from(speculatorVersions)
      .where(where)
      .orderBy(desc(speculatorVersions.createdAt));
    const rows = query.all();
    assert.deepEqual(
      rows.map((r) => [r.id, r.status, r.parentId]),
      [
        ["v4", "candidate", "v2"],
        ["v3", "candidate", "v2"],
        ["v2", "live", "v1"],
      ],
    );
    assert.equal(rows[0]?.createdAt.getTime(), t0 + 3000);
    assert.equal(rows[0]?.pinned, false);
    const { sql, params } = query.toSQL();
    const plan = store.db.$client.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
    assert.match(plan.map((p) => p.detail).join("\n"), /USING INDEX speculator_versions_model_/);
  });

  test("trainer db - metrics round-trip as JSON and the creation time defaults to now", () => {
    const startMs = Date.now();
    store.db
      .insert(speculatorVersions)
      .values(
        version("v1", {
          offlineMetrics: { loss: 1.25, accuracy: 0.625, simulatedAcceptedPerPass: 2.5 },
          samplesSeen: 2 ** 40,
        }),
      )
      .run();
    const online = {
      requests: 120,
      targetPasses: 900,
      acceptedPerPass: 2.75,
      decodeTokensPerSecond: 81.5,
      speedupVsLive: 1.1,
    };
    store.db
      .update(speculatorVersions)
      .set({ onlineMetrics: online })
      .where(eq(speculatorVersions.id, "v1"))
      .run();
    const row = store.db.query.speculatorVersions
      .findFirst({ where: eq(speculatorVersions.id, "v1") })
      .sync();
    assert.deepEqual(row?.offlineMetrics, { loss: 1.25, accuracy: 0.625, simulatedAcceptedPerPass: 2.5 });
    assert.deepEqual(row?.onlineMetrics, online);
    assert.equal(row?.samplesSeen, 2 ** 40);
    assert.ok(
      row !== undefined &&
        row.createdAt.getTime() >= startMs - 1 &&
        row.createdAt.getTime() <= Date.now() + 1,
    );
  });

  test("trainer db - a model has at most one live and one canary version, and only live is pinned", () => {
    store.db
      .insert(speculatorVersions)
      .values([version("v1", { status: "live" }), version("v2", { status: "canary" })])
      .run();
    assert.throws(
      () =>
        store.db
          .insert(speculatorVersions)
          .values(version("v3", { status: "live" }))
          .run(),
      /UNIQUE constraint failed/,
    );
    assert.throws(
      () =>
        store.db
          .insert(speculatorVersions)
          .values(version("v3", { status: "canary" }))
          .run(),
      /UNIQUE constraint failed/,
    );
    assert.throws(
      () =>
        store.db
          .update(speculatorVersions)
          .set({ pinned: true })
          .where(eq(speculatorVersions.id, "v2"))
          .run(),
      /CHECK constraint failed/,
    );
    store.db
      .insert(speculatorVersions)
      .values(version("v3", { modelId: "another", status: "live", pinned: true }))
      .run();
  });

  test("trainer db - bad statuses, digests and unknown parents are refused", () => {
    const raw = store.db.$client;
    assert.throws(
      () =>
        raw
          .prepare(
            "INSERT INTO speculator_versions (id, model_id, status, architecture, sha256, size_bytes) VALUES ('x', 'm', 'serving', 'eagle3', ?, 1)",
          )
          .run(SHA),
      /CHECK constraint failed: speculator_versions_status_check/,
    );
    assert.throws(
      () =>
        store.db
          .insert(speculatorVersions)
          .values(version("x", { sha256: "abc" }))
          .run(),
      /speculator_versions_sha256_check/,
    );
    assert.throws(
      () =>
        store.db
          .insert(speculatorVersions)
          .values(version("x", { parentId: "nope" }))
          .run(),
      /FOREIGN KEY constraint failed/,
    );
  });

  test("trainer db - the event log keeps insertion order, even within one millisecond", () => {
    store.db
      .insert(speculatorVersions)
      .values([version("v1"), version("v2")])
      .run();
    const at = new Date(Date.UTC(2025, 5, 1));
    const steps = [
      {
        versionId: "v1",
        action: "create",
        toStatus: "candidate",
        actor: "trainer",
        reason: "published at step 500",
      },
      { versionId: "v1", action: "canary", fromStatus: "candidate", toStatus: "canary", actor: "trainer" },
      { versionId: "v2", action: "create", toStatus: "candidate", actor: "trainer" },
      {
        versionId: "v1",
        action: "promote",
        fromStatus: "canary",
        toStatus: "live",
        actor: "trainer",
        reason: "speedup 1.18",
      },
      { versionId: "v1", action: "pin", actor: "alice", reason: "holiday freeze" },
      { versionId: "v1", action: "unpin", actor: "alice" },
      {
        versionId: "v1",
        action: "rollback",
        fromStatus: "live",
        toStatus: "retired",
        actor: "bob",
        reason: "p99 up",
      },
    ] as const;
    for (const step of steps)
      store.db
        .insert(versionEvents)
        .values({ ...step, modelId: "qwen3-0.6b", at })
        .run();

    const forV1 = store.db
      .select()
      .from(versionEvents)
      .where(eq(versionEvents.versionId, "v1"))
      .orderBy(asc(versionEvents.id))
      .all();
    assert.deepEqual(
      forV1.map((e) => [e.action, e.actor, e.reason]),
      [
        ["create", "trainer", "published at step 500"],
        ["canary", "trainer", ""],
        ["promote", "trainer", "speedup 1.18"],
        ["pin", "alice", "holiday freeze"],
        ["unpin", "alice", ""],
        ["rollback", "bob", "p99 up"],
      ],
    );
    const latest = store.db.select().from(versionEvents).orderBy(desc(versionEvents.id)).limit(1).get();
    assert.equal(latest?.action, "rollback");
    assert.equal(latest?.at.getTime(), at.getTime());
  });

  test("trainer db - the training config and progress persist across reopening", () => {
    const config: TrainingConfig = {
      learningRate: 3e-4,
      batchSize: 32,
      unrollSteps: 3,
      rejectionLossWeight: 0.1,
      publishEverySteps: 500,
      canaryShare: 0.05,
      canaryMinRequests: 200,
      promoteMinSpeedup: 1.02,
      domains: ["code", "chat"],
    };
    store.db.insert(trainerState).values({ modelId: "qwen3-0.6b", config }).run();
    store.db
      .update(trainerState)
      .set({
        paused: true,
        pausedBy: "alice",
        pausedAt: new Date(),
        lastTraceSeq: 4242,
        tracesConsumed: 4000,
      })
      .where(eq(trainerState.modelId, "qwen3-0.6b"))
      .run();
    const path = store.path;
    store.close();
    store = openTrainerStore(path);
    assert.equal(store.migrationsApplied, 0);
    const row = store.db.select().from(trainerState).where(eq(trainerState.modelId, "qwen3-0.6b")).get();
    assert.deepEqual(row?.config, config);
    assert.equal(row?.paused, true);
    assert.equal(row?.pausedBy, "alice");
    assert.equal(row?.lastTraceSeq, 4242);
  });

  test("trainer db - deleting a version drops its events and unlinks its children", () => {
    store.db
      .insert(speculatorVersions)
      .values([version("v1"), version("v2", { parentId: "v1" })])
      .run();
    store.db
      .insert(versionEvents)
      .values({ versionId: "v1", modelId: "qwen3-0.6b", action: "create", actor: "trainer" })
      .run();
    store.db.delete(speculatorVersions).where(eq(speculatorVersions.id, "v1")).run();
    assert.equal(store.db.select().from(versionEvents).all().length, 0);
    assert.equal(store.db.select().from(speculatorVersions).get()?.parentId, null);
  });
});
