// Publishing verdicts without ever holding up a call. A done tournament's real comparisons are handed to
// the bus's SpooledPublisher, which sends them in order, keeps them (on disk under bus.spool.dir) while NATS
// is away, and leaves what it could not send for the next process. The store covers the one gap the
// publisher cannot see: a comparison is marked handed over (`published_at`) only once the publisher took
// it, so a verifier that stops between storing a tournament and handing over its verdicts hands them over
// at its next start, and a publisher that is full (its byte bound) is offered them again later. Invented
// ties and the comparisons of tournaments that did not finish are never offered. A verdict sent twice is
// stored once: its Nats-Msg-Id is the tournament id, the comparison index and both texts (verdictId).
import {
  DEFAULT_TRACE_MAX_MESSAGE_BYTES,
  type SpooledPublisher,
  type SpoolMessage,
  verdictId,
} from "@specloop/bus";
import { verdictSubject } from "@specloop/bus/internal";
import { Judge, PairwiseVerdict } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import { and, asc, eq, inArray, isNull } from "drizzle-orm";
import { comparisons, type JudgeKind, tournaments, type VerifierDb } from "./db/index.js";

/** The model id verdicts carry when the candidates came from no known model (Rank with the tests judge). */
export const UNKNOWN_MODEL_ID = "unknown";
/** Tournaments handed over per pass; a pass goes on until none is left or the publisher is full. */
const BATCH = 32;
/** After the publisher refused an offer (full), when the store's verdicts are offered again. */
const RETRY_FULL_MS = 5_000;

const PROTO_JUDGE: Record<JudgeKind, Judge> = {
  pairwise: Judge.JUDGE_PAIRWISE,
  pointwise: Judge.JUDGE_POINTWISE,
  tests: Judge.JUDGE_TESTS,
};

export interface OutboxStats {
  /** Verdicts handed to the publisher. */
  handedOver: number;
  /** Verdicts the stream can never take (an empty candidate, too large): kept in the store only. */
  unpublishable: number;
}

export class VerdictOutbox {
  readonly stats: OutboxStats = { handedOver: 0, unpublishable: 0 };
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: VerifierDb,
    private readonly publisher: SpooledPublisher | undefined,
    private readonly logger: Logger,
  ) {}

  /** Real verdicts of done tournaments not yet handed over. */
  pending(): number {
    return this.db
      .select({ idx: comparisons.idx })
      .from(comparisons)
      .innerJoin(tournaments, eq(tournaments.id, comparisons.tournamentId))
      .where(
        and(isNull(comparisons.publishedAt), eq(comparisons.invented, false), eq(tournaments.state, "done")),
      )
      .all().length;
  }

  /** Hands every waiting verdict to the publisher, oldest tournament first; never waits on NATS. */
  handOver(): void {
    if (this.publisher === undefined) return;
    for (;;) {
      const waiting = this.db
        .selectDistinct({ id: comparisons.tournamentId, finishedAt: tournaments.finishedAt })
        .from(comparisons)
        .innerJoin(tournaments, eq(tournaments.id, comparisons.tournamentId))
        .where(
          and(
            isNull(comparisons.publishedAt),
            eq(comparisons.invented, false),
            eq(tournaments.state, "done"),
          ),
        )
        .orderBy(asc(tournaments.finishedAt), asc(comparisons.tournamentId))
        .limit(BATCH)
        .all();
      if (waiting.length === 0) return;
      for (const { id } of waiting) {
        if (!this.handOverTournament(id)) {
          this.retryLater();
          return;
        }
      }
    }
  }

  /** Stops retrying; what is not handed over stays in the store for the next start. */
  close(): void {
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
  }

  /** False when the publisher is full (nothing of this tournament was handed over). */
  private handOverTournament(id: string): boolean {
    const t = this.db.select().from(tournaments).where(eq(tournaments.id, id)).get();
    if (t === undefined) return true;
    const rows = this.db
      .select()
      .from(comparisons)
      .where(
        and(
          eq(comparisons.tournamentId, id),
          isNull(comparisons.publishedAt),
          eq(comparisons.invented, false),
        ),
      )
      .orderBy(asc(comparisons.idx))
      .all();
    const messages: SpoolMessage[] = [];
    for (const c of rows) {
      const verdict = PairwiseVerdict.fromPartial({
        tournamentId: id,
        question: t.question,
        candidateA: t.candidates[c.a] ?? "",
        candidateB: t.candidates[c.b] ?? "",
        pA: c.pA,
        judge: PROTO_JUDGE[t.judge],
        modelId: t.modelId ?? UNKNOWN_MODEL_ID,
        judgedAt: c.judgedAt,
      });
      const data = PairwiseVerdict.encode(verdict).finish();
      // Consumers refuse a verdict with an empty candidate, and the stream one past its message size.
      if (
        verdict.candidateA === "" ||
        verdict.candidateB === "" ||
        data.length > DEFAULT_TRACE_MAX_MESSAGE_BYTES
      ) {
        this.stats.unpublishable++;
        this.logger.warn(
          { tournamentId: id, idx: c.idx, bytes: data.length },
          "verdict not publishable; kept in the store only",
        );
        continue;
      }
      // The comparison's index is part of the id: two samples with the same text judged against a third are
      // two comparisons.
      messages.push({ subject: verdictSubject(verdict.modelId), data, msgId: verdictId(verdict, c.idx) });
    }
    if (messages.length > 0 && !(this.publisher as SpooledPublisher).offer(messages)) {
      this.logger.warn(
        { tournamentId: id, verdicts: messages.length },
        "verdict spool full; kept in the store, offered again later",
      );
      return false;
    }
    this.stats.handedOver += messages.length;
    this.db
      .update(comparisons)
      .set({ publishedAt: new Date() })
      .where(
        and(
          eq(comparisons.tournamentId, id),
          inArray(
            comparisons.idx,
            rows.map((c) => c.idx),
          ),
        ),
      )
      .run();
    return true;
  }

  private retryLater(): void {
    if (this.retry !== undefined) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.handOver();
    }, RETRY_FULL_MS);
    this.retry.unref();
  }
}
