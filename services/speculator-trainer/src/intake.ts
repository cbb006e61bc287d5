// Trace intake: the trainer's durable consumer of its model's traces. Each decoded trace is counted in
// the trainer's state (traces_consumed, last_trace_seq) and acknowledged; a malformed one is terminated
// by the bus and counted as rejected (traces_rejected), never crashing the loop. The learning step that
// turns traces into speculator weights plugs in here with the trainer issue.
import { type Bus, CONSUMERS, consumeTraces, type RunningConsumer } from "@specloop/bus";
import type { Logger } from "@specloop/runtime";
import { eq, sql } from "drizzle-orm";
import { DEFAULT_TRAINING_CONFIG } from "./config.js";
import { type TrainerDb, trainerState } from "./db/index.js";

/** Makes sure the model has a state row (default config) so counters can be incremented in place. */
export function ensureTrainerState(db: TrainerDb, modelId: string): void {
  db.insert(trainerState)
    .values({ modelId, config: { ...DEFAULT_TRAINING_CONFIG } })
    .onConflictDoNothing()
    .run();
}

export async function startTraceIntake(
  bus: Bus,
  db: TrainerDb,
  modelId: string,
  logger: Logger,
): Promise<RunningConsumer> {
  ensureTrainerState(db, modelId);
  const byModel = eq(trainerState.modelId, modelId);
  return consumeTraces(bus, {
    durable: CONSUMERS.trainerTraces,
    modelId,
    logger,
    handler: (_trace, delivery) => {
      db.update(trainerState)
        .set({
          tracesConsumed: sql`${trainerState.tracesConsumed} + 1`,
          lastTraceSeq: sql`max(${trainerState.lastTraceSeq}, ${delivery.seq})`,
          updatedAt: new Date(),
        })
        .where(byModel)
        .run();
      return "ack";
    },
    onPoison: () => {
      db.update(trainerState)
        .set({ tracesRejected: sql`${trainerState.tracesRejected} + 1`, updatedAt: new Date() })
        .where(byModel)
        .run();
    },
  });
}
