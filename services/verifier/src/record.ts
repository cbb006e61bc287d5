// Where a tournament leaves its trace: a row in the verifier's SQLite (created first, so GetTournament sees
// a running one), a row per comparison as it is judged (an invented tie marked as such), and the outcome or
// the error at the end. The store is also the verdict spool: the real comparisons of a done tournament are
// sent to NATS (SPECLOOP_VERDICTS) by the VerdictSpool in the background, never on a call's path.
import { eq } from "drizzle-orm";
import {
  comparisons,
  type JudgeKind,
  type TournamentState,
  tournaments,
  type VerifierDb,
} from "./db/index.js";
import type { Comparison } from "./tournament/index.js";

export interface TournamentStart {
  id: string;
  question: string;
  candidates: string[];
  judge: JudgeKind;
  budget: number;
  seed: number;
  state: TournamentState;
  modelId: string | null;
  /** The authenticated identity that asked; null when the call needed none. */
  requestedBy: string | null;
}

/** UTF-8 bytes of a tournament's text, what retention's byte bound counts. */
export function textBytes(question: string, candidates: readonly string[]): number {
  return Buffer.byteLength(question, "utf8") + Buffer.byteLength(JSON.stringify(candidates), "utf8");
}

export class TournamentRecorder {
  private question = "";

  constructor(
    private readonly db: VerifierDb,
    readonly id: string,
  ) {}

  start(t: TournamentStart): void {
    this.question = t.question;
    this.db
      .insert(tournaments)
      .values({ ...t, sizeBytes: textBytes(t.question, t.candidates) })
      .run();
  }

  /** The candidates are known (Solve: sampling finished); judging starts. */
  judging(candidates: string[], modelId: string | null): void {
    this.db
      .update(tournaments)
      .set({ candidates, modelId, state: "judging", sizeBytes: textBytes(this.question, candidates) })
      .where(eq(tournaments.id, this.id))
      .run();
  }

  comparison(c: Comparison, idx: number, invented: boolean): void {
    this.db
      .insert(comparisons)
      .values({
        tournamentId: this.id,
        idx,
        a: c.a,
        b: c.b,
        pA: c.pA,
        phase: c.phase,
        judgedAt: new Date(),
        invented,
      })
      .run();
  }

  done(ranking: number[], scores: number[], budget: number, realVerdicts: number): void {
    this.db
      .update(tournaments)
      .set({ state: "done", ranking, scores, budget, realVerdicts, finishedAt: new Date() })
      .where(eq(tournaments.id, this.id))
      .run();
  }

  failed(error: string): void {
    this.db
      .update(tournaments)
      .set({ state: "failed", error, finishedAt: new Date() })
      .where(eq(tournaments.id, this.id))
      .run();
  }
}
