// The node's acceptance book: output tokens per target pass, per (drafter, speculator version, domain),
// over a recent window (an exponentially weighted mean). It answers `auto` (which drafter has been doing
// best on this domain) and fills NodeStatus.acceptance for the heartbeat and GetNodeStatus.

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
}

/** Weight of one request in the recent mean. */
const ALPHA = 0.2;

export class AcceptanceBook {
  private readonly cells = new Map<string, Cell>();
  private readonly rng: Rng;

  constructor(
    seed = 1,
    /** Share of auto requests that try a drafter other than the best so far (so a stale choice recovers). */
    private readonly explore = 0.05,
  ) {
    this.rng = new Rng(seed);
  }

  record(drafter: DrafterKind, version: string, domain: string, passes: number, tokens: number): void {
    if (passes === 0) return;
    const key = `${drafter}\u0000${version}\u0000${domain}`;
    const c = this.cells.get(key) ?? {
      drafter,
      version,
      domain,
      passes: 0,
      tokens: 0,
      ewma: tokens / passes,
    };
    c.passes += passes;
    c.tokens += tokens;
    c.ewma = c.ewma + ALPHA * (tokens / passes - c.ewma);
    this.cells.set(key, c);
  }

  /** Recent tokens per pass of a drafter on a domain (any version), or undefined when never tried. */
  recent(drafter: DrafterKind, domain: string): number | undefined {
    let best: number | undefined;
    for (const c of this.cells.values()) {
      if (c.drafter === drafter && c.domain === domain) best = Math.max(best ?? 0, c.ewma);
    }
    return best;
  }

  /** auto: an untried candidate first, else the best recent one, with a little exploration. */
  choose(candidates: readonly DrafterKind[], domain: string): DrafterKind {
    if (candidates.length === 0) return "none";
    const untried = candidates.find((d) => this.recent(d, domain) === undefined);
    if (untried !== undefined) return untried;
    if (candidates.length > 1 && this.rng.next() < this.explore) {
      return candidates[this.rng.nextU32() % candidates.length] as DrafterKind;
    }
    let best = candidates[0] as DrafterKind;
    for (const d of candidates)
      if ((this.recent(d, domain) ?? 0) > (this.recent(best, domain) ?? 0)) best = d;
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
