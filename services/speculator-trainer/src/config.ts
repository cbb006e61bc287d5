// The speculator-trainer's configuration: the runtime kit's server and log sections plus its own.
// Every key can come from YAML or from SPECLOOP_<PATH> (e.g. SPECLOOP_TRAINER__MODEL_ID).
import { busConfigSchema } from "@specloop/bus";
import { serverConfigSchema, serviceConfigSchema } from "@specloop/runtime";
import { z } from "zod";
import type { TrainingConfig } from "./db/index.js";

export const DEFAULT_TRAINER_GRPC_PORT = 50052;
export const DEFAULT_TRAINER_DB = ".data/speculator-trainer.sqlite";
export const DEFAULT_MODEL_ID = "tiny-code";

/** What a model's training starts with until an operator changes it (UpdateTrainingConfig). */
export const DEFAULT_TRAINING_CONFIG: Readonly<TrainingConfig> = Object.freeze({
  learningRate: 3e-4,
  batchSize: 32,
  unrollSteps: 3,
  rejectionLossWeight: 0.1,
  publishEverySteps: 50,
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
  }),
  store: z.object({
    /** SQLite file holding versions, their events and the training state. */
    path: z.string().min(1).default(DEFAULT_TRAINER_DB),
  }),
});
export type TrainerConfig = z.output<typeof trainerConfigSchema>;
