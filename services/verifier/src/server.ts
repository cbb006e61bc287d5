// The Verifier gRPC API: Rank (given candidates), Solve (sample N from the inference node sharing the
// prompt's KV, then rank, streaming progress) and GetTournament (from the verifier's store).
// What is stored is what happened: a call that is cancelled or fails is stored failed, never done; a judge
// call that failed and was counted as a tie is stored as invented (and never published); a tournament none
// of whose judge calls gave a verdict fails. Verdicts go to the bus's spool (VerdictOutbox), which never
// waits on NATS, so NATS never holds up a call. The tests judge runs code: it needs a bearer token
// whose identity holds RUN_CODE_ROLE, and that identity is stored with the tournament.
import { randomUUID } from "node:crypto";
import { type Bus, SpooledPublisher } from "@specloop/bus";
import {
  Judge,
  type SamplingParams,
  type SolveRequest,
  type SolveResponse,
  type SpeculationStats,
  type Tournament,
  type TournamentOptions,
  TournamentState,
  type VerifierServer,
} from "@specloop/proto";
import {
  type CallContext,
  Channel,
  type Logger,
  NotFoundError,
  SpecloopError,
  safeUint64,
  serverStream,
  TokenAuth,
  unary,
} from "@specloop/runtime";
import { asc, eq } from "drizzle-orm";
import { RUN_CODE_ROLE, type VerifierConfig } from "./config.js";
import {
  comparisons,
  type JudgeKind,
  type TournamentState as StoredState,
  tournaments,
  type VerifierDb,
} from "./db/index.js";
import { JudgeFailedError, SandboxUnavailableError } from "./errors.js";
import type { InferenceNode } from "./judges/inference.js";
import { pairwiseJudge, pointwiseScores } from "./judges/model.js";
import { testsJudge } from "./judges/tests.js";
import {
  checkCandidates,
  checkCount,
  checkQuestion,
  checkTournamentId,
  type ResolvedOptions,
  resolveOptions,
} from "./options.js";
import { TournamentRecorder } from "./record.js";
import { Sandbox } from "./sandbox/index.js";
import { type Comparison, type PairJudge, rankByScore, runTournament } from "./tournament/index.js";
import { VerdictOutbox } from "./verdicts.js";

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
  /** Who may use the tests judge; without it (or with no tokens) nobody may. */
  auth?: TokenAuth;
  /** The tests judge's sandbox, whose slots every call shares; made from the config when absent. */
  sandbox?: Sandbox;
  /** Hands done tournaments' verdicts to the bus's spool; made from `bus` (memory only) when absent. */
  outbox?: VerdictOutbox;
}

/** The sandbox the config describes. */
export function sandboxFor(config: VerifierConfig): Sandbox {
  const t = config.tests;
  return new Sandbox({
    bwrap: t.bwrap,
    python: t.python,
    maxSandboxes: t.maxSandboxes,
    maxProcesses: t.maxProcesses,
    tmpfsMb: t.tmpfsMb,
    maxOutputBytes: t.maxOutputBytes,
    user: { uid: t.sandboxUid, gid: t.sandboxGid },
  });
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
    comparisons: judged.map((c) => ({ a: c.a, b: c.b, pA: c.pA, phase: c.phase, invented: c.invented })),
    createdAt: row.createdAt,
    finishedAt: row.finishedAt ?? undefined,
    error: row.error ?? "",
    modelId: row.modelId ?? "",
    realVerdicts: row.realVerdicts ?? 0,
    requestedBy: row.requestedBy ?? "",
  };
}

const pairKey = (a: number, b: number): string => (a < b ? `${a},${b}` : `${b},${a}`);

/**
 * A judge call that fails becomes a JudgeFailedError, or, when the request said so, a tie that is
 * recorded in `invented` so it is stored as one and never published. A sandbox this machine cannot run is
 * no failed comparison: it fails the call as FAILED_PRECONDITION whatever the policy.
 */
function guarded(
  judge: PairJudge,
  options: ResolvedOptions,
  ctx: CallContext,
  invented: Set<string>,
): PairJudge {
  return async (a, b) => {
    try {
      return await judge(a, b);
    } catch (err) {
      if (ctx.signal.aborted || err instanceof SandboxUnavailableError) throw err;
      const why = err instanceof Error ? err.message : String(err);
      if (options.onFailure === "tie") {
        ctx.logger.warn({ a, b, err }, "judge failed; counted as an invented tie");
        invented.add(pairKey(a, b));
        return 0.5;
      }
      throw new JudgeFailedError(options.judge, `comparing ${a} and ${b}: ${why}`, { cause: err });
    }
  };
}

interface Judged {
  ranking: number[];
  scores: number[];
  /** Judge calls made. */
  calls: number;
  /** Judge calls that gave a verdict. */
  real: number;
}

