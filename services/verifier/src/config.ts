// The verifier's configuration: the runtime kit's server and log sections plus its own.
// Every key can come from YAML or from SPECLOOP_<PATH> (e.g. SPECLOOP_STORE__PATH,
// SPECLOOP_INFERENCE__ADDRESS, SPECLOOP_TOURNAMENT__MAX_CANDIDATES, SPECLOOP_TESTS__MAX_SANDBOXES).
// The tests judge runs code: Rank and Solve with it need a bearer token whose identity holds the
// RUN_CODE_ROLE (server.auth; see @specloop/runtime's grpc/auth.ts).
import { availableParallelism } from "node:os";
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
/** The role a token's identity needs for Rank or Solve with the tests judge. */
export const RUN_CODE_ROLE = "run-code";

const KiB = 1024;
const MiB = 1024 * KiB;

export const verifierConfigSchema = serviceConfigSchema.extend({
  bus: busConfigSchema,
  server: serverConfigSchema.extend({
    grpcPort: serverConfigSchema.shape.grpcPort.default(DEFAULT_VERIFIER_GRPC_PORT),
  }),
  store: z
    .object({
      /** SQLite file holding tournaments and their comparisons. */
      path: z.string().min(1).default(DEFAULT_VERIFIER_DB),
      /** Finished tournaments older than this are deleted (with their comparisons); 0 keeps them. */
      retentionDays: z.number().min(0).default(30),
      /** Bound on the text the store keeps (questions and candidates); the oldest finished go first. */
      maxBytes: z
        .int()
        .min(1 * MiB)
        .default(512 * MiB),
      /** How often retention runs, milliseconds (also once at start). */
      pruneIntervalMs: z.int().min(1_000).default(60_000),
    })
    .prefault({}),
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
      /** Largest candidate Rank takes, bytes of UTF-8. */
      maxCandidateBytes: z
        .int()
        .min(1 * KiB)
        .default(128 * KiB),
      /** Largest question, bytes of UTF-8. */
      maxQuestionBytes: z
        .int()
        .min(1 * KiB)
        .default(64 * KiB),
      /** Deadline of one judge call, milliseconds: a judge that does not answer fails, never hangs. */
      judgeTimeoutMs: z.int().min(1).max(3_600_000).default(DEFAULT_JUDGE_TIMEOUT_MS),
      /** What a failing judge call does when the request does not say: fail the call, or count a tie. */
      onJudgeFailure: z.enum(["fail", "tie"]).default("fail"),
    })
    .prefault({}),
  tests: z
    .object({
      /** Per test case, when the request gives none. */
      timeLimitMs: z.int().min(1).default(DEFAULT_TEST_TIME_LIMIT_MS),
      /** Most a request may ask for per test case. */
      maxTimeLimitMs: z.int().min(100).max(600_000).default(10_000),
      memoryLimitMb: z.int().min(32).default(DEFAULT_TEST_MEMORY_LIMIT_MB),
      /** Most a request may ask for: the resident memory of a candidate's whole process tree. */
      maxMemoryLimitMb: z.int().min(64).max(65_536).default(1_024),
      /** Most test cases one request may carry. */
      maxCases: z.int().min(1).max(10_000).default(64),
      /** Largest stdin plus expected output of one test case, bytes. */
      maxCaseBytes: z
        .int()
        .min(1 * KiB)
        .default(1 * MiB),
      /** Sandboxes running at once, across every call the verifier serves. */
      maxSandboxes: z.int().min(1).max(256).default(Math.max(1, availableParallelism())),
      /** Processes or threads a candidate may start beyond its interpreter's own. */
      maxProcesses: z.int().min(0).max(256).default(4),
      /** Size of the sandbox's /tmp, the only place a candidate can write; also its largest file. */
      tmpfsMb: z.int().min(1).max(4_096).default(16),
      /** Output of one run past this fails the test case. */
      maxOutputBytes: z
        .int()
        .min(1 * KiB)
        .default(1 * MiB),
      /** Interpreter of "python" candidates, resolved on PATH by the sandbox's user. */
      python: z.string().min(1).default("python3"),
      /** The bubblewrap executable. */
      bwrap: z.string().min(1).default("bwrap"),
      /** The user and group bwrap runs as when the verifier runs as root (65534: nobody). */
      sandboxUid: z.int().min(1).max(4_294_967_294).default(65_534),
      sandboxGid: z.int().min(1).max(4_294_967_294).default(65_534),
    })
    .prefault({}),
});
export type VerifierConfig = z.output<typeof verifierConfigSchema>;
