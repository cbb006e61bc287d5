// Trace intake: the trainer's durable consumer of its model's traces, one per model
// (trainerTracesConsumer), removed by the server once the trainer has been gone for
// intake.consumer_inactive_ms. Every trace is checked against the model's vocabulary and context
// (intake.vocab_size, intake.max_tokens: trace-validate.ts in the bus) before it counts; a trace that
// does not decode or breaks a limit is terminated by the bus and counted as rejected (traces_rejected),
// never crashing the loop. A valid one is counted in the trainer's state (traces_consumed,
// last_trace_seq), joined with the rest of its request when the node published it in chunks
// (TraceAssembler), handed whole to the training loop (`onTrace`: the replay buffer and the gate), and then
// acknowledged: a trace is acked once it is in the buffer.
// Exactly once: JetStream delivers a trace again when its ack is lost (a NATS restart, an ack timeout). The
// intake records each stream sequence it takes (consumed_traces, in the same transaction as the counters)
// and acks a second delivery of one without counting or training on it again.
import {
  type Bus,
  consumeTraces,
  type RunningConsumer,
  TraceAssembler,
  TraceRejectedError,
  trainerTracesConsumer,
} from "@specloop/bus";
import type { Trace } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import { and, eq, lt, sql } from "drizzle-orm";
import { DEFAULT_TRAINING_CONFIG, type TrainerConfig, trainerConfigSchema } from "./config.js";
import { consumedTraces, type TrainerDb, trainerState } from "./db/index.js";

/**
 * Stream sequences remembered behind the newest, for telling a redelivery from a new trace: far more than
 * the consumer's unacknowledged deliveries can ever span.
 */
export const CONSUMED_SEQ_WINDOW = 100_000;

/** Makes sure the model has a state row (default config) so counters can be incremented in place. */
export function ensureTrainerState(db: TrainerDb, modelId: string): void {
  db.insert(trainerState)
    .values({ modelId, config: { ...DEFAULT_TRAINING_CONFIG } })
    .onConflictDoNothing()
    .run();
}

export type IntakeConfig = TrainerConfig["intake"];

/** The intake's defaults (the config's `intake:` section with nothing set). */
export function defaultIntakeConfig(): IntakeConfig {
  return trainerConfigSchema.shape.intake.parse({});
}

export async function startTraceIntake(
  bus: Bus,
  db: TrainerDb,
  modelId: string,
  logger: Logger,
  intake: IntakeConfig = defaultIntakeConfig(),
  /** Each whole trace (chunks joined), before it is acknowledged. */
  onTrace?: (trace: Trace) => void,
): Promise<RunningConsumer> {
  ensureTrainerState(db, modelId);
  const assembler = new TraceAssembler();
  const byModel = eq(trainerState.modelId, modelId);
  // Prepared once: a trainer takes thousands of traces a second, each one commit of these two statements.
  const take = db
    .insert(consumedTraces)
    .values({ modelId, streamSeq: sql.placeholder("seq") })
    .onConflictDoNothing()
    .prepare();
  const count = db
    .update(trainerState)
    .set({
      tracesConsumed: sql`${trainerState.tracesConsumed} + 1`,
      lastTraceSeq: sql`max(${trainerState.lastTraceSeq}, ${sql.placeholder("seq")})`,
      updatedAt: sql`${sql.placeholder("now")}`,
    })
    .where(byModel)
    .prepare();
  const prune = db
    .delete(consumedTraces)
    .where(and(eq(consumedTraces.modelId, modelId), lt(consumedTraces.streamSeq, sql.placeholder("below"))))
    .prepare();
  return consumeTraces(bus, {
    durable: trainerTracesConsumer(modelId),
    modelId,
    limits: { vocabSize: intake.vocabSize, maxTokens: intake.maxTokens },
    inactiveThresholdMs: intake.consumerInactiveMs,
    logger,
    handler: (trace, delivery) => {
      const seq = delivery.seq;
      const fresh = db.transaction(() => {
        if (take.run({ seq }).changes === 0) return false;
        count.run({ seq, now: Date.now() });
        if (seq % 1000 === 0) prune.run({ below: seq - CONSUMED_SEQ_WINDOW });
        return true;
      });
      if (!fresh) {
        logger.debug({ seq: delivery.seq }, "intake: a trace delivered again; acked, not counted twice");
        return "ack";
      }
      const whole = assembler.add(trace);
      if (whole !== undefined) onTrace?.(whole);
      return "ack";
    },
    onPoison: (delivery, err) => {
      logger.warn(
        {
          seq: delivery.seq,
          reason: err instanceof TraceRejectedError ? err.reason : "undecodable",
          err: err instanceof Error ? err.message : String(err),
        },
        "intake: refused a trace",
      );
      db.update(trainerState)
        .set({ tracesRejected: sql`${trainerState.tracesRejected} + 1`, updatedAt: new Date() })
        .where(byModel)
        .run();
    },
  });
}
