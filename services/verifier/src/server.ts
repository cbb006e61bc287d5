// The Verifier gRPC API: Rank (given candidates), Solve (sample N from the inference node sharing the
// prompt's KV, then rank, streaming progress) and GetTournament (from the verifier's store).
import { randomUUID } from "node:crypto";
import type { Bus } from "@specloop/bus";
import {
  Judge,
  type SamplingParams,
  type SolveRequest,
  type SolveResponse,
  type SpeculationStats,
  type Tournament,
  TournamentState,
  type VerifierServer,
} from "@specloop/proto";
import {
  type CallContext,
  Channel,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  SpecloopError,
  serverStream,
  unary,
} from "@specloop/runtime";
import { asc, eq } from "drizzle-orm";
import type { VerifierConfig } from "./config.js";
import {
  comparisons,
  type JudgeKind,
  type TournamentState as StoredState,
  tournaments,
  type VerifierDb,
} from "./db/index.js";
import { JudgeFailedError } from "./errors.js";
import type { InferenceNode } from "./judges/inference.js";
import { pairwiseJudge, pointwiseScores } from "./judges/model.js";
import { testsJudge } from "./judges/tests.js";
import { checkCount, type ResolvedOptions, resolveOptions } from "./options.js";
import { TournamentRecorder } from "./record.js";
import { type Comparison, type PairJudge, rankByScore, runTournament } from "./tournament/index.js";

const JUDGE_TO_PROTO: Record<JudgeKind, Judge> = {
  pairwise: Judge.JUDGE_PAIRWISE,
  pointwise: Judge.JUDGE_POINTWISE,
  tests: Judge.JUDGE_TESTS,
};

const STATE_TO_PROTO: Record<StoredState, TournamentState> = {
  sampling: TournamentState.TOURNAMENT_STATE_SAMPLING,
  judging: TournamentState.TOURNAMENT_STATE_JUDGING,
  done: TournamentState.TOURNAMENT_STATE_DONE,
  failed: TournamentState.TOURNAMENT_STATE_FAILED,
};

/** Solve's sampling when the request sets none: temperature 0 would give N copies of one answer. */
export const DEFAULT_SOLVE_SAMPLING: SamplingParams = {
  temperature: 1,
  topP: 0.95,
  topK: 0,
  stopTokenIds: [],
  stop: [],
};

export interface VerifierDeps {
  db: VerifierDb;
  /** Where verdicts are published; without it they are only stored. */
  bus?: Bus;
  node: InferenceNode;
  config: VerifierConfig;
  logger: Logger;
}

/** Reads one stored tournament with its comparisons in judging order. */
export function loadTournament(db: VerifierDb, id: string): Tournament | undefined {
  const row = db.select().from(tournaments).where(eq(tournaments.id, id)).get();
  if (row === undefined) return undefined;
  const judged = db
    .select()
    .from(comparisons)
    .where(eq(comparisons.tournamentId, id))
    .orderBy(asc(comparisons.idx))
    .all();
  return {
    tournamentId: row.id,
    question: row.question,
    candidates: row.candidates,
    judge: JUDGE_TO_PROTO[row.judge],
    budget: row.budget,
    seed: row.seed,
    state: STATE_TO_PROTO[row.state],
    ranking: row.ranking ?? [],
    scores: row.scores ?? [],
    comparisons: judged.map((c) => ({ a: c.a, b: c.b, pA: c.pA, phase: c.phase })),
    createdAt: row.createdAt,
    finishedAt: row.finishedAt ?? undefined,
    error: row.error ?? "",
    modelId: row.modelId ?? "",
  };
}

/** A judge call that fails becomes a JudgeFailedError, or a tie when the request said so. */
function guarded(judge: PairJudge, options: ResolvedOptions, ctx: CallContext): PairJudge {
  return async (a, b) => {
    try {
      return await judge(a, b);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      const why = err instanceof Error ? err.message : String(err);
      if (options.onFailure === "tie") {
        ctx.logger.warn({ a, b, err }, "judge failed; counted as a tie");
        return 0.5;
      }
      throw new JudgeFailedError(options.judge, `comparing ${a} and ${b}: ${why}`, { cause: err });
    }
  };
}

interface Judged {
  ranking: number[];
  scores: number[];
  /** Judge calls actually made. */
  calls: number;
}

