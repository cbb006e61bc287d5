// The node's acceptance book, per (drafter, speculator version, domain) over a recent window (exponentially
// weighted means): output tokens per target pass (what NodeStatus.acceptance and the heartbeat report, and
// what a collapse shows in) and decode tokens per second of the requests (what users feel). `auto` picks by
// the second, with `none` among the candidates, so it never settles on a drafter slower than no speculation.
//
// Who decides what (the node's three adaptive controllers, one goal: tokens per second):
// - this book: which drafter a request gets (`auto`), per domain, from requests' decode tokens per second;
// - the budget policy (speculation budget.ts): how many nodes a sequence drafts this step, from its own
//   acceptance (more nodes only where they are being accepted);
// - the DraftCapTuner (speculation draft-cap.ts, opt-in): a cap on every budget at this batch size, from the
//   committed tokens per millisecond each cap delivered.

import { Rng } from "@specloop/engine";
import { type AcceptanceStat, drafterToProto } from "@specloop/proto";
import type { DrafterKind } from "@specloop/speculation";

interface Cell {
  drafter: DrafterKind;
  version: string;
  domain: string;
  passes: number;
  tokens: number;
  /** Recent output tokens per pass. */
  ewma: number;
  /** Recent decode tokens per second of a request. */
  tokensPerSecond: number;
}

/** Weight of one request in the recent mean. */
const ALPHA = 0.2;
/**
 * Versions kept per (drafter, domain): the newest. A trainer publishes a version every few minutes for as
 * long as the node runs; the book (and the heartbeat that reports it) must not grow with them.
 */
export const VERSIONS_KEPT = 4;

export class AcceptanceBook {
  private readonly cells = new Map<string, Cell>();
  /**
   * Recent decode tokens per second per (drafter, domain), over every version: what `auto` chooses by. Per
   * version, a drafter whose versions change every minute would be judged by its luckiest single request.
   */
  private readonly pooled = new Map<string, number>();
  /** auto's choices per domain so far, and per (drafter, domain) that count when it was last measured. */
  private readonly choices = new Map<string, number>();
  private readonly measuredAt = new Map<string, number>();
  private readonly rng: Rng;

  constructor(
    seed = 1,
    /** Share of auto requests that try a drafter other than the best so far (so a stale choice recovers). */
    private readonly explore = 0.05,
    /**
     * A candidate worth trying that auto has not measured on a domain for this many of its choices there is
     * measured again: a drafter that once ran on a slow moment is not left out for good on 5% exploration.
     */
    private readonly refreshEvery = 32,
  ) {
    this.rng = new Rng(seed);
  }

  record(
    drafter: DrafterKind,
    version: string,
    domain: string,
    passes: number,
    tokens: number,
    decodeTokensPerSecond: number,
  ): void {
    if (passes === 0) return;
    const key = `${drafter}\u0000${version}\u0000${domain}`;
    if (!this.cells.has(key)) this.forgetOldVersions(drafter, domain);
    const c = this.cells.get(key) ?? {
      drafter,
      version,
      domain,
      passes: 0,
      tokens: 0,
      ewma: tokens / passes,
      tokensPerSecond: decodeTokensPerSecond,
    };
    c.passes += passes;
    c.tokens += tokens;
    c.ewma = c.ewma + ALPHA * (tokens / passes - c.ewma);
    c.tokensPerSecond = c.tokensPerSecond + ALPHA * (decodeTokensPerSecond - c.tokensPerSecond);
    this.cells.set(key, c);
    const pooledKey = `${drafter}\u0000${domain}`;
    const p = this.pooled.get(pooledKey);
    const now = this.choices.get(domain) ?? 0;
    // A mean last updated refreshEvery choices ago says little about now: the new measurement replaces it.
    const stale = now - (this.measuredAt.get(pooledKey) ?? now) > this.refreshEvery;
    this.pooled.set(
      pooledKey,
      p === undefined || stale ? decodeTokensPerSecond : p + ALPHA * (decodeTokensPerSecond - p),
    );
    this.measuredAt.set(pooledKey, now);
  }

  /** Makes room for a new version of (drafter, domain): the oldest go past VERSIONS_KEPT - 1. */
  private forgetOldVersions(drafter: DrafterKind, domain: string): void {
    const same = [...this.cells.entries()].filter(([, c]) => c.drafter === drafter && c.domain === domain);
    for (const [key] of same.slice(0, Math.max(0, same.length - (VERSIONS_KEPT - 1)))) this.cells.delete(key);
  }

  /** Recent decode tokens per second of a drafter on a domain (all its versions), or undefined if untried. */
  recent(drafter: DrafterKind, domain: string): number | undefined {
    return this.pooled.get(`${drafter}\u0000${domain}`);
  }

  /**
   * Whether a drafter untried on a domain is worth a request there: yes unless, on the domains where both it
   * and `none` were measured, it was slower than `none` on average (then only exploration tries it: a new
   * domain does not pay a slow drafter's trial again).
   */
  private worthTrying(drafter: DrafterKind): boolean {
    if (drafter === "none") return true;
    const ratios: number[] = [];
    for (const [key, tps] of this.pooled) {
      const [d, domain] = key.split("\u0000") as [string, string];
      const none = this.pooled.get(`none\u0000${domain}`);
      if (d === drafter && none !== undefined && none > 0) ratios.push(tps / none);
    }
    return ratios.length === 0 || ratios.reduce((a, b) => a + b, 0) / ratios.length >= 1;
  }

  /**
   * auto: an untried candidate worth trying first, then one not measured here for `refreshEvery` choices,
   * else the best recent one on the domain, with a little exploration (which also gives a drafter slower
   * elsewhere its chance on this domain).
   */
  choose(candidates: readonly DrafterKind[], domain: string): DrafterKind {
    if (candidates.length === 0) return "none";
    const n = (this.choices.get(domain) ?? 0) + 1;
    this.choices.set(domain, n);
    const untried = candidates.find((d) => this.recent(d, domain) === undefined && this.worthTrying(d));
    if (untried !== undefined) return untried;
    // Measured here before, but not lately: once per refreshEvery choices, whatever it measured then.
    const stale = candidates.find(
      (d) =>
        this.recent(d, domain) !== undefined &&
        n - (this.measuredAt.get(`${d}\u0000${domain}`) ?? 0) > this.refreshEvery,
    );
    if (stale !== undefined) return stale;
    if (candidates.length > 1 && this.rng.next() < this.explore) {
      return candidates[this.rng.nextU32() % candidates.length] as DrafterKind;
    }
    const tried = candidates.filter((d) => this.recent(d, domain) !== undefined);
    let best = (tried[0] ?? "none") as DrafterKind;
    for (const d of tried) if ((this.recent(d, domain) ?? 0) > (this.recent(best, domain) ?? 0)) best = d;
    return best;
  }

  stats(): AcceptanceStat[] {
    return [...this.cells.values()].map((c) => ({
      drafter: drafterToProto(c.drafter),
      speculatorVersion: c.version,
      domain: c.domain,
      targetPasses: c.passes,
      outputTokens: c.tokens,
      acceptedPerPass: c.ewma,
    }));
  }
}
