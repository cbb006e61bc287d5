// Retention and start-up recovery on a real SQLite store: finished tournaments past the age or the byte
// bound go, oldest first, with their comparisons; running ones stay; unfinished ones a stopped verifier
// left are marked failed with the reason, and old sandbox directories are removed.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { testLogger } from "@specloop/bus/internal";
import { eq } from "drizzle-orm";
import { comparisons, openVerifierStore, tournaments, type VerifierStore } from "./db/index.js";
import { INTERRUPTED_ERROR, pruneStore, recoverInterrupted } from "./maintenance.js";
import { TournamentRecorder } from "./record.js";
import { removeLegacySandboxDirs } from "./sandbox/index.js";

let root: string;
let store: VerifierStore;
before(() => {
  root = mkdtempSync(join(tmpdir(), "specloop-verifier-maintenance-"));
});
after(() => {
  store?.close();
  rmSync(root, { recursive: true, force: true });
});

const KiB = 1024;
const DAY = 24 * 60 * 60 * 1000;

/** A tournament of two `kib`-KiB candidates, created at `at`, left in `state`. */
function tournament(id: string, kib: number, at: Date, state: "judging" | "done" | "failed"): void {
  const rec = new TournamentRecorder(store.db, id);
  rec.start({
    id,
    question: "q",
    candidates: ["a".repeat(kib * KiB), "b".repeat(kib * KiB)],
    judge: "tests",
    budget: 1,
    seed: 1,
    state: "judging",
    modelId: null,
    requestedBy: "ci",
  });
  rec.comparison({ a: 0, b: 1, pA: 1, phase: 1 }, 0, false);
  if (state === "done") rec.done([0, 1], [1, -1], 1, 1);
  if (state === "failed") rec.failed("judge failed");
  store.db.update(tournaments).set({ createdAt: at }).where(eq(tournaments.id, id)).run();
}

const ids = (): string[] =>
  store.db
    .select({ id: tournaments.id })
    .from(tournaments)
    .all()
    .map((t) => t.id)
    .sort();

describe("verifier maintenance", () => {
  test("verifier maintenance - the byte bound deletes the oldest finished tournaments, failed ones too, never running ones", () => {
    store = openVerifierStore(join(root, "bytes.sqlite"));
    const t0 = Date.UTC(2026, 0, 1);
    tournament("running-oldest", 300, new Date(t0), "judging");
    tournament("failed-1", 300, new Date(t0 + 1000), "failed");
    tournament("done-2", 300, new Date(t0 + 2000), "done");
    tournament("failed-3", 300, new Date(t0 + 3000), "failed");
    tournament("done-4", 300, new Date(t0 + 4000), "done");
    // Each holds ~600 KiB of text: a bound of 1.9 MiB keeps the running one and the two newest.
    const report = pruneStore(store.db, { retentionDays: 0, maxBytes: 1900 * KiB }, t0 + 5000);
    assert.deepEqual(ids(), ["done-4", "failed-3", "running-oldest"]);
    assert.equal(report.deleted, 2);
    assert.ok(report.bytes <= 1900 * KiB, `${report.bytes} bytes left`);
    assert.deepEqual(
      store.db
        .select({ id: comparisons.tournamentId })
        .from(comparisons)
        .all()
        .map((c) => c.id)
        .sort(),
      ["done-4", "failed-3", "running-oldest"],
    );
    store.close();
  });

  test("verifier maintenance - finished tournaments past the age go, whatever their size", () => {
    store = openVerifierStore(join(root, "age.sqlite"));
    const now = Date.UTC(2026, 5, 1);
    tournament("old-done", 1, new Date(now - 40 * DAY), "done");
    tournament("old-running", 1, new Date(now - 40 * DAY), "judging");
    tournament("recent", 1, new Date(now - 2 * DAY), "failed");
    assert.equal(pruneStore(store.db, { retentionDays: 30, maxBytes: 1 << 30 }, now).deleted, 1);
    assert.deepEqual(ids(), ["old-running", "recent"]);
    store.close();
  });

  test("verifier maintenance - at start, unfinished tournaments are failed with the reason", () => {
    store = openVerifierStore(join(root, "recover.sqlite"));
    tournament("was-judging", 1, new Date(), "judging");
    tournament("was-done", 1, new Date(), "done");
    assert.equal(recoverInterrupted(store.db, testLogger), 1);
    const row = store.db.select().from(tournaments).where(eq(tournaments.id, "was-judging")).get();
    assert.equal(row?.state, "failed");
    assert.equal(row?.error, INTERRUPTED_ERROR);
    assert.ok(row?.finishedAt instanceof Date);
    assert.equal(
      store.db.select().from(tournaments).where(eq(tournaments.id, "was-done")).get()?.state,
      "done",
    );
    store.close();
  });

  test("verifier maintenance - sandbox directories older verifiers left are removed, nothing else", () => {
    const tmp = join(root, "tmp");
    mkdirSync(join(tmp, "specloop-sandbox-abc123"), { recursive: true });
    mkdirSync(join(tmp, "specloop-verifier-keep"), { recursive: true });
    assert.equal(removeLegacySandboxDirs(tmp), 1);
    assert.equal(existsSync(join(tmp, "specloop-sandbox-abc123")), false);
    assert.equal(existsSync(join(tmp, "specloop-verifier-keep")), true);
  });
});
