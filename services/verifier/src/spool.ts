// Publishing verdicts without ever holding up a call: the verifier's store is the spool. A done
// tournament's real comparisons wait there (published_at is null) until this drains them to the verdict
// stream, oldest tournament first, one at a time, each marked once JetStream acknowledged it. With NATS
// down a publish fails after its timeout and the drain backs off (doubling, up to RETRY_MAX_MS) and tries
// again; what is still waiting at shutdown goes at the next start. Invented ties and the comparisons of
// tournaments that did not finish are never sent. A re-send after a crash between the ack and the mark is
// dropped by the stream's duplicate window (the message id is the tournament id and the comparison index).
import { type Bus, InvalidMessageError, MessageTooLargeError, publishVerdict } from "@specloop/bus";
import { Judge, PairwiseVerdict } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import { and, asc, eq, inArray, isNull } from "drizzle-orm";
import { comparisons, type JudgeKind, tournaments, type VerifierDb } from "./db/index.js";

/** The model id verdicts carry when the candidates came from no known model (Rank with the tests judge). */
export const UNKNOWN_MODEL_ID = "unknown";
export const PUBLISH_TIMEOUT_MS = 5_000;
const BATCH = 64;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 30_000;

const PROTO_JUDGE: Record<JudgeKind, Judge> = {
  pairwise: Judge.JUDGE_PAIRWISE,
  pointwise: Judge.JUDGE_POINTWISE,
  tests: Judge.JUDGE_TESTS,
};

export interface SpoolStats {
  published: number;
  /** Verdicts the stream can never take (an empty candidate, too large): left in the store only. */
  unpublishable: number;
  /** Publish attempts that failed and will be retried. */
  failures: number;
}

export class VerdictSpool {
  readonly stats: SpoolStats = { published: 0, unpublishable: 0, failures: 0 };
  private draining: Promise<void> | undefined;
  private again = false;
  private retryMs = RETRY_MIN_MS;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly db: VerifierDb,
    private readonly bus: Bus | undefined,
    private readonly logger: Logger,
    private readonly options: { timeoutMs?: number } = {},
  ) {}

  /** Verdicts waiting to be sent. */
  pending(): number {
    return this.waiting(Number.MAX_SAFE_INTEGER).length;
  }

  /** Starts a drain (or asks the running one to look again); never waits for it. */
  nudge(): void {
    if (this.closed || this.bus === undefined) return;
    if (this.draining !== undefined) {
      this.again = true;
      return;
    }
    if (this.retry !== undefined) {
      clearTimeout(this.retry);
      this.retry = undefined;
    }
    this.draining = this.drain()
      .catch((err: unknown) => this.logger.error({ err }, "verdict spool: drain failed"))
      .finally(() => {
        this.draining = undefined;
        if (this.again) {
          this.again = false;
          this.nudge();
        }
      });
  }

  /** Stops draining; waits at most `timeoutMs` for the send in flight. What is left goes next start. */
  async close(timeoutMs = 2_000): Promise<void> {
    this.closed = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
    const running = this.draining;
    if (running === undefined) return;
    await Promise.race([running, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  private waiting(limit: number) {
    return this.db
      .select({ tournamentId: comparisons.tournamentId, idx: comparisons.idx })
      .from(comparisons)
      .innerJoin(tournaments, eq(tournaments.id, comparisons.tournamentId))
      .where(
        and(isNull(comparisons.publishedAt), eq(comparisons.invented, false), eq(tournaments.state, "done")),
      )
      .orderBy(asc(tournaments.finishedAt), asc(comparisons.tournamentId), asc(comparisons.idx))
      .limit(limit)
      .all();
  }

  private async drain(): Promise<void> {
    const bus = this.bus as Bus;
    for (;;) {
      if (this.closed) return;
      const batch = this.waiting(BATCH);
      if (batch.length === 0) return;
      const ids = [...new Set(batch.map((b) => b.tournamentId))];
      const owners = new Map(
        this.db
          .select()
          .from(tournaments)
          .where(inArray(tournaments.id, ids))
          .all()
          .map((t) => [t.id, t]),
      );
      for (const { tournamentId, idx } of batch) {
        if (this.closed) return;
        const t = owners.get(tournamentId);
        const c = this.db
          .select()
          .from(comparisons)
          .where(and(eq(comparisons.tournamentId, tournamentId), eq(comparisons.idx, idx)))
          .get();
        if (t === undefined || c === undefined) continue; // pruned meanwhile
        const verdict = PairwiseVerdict.fromPartial({
          tournamentId,
          question: t.question,
          candidateA: t.candidates[c.a] ?? "",
          candidateB: t.candidates[c.b] ?? "",
          pA: c.pA,
          judge: PROTO_JUDGE[t.judge],
          modelId: t.modelId ?? UNKNOWN_MODEL_ID,
          judgedAt: c.judgedAt,
        });
        try {
          // The comparison's index is part of the verdict's id: two samples with the same text judged
          // against a third are two comparisons, and a re-send of one is dropped by the duplicate window.
          await publishVerdict(bus.js, verdict, {
            index: idx,
            timeoutMs: this.options.timeoutMs ?? PUBLISH_TIMEOUT_MS,
          });
          this.stats.published++;
        } catch (err) {
          if (err instanceof InvalidMessageError || err instanceof MessageTooLargeError) {
            // Consumers refuse such a verdict (an empty candidate, say): it stays in the store only.
            this.stats.unpublishable++;
            this.logger.warn(
              { err, tournamentId, idx },
              "verdict spool: not publishable; kept in the store only",
            );
          } else {
            this.stats.failures++;
            this.logger.warn(
              { err, tournamentId, idx, retryMs: this.retryMs },
              "verdict spool: publish failed; will retry",
            );
            this.scheduleRetry();
            return;
          }
        }
        this.retryMs = RETRY_MIN_MS;
        this.db
          .update(comparisons)
          .set({ publishedAt: new Date() })
          .where(and(eq(comparisons.tournamentId, tournamentId), eq(comparisons.idx, idx)))
          .run();
      }
    }
  }

  private scheduleRetry(): void {
    if (this.closed) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.nudge();
    }, wait);
    this.retry.unref();
  }
}
