// What `specloop solve`'s command line asks the verifier for: its options, the SolveRequest they make, the
// tests judge's file, and the verifier's bearer token (--token or --token-file: the token alone, or the
// verifier's tokens YAML, whose first entry with the run-code role is used). Only what the CLI alone can see
// wrong is refused here (exit 2, or 4 for an unreadable token); the verifier checks the rest against its limits.
import { readFileSync } from "node:fs";
import { Judge, JudgeFailurePolicy, SolveRequest, type TestsJudgeOptions } from "@specloop/proto";
import { InvalidArgumentError } from "commander";
import { parse as parseYaml } from "yaml";
import { CliError, EXIT } from "../exit-codes.js";
import { enumName } from "../format.js";
import { tokenOfFile } from "../options.js";

/** The verifier's port in `npm start`'s block (node-1, trainer, verifier) and its config's default. */
export const DEFAULT_VERIFIER_ADDRESS = "127.0.0.1:50053";
/** Sampling N answers and judging them takes far longer than an admin call: minutes on a CPU. */
export const DEFAULT_SOLVE_TIMEOUT_MS = 600_000;
export const DEFAULT_SOLVE_N = 4;
export const DEFAULT_SOLVE_MAX_TOKENS = 64;
/** The verifier's own sampling defaults (DEFAULT_SOLVE_SAMPLING): greedy would give N copies of one answer. */
export const DEFAULT_SOLVE_TEMPERATURE = 1;
export const DEFAULT_SOLVE_TOP_P = 0.95;
/** The verifier's role for calls that run code (its config's RUN_CODE_ROLE). */
export const RUN_CODE_ROLE = "run-code";
/** The largest seed the proto carries (uint64 with jstype string, bounded to an exact double). */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

export const judgeName = (j: Judge): string => enumName(j, "JUDGE_");
export const policyName = (p: JudgeFailurePolicy): string => enumName(p, "JUDGE_FAILURE_POLICY_");
/** The judges and failure policies verifier.proto defines, by their names without prefix. */
export const JUDGES = Object.values(Judge).filter(
  (j) => j !== Judge.JUDGE_UNSPECIFIED && j !== Judge.UNRECOGNIZED,
);
export const POLICIES = Object.values(JudgeFailurePolicy).filter(
  (p) => p !== JudgeFailurePolicy.JUDGE_FAILURE_POLICY_UNSPECIFIED && p !== JudgeFailurePolicy.UNRECOGNIZED,
);

export interface SolveOptions {
  server: string;
  question: string;
  n: number;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed?: number;
  judge: string;
  budget: number;
  onJudgeFailure?: string;
  tests?: string;
  domain: string;
  token?: string;
  tokenFile?: string;
  tlsCa?: string;
  timeout: number;
  json?: boolean;
}

export function nonNegativeInt(max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < 0 || n > max) {
      throw new InvalidArgumentError(`expected an integer from 0 to ${max}`);
    }
    return n;
  };
}

export function probability(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 1) {
    throw new InvalidArgumentError("expected a number in (0, 1]");
  }
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError("expected a number >= 0");
  return n;
}

/** The bearer token for the verifier, if one is given: the token itself, or a file's (see the header). */
export function verifierToken(opts: Pick<SolveOptions, "token" | "tokenFile">): string | undefined {
  if (opts.token !== undefined && opts.tokenFile !== undefined) {
    throw new CliError("give one of --token and --token-file (or their SPECLOOP_VERIFIER_TOKEN* variables)");
  }
  if (opts.tokenFile === undefined) {
    const token = opts.token?.trim();
    return token === "" ? undefined : token;
  }
  let text: string;
  try {
    text = readFileSync(opts.tokenFile, "utf8");
  } catch (err) {
    throw new CliError(`cannot read the token file ${opts.tokenFile}: ${(err as Error).message}`, EXIT.auth, {
      cause: err,
    });
  }
  const trimmed = text.trim();
  // A plain token (or an empty file) reads as it does for the trainer's admin token.
  if (!trimmed.startsWith("-") && !trimmed.startsWith("[")) return tokenOfFile(opts.tokenFile, text);
  let entries: unknown;
  try {
    entries = parseYaml(trimmed);
  } catch (err) {
    throw new CliError(`${opts.tokenFile}: not a token, nor a YAML list of token entries`, EXIT.auth, {
      cause: err,
    });
  }
  for (const e of Array.isArray(entries) ? entries : []) {
    const { token, roles } = (e ?? {}) as { token?: unknown; roles?: unknown };
    if (typeof token === "string" && Array.isArray(roles) && roles.includes(RUN_CODE_ROLE))
      return token.trim();
  }
  throw new CliError(
    `${opts.tokenFile}: no entry with the ${RUN_CODE_ROLE} role and a token in it`,
    EXIT.auth,
  );
}

