// A request checked against the verifier's limits and resolved to what runs: the question and candidates
// (sizes), the judge, the budget (0 means 3N), the seed (random when unset, and stored so it can be
// replayed), what a failing judge does and, for the tests judge, its bounded cases and limits. Every refusal
// is INVALID_ARGUMENT naming the field; the bounds are the proto's comments and the config's keys.
import { randomInt } from "node:crypto";
import { Judge, JudgeFailurePolicy, type TournamentOptions } from "@specloop/proto";
import { InvalidArgumentError, safeUint64 } from "@specloop/runtime";
import { DEFAULT_BUDGET_PER_CANDIDATE, type VerifierConfig } from "./config.js";
import type { JudgeKind } from "./db/index.js";
import type { TestCaseSpec } from "./judges/tests.js";
import { MIN_MEMORY_MB, SANDBOX_LANGUAGES, type SandboxLanguage } from "./sandbox/index.js";

export interface ResolvedTests {
  language: SandboxLanguage;
  cases: TestCaseSpec[];
  timeLimitMs: number;
  memoryLimitMb: number;
}

export interface ResolvedOptions {
  judge: JudgeKind;
  budget: number;
  seed: number;
  onFailure: "fail" | "tie";
  tests?: ResolvedTests;
}

const JUDGES: Partial<Record<Judge, JudgeKind>> = {
  [Judge.JUDGE_UNSPECIFIED]: "pairwise",
  [Judge.JUDGE_PAIRWISE]: "pairwise",
  [Judge.JUDGE_POINTWISE]: "pointwise",
  [Judge.JUDGE_TESTS]: "tests",
};

/** Most judge calls a request may ask for; past every pair the tournament stops on its own anyway. */
export const MAX_BUDGET = 1_000_000;
/** The longest tournament id GetTournament looks up (ids are UUIDs, 36 characters). */
export const MAX_TOURNAMENT_ID_CHARS = 64;

const bytes = (s: string): number => Buffer.byteLength(s, "utf8");

/** Checks the candidate count (field names `field`) against the configured maximum. */
export function checkCount(n: number, field: string, config: VerifierConfig): void {
  const max = config.tournament.maxCandidates;
  if (n < 1) throw new InvalidArgumentError(field, "at least one candidate is needed");
  if (n > max)
    throw new InvalidArgumentError(field, `${n} candidates is over this verifier's maximum of ${max}`);
}

/** A non-empty question within the configured size. */
export function checkQuestion(question: string, config: VerifierConfig): void {
  if (question.trim() === "") throw new InvalidArgumentError("question", "must not be empty");
  const max = config.tournament.maxQuestionBytes;
  const size = bytes(question);
  if (size > max) throw new InvalidArgumentError("question", `${size} bytes is over the maximum of ${max}`);
}

/** Each candidate within the configured size. */
export function checkCandidates(candidates: readonly string[], config: VerifierConfig): void {
  checkCount(candidates.length, "candidates", config);
  const max = config.tournament.maxCandidateBytes;
  candidates.forEach((c, i) => {
    const size = bytes(c);
    if (size > max)
      throw new InvalidArgumentError(`candidates[${i}]`, `${size} bytes is over the maximum of ${max}`);
  });
}

export function checkTournamentId(id: string): void {
  if (id === "") throw new InvalidArgumentError("tournament_id", "must not be empty");
  if (id.length > MAX_TOURNAMENT_ID_CHARS) {
    throw new InvalidArgumentError("tournament_id", `must be at most ${MAX_TOURNAMENT_ID_CHARS} characters`);
  }
}

function failurePolicy(policy: JudgeFailurePolicy, config: VerifierConfig): "fail" | "tie" {
  switch (policy) {
    case JudgeFailurePolicy.JUDGE_FAILURE_POLICY_TIE:
      return "tie";
    case JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL:
      return "fail";
    case JudgeFailurePolicy.JUDGE_FAILURE_POLICY_UNSPECIFIED:
      return config.tournament.onJudgeFailure;
    default:
      throw new InvalidArgumentError("options.on_judge_failure", "unknown judge failure policy");
  }
}

export function resolveOptions(
  options: TournamentOptions | undefined,
  n: number,
  config: VerifierConfig,
): ResolvedOptions {
  const judge: JudgeKind | undefined = JUDGES[options?.judge ?? Judge.JUDGE_UNSPECIFIED];
  if (judge === undefined) throw new InvalidArgumentError("options.judge", "unknown judge");
  const requested = options?.budget ?? 0;
  if (!Number.isInteger(requested) || requested < 0 || requested > MAX_BUDGET) {
    throw new InvalidArgumentError("options.budget", `must be 0 to ${MAX_BUDGET}, got ${requested}`);
  }
  const budget = requested === 0 ? DEFAULT_BUDGET_PER_CANDIDATE * n : requested;
  const seed = safeUint64("options.seed", options?.seed) ?? randomInt(2 ** 47);
  const onFailure = failurePolicy(
    options?.onJudgeFailure ?? JudgeFailurePolicy.JUDGE_FAILURE_POLICY_UNSPECIFIED,
    config,
  );
  const resolved: ResolvedOptions = { judge, budget, seed, onFailure };
  if (judge === "tests") resolved.tests = resolveTests(options?.tests, config);
  return resolved;
}

function resolveTests(t: TournamentOptions["tests"], config: VerifierConfig): ResolvedTests {
  const limits = config.tests;
  const language = t?.language ?? "";
  if (!(SANDBOX_LANGUAGES as readonly string[]).includes(language)) {
    throw new InvalidArgumentError(
      "options.tests.language",
      `must be one of ${SANDBOX_LANGUAGES.join(", ")}`,
    );
  }
  const lang = language as SandboxLanguage;
  const cases = t?.cases ?? [];
  if (cases.length === 0) {
    throw new InvalidArgumentError("options.tests.cases", "the tests judge needs at least one test case");
  }
  if (cases.length > limits.maxCases) {
    throw new InvalidArgumentError(
      "options.tests.cases",
      `${cases.length} cases is over this verifier's maximum of ${limits.maxCases}`,
    );
  }
  cases.forEach((c, i) => {
    const size = bytes(c.stdin) + bytes(c.expectedStdout) + bytes(c.name);
    if (size > limits.maxCaseBytes) {
      throw new InvalidArgumentError(
        `options.tests.cases[${i}]`,
        `${size} bytes is over the maximum of ${limits.maxCaseBytes}`,
      );
    }
  });
  const timeLimitMs = t?.timeLimitMs || limits.timeLimitMs;
  if (timeLimitMs > limits.maxTimeLimitMs) {
    throw new InvalidArgumentError(
      "options.tests.time_limit_ms",
      `${timeLimitMs} is over this verifier's maximum of ${limits.maxTimeLimitMs}`,
    );
  }
  const memoryLimitMb = t?.memoryLimitMb || limits.memoryLimitMb;
  const minMemory = MIN_MEMORY_MB[lang];
  if (memoryLimitMb < minMemory || memoryLimitMb > limits.maxMemoryLimitMb) {
    throw new InvalidArgumentError(
      "options.tests.memory_limit_mb",
      `must be ${minMemory} to ${limits.maxMemoryLimitMb} for ${lang}, got ${memoryLimitMb}`,
    );
  }
  return {
    language: lang,
    cases: cases.map((c) => ({ name: c.name, stdin: c.stdin, expectedStdout: c.expectedStdout })),
    timeLimitMs,
    memoryLimitMb,
  };
}
