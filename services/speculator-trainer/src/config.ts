// The speculator-trainer's configuration: the runtime kit's server and log sections plus its own.
// Every key can come from YAML or from SPECLOOP_<PATH> (e.g. SPECLOOP_TRAINER__MODEL_ID).
import { busConfigSchema } from "@specloop/bus";
import { BACKEND_CHOICES } from "@specloop/engine";
import { serverConfigSchema, serviceConfigSchema } from "@specloop/runtime";
import { z } from "zod";
import type { TrainingConfig } from "./db/index.js";

export const DEFAULT_TRAINER_GRPC_PORT = 50052;
export const DEFAULT_TRAINER_DB = ".data/speculator-trainer.sqlite";
export const DEFAULT_MODEL_ID = "tiny-code";
export const DEFAULT_TRAINER_MODEL_DIR = "models/tiny-code";
/** The default model's (tiny-code's) vocabulary and context: set both for any other model. */
export const DEFAULT_INTAKE_VOCAB_SIZE = 8192;
export const DEFAULT_INTAKE_MAX_TOKENS = 1024;
/** As long as the trace stream keeps traces by default: past it, nothing is left to resume anyway. */
export const DEFAULT_INTAKE_CONSUMER_INACTIVE_MS = 24 * 3_600_000;

/**
 * What a model's training starts with until an operator changes it (UpdateTrainingConfig). A step runs on
 * the training thread (head-training.ts) and takes about 0.7 s per 64 trained positions on one core
 * (bench/results/trainer-throughput-cpu.md); a batch of a few requests keeps versions coming every minute
 * or so on a CPU.
 */
export const DEFAULT_TRAINING_CONFIG: Readonly<TrainingConfig> = Object.freeze({
  learningRate: 3e-4,
  batchSize: 4,
  unrollSteps: 3,
  rejectionLossWeight: 0.1,
  publishEverySteps: 20,
  canaryShare: 0.1,
  canaryMinRequests: 200,
  promoteMinSpeedup: 1.02,
  domains: [],
});

export const trainerConfigSchema = serviceConfigSchema.extend({
  bus: busConfigSchema,
  server: serverConfigSchema.extend({
    grpcPort: serverConfigSchema.shape.grpcPort.default(DEFAULT_TRAINER_GRPC_PORT),
  }),
  trainer: z.object({
    /** The target model whose speculator this trainer learns (the nodes' model id). */
    modelId: z.string().min(1).default(DEFAULT_MODEL_ID),
    /** The trainer's own copy of the target (a Hugging Face directory): it recomputes features from it. */
    modelDir: z.string().min(1).default(DEFAULT_TRAINER_MODEL_DIR),
    /** Engine backend of that copy. */
    backend: z.enum(BACKEND_CHOICES).default("cpu"),
    /** Threads of the cpu backend (0: every core). */
    cpuThreads: z.int().min(0).default(0),
    /** Train the head at all (off: the trainer only serves its API and counts traces). */
    enabled: z.boolean().default(true),
    /** Target layers the head reads (empty: the last layer, EAGLE-1). */
    featureLayers: z.array(z.int().min(0)).default([]),
    /** Traces held for training (the replay buffer). */
    bufferCapacity: z.int().min(1).max(1_000_000).default(4096),
    /** Each training example is the newest this many tokens of a request. */
    exampleMaxTokens: z.int().min(8).max(65_536).default(192),
    /** Seed of the day-0 head. */
    seed: z.int().min(0).default(0),
  }),
  /** The promotion gate (gate.ts): a domain-matched mixture SPRT on per-request decode tokens/s. */
  gate: z
    .object({
      /** Chance of a wrong promotion or rollback over a whole canary (the test's error rate). */
      alpha: z.number().gt(0).lt(0.5).default(0.05),
      /** Mixture variance on the log-ratio scale (the effect size the test is tuned to). */
      tau2: z.number().positive().default(0.01),
      /** Requests each arm needs before any decision. */
      minSamples: z.int().min(2).default(30),
      /** A canary still undecided this long after it started is retired, milliseconds. */
      timeoutMs: z
        .int()
        .min(1000)
        .default(30 * 60_000),
      /** Live accepted tokens per pass under this (over min_samples requests) rolls back at once. */
      collapseAcceptedPerPass: z.number().min(1).default(1.05),
      /**
       * A canary accepting this many tokens a pass fewer than live (over min_samples requests an arm) is
       * retired whatever its tokens/s say: the same drafting cost cannot turn fewer accepted tokens into speed.
       */
      acceptanceMargin: z.number().min(0).default(0.05),
    })
    .prefault({}),
  /** Trace intake (intake.ts): what every trace is checked against, and the trainer's consumer. */
  intake: z
    .object({
      /** Token ids in a trace must be below this: the target model's vocabulary size. */
      vocabSize: z.int().min(1).default(DEFAULT_INTAKE_VOCAB_SIZE),
      /** Prompt plus output tokens of a trace: the target model's context length. */
      maxTokens: z.int().min(1).default(DEFAULT_INTAKE_MAX_TOKENS),
      /** The server removes this model's consumer once the trainer has been gone this long. */
      consumerInactiveMs: z.int().min(60_000).default(DEFAULT_INTAKE_CONSUMER_INACTIVE_MS),
    })
    .prefault({}),
  store: z.object({
    /** SQLite file holding versions, their events and the training state. */
    path: z.string().min(1).default(DEFAULT_TRAINER_DB),
  }),
});
export type TrainerConfig = z.output<typeof trainerConfigSchema>;
