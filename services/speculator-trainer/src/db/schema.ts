// The speculator-trainer's own tables: every speculator version it has published (lineage, status,
// metrics, digest), the log of who moved which version where and why, and the trainer's persisted config
// and progress per model. Changing this file needs a migration: scripts/db-generate.sh.
//
// Self-contained on purpose: at run time it imports only drizzle-orm (the proto import is types only,
// erased when compiled), because drizzle-kit loads this file on its own to diff it.
import type { GateEvidence, OfflineMetrics, OnlineMetrics, TrainingConfig } from "@specloop/proto";
import { type SQL, sql } from "drizzle-orm";
import {
  type AnySQLiteColumn,
  check,
  index,
  integer,
  primaryKey,
  real,
  sqliteTable,
  text,
  uniqueIndex,
} from "drizzle-orm/sqlite-core";

export const VERSION_STATUSES = ["candidate", "canary", "live", "retired", "rejected"] as const;
export type VersionStatus = (typeof VERSION_STATUSES)[number];

/** What happened to a version; `promote` and `rollback` carry the status change in from/to. */
export const VERSION_ACTIONS = [
  "create",
  "canary",
  "promote",
  "rollback",
  "retire",
  "reject",
  "pin",
  "unpin",
] as const;
export type VersionAction = (typeof VERSION_ACTIONS)[number];

// The JSON columns hold the wire contract's own messages: one definition, in proto/specloop/v1/trainer.proto.
export type { GateEvidence, OfflineMetrics, OnlineMetrics, TrainingConfig };

/** Milliseconds since the epoch, filled in by SQLite when the insert leaves it out. */
const nowMs = sql`(cast(unixepoch('subsec') * 1000 as integer))`;

/** A CHECK that a column holds one of a fixed list of (constant, quote-free) values. */
function oneOf(column: string, values: readonly string[]): SQL {
  return sql.raw(`${column} in (${values.map((v) => `'${v}'`).join(", ")})`);
}

