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
// A Solve that fails says why on stderr (with --json, nothing on stdout) and exits with what it means.
//
// The tests judge runs code: the verifier takes it only with a bearer token whose identity holds its
// run-code role, from --token (SPECLOOP_VERIFIER_TOKEN) or --token-file (SPECLOOP_VERIFIER_TOKEN_FILE).
// Other judges need none. The request and the token are made in solve-request.ts.
import { type CallOptions, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  type CandidateSampled,
  type Comparison,
  drafterToJSON,
  Judge,
  judgeToJSON,
  type SolveRequest,
  type SolveResponse,
  type Tournament,
  TournamentState,
  tournamentStateToJSON,
  VerifierClient,
} from "@specloop/proto";
import { bearerMetadata } from "@specloop/runtime";
import { type Command, Option } from "commander";
import { action } from "../action.js";
import { CliError, describeFailure, EXIT, type ExitCode } from "../exit-codes.js";
import { drafterName, fixed } from "../format.js";
import type { Io } from "../io.js";
import { channelCredentials, positiveInt } from "../options.js";
import { renderTable } from "../table.js";
import {
  DEFAULT_SOLVE_MAX_TOKENS,
  DEFAULT_SOLVE_N,
  DEFAULT_SOLVE_TEMPERATURE,
  DEFAULT_SOLVE_TIMEOUT_MS,
  DEFAULT_SOLVE_TOP_P,
  DEFAULT_VERIFIER_ADDRESS,
  JUDGES,
  judgeName,
  MAX_SEED,
  nonNegativeInt,
  nonNegativeNumber,
  POLICIES,
  policyName,
  probability,
  RUN_CODE_ROLE,
  type SolveOptions,
  solveRequest,
  verifierToken,
} from "./solve-request.js";

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
