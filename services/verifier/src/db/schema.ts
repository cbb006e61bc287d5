// The verifier's own tables: every tournament it ran (question, candidates, how it was judged, the
// outcome) and each judged pair in the order it was judged, which is also what `specloop verdicts export`
// reads. Changing this file needs a migration: scripts/db-generate.sh.
//
// Self-contained on purpose (imports only drizzle-orm): drizzle-kit loads it on its own to diff it.
import { relations, type SQL, sql } from "drizzle-orm";
import { check, index, integer, primaryKey, real, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const JUDGES = ["pairwise", "pointwise", "tests"] as const;
export type JudgeKind = (typeof JUDGES)[number];

export const TOURNAMENT_STATES = ["sampling", "judging", "done", "failed"] as const;
export type TournamentState = (typeof TOURNAMENT_STATES)[number];

/** 1 = topology coverage, 2 = Swiss refinement (proto Comparison.phase). */
export const COMPARISON_PHASES = [1, 2] as const;
export type ComparisonPhase = (typeof COMPARISON_PHASES)[number];

/** Milliseconds since the epoch, filled in by SQLite when the insert leaves it out. */
const nowMs = sql`(cast(unixepoch('subsec') * 1000 as integer))`;

/** A CHECK that a column holds one of a fixed list of (constant, quote-free) values. */
function oneOf(column: string, values: readonly (string | number)[]): SQL {
  const list = values.map((v) => (typeof v === "number" ? String(v) : `'${v}'`)).join(", ");
  return sql.raw(`${column} in (${list})`);
}

export const tournaments = sqliteTable(
  "tournaments",
  {
    id: text("id").primaryKey(),
    question: text("question").notNull(),
    /** The answers being ranked; a comparison's a and b index into this list. */
    candidates: text("candidates", { mode: "json" }).$type<string[]>().notNull(),
    judge: text("judge", { enum: JUDGES }).notNull(),
    /** Judge calls allowed (a pair asked in both orders counts once), after resolving 0 to 3N. */
    budget: integer("budget").notNull(),
    /** The seed actually used, so a tournament can be replayed. */
    seed: integer("seed").notNull(),
    state: text("state", { enum: TOURNAMENT_STATES }).notNull().default("sampling"),
    /** Candidate indices, best first; set when done. */
    ranking: text("ranking", { mode: "json" }).$type<number[]>(),
    /** Bradley-Terry score per candidate index; set when done. */
    scores: text("scores", { mode: "json" }).$type<number[]>(),
    error: text("error"),
    /** The model that sampled and judged; null when Rank was given candidates and a non-model judge. */
    modelId: text("model_id"),
    /** The authenticated identity that asked (its bearer token's); null when the call needed none. */
    requestedBy: text("requested_by"),
    /** Judge calls that gave a verdict; the rest failed and were counted as ties. Set when done. */
    realVerdicts: integer("real_verdicts"),
    /** UTF-8 bytes of the question and candidates, what retention's byte bound counts. */
    sizeBytes: integer("size_bytes").notNull().default(0),
    createdAt: integer("created_at", { mode: "timestamp_ms" }).notNull().default(nowMs),
    finishedAt: integer("finished_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    index("tournaments_created_idx").on(t.createdAt),
    index("tournaments_state_created_idx").on(t.state, t.createdAt),
    index("tournaments_finished_idx").on(t.finishedAt),
    check("tournaments_judge_check", oneOf("judge", JUDGES)),
    check("tournaments_state_check", oneOf("state", TOURNAMENT_STATES)),
    check("tournaments_budget_check", sql`budget >= 0`),
    check("tournaments_done_check", sql`state <> 'done' or (ranking is not null and scores is not null)`),
    check("tournaments_failed_check", sql`state <> 'failed' or error is not null`),
  ],
);

/**
 * One judged pair. The primary key (tournament_id, idx) is also the index that serves "the comparisons of
 * a tournament, in order". Deleting a tournament deletes its comparisons.
 */
export const comparisons = sqliteTable(
  "comparisons",
  {
    tournamentId: text("tournament_id")
      .notNull()
      .references(() => tournaments.id, { onDelete: "cascade" }),
    /** 0, 1, 2, ... in the order the comparisons were judged within the tournament. */
    idx: integer("idx").notNull(),
    a: integer("a").notNull(),
    b: integer("b").notNull(),
    /** Probability that candidate a is better than candidate b. */
    pA: real("p_a").notNull(),
    phase: integer("phase").$type<ComparisonPhase>().notNull(),
    judgedAt: integer("judged_at", { mode: "timestamp_ms" }).notNull().default(nowMs),
    /** The judge call failed and the failure policy counted a tie: no verdict, never published. */
    invented: integer("invented", { mode: "boolean" }).notNull().default(false),
    /**
     * When the verdict left the store's outbox: handed to the bus's spool, which delivers it (or found not
     * publishable). Null while it waits; invented ties and unfinished tournaments' comparisons never leave.
     */
    publishedAt: integer("published_at", { mode: "timestamp_ms" }),
  },
  (t) => [
    primaryKey({ name: "comparisons_pk", columns: [t.tournamentId, t.idx] }),
    index("comparisons_judged_at_idx").on(t.judgedAt),
    // The outbox: verdicts not yet handed to the bus's spool (real ones of done tournaments are).
    index("comparisons_unpublished_idx")
      .on(t.tournamentId, t.idx)
      .where(sql`published_at is null and invented = 0`),
    check("comparisons_pair_check", sql`a >= 0 and b >= 0 and a <> b and idx >= 0`),
    check("comparisons_p_a_check", sql`p_a >= 0 and p_a <= 1`),
    check("comparisons_phase_check", oneOf("phase", COMPARISON_PHASES)),
  ],
);

export const tournamentsRelations = relations(tournaments, ({ many }) => ({
  comparisons: many(comparisons),
}));

export const comparisonsRelations = relations(comparisons, ({ one }) => ({
  tournament: one(tournaments, { fields: [comparisons.tournamentId], references: [tournaments.id] }),
}));

export type TournamentRow = typeof tournaments.$inferSelect;
export type NewTournament = typeof tournaments.$inferInsert;
export type ComparisonRow = typeof comparisons.$inferSelect;
export type NewComparison = typeof comparisons.$inferInsert;
