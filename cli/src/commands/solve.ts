// `specloop solve --question TEXT [--n N] [--judge pairwise|pointwise|tests]`: the verifier's Solve. It
// samples N answers through an inference node and ranks them with V1's pairwise tournament; the CLI prints
// each candidate as it is sampled (with its speculation stats), each comparison as it is judged, then the
// ranking and the chosen answer.
//
// --json prints one JSON document when the tournament is done (nothing while it runs, so `| jq` reads one
// value), keys snake_case as in verifier.proto and enums by their proto names, as `verdicts export` writes:
//   { tournament_id, model_id, question, judge, budget, seed, state, requested_by, created_at, finished_at,
//     candidates: [{ index, text, stats: { target_passes, proposed_tokens, accepted_tokens,
//                    accepted_per_pass, drafter, speculator_version } | null }],
//     comparisons: [{ a, b, p_a, phase, invented }], ranking, scores, real_verdicts,
//     chosen: { index, text } }
// A Solve that fails prints nothing on stdout, its reason on stderr, and exits with what it means.
//
// The tests judge runs code: the verifier takes it only with a bearer token whose identity holds its
// run-code role, from --token (SPECLOOP_VERIFIER_TOKEN) or --token-file (SPECLOOP_VERIFIER_TOKEN_FILE: the
// token alone, or the verifier's tokens YAML, whose first run-code entry is used). Other judges need none.
import { readFileSync } from "node:fs";
import { type CallOptions, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  type CandidateSampled,
  type Comparison,
  drafterToJSON,
  Judge,
  JudgeFailurePolicy,
  judgeToJSON,
  SolveRequest,
  type SolveResponse,
  type TestsJudgeOptions,
  type Tournament,
  TournamentState,
  tournamentStateToJSON,
  VerifierClient,
} from "@specloop/proto";
import { bearerMetadata } from "@specloop/runtime";
import { type Command, InvalidArgumentError, Option } from "commander";
import { parse as parseYaml } from "yaml";
import { action } from "../action.js";
import { CliError, describeFailure, EXIT, type ExitCode } from "../exit-codes.js";
import { drafterName, enumName, fixed } from "../format.js";
import type { Io } from "../io.js";
import { channelCredentials, positiveInt, tokenOfFile } from "../options.js";
import { renderTable } from "../table.js";

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
const RUN_CODE_ROLE = "run-code";
/** The largest seed the proto carries (uint64 with jstype string, bounded to an exact double). */
const MAX_SEED = Number.MAX_SAFE_INTEGER;

const judgeName = (j: Judge): string => enumName(j, "JUDGE_");
const policyName = (p: JudgeFailurePolicy): string => enumName(p, "JUDGE_FAILURE_POLICY_");
/** The judges and failure policies verifier.proto defines, by their names without prefix. */
const JUDGES = Object.values(Judge).filter((j) => j !== Judge.JUDGE_UNSPECIFIED && j !== Judge.UNRECOGNIZED);
const POLICIES = Object.values(JudgeFailurePolicy).filter(
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

function nonNegativeInt(max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < 0 || n > max) {
      throw new InvalidArgumentError(`expected an integer from 0 to ${max}`);
    }
    return n;
  };
}

function probability(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 1) {
    throw new InvalidArgumentError("expected a number in (0, 1]");
  }
  return n;
}