async function judgeCandidates(
  deps: VerifierDeps,
  question: string,
  candidates: string[],
  options: ResolvedOptions,
  ctx: CallContext,
  onComparison: (c: Comparison, idx: number) => void,
): Promise<Judged> {
  const n = candidates.length;
  const modelCtx = {
    node: deps.node,
    question,
    candidates,
    signal: ctx.signal,
    timeoutMs: deps.config.tournament.judgeTimeoutMs,
  };
  if (options.judge === "pointwise") {
    // The baseline: one score per answer, ranked by it; there are no comparisons to record.
    const scores = await pointwiseScores(modelCtx).catch((err: unknown) => {
      if (ctx.signal.aborted) throw err;
      if (options.onFailure === "tie") return new Array<number>(n).fill(0.5);
      const why = err instanceof Error ? err.message : String(err);
      throw new JudgeFailedError("pointwise", why, { cause: err });
    });
    return { ranking: rankByScore(scores), scores, calls: n };
  }
  const base =
    options.judge === "pairwise"
      ? pairwiseJudge(modelCtx)
      : testsJudge({
          ...(options.tests as NonNullable<ResolvedOptions["tests"]>),
          candidates,
          python: deps.config.tests.python,
          signal: ctx.signal,
        });
  const result = await runTournament(n, guarded(base, options, ctx), {
    budget: options.budget,
    seed: options.seed,
    onComparison,
  });
  return { ranking: result.ranking, scores: result.scores, calls: result.comparisons.length };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function verifierServer(deps: VerifierDeps): VerifierServer {
  const { db, config } = deps;

  /** Records the outcome (or the failure) and publishes the verdicts. */
  async function finish(rec: TournamentRecorder, work: () => Promise<Judged>): Promise<Tournament> {
    let judged: Judged;
    try {
      judged = await work();
    } catch (err) {
      rec.failed(message(err));
      throw err;
    }
    rec.done(judged.ranking, judged.scores, judged.calls);
    await rec.publish();
    return loadTournament(db, rec.id) as Tournament;
  }

  return {
    rank: unary(async (request, ctx) => {
      checkCount(request.candidates.length, "candidates", config);
      const options = resolveOptions(request.options, request.candidates.length, config);
      const modelId =
        options.judge === "tests"
          ? null
          : await deps.node.modelId(ctx.signal, config.tournament.judgeTimeoutMs);
      const rec = new TournamentRecorder(db, deps.bus, ctx.logger, randomUUID());
      rec.start({
        id: rec.id,
        question: request.question,
        candidates: request.candidates,
        judge: options.judge,
        budget: options.budget,
        seed: options.seed,
        state: "judging",
        modelId,
      });
      const tournament = await finish(rec, () =>
        judgeCandidates(deps, request.question, request.candidates, options, ctx, (c, i) =>
          rec.comparison(c, i),
        ),
      );
      return { tournament };
    }),

    solve: serverStream(async function* (request: SolveRequest, ctx: CallContext) {
      if (request.question === "") throw new InvalidArgumentError("question", "must not be empty");
      checkCount(request.n, "n", config);
      const options = resolveOptions(request.options, request.n, config);
      const modelId = await deps.node.modelId(ctx.signal, config.tournament.judgeTimeoutMs);
      const rec = new TournamentRecorder(db, deps.bus, ctx.logger, randomUUID());
      rec.start({
        id: rec.id,
        question: request.question,
        candidates: [],
        judge: options.judge,
        budget: options.budget,
        seed: options.seed,
        state: "sampling",
        modelId,
      });
      const events = new Channel<SolveResponse>();
      const run = async (): Promise<void> => {
        let candidates: string[];
        try {
          candidates = await sample(deps, rec.id, request, ctx, (index, text, stats) =>
            events.push({ event: { $case: "candidate", value: { index, text, stats } } }),
          );
        } catch (err) {
          rec.failed(message(err));
          throw err;
        }
        rec.judging(candidates, modelId);
        const tournament = await finish(rec, () =>
          judgeCandidates(deps, request.question, candidates, options, ctx, (c, i) => {
            rec.comparison(c, i);
            events.push({ event: { $case: "comparison", value: c } });
          }),
        );
        events.push({ event: { $case: "result", value: tournament } });
      };
      run().then(
        () => events.close(),
        (err: unknown) => events.fail(err),
      );
      yield* events.drain();
    }),

    getTournament: unary(async (request) => {
      if (request.tournamentId === "") throw new InvalidArgumentError("tournament_id", "must not be empty");
      const tournament = loadTournament(db, request.tournamentId);
      if (tournament === undefined) throw new NotFoundError(`tournament ${request.tournamentId} not found`);
      return { tournament };
    }),
  };
}

/**
 * Samples the N candidates: the first request starts alone; once it has produced its first chunk (its
 * prompt is in the node's KV cache) the others start with share_prefix_with pointing at it, so the prompt
 * is prefilled once. Each candidate is reported as it finishes. The first failure cancels the candidates
 * still running (a tournament needs all N, so their tokens would be wasted on the node) and is what the
 * caller sees.
 */
async function sample(
  deps: VerifierDeps,
  id: string,
  request: SolveRequest,
  ctx: CallContext,
  onSampled: (index: number, text: string, stats: SpeculationStats | undefined) => void,
): Promise<string[]> {
  const n = request.n;
  const base = request.sampling ?? DEFAULT_SOLVE_SAMPLING;
  const requestId = (i: number): string => `${id}-${i}`;
  const texts = new Array<string>(n).fill("");
  const siblings = new AbortController();
  const signal = AbortSignal.any([ctx.signal, siblings.signal]);
  let failure: { err: unknown } | undefined;
  let primed: () => void = () => undefined;
  const firstChunk = new Promise<void>((resolve) => {
    primed = resolve;
  });
  const one = async (i: number, share: string): Promise<void> => {
    let text = "";
    let stats: SpeculationStats | undefined;
    const sampling = { ...base, ...(base.seed !== undefined ? { seed: base.seed + i } : {}) };
    try {
      for await (const chunk of deps.node.generate(
        {
          requestId: requestId(i),
          prompt: request.question,
          maxTokens: request.maxTokens,
          sampling,
          domain: request.domain,
          sharePrefixWith: share,
        },
        signal,
        deps.config.inference.sampleTimeoutMs,
      )) {
        text += chunk.text;
        stats = chunk.stats ?? stats;
        if (i === 0) primed();
      }
    } catch (err) {
      failure ??= { err };
      siblings.abort();
      throw err;
    }
    texts[i] = text;
    onSampled(i, text, stats);
  };
  const first = one(0, "").finally(() => primed());
  await firstChunk;
  const rest = failure === undefined ? Array.from({ length: n - 1 }, (_, k) => one(k + 1, requestId(0))) : [];
  await Promise.allSettled([first, ...rest]);
  if (failure !== undefined) {
    const { err } = failure;
    if (err instanceof SpecloopError) throw err;
    throw new JudgeFailedError("sampling", message(err), { cause: err });
  }
  return texts;
}
