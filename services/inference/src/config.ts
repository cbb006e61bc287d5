// The inference node's configuration: the runtime kit's server and log sections plus the node's own.
// Every key can come from YAML or from SPECLOOP_<PATH> (e.g. SPECLOOP_NODE__MODEL_DIR,
// SPECLOOP_SPECULATION__DEFAULT_DRAFTER, SPECLOOP_SCHEDULER__MAX_QUEUE).
import { hostname } from "node:os";
import { busConfigSchema } from "@specloop/bus";
import { BACKEND_CHOICES } from "@specloop/engine";
import { serverConfigSchema, serviceConfigSchema } from "@specloop/runtime";
import { DRAFTER_KINDS } from "@specloop/speculation";
import { z } from "zod";

export const DEFAULT_INFERENCE_GRPC_PORT = 50051;
export const DEFAULT_MODEL_DIR = "models/tiny-code";
export const DEFAULT_DRAFT_MODEL_DIR = "models/tiny-code-draft";
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

export const inferenceConfigSchema = serviceConfigSchema.extend({
  bus: busConfigSchema,
  server: serverConfigSchema.extend({
    grpcPort: serverConfigSchema.shape.grpcPort.default(DEFAULT_INFERENCE_GRPC_PORT),
  }),
  node: z
    .object({
      /** Unique per node: names its heartbeat key and its traces. */
      id: z.string().min(1).default(hostname()),
      /** Hugging Face model directory the node serves. */
      modelDir: z.string().min(1).default(DEFAULT_MODEL_DIR),
      /** Engine backend: auto takes a hardware WebGPU adapter if there is one, else the cpu backend. */
      backend: z.enum(BACKEND_CHOICES).default("auto"),
      /** Threads of the cpu backend (0: every core). */
      cpuThreads: z.int().min(0).default(0),
      heartbeatIntervalMs: z.int().min(100).default(DEFAULT_HEARTBEAT_INTERVAL_MS),
    })
    .prefault({}),
  scheduler: z
    .object({
      /** Memory for the target's KV cache, MiB (the block count follows from the model's shape). */
      kvBudgetMib: z.number().positive().default(256),
      kvBlockSize: z.int().min(1).max(256).default(16),
      /** Sequences decoded together in one target pass. */
      maxBatch: z.int().min(1).default(32),
      /** Requests waiting for admission; one more is answered RESOURCE_EXHAUSTED. */
      maxQueue: z.int().min(0).default(256),
      /** Prompt tokens prefilled per pass, over all sequences (chunked prefill). */
      prefillTokensPerStep: z.int().min(1).default(512),
      /** max_tokens when a request gives 0. */
      defaultMaxTokens: z.int().min(1).default(256),
      /** The largest max_tokens a request may ask for (also bounded by the context length). */
      maxTokensLimit: z.int().min(1).default(4096),
    })
    .prefault({}),
  speculation: z
    .object({
      /** Drafter for requests that leave it unspecified. */
      defaultDrafter: z.enum(["auto", ...DRAFTER_KINDS]).default("auto"),
      /** Upper bound on proposed tokens per pass (a request may ask for fewer). */
      maxDraftTokens: z.int().min(0).max(64).default(8),
      /**
       * adaptive: the budget policy (budget.ts: recent acceptance, expected remaining length) sets each
       * step's draft size up to max_draft_tokens; max: always max_draft_tokens (benchmarks, tests).
       */
      budget: z.enum(["adaptive", "max"]).default("adaptive"),
      /**
       * Caps each step's budgets at whichever cap (none, 0, 1, 2, 4) has lately delivered the most tokens
       * per millisecond at the current batch size (draft-cap.ts). Off by default: on the H100 and the CPU it
       * did not yet beat the policy's own budgets beyond run-to-run noise, except for the draft model at
       * batch 16 (bench/results/spec-decode-webgpu-h100.md).
       */
      draftCap: z.boolean().default(false),
      /** Draft model for the draft-model drafter; empty disables it. */
      draftModelDir: z.string().default(DEFAULT_DRAFT_MODEL_DIR),
      /** Tokens the fleet suffix tree holds before it evicts its oldest outputs. */
      suffixFleetTokens: z.int().min(0).default(1_000_000),
    })
    .prefault({}),
  traces: z
    .object({
      enabled: z.boolean().default(true),
      /** Target top-k recorded at every proposed position. */
      topk: z.int().min(0).max(64).default(8),
      /** Share of requests whose hidden features travel in their trace (for the eagle trainer). */
      featureSampleShare: z.number().min(0).max(1).default(0.05),
      /** Target layers whose features are sampled; empty: the last layer. */
      featureLayers: z.array(z.int().min(0)).default([]),
      /** Consume the fleet's traces into the suffix tree. */
      consumeFleet: z.boolean().default(true),
    })
    .prefault({}),
});
export type InferenceConfig = z.output<typeof inferenceConfigSchema>;