function nonNegativeNumber(value: string): number {
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

export interface SolveEvents {
  candidate(c: CandidateSampled): void;
  comparison(c: Comparison): void;
}

export interface SolveOutcome {
  /** In the order they were sampled. */
  candidates: CandidateSampled[];
  tournament: Tournament;
}

/** Streams one Solve; rejects with its gRPC error, or when the stream ends without a result. */
export function streamSolve(
  server: string,
  request: SolveRequest,
  call: { metadata: Metadata; options: Partial<CallOptions> },
  credentials: ReturnType<typeof channelCredentials>,
  events: SolveEvents,
): Promise<SolveOutcome> {
  const client = new VerifierClient(server, credentials);
  return new Promise<SolveOutcome>((resolve, reject) => {
    const candidates: CandidateSampled[] = [];
    let tournament: Tournament | undefined;
    const stream = client.solve(request, call.metadata, call.options);
    stream.on("data", (m: SolveResponse) => {
      const e = m.event;
      if (e?.$case === "candidate") {
        candidates.push(e.value);
        events.candidate(e.value);
      } else if (e?.$case === "comparison") events.comparison(e.value);
      else if (e?.$case === "result") tournament = e.value;
    });
    stream.on("error", (err: ServiceError) => reject(err));
    stream.on("end", () => {
      if (tournament === undefined)
        reject(new CliError(`${server}: the Solve ended without a result`, EXIT.failed));
      else resolve({ candidates, tournament });
    });
  }).finally(() => client.close());
}

function statsLine(c: CandidateSampled): string {
  const s = c.stats;
  if (s === undefined) return "no speculation stats";
  const version = s.speculatorVersion === "" ? "" : ` ${s.speculatorVersion}`;
  return (
    `${s.targetPasses} target passes, ${fixed(s.acceptedPerPass)} tokens per pass, ` +
    `${s.acceptedTokens}/${s.proposedTokens} drafted tokens accepted (${drafterName(s.drafter)}${version})`
  );
}

const indent = (text: string): string =>
  text === ""
    ? "    (empty)"
    : text
        .replace(/\n$/, "")
        .split("\n")
        .map((l) => `    ${l}`)
        .join("\n");

const PHASES: Record<number, string> = { 1: "coverage", 2: "swiss" };

/** The lines people read as the Solve streams. */
export function progressPrinter(io: Io, n: number): SolveEvents {
  let sampled = 0;
  let judged = 0;
  return {
    candidate(c) {
      sampled++;
      io.out(`sampled ${sampled}/${n}: candidate ${c.index}, ${statsLine(c)}`);
      io.out(indent(c.text));
    },
    comparison(c) {
      judged++;
      const phase = PHASES[c.phase] ?? `phase ${c.phase}`;
      const invented = c.invented ? ", an invented tie (the judge call failed)" : "";
      io.out(
        `judged ${judged}: candidate ${c.a} vs ${c.b}, p(${c.a} better) = ${fixed(c.pA, 3)} (${phase})${invented}`,
      );
    },
  };
}

/** The ranking, best first, and the chosen answer. */
export function resultText(t: Tournament): string {
  const rows = t.ranking.map((index, rank) => [rank + 1, index, fixed(t.scores[index], 3)]);
  const chosen = t.ranking[0] as number;
  return [
    // A done tournament's budget is the judge calls it made (fewer than asked once every pair is judged).
    `tournament ${t.tournamentId}: ${judgeName(t.judge)} judge, ${t.realVerdicts} of ${t.budget} judge calls ` +
      `gave verdicts, seed ${t.seed}, model ${t.modelId || "-"}`,
    renderTable(["rank", "candidate", "score"], rows),
    `chosen: candidate ${chosen}`,
    indent(t.candidates[chosen] ?? ""),
  ].join("\n");
}

/** The --json document (see the header). */
export function solveJson(outcome: SolveOutcome): string {
  const t = outcome.tournament;
  const byIndex = [...outcome.candidates].sort((x, y) => x.index - y.index);
  const chosen = t.ranking[0] as number;
  return JSON.stringify({
    tournament_id: t.tournamentId,
    model_id: t.modelId,
    question: t.question,
    judge: judgeToJSON(t.judge),
    budget: t.budget,
    seed: t.seed,
    state: tournamentStateToJSON(t.state),
    requested_by: t.requestedBy,
    created_at: t.createdAt?.toISOString() ?? null,
    finished_at: t.finishedAt?.toISOString() ?? null,
    candidates: byIndex.map((c) => ({
      index: c.index,
      text: c.text,
      stats:
        c.stats === undefined
          ? null
          : {
              target_passes: c.stats.targetPasses,
              proposed_tokens: c.stats.proposedTokens,
              accepted_tokens: c.stats.acceptedTokens,
              accepted_per_pass: c.stats.acceptedPerPass,
              drafter: drafterToJSON(c.stats.drafter),
              speculator_version: c.stats.speculatorVersion,
            },
    })),
    comparisons: t.comparisons.map((c) => ({
      a: c.a,
      b: c.b,
      p_a: c.pA,
      phase: c.phase,
      invented: c.invented,
    })),
    ranking: t.ranking,
    scores: t.scores,
    real_verdicts: t.realVerdicts,
    chosen: { index: chosen, text: t.candidates[chosen] ?? "" },
  });
}

async function runSolve(io: Io, opts: SolveOptions): Promise<ExitCode> {
  const request = solveRequest(opts);
  const token = verifierToken(opts);
  const call = {
    metadata: token === undefined ? new Metadata() : bearerMetadata(token),
    options: { deadline: new Date(Date.now() + opts.timeout) },
  };
  const events: SolveEvents = opts.json
    ? { candidate: () => undefined, comparison: () => undefined }
    : progressPrinter(io, opts.n);
  let outcome: SolveOutcome;
  try {
    outcome = await streamSolve(opts.server, request, call, channelCredentials(opts), events);
  } catch (err) {
    if (err instanceof CliError) throw err;
    const { code, message } = describeFailure(err, opts.server);
    const hint =
      code === EXIT.auth && token === undefined
        ? ` (the ${opts.judge} judge needs a token with the verifier's ${RUN_CODE_ROLE} role: ` +
          "--token-file FILE or SPECLOOP_VERIFIER_TOKEN_FILE)"
        : "";
    throw new CliError(`${message}${hint}`, code, { cause: err });
  }
  const t = outcome.tournament;
  if (t.state !== TournamentState.TOURNAMENT_STATE_DONE || t.ranking.length === 0) {
    throw new CliError(
      `${opts.server}: the tournament ended ${tournamentStateToJSON(t.state)}${t.error ? `: ${t.error}` : ""}`,
      EXIT.failed,
    );
  }
  io.out(opts.json ? solveJson(outcome) : resultText(t));
  return EXIT.ok;
}

export function addSolveCommand(program: Command, io: Io): void {
  program
    .command("solve")
    .description(
      "ask the verifier to sample N answers and pick the best by a pairwise tournament, streaming progress",
    )
    .addOption(
      new Option("--server <host:port>", "the verifier's gRPC address")
        .env("SPECLOOP_VERIFIER_ADDRESS")
        .default(DEFAULT_VERIFIER_ADDRESS),
    )
    .requiredOption("--question <text>", "the question (the prompt every answer is sampled from)")
    .addOption(new Option("--n <count>", "answers to sample").argParser(positiveInt).default(DEFAULT_SOLVE_N))
    .addOption(
      new Option("--max-tokens <n>", "tokens per answer at most")
        .argParser(positiveInt)
        .default(DEFAULT_SOLVE_MAX_TOKENS),
    )
    .addOption(
      new Option("--temperature <t>", "sampling temperature (0 = greedy: N copies of one answer)")
        .argParser(nonNegativeNumber)
        .default(DEFAULT_SOLVE_TEMPERATURE),
    )
    .addOption(
      new Option("--top-p <p>", "nucleus sampling mass, in (0, 1]")
        .argParser(probability)
        .default(DEFAULT_SOLVE_TOP_P),
    )
    .addOption(
      new Option("--seed <n>", "seed of sampling (answer i uses seed + i) and of the tournament").argParser(
        nonNegativeInt(MAX_SEED),
      ),
    )
    .addOption(
      new Option("--judge <judge>", "who compares answers; tests runs code and needs a token")
        .choices(JUDGES.map(judgeName))
        .default(judgeName(Judge.JUDGE_PAIRWISE)),
    )
    .addOption(
      new Option("--budget <calls>", "judge calls at most; 0 = 3N")
        .argParser(nonNegativeInt(1_000_000))
        .default(0),
    )
    .addOption(
      new Option(
        "--on-judge-failure <policy>",
        "fail the Solve, or count a tie (default: the verifier's)",
      ).choices(POLICIES.map(policyName)),
    )
    .option(
      "--tests <file>",
      "the tests judge's cases: YAML or JSON with language, cases (name, stdin, expected_stdout), " +
        "time_limit_ms, memory_limit_mb",
    )
    .option("--domain <tag>", "domain tag for the node's acceptance stats and traces", "")
    .addOption(
      new Option("--token <token>", "the verifier's token (tests judge)").env("SPECLOOP_VERIFIER_TOKEN"),
    )
    .addOption(
      new Option(
        "--token-file <file>",
        "file holding it, or the verifier's tokens YAML (its run-code entry)",
      ).env("SPECLOOP_VERIFIER_TOKEN_FILE"),
    )
    .addOption(
      new Option("--tls-ca <file>", "use TLS, trusting this CA certificate (PEM)").env(
        "SPECLOOP_TLS_CA_FILE",
      ),
    )
    .addOption(
      new Option("--timeout <ms>", "deadline of the whole Solve, milliseconds")
        .argParser(positiveInt)
        .default(DEFAULT_SOLVE_TIMEOUT_MS),
    )
    .option("--json", "print one JSON document when done (the candidates, comparisons, ranking, chosen)")
    .addHelpText(
      "after",
      "\nExit codes: 0 an answer was chosen, 1 the verifier refused or the Solve failed (its reason printed), " +
        "2 usage, 3 unreachable or past --timeout, 4 the tests judge without a run-code token.",
    )
    .action(action(io, "solve", (opts: SolveOptions) => runSolve(io, opts)));
}
