// Where a tournament leaves its trace: a row in the verifier's SQLite (created first, so GetTournament sees
// a running one), a row per comparison as it is judged, the outcome or the error at the end, and then the
// pairwise verdicts on NATS (SPECLOOP_VERDICTS), the dataset a V1-PairRL trainer reads.
import { type Bus, publishVerdict } from "@specloop/bus";
import { Judge, PairwiseVerdict } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import { eq } from "drizzle-orm";
import {
  comparisons,
  type JudgeKind,
  type TournamentState,
  tournaments,
  type VerifierDb,
} from "./db/index.js";
import type { Comparison } from "./tournament/index.js";

/** The model id verdicts carry when the candidates came from no known model (Rank with the tests judge). */
export const UNKNOWN_MODEL_ID = "unknown";
const PUBLISH_TIMEOUT_MS = 5_000;

export interface TournamentStart {
  id: string;
  question: string;
  candidates: string[];
  judge: JudgeKind;
  budget: number;
  seed: number;
  state: TournamentState;
  modelId: string | null;
}

const PROTO_JUDGE: Record<JudgeKind, Judge> = {
  pairwise: Judge.JUDGE_PAIRWISE,
  pointwise: Judge.JUDGE_POINTWISE,
  tests: Judge.JUDGE_TESTS,
};

export class TournamentRecorder {
  private question = "";
  private candidates: string[] = [];
  private judge: JudgeKind = "pairwise";
  private modelId: string | null = null;
  private readonly judged: { c: Comparison; at: Date }[] = [];

  constructor(
    private readonly db: VerifierDb,
    private readonly bus: Bus | undefined,
    private readonly logger: Logger,
    readonly id: string,
  ) {}

  start(t: TournamentStart): void {
    this.question = t.question;
    this.candidates = t.candidates;
    this.judge = t.judge;
    this.modelId = t.modelId;
    this.db.insert(tournaments).values(t).run();
  }

  /** The candidates are known (Solve: sampling finished); judging starts. */
  judging(candidates: string[], modelId: string | null): void {
    this.candidates = candidates;
    this.modelId = modelId;
    this.db
      .update(tournaments)
      .set({ candidates, modelId, state: "judging" })
      .where(eq(tournaments.id, this.id))
      .run();
  }

  comparison(c: Comparison, idx: number): void {
    const at = new Date();
    this.judged.push({ c, at });
    this.db
      .insert(comparisons)
      .values({ tournamentId: this.id, idx, a: c.a, b: c.b, pA: c.pA, phase: c.phase, judgedAt: at })
      .run();
  }

  done(ranking: number[], scores: number[], budget: number): void {
    this.db
      .update(tournaments)
      .set({ state: "done", ranking, scores, budget, finishedAt: new Date() })
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

  /**
   * Publishes every comparison as a verdict. The store already holds them, so a bus failure is logged and
   * does not fail the caller's request.
   */
  async publish(): Promise<number> {
    if (this.bus === undefined || this.judged.length === 0) return 0;
    let published = 0;
    for (const [idx, { c, at }] of this.judged.entries()) {
      const verdict = PairwiseVerdict.fromPartial({
        tournamentId: this.id,
        question: this.question,
        candidateA: this.candidates[c.a] ?? "",
        candidateB: this.candidates[c.b] ?? "",
        pA: c.pA,
        judge: PROTO_JUDGE[this.judge],
        modelId: this.modelId ?? UNKNOWN_MODEL_ID,
        judgedAt: at,
      });
      // Consumers (decodeVerdict) refuse a verdict with an empty candidate: such a pair stays in the store only.
      if (verdict.candidateA === "" || verdict.candidateB === "") continue;
      try {
        // The comparison's index is part of the verdict's id: two samples with the same text judged against
        // a third are two comparisons, and a re-publish of one is dropped by the stream's duplicate window.
        await publishVerdict(this.bus.js, verdict, { index: idx, timeoutMs: PUBLISH_TIMEOUT_MS });
        published++;
      } catch (err) {
        this.logger.warn({ err, tournamentId: this.id }, "verdict not published (kept in the store)");
      }
    }
    return published;
  }
}
