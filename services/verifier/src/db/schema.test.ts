import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { asc, desc, eq, getTableColumns, getTableName } from "drizzle-orm";
import type { SQLiteTable } from "drizzle-orm/sqlite-core";
import {
  comparisons,
  type NewComparison,
  type NewTournament,
  openVerifierStore,
  tournaments,
  type VerifierStore,
} from "./index.js";

let root: string;
let store: VerifierStore;
let fileNo = 0;
before(() => {
  root = mkdtempSync(join(tmpdir(), "specloop-verifier-db-"));
});
beforeEach(() => {
  store?.close();
  fileNo += 1;
  store = openVerifierStore(join(root, `verifier-${fileNo}.sqlite`));
});
after(() => {
  store?.close();
  rmSync(root, { recursive: true, force: true });
});

function tournament(id: string, fields: Partial<NewTournament> = {}): NewTournament {
  return {
    id,
    question: "What is 17 * 23?",
    candidates: ["391", "381", "17*23 = 391, because 17*20 + 17*3 = 340 + 51"],
    judge: "pairwise",
    budget: 9,
    seed: 2 ** 40 + 7,
    modelId: "qwen3-0.6b",
    ...fields,
  };
}

function comparison(tournamentId: string, idx: number, a: number, b: number, pA: number): NewComparison {
  return {
    tournamentId,
    idx,
    a,
    b,
    pA,
    phase: idx < 2 ? 1 : 2,
    judgedAt: new Date(Date.UTC(2025, 0, 1, 0, 0, idx)),
  };
}

describe("verifier db - schema", () => {
  test("verifier db - the committed migrations create every column the schema declares", () => {
    for (const table of [tournaments, comparisons] as SQLiteTable[]) {
      const name = getTableName(table);
      const inFile = store.db.$client.pragma(`table_info(${name})`) as { name: string }[];
      const declared = Object.values(getTableColumns(table)).map((c) => c.name);
      assert.deepEqual(inFile.map((c) => c.name).sort(), declared.sort(), name);
    }
  });

  test("verifier db - a finished tournament with its comparisons round-trips in judging order", () => {
    const createdAt = new Date(Date.UTC(2025, 0, 1));
    store.db
      .insert(tournaments)
      .values(tournament("t1", { state: "judging", createdAt }))
      .run();
    // Inserted out of order on purpose: idx, not insertion order, is the judging order.
    store.db
      .insert(comparisons)
      .values([
        comparison("t1", 2, 0, 2, 0.5),
        comparison("t1", 0, 0, 1, 0.875),
        comparison("t1", 1, 2, 1, 0.75),
      ])
      .run();
    const finishedAt = new Date(createdAt.getTime() + 1500);
    store.db
      .update(tournaments)
      .set({ state: "done", ranking: [0, 2, 1], scores: [1.5, -1.25, 0.25], finishedAt })
      .where(eq(tournaments.id, "t1"))
      .run();

    const found = store.db.query.tournaments
      .findFirst({
        where: eq(tournaments.id, "t1"),
        with: { comparisons: { orderBy: asc(comparisons.idx) } },
      })
      .sync();
    assert.ok(found !== undefined);
    assert.equal(found.state, "done");
    assert.deepEqual(found.candidates, tournament("t1").candidates);
    assert.deepEqual(found.ranking, [0, 2, 1]);
    assert.deepEqual(found.scores, [1.5, -1.25, 0.25]);
    assert.equal(found.seed, 2 ** 40 + 7);
    assert.equal(found.error, null);
    assert.equal(found.createdAt.getTime(), createdAt.getTime());
    assert.equal(found.finishedAt?.getTime(), finishedAt.getTime());
    assert.deepEqual(
      found.comparisons.map((c) => [c.idx, c.a, c.b, c.pA, c.phase, c.judgedAt.getTime()]),
      [
        [0, 0, 1, 0.875, 1, Date.UTC(2025, 0, 1, 0, 0, 0)],
        [1, 2, 1, 0.75, 1, Date.UTC(2025, 0, 1, 0, 0, 1)],
        [2, 0, 2, 0.5, 2, Date.UTC(2025, 0, 1, 0, 0, 2)],
      ],
    );
  });

  test("verifier db - a tournament's comparisons are read through the primary key index", () => {
    const query = store.db
      .select()
      .from(comparisons)
      .where(eq(comparisons.tournamentId, "t1"))
      .orderBy(asc(comparisons.idx));
    const { sql, params } = query.toSQL();
    const plan = store.db.$client.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
    const details = plan.map((p) => p.detail).join("\n");
    assert.match(details, /USING INDEX sqlite_autoindex_comparisons_1 \(tournament_id=\?\)/);
    assert.doesNotMatch(details, /TEMP B-TREE/);
  });

  test("verifier db - deleting a tournament deletes its comparisons and no one else's", () => {
    store.db
      .insert(tournaments)
      .values([tournament("t1"), tournament("t2")])
      .run();
    store.db
      .insert(comparisons)
      .values([comparison("t1", 0, 0, 1, 1), comparison("t1", 1, 1, 2, 0), comparison("t2", 0, 0, 1, 0.5)])
      .run();
    store.db.delete(tournaments).where(eq(tournaments.id, "t1")).run();
    const left = store.db.select().from(comparisons).all();
    assert.deepEqual(
      left.map((c) => [c.tournamentId, c.idx]),
      [["t2", 0]],
    );
  });

  test("verifier db - comparisons of unknown tournaments, repeated indices and bad values are refused", () => {
    store.db.insert(tournaments).values(tournament("t1")).run();
    store.db
      .insert(comparisons)
      .values(comparison("t1", 0, 0, 1, 0.5))
      .run();
    const insert = (c: NewComparison) => () => store.db.insert(comparisons).values(c).run();
    assert.throws(insert(comparison("nope", 0, 0, 1, 0.5)), /FOREIGN KEY constraint failed/);
    assert.throws(
      insert(comparison("t1", 0, 1, 2, 0.5)),
      /UNIQUE constraint failed: comparisons.tournament_id, comparisons.idx/,
    );
    assert.throws(insert(comparison("t1", 1, 1, 1, 0.5)), /comparisons_pair_check/);
    assert.throws(insert(comparison("t1", 1, 0, 1, 1.5)), /comparisons_p_a_check/);
  });

  test("verifier db - a done tournament needs a ranking and a failed one an error", () => {
    store.db
      .insert(tournaments)
      .values(tournament("t1", { state: "judging" }))
      .run();
    const set = (fields: Partial<NewTournament>) => () =>
      store.db.update(tournaments).set(fields).where(eq(tournaments.id, "t1")).run();
    assert.throws(set({ state: "done" }), /tournaments_done_check/);
    assert.throws(set({ state: "failed" }), /tournaments_failed_check/);
    set({ state: "failed", error: "judge call failed: deadline exceeded", finishedAt: new Date() })();
    const newest = store.db.select().from(tournaments).orderBy(desc(tournaments.createdAt)).get();
    assert.equal(newest?.error, "judge call failed: deadline exceeded");
  });
});