const TESTS_KEYS = ["language", "cases", "time_limit_ms", "memory_limit_mb"];
const CASE_KEYS = ["name", "stdin", "expected_stdout"];

/**
 * The tests judge's settings from a YAML or JSON file, keys as in verifier.proto's TestsJudgeOptions:
 * `language`, `cases` (each `name`, `stdin`, `expected_stdout`), optional `time_limit_ms` and
 * `memory_limit_mb`. The shape is checked here; the verifier checks the values against its limits.
 */
export function parseTestsFile(file: string, text: string): TestsJudgeOptions {
  const bad = (why: string): CliError => new CliError(`--tests ${file}: ${why}`);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new CliError(`--tests ${file}: not YAML or JSON (${(err as Error).message})`, EXIT.usage, {
      cause: err,
    });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw bad("expected a mapping");
  const o = doc as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !TESTS_KEYS.includes(k));
  if (unknown.length > 0) throw bad(`unknown keys ${unknown.join(", ")} (known: ${TESTS_KEYS.join(", ")})`);
  if (typeof o.language !== "string") throw bad("language: expected a string such as python");
  if (!Array.isArray(o.cases) || o.cases.length === 0) throw bad("cases: expected a list of test cases");
  const limit = (key: string): number => {
    const v = o[key] ?? 0;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw bad(`${key}: expected an integer >= 0`);
    return v;
  };
  const cases = o.cases.map((c: unknown, i) => {
    if (typeof c !== "object" || c === null || Array.isArray(c)) throw bad(`cases[${i}]: expected a mapping`);
    const entry = c as Record<string, unknown>;
    const extra = Object.keys(entry).filter((k) => !CASE_KEYS.includes(k));
    if (extra.length > 0) throw bad(`cases[${i}]: unknown keys ${extra.join(", ")}`);
    const field = (key: string): string => {
      const v = entry[key] ?? "";
      if (typeof v !== "string") throw bad(`cases[${i}].${key}: expected a string`);
      return v;
    };
    return {
      name: field("name") || `case ${i}`,
      stdin: field("stdin"),
      expectedStdout: field("expected_stdout"),
    };
  });
  return {
    language: o.language,
    cases,
    timeLimitMs: limit("time_limit_ms"),
    memoryLimitMb: limit("memory_limit_mb"),
  };
}

/** The SolveRequest the options describe; what only the CLI can see wrong is refused here (exit 2). */
export function solveRequest(opts: SolveOptions): SolveRequest {
  if (opts.question.trim() === "") throw new CliError("--question must not be empty");
  const judge = JUDGES.find((j) => judgeName(j) === opts.judge) ?? Judge.JUDGE_PAIRWISE;
  if ((judge === Judge.JUDGE_TESTS) !== (opts.tests !== undefined)) {
    throw new CliError("--tests FILE goes with --judge tests, and --judge tests needs it");
  }
  let tests: TestsJudgeOptions | undefined;
  if (opts.tests !== undefined) {
    let text: string;
    try {
      text = readFileSync(opts.tests, "utf8");
    } catch (err) {
      throw new CliError(`cannot read --tests ${opts.tests}: ${(err as Error).message}`, EXIT.usage, {
        cause: err,
      });
    }
    tests = parseTestsFile(opts.tests, text);
  }
  const seed = opts.seed === undefined ? {} : { seed: String(opts.seed) };
  return SolveRequest.fromPartial({
    question: opts.question,
    n: opts.n,
    maxTokens: opts.maxTokens,
    // One --seed makes the whole Solve replayable: candidate i samples with seed + i, the tournament with seed.
    sampling: { temperature: opts.temperature, topP: opts.topP, ...seed },
    options: {
      judge,
      budget: opts.budget,
      ...seed,
      onJudgeFailure:
        POLICIES.find((p) => policyName(p) === opts.onJudgeFailure) ??
        JudgeFailurePolicy.JUDGE_FAILURE_POLICY_UNSPECIFIED,
      tests,
    },
    domain: opts.domain,
  });
}
