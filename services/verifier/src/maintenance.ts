// The store's housekeeping. At start, tournaments a killed verifier left `sampling` or `judging` are marked
// failed with the reason (nothing is still working on them), and sandbox directories older versions left in
// the temp dir are removed (bwrap-based runs leave none: their only writable place is a tmpfs that goes with
// the sandbox). Retention deletes finished tournaments, with their comparisons, past the configured age,
// then the oldest finished ones until the stored text is within the byte bound. Running tournaments are
// never touched.
import type { Logger } from "@specloop/runtime";
import { and, asc, inArray, lt, sql } from "drizzle-orm";
import type { VerifierConfig } from "./config.js";
import { tournaments, type VerifierDb } from "./db/index.js";
import { removeLegacySandboxDirs } from "./sandbox/index.js";

export const INTERRUPTED_ERROR = "interrupted: the verifier stopped before this tournament finished";
const FINISHED = ["done", "failed"] as const;
const DAY_MS = 24 * 60 * 60 * 1000;
const DELETE_BATCH = 256;

/** Marks unfinished tournaments failed; returns how many. Run before the server takes calls. */
export function recoverInterrupted(db: VerifierDb, logger: Logger): number {
  const { changes } = db
    .update(tournaments)
    .set({ state: "failed", error: INTERRUPTED_ERROR, finishedAt: new Date() })
    .where(inArray(tournaments.state, ["sampling", "judging"]))
    .run();
  const dirs = removeLegacySandboxDirs();
  if (changes > 0 || dirs > 0) {
    logger.warn({ tournaments: changes, sandboxDirs: dirs }, "recovered what a stopped verifier left");
  }
  return changes;
}

export interface PruneReport {
  deleted: number;
  /** Stored text after pruning, bytes. */
  bytes: number;
}

export function pruneStore(
  db: VerifierDb,
  store: Pick<VerifierConfig["store"], "retentionDays" | "maxBytes">,
  now = Date.now(),
): PruneReport {
  let deleted = 0;
  if (store.retentionDays > 0) {
    const cutoff = new Date(now - store.retentionDays * DAY_MS);
    deleted += db
      .delete(tournaments)
      .where(and(inArray(tournaments.state, [...FINISHED]), lt(tournaments.createdAt, cutoff)))
      .run().changes;
  }
  const total = (): number =>
    db
      .select({ bytes: sql<number>`coalesce(sum(${tournaments.sizeBytes}), 0)` })
      .from(tournaments)
      .get()?.bytes ?? 0;
  let bytes = total();
  while (bytes > store.maxBytes) {
    const oldest = db
      .select({ id: tournaments.id, sizeBytes: tournaments.sizeBytes })
      .from(tournaments)
      .where(inArray(tournaments.state, [...FINISHED]))
      .orderBy(asc(tournaments.createdAt))
      .limit(DELETE_BATCH)
      .all();
    if (oldest.length === 0) break;
    const doomed: string[] = [];
    for (const t of oldest) {
      if (bytes <= store.maxBytes) break;
      doomed.push(t.id);
      bytes -= t.sizeBytes;
    }
    deleted += db.delete(tournaments).where(inArray(tournaments.id, doomed)).run().changes;
  }
  return { deleted, bytes: total() };
}

/** Prunes now and every `pruneIntervalMs`; returns the stop function. */
export function startRetention(db: VerifierDb, config: VerifierConfig, logger: Logger): () => void {
  const run = (): void => {
    try {
      const report = pruneStore(db, config.store);
      if (report.deleted > 0) logger.info(report, "retention: deleted old tournaments");
    } catch (err) {
      logger.error({ err }, "retention failed");
    }
  };
  run();
  const timer = setInterval(run, config.store.pruneIntervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
