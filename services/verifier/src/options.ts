// A request's tournament options checked against the verifier's limits and resolved to what runs: the
// judge, the budget (0 means 3N), the seed (random when unset, and stored so it can be replayed) and what a
// failing judge does.
import { randomInt } from "node:crypto";
import { Judge, JudgeFailurePolicy, type TournamentOptions } from "@specloop/proto";
import { InvalidArgumentError, safeUint64 } from "@specloop/runtime";
import { DEFAULT_BUDGET_PER_CANDIDATE, type VerifierConfig } from "./config.js";
import type { JudgeKind } from "./db/index.js";
import { SANDBOX_LANGUAGES, type SandboxLanguage } from "./judges/sandbox.js";
import type { TestCaseSpec } from "./judges/tests.js";

export interface ResolvedOptions {
  judge: JudgeKind;
  budget: number;
  seed: number;
  onFailure: "fail" | "tie";
  tests?: { language: SandboxLanguage; cases: TestCaseSpec[]; timeLimitMs: number; memoryLimitMb: number };
}

const JUDGES: Partial<Record<Judge, JudgeKind>> = {
  [Judge.JUDGE_UNSPECIFIED]: "pairwise",
  [Judge.JUDGE_PAIRWISE]: "pairwise",
  [Judge.JUDGE_POINTWISE]: "pointwise",
  [Judge.JUDGE_TESTS]: "tests",
};

/** Checks the candidate count (field names `field`) against the configured maximum. */
export function checkCount(n: number, field: string, config: VerifierConfig): void {
  const max = config.tournament.maxCandidates;
  if (n < 1) throw new InvalidArgumentError(field, "at least one candidate is needed");
  if (n > max)
    throw new InvalidArgumentError(field, `${n} candidates is over this verifier's maximum of ${max}`);
}

export function resolveOptions(
  options: TournamentOptions | undefined,
  n: number,
  config: VerifierConfig,
): ResolvedOptions {
  const judge: JudgeKind | undefined = JUDGES[options?.judge ?? Judge.JUDGE_UNSPECIFIED];
  if (judge === undefined) throw new InvalidArgumentError("options.judge", "unknown judge");
  const requested = options?.budget ?? 0;
  if (!Number.isInteger(requested) || requested < 0) {
    throw new InvalidArgumentError("options.budget", `must be >= 0, got ${requested}`);
  }
  const budget = requested === 0 ? DEFAULT_BUDGET_PER_CANDIDATE * n : requested;
  const seed = safeUint64("options.seed", options?.seed) ?? randomInt(2 ** 47);
  const policy = options?.onJudgeFailure ?? JudgeFailurePolicy.JUDGE_FAILURE_POLICY_UNSPECIFIED;
  const onFailure =
    policy === JudgeFailurePolicy.JUDGE_FAILURE_POLICY_TIE
      ? "tie"
      : policy === JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL
        ? "fail"
        : config.tournament.onJudgeFailure;
  const resolved: ResolvedOptions = { judge, budget, seed, onFailure };
  if (judge === "tests") {
    const t = options?.tests;
    const language = t?.language ?? "";
    if (!(SANDBOX_LANGUAGES as readonly string[]).includes(language)) {
      throw new InvalidArgumentError(
        "options.tests.language",
        `must be one of ${SANDBOX_LANGUAGES.join(", ")}`,
      );
    }
    if (t === undefined || t.cases.length === 0) {
      throw new InvalidArgumentError("options.tests.cases", "the tests judge needs at least one test case");
    }
    resolved.tests = {
      language: language as SandboxLanguage,
      cases: t.cases.map((c) => ({ name: c.name, stdin: c.stdin, expectedStdout: c.expectedStdout })),
      timeLimitMs: t.timeLimitMs || config.tests.timeLimitMs,
      memoryLimitMb: t.memoryLimitMb || config.tests.memoryLimitMb,
    };
  }
  return resolved;
}
