// The `tests` judge for code answers: each candidate runs against the request's test cases in the sandbox
// (once per candidate, remembered), and a comparison is decided by the share of cases passed:
// P(a better) = 0.5 + (passed_a - passed_b) / 2, so equal results are a tie and all-versus-none is certain.
// A candidate's cases run one after another in one sandbox slot, under one deadline: their time limits plus
// a start-up allowance per case. What the candidate does decides only its own cases: a crash, a timeout, too
// much memory or output fails the case. What the verifier does not finish (its deadline, the caller's
// cancel, a sandbox that did not start) is no verdict: the judge call fails and nothing is scored.
import { DeadlineExceededError } from "@specloop/runtime";
import type { Sandbox, SandboxLanguage } from "../sandbox/index.js";
import type { PairJudge } from "../tournament/index.js";

export interface TestCaseSpec {
  name: string;
  stdin: string;
  expectedStdout: string;
}

export interface TestsJudgeContext {
  sandbox: Sandbox;
  language: SandboxLanguage;
  cases: readonly TestCaseSpec[];
  candidates: readonly string[];
  timeLimitMs: number;
  memoryLimitMb: number;
  signal: AbortSignal;
}

/** Time each run gets on top of its limit for bwrap and the interpreter to start. */
export const START_ALLOWANCE_MS = 1_000;

/** Output matches when equal after trailing whitespace is removed from every line and the end. */
export function sameOutput(actual: string, expected: string): boolean {
  const norm = (s: string): string =>
    s
      .split("\n")
      .map((l) => l.trimEnd())
      .join("\n")
      .trimEnd();
  return norm(actual) === norm(expected);
}

/** Share of the cases a candidate passes. */
export async function passRate(index: number, ctx: TestsJudgeContext): Promise<number> {
  const code = ctx.candidates[index] as string;
  return ctx.sandbox.withSlot(ctx.signal, async () => {
    // Counted once it holds a slot: waiting for one is bounded by the caller's deadline instead.
    const budgetMs = ctx.cases.length * (ctx.timeLimitMs + START_ALLOWANCE_MS);
    const deadline = AbortSignal.timeout(budgetMs);
    const signal = AbortSignal.any([ctx.signal, deadline]);
    let passed = 0;
    for (const c of ctx.cases) {
      try {
        const run = await ctx.sandbox.run({
          language: ctx.language,
          code,
          stdin: c.stdin,
          timeLimitMs: ctx.timeLimitMs,
          memoryLimitMb: ctx.memoryLimitMb,
          signal,
        });
        if (run.outcome === "exited" && run.exitCode === 0 && sameOutput(run.stdout, c.expectedStdout))
          passed++;
      } catch (err) {
        if (deadline.aborted && !ctx.signal.aborted) {
          throw new DeadlineExceededError(
            `tests judge: candidate ${index} did not finish its ${ctx.cases.length} cases within ${budgetMs} ms`,
            { cause: err },
          );
        }
        throw err;
      }
    }
    return passed / ctx.cases.length;
  });
}

export function testsJudge(ctx: TestsJudgeContext): PairJudge {
  const rates = new Map<number, Promise<number>>();
  const rate = (i: number): Promise<number> => {
    let r = rates.get(i);
    if (r === undefined) {
      r = passRate(i, ctx);
      // A judge call that never awaits it (its pair failed first) must not leave an unhandled rejection.
      r.catch(() => undefined);
      rates.set(i, r);
    }
    return r;
  };
  return async (a, b) => {
    const [ra, rb] = await Promise.all([rate(a), rate(b)]);
    return 0.5 + (ra - rb) / 2;
  };
}