async function judgeCandidates(
  deps: VerifierDeps & { sandbox: Sandbox },
  question: string,
  candidates: string[],
  options: ResolvedOptions,
  ctx: CallContext,
  onComparison: (c: Comparison, idx: number, invented: boolean) => void,
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
    let real = n;
    const scores = await pointwiseScores(modelCtx).catch((err: unknown) => {
      if (ctx.signal.aborted) throw err;
      if (options.onFailure === "tie") {
        real = 0;
        return new Array<number>(n).fill(0.5);
      }
      const why = err instanceof Error ? err.message : String(err);
      throw new JudgeFailedError("pointwise", why, { cause: err });
    });
    return { ranking: rankByScore(scores), scores, calls: n, real };
  }
  const base =
    options.judge === "pairwise"
      ? pairwiseJudge(modelCtx)
      : testsJudge({
          ...(options.tests as NonNullable<ResolvedOptions["tests"]>),
          sandbox: deps.sandbox,
          candidates,
          signal: ctx.signal,
        });
  const invented = new Set<string>();
  let real = 0;
  const result = await runTournament(n, guarded(base, options, ctx, invented), {
    budget: options.budget,
    seed: options.seed,
    onComparison: (c, idx) => {
      const made = invented.has(pairKey(c.a, c.b));
      if (!made) real++;
      onComparison(c, idx, made);
    },
  });
  return { ranking: result.ranking, scores: result.scores, calls: result.comparisons.length, real };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function verifierServer(deps: VerifierDeps): VerifierServer {
  const { db, config } = deps;
  const auth = deps.auth ?? new TokenAuth([]);
  const sandbox = deps.sandbox ?? sandboxFor(config);
  const outbox =
    deps.outbox ??
    new VerdictOutbox(
      db,
      deps.bus === undefined
        ? undefined
        : SpooledPublisher.open(deps.bus, {
            dir: "",
            maxBytes: config.bus.spool.maxBytes,
            logger: deps.logger,
          }),
      deps.logger,
    );
  const judgeDeps = { ...deps, sandbox };

  /** The caller's identity when the judge runs code (which needs the role); null otherwise. */
  function authorize(options: TournamentOptions | undefined, ctx: CallContext): string | null {
    if (options?.judge !== Judge.JUDGE_TESTS) return null;
    const who = auth.require(ctx.metadata, RUN_CODE_ROLE);
    ctx.logger.info({ identity: who.name }, "tests judge requested");
    return who.name;
  }

  /** Records the outcome, or the failure, as it happened; a done tournament's verdicts go to the outbox. */
  async function finish(
    rec: TournamentRecorder,
    ctx: CallContext,
    work: () => Promise<Judged>,
  ): Promise<Tournament> {
    let judged: Judged;
    try {
      judged = await work();
      // The caller stopped waiting (cancelled, past its deadline): it never saw a result, so none is stored.
      ctx.signal.throwIfAborted();
    } catch (err) {
      rec.failed(message(ctx.signal.aborted ? ctx.signal.reason : err));
      throw err;
    }
    if (judged.calls > 0 && judged.real === 0) {
      const err = new JudgeFailedError(
        "tournament",
        `none of its ${judged.calls} judge calls gave a verdict; ties invented for every one rank nothing`,
      );
      rec.failed(err.message);
      throw err;
    }
    rec.done(judged.ranking, judged.scores, judged.calls, judged.real);
    outbox.handOver();
    return loadTournament(db, rec.id) as Tournament;
  }

  return {
    rank: unary(async (request, ctx) => {
      const requestedBy = authorize(request.options, ctx);
      checkQuestion(request.question, config);
      checkCandidates(request.candidates, config);
      const options = resolveOptions(request.options, request.candidates.length, config);
      const modelId =
        options.judge === "tests"
          ? null
          : await deps.node.modelId(ctx.signal, config.tournament.judgeTimeoutMs);
      const rec = new TournamentRecorder(db, randomUUID());
      rec.start({
        id: rec.id,
        question: request.question,
        candidates: request.candidates,
        judge: options.judge,
        budget: options.budget,
        seed: options.seed,
        state: "judging",
        modelId,
        requestedBy,
      });
      const tournament = await finish(rec, ctx, () =>
        judgeCandidates(judgeDeps, request.question, request.candidates, options, ctx, (c, i, invented) =>
          rec.comparison(c, i, invented),
        ),
      );
      return { tournament };
    }),

    solve: serverStream(async function* (request: SolveRequest, ctx: CallContext) {
      const requestedBy = authorize(request.options, ctx);
      checkQuestion(request.question, config);
      checkCount(request.n, "n", config);
      const options = resolveOptions(request.options, request.n, config);
      const seed = safeUint64("sampling.seed", request.sampling?.seed);
      const modelId = await deps.node.modelId(ctx.signal, config.tournament.judgeTimeoutMs);
      const rec = new TournamentRecorder(db, randomUUID());
      rec.start({
        id: rec.id,
        question: request.question,
        candidates: [],
        judge: options.judge,
        budget: options.budget,
        seed: options.seed,
        state: "sampling",
        modelId,
        requestedBy,
      });
      const events = new Channel<SolveResponse>();
      const run = async (): Promise<void> => {
        let candidates: string[];
        try {
          candidates = await sample(deps, rec.id, request, seed, ctx, (index, text, stats) =>
            events.push({ event: { $case: "candidate", value: { index, text, stats } } }),
          );
        } catch (err) {
          rec.failed(message(ctx.signal.aborted ? ctx.signal.reason : err));
          throw err;
        }
        rec.judging(candidates, modelId);
        const tournament = await finish(rec, ctx, () =>
          judgeCandidates(judgeDeps, request.question, candidates, options, ctx, (c, i, invented) => {
            rec.comparison(c, i, invented);
            events.push({ event: { $case: "comparison", value: { ...c, invented } } });
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
      checkTournamentId(request.tournamentId);
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
 * caller sees. A seeded request gives candidate i the seed + i.
 */
async function sample(
  deps: VerifierDeps,
  id: string,
  request: SolveRequest,
  seed: number | undefined,
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
    const sampling = { ...base, ...(seed !== undefined ? { seed: String(seed + i) } : {}) };
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
