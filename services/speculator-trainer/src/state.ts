// The trainer's persisted state per model (trainer_state): the training config operators change, whether
// training is paused, and how far it got (traces consumed and rejected, optimizer steps, recent loss). The
// training loop reads it every step, so an operator's pause or config change takes effect at the next step
// and survives a restart.
import type { TrainingConfig } from "@specloop/proto";
import { InvalidArgumentError } from "@specloop/runtime";
import { eq } from "drizzle-orm";
import { DEFAULT_TRAINING_CONFIG } from "./config.js";
import { type TrainerDb, type TrainerStateRow, trainerState } from "./db/index.js";

/** Bounds of each config field: an update outside them is INVALID_ARGUMENT naming the field. */
const FIELD_BOUNDS: Record<Exclude<keyof TrainingConfig, "domains">, [string, number, number, boolean]> = {
  learningRate: ["learning_rate", 1e-7, 1, false],
  batchSize: ["batch_size", 1, 1024, true],
  unrollSteps: ["unroll_steps", 1, 16, true],
  rejectionLossWeight: ["rejection_loss_weight", 0, 10, false],
  publishEverySteps: ["publish_every_steps", 1, 1_000_000, true],
  canaryShare: ["canary_share", 0, 1, false],
  canaryMinRequests: ["canary_min_requests", 1, 1_000_000, true],
  promoteMinSpeedup: ["promote_min_speedup", 0.5, 10, false],
};

const SNAKE_TO_FIELD = new Map<string, keyof TrainingConfig>([
  ...Object.entries(FIELD_BOUNDS).map(([field, [snake]]) => [snake, field as keyof TrainingConfig] as const),
  ["domains", "domains"],
]);

export class TrainerStateStore {
  constructor(
    private readonly db: TrainerDb,
    readonly modelId: string,
  ) {}

  /** The row, created with the default config on first use. */
  get(): TrainerStateRow {
    const row = this.db.select().from(trainerState).where(eq(trainerState.modelId, this.modelId)).get();
    if (row !== undefined) return row;
    this.db
      .insert(trainerState)
      .values({ modelId: this.modelId, config: { ...DEFAULT_TRAINING_CONFIG, domains: [] } })
      .onConflictDoNothing()
      .run();
    return this.db
      .select()
      .from(trainerState)
      .where(eq(trainerState.modelId, this.modelId))
      .get() as TrainerStateRow;
  }

  config(): TrainingConfig {
    return { ...DEFAULT_TRAINING_CONFIG, ...this.get().config };
  }

  setPaused(paused: boolean, actor: string): TrainerStateRow {
    this.get();
    this.db
      .update(trainerState)
      .set({
        paused,
        pausedBy: paused ? actor : null,
        pausedAt: paused ? new Date() : null,
        updatedAt: new Date(),
      })
      .where(eq(trainerState.modelId, this.modelId))
      .run();
    return this.get();
  }

  /** Changes the named fields (snake_case, as the proto's update_fields); the rest stay. */
  updateConfig(update: TrainingConfig, fields: readonly string[], actor: string): TrainingConfig {
    if (fields.length === 0)
      throw new InvalidArgumentError("update_fields", "name at least one field to change");
    const next: TrainingConfig = { ...this.config() };
    for (const name of fields) {
      const field = SNAKE_TO_FIELD.get(name);
      if (field === undefined) {
        throw new InvalidArgumentError(
          "update_fields",
          `"${name.slice(0, 64)}" is not a training config field`,
        );
      }
      if (field === "domains") {
        if (update.domains.length > 64 || update.domains.some((d) => d.length === 0 || d.length > 64)) {
          throw new InvalidArgumentError("config.domains", "at most 64 domains of 1-64 characters");
        }
        next.domains = [...update.domains];
        continue;
      }
      const [snake, min, max, integer] = FIELD_BOUNDS[field];
      const value = update[field];
      if (
        !(Number.isFinite(value) && value >= min && value <= max && (!integer || Number.isInteger(value)))
      ) {
        throw new InvalidArgumentError(
          `config.${snake}`,
          `must be ${integer ? "an integer " : ""}in [${min}, ${max}], got ${value}`,
        );
      }
      next[field] = value;
    }
    this.get();
    this.db
      .update(trainerState)
      .set({ config: next, configUpdatedBy: actor, configUpdatedAt: new Date(), updatedAt: new Date() })
      .where(eq(trainerState.modelId, this.modelId))
      .run();
    return next;
  }

  /** Progress the loop records (after each step, and as traces are consumed). */
  recordProgress(
    p: Partial<
      Pick<
        TrainerStateRow,
        "tracesConsumed" | "tracesRejected" | "trainingSteps" | "recentLoss" | "lastTraceSeq"
      >
    >,
  ): void {
    this.get();
    this.db
      .update(trainerState)
      .set({ ...p, updatedAt: new Date() })
      .where(eq(trainerState.modelId, this.modelId))
      .run();
  }
}
