// The Verifier gRPC API. GetTournament reads the verifier's store; Rank and Solve run the V1 tournament,
// which comes with issue 7: until then they answer UNIMPLEMENTED, never a made-up ranking.
import { Judge, type Tournament, TournamentState, type VerifierServer } from "@specloop/proto";
import {
  InvalidArgumentError,
  NotFoundError,
  serverStream,
  UnimplementedError,
  unary,
} from "@specloop/runtime";
import { asc, eq } from "drizzle-orm";
import {
  comparisons,
  type JudgeKind,
  type TournamentState as StoredState,
  tournaments,
  type VerifierDb,
} from "./db/index.js";

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

export function verifierServer(db: VerifierDb): VerifierServer {
  return {
    rank: unary(async () => {
      throw new UnimplementedError("Rank: the V1 tournament is not in this verifier yet");
    }),
    solve: serverStream(async function* () {
      yield* [];
      throw new UnimplementedError("Solve: the V1 tournament is not in this verifier yet");
    }),
    getTournament: unary(async (request) => {
      if (request.tournamentId === "") throw new InvalidArgumentError("tournament_id", "must not be empty");
      const tournament = loadTournament(db, request.tournamentId);
      if (tournament === undefined) throw new NotFoundError(`tournament ${request.tournamentId} not found`);
      return { tournament };
    }),
  };
}
