// The inference node's configuration: the runtime kit's server and log sections plus the node's own.
// Every key can come from YAML or from SPECLOOP_<PATH> (e.g. SPECLOOP_NODE__MODEL_DIR).
import { hostname } from "node:os";
import { busConfigSchema } from "@specloop/bus";
import { serverConfigSchema, serviceConfigSchema } from "@specloop/runtime";
import { z } from "zod";

export const DEFAULT_INFERENCE_GRPC_PORT = 50051;
export const DEFAULT_MODEL_DIR = "models/tiny-code";
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

export const inferenceConfigSchema = serviceConfigSchema.extend({
  bus: busConfigSchema,
  server: serverConfigSchema.extend({
    grpcPort: serverConfigSchema.shape.grpcPort.default(DEFAULT_INFERENCE_GRPC_PORT),
  }),
  node: z.object({
    /** Unique per node: names its heartbeat key and its traces. */
    id: z.string().min(1).default(hostname()),
    /** Hugging Face model directory the node serves. */
    modelDir: z.string().min(1).default(DEFAULT_MODEL_DIR),
    heartbeatIntervalMs: z.int().min(100).default(DEFAULT_HEARTBEAT_INTERVAL_MS),
  }),
});
export type InferenceConfig = z.output<typeof inferenceConfigSchema>;
