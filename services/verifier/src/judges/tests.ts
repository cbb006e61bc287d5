// The `tests` judge for code answers: each candidate runs against the request's test cases in the sandbox
// (once per candidate, remembered), and a comparison is decided by the share of cases passed:
// P(a better) = 0.5 + (passed_a - passed_b) / 2, so equal results are a tie and all-versus-none is certain.
import type { PairJudge } from "../tournament/index.js";
import { runSandboxed, type SandboxLanguage } from "./sandbox.js";

export interface TestCaseSpec {
  name: string;
  stdin: string;
  expectedStdout: string;
}

export interface TestsJudgeContext {
  language: SandboxLanguage;
  cases: readonly TestCaseSpec[];
  candidates: readonly string[];
  timeLimitMs: number;
  memoryLimitMb: number;
  python: string;
  signal: AbortSignal;
}

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

/** Share of the cases a candidate passes; a crash, a timeout or too much output fails the case. */
export async function passRate(code: string, ctx: TestsJudgeContext): Promise<number> {
  let passed = 0;
  for (const c of ctx.cases) {
    const run = await runSandboxed({
      language: ctx.language,
      code,
      stdin: c.stdin,
      timeLimitMs: ctx.timeLimitMs,
      memoryLimitMb: ctx.memoryLimitMb,
      python: ctx.python,
      signal: ctx.signal,
    });
    if (!run.timedOut && !run.truncated && run.exitCode === 0 && sameOutput(run.stdout, c.expectedStdout))
      passed++;
  }
  return passed / ctx.cases.length;
}

export function testsJudge(ctx: TestsJudgeContext): PairJudge {
  const rates = new Map<number, Promise<number>>();
  const rate = (i: number): Promise<number> => {
    let r = rates.get(i);
    if (r === undefined) {
      r = passRate(ctx.candidates[i] as string, ctx);
      rates.set(i, r);
    }
    return r;
  };
  return async (a, b) => {
    const [ra, rb] = await Promise.all([rate(a), rate(b)]);
    return 0.5 + (ra - rb) / 2;
  };
}