export const speculatorVersions = sqliteTable(
  "speculator_versions",
  {
    id: text("id").primaryKey(),
    modelId: text("model_id").notNull(),
    /** The version it was trained from; null for the first, or once the parent has been pruned. */
    parentId: text("parent_id").references((): AnySQLiteColumn => speculatorVersions.id, {
      onDelete: "set null",
    }),
    status: text("status", { enum: VERSION_STATUSES }).notNull().default("candidate"),
    /** The architecture tag written in the safetensors metadata, e.g. "eagle3". */
    architecture: text("architecture").notNull(),
    samplesSeen: integer("samples_seen").notNull().default(0),
    trainingSteps: integer("training_steps").notNull().default(0),
    offlineMetrics: text("offline_metrics", { mode: "json" }).$type<OfflineMetrics>(),
    onlineMetrics: text("online_metrics", { mode: "json" }).$type<OnlineMetrics>(),
    /** Hex digest of the safetensors file in the object store. */
    sha256: text("sha256").notNull(),
    sizeBytes: integer("size_bytes").notNull(),
    pinned: integer("pinned", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at", { mode: "timestamp_ms" }).notNull().default(nowMs),
    /** When it last became canary or live. */
    promotedAt: integer("promoted_at", { mode: "timestamp_ms" }),
    /** "trainer" for the automatic gates, or the operator's name. */
    promotedBy: text("promoted_by"),
    statusReason: text("status_reason"),
  },
  (t) => [
    index("speculator_versions_model_status_idx").on(t.modelId, t.status, t.createdAt),
    index("speculator_versions_model_created_idx").on(t.modelId, t.createdAt),
    // At most one live and one canary version per model, and only the live one can be pinned.
    uniqueIndex("speculator_versions_one_live_idx").on(t.modelId).where(sql`status = 'live'`),
    uniqueIndex("speculator_versions_one_canary_idx").on(t.modelId).where(sql`status = 'canary'`),
    check("speculator_versions_status_check", oneOf("status", VERSION_STATUSES)),
    check("speculator_versions_pinned_live_check", sql`pinned = 0 or status = 'live'`),
    check("speculator_versions_sha256_check", sql`length(sha256) = 64`),
    check(
      "speculator_versions_counts_check",
      sql`samples_seen >= 0 and training_steps >= 0 and size_bytes >= 0`,
    ),
  ],
);

export const versionEvents = sqliteTable(
  "version_events",
  {
    /** Increasing in insertion order: the log's order, even when two events share a millisecond. */
    id: integer("id").primaryKey({ autoIncrement: true }),
    versionId: text("version_id")
      .notNull()
      .references(() => speculatorVersions.id, { onDelete: "cascade" }),
    modelId: text("model_id").notNull(),
    action: text("action", { enum: VERSION_ACTIONS }).notNull(),
    fromStatus: text("from_status", { enum: VERSION_STATUSES }),
    toStatus: text("to_status", { enum: VERSION_STATUSES }),
    /** "trainer" or the operator's name. */
    actor: text("actor").notNull(),
    reason: text("reason").notNull().default(""),
    /** What a gate decision rested on (counts, means, interval, statistic); null for other events. */
    evidence: text("evidence", { mode: "json" }).$type<GateEvidence>(),
    at: integer("at", { mode: "timestamp_ms" }).notNull().default(nowMs),
  },
  (t) => [
    index("version_events_version_idx").on(t.versionId, t.id),
    index("version_events_model_idx").on(t.modelId, t.id),
    check("version_events_action_check", oneOf("action", VERSION_ACTIONS)),
  ],
);

/** One row per model the trainer learns for: its config and where it got to, so a restart resumes. */
export const trainerState = sqliteTable(
  "trainer_state",
  {
    modelId: text("model_id").primaryKey(),
    config: text("config", { mode: "json" }).$type<TrainingConfig>().notNull(),
    configUpdatedBy: text("config_updated_by"),
    configUpdatedAt: integer("config_updated_at", { mode: "timestamp_ms" }),
    paused: integer("paused", { mode: "boolean" }).notNull().default(false),
    pausedBy: text("paused_by"),
    pausedAt: integer("paused_at", { mode: "timestamp_ms" }),
    /** Stream sequence of the last trace folded into the weights; the consumer restarts after it. */
    lastTraceSeq: integer("last_trace_seq").notNull().default(0),
    tracesConsumed: integer("traces_consumed").notNull().default(0),
    tracesRejected: integer("traces_rejected").notNull().default(0),
    trainingSteps: integer("training_steps").notNull().default(0),
    recentLoss: real("recent_loss"),
    updatedAt: integer("updated_at", { mode: "timestamp_ms" }).notNull().default(nowMs),
  },
  () => [
    check(
      "trainer_state_counts_check",
      sql`last_trace_seq >= 0 and traces_consumed >= 0 and traces_rejected >= 0`,
    ),
  ],
);

/**
 * The trace stream sequences the intake has taken, per model: a trace JetStream delivers again (its ack
 * was lost to a NATS restart or a timeout) is acked and skipped, so each trace counts and trains once. Only
 * a recent window is kept (intake.ts prunes it): a redelivery is never that far behind.
 */
export const consumedTraces = sqliteTable(
  "consumed_traces",
  {
    modelId: text("model_id").notNull(),
    streamSeq: integer("stream_seq").notNull(),
  },
  (t) => [primaryKey({ columns: [t.modelId, t.streamSeq] })],
);

export type SpeculatorVersionRow = typeof speculatorVersions.$inferSelect;
export type NewSpeculatorVersion = typeof speculatorVersions.$inferInsert;
export type VersionEventRow = typeof versionEvents.$inferSelect;
export type NewVersionEvent = typeof versionEvents.$inferInsert;
export type TrainerStateRow = typeof trainerState.$inferSelect;
export type NewTrainerState = typeof trainerState.$inferInsert;
