// The verifier's configuration: the runtime kit's server and log sections plus its own.
// Every key can come from YAML or from SPECLOOP_<PATH> (e.g. SPECLOOP_STORE__PATH,
// SPECLOOP_INFERENCE__ADDRESS, SPECLOOP_TOURNAMENT__MAX_CANDIDATES).
import { busConfigSchema } from "@specloop/bus";
import { serverConfigSchema, serviceConfigSchema } from "@specloop/runtime";
import { z } from "zod";

export const DEFAULT_VERIFIER_GRPC_PORT = 50053;
export const DEFAULT_VERIFIER_DB = ".data/verifier.sqlite";
export const DEFAULT_INFERENCE_ADDRESS = "127.0.0.1:50051";
export const DEFAULT_MAX_CANDIDATES = 32;
/** A budget of 0 in a request means this many judge calls per candidate (V1's 3N). */
export const DEFAULT_BUDGET_PER_CANDIDATE = 3;
export const DEFAULT_JUDGE_TIMEOUT_MS = 30_000;
export const DEFAULT_SAMPLE_TIMEOUT_MS = 120_000;
export const DEFAULT_TEST_TIME_LIMIT_MS = 2_000;
export const DEFAULT_TEST_MEMORY_LIMIT_MB = 256;

export const verifierConfigSchema = serviceConfigSchema.extend({
  bus: busConfigSchema,
  server: serverConfigSchema.extend({
    grpcPort: serverConfigSchema.shape.grpcPort.default(DEFAULT_VERIFIER_GRPC_PORT),
  }),
  store: z.object({
    /** SQLite file holding tournaments and their comparisons. */
    path: z.string().min(1).default(DEFAULT_VERIFIER_DB),
  }),
  inference: z
    .object({
      /** host:port of the inference node that samples candidates and serves the model judges. */
      address: z.string().min(1).default(DEFAULT_INFERENCE_ADDRESS),
      /** Deadline of one Generate (one candidate), milliseconds. */
      sampleTimeoutMs: z.int().min(1).default(DEFAULT_SAMPLE_TIMEOUT_MS),
    })
    .prefault({}),
  tournament: z
    .object({
      /** Most candidates one Rank or Solve may ask for. */
      maxCandidates: z.int().min(1).max(1024).default(DEFAULT_MAX_CANDIDATES),
      /** Deadline of one judge call, milliseconds: a judge that does not answer fails, never hangs. */
      judgeTimeoutMs: z.int().min(1).default(DEFAULT_JUDGE_TIMEOUT_MS),
      /** What a failing judge call does when the request does not say: fail the call, or count a tie. */
      onJudgeFailure: z.enum(["fail", "tie"]).default("fail"),
    })
    .prefault({}),
  tests: z
    .object({
      /** Per test case, when the request gives none. */
      timeLimitMs: z.int().min(1).default(DEFAULT_TEST_TIME_LIMIT_MS),
      memoryLimitMb: z.int().min(16).default(DEFAULT_TEST_MEMORY_LIMIT_MB),
      /** Interpreter of "python" candidates. */
      python: z.string().min(1).default("python3"),
    })
    .prefault({}),
});
export type VerifierConfig = z.output<typeof verifierConfigSchema>;
