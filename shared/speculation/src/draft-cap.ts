// Whether drafting pays this step, measured rather than assumed. The budget policy (budget.ts) asks "how many
// nodes would this sequence accept"; it cannot see that a node is a row of the target pass, and that rows are
// cheap on some machines and batch sizes and dear on others: on the H100 a pass of 9 rows at batch 1 cost what
// one row did, while a batch of 16 going from 16 to 32 rows cost 2.5x before the chunked matrix-vector kernel
// (bench/results/spec-decode-webgpu-h100.md); on the CPU each extra row costs 0.35-0.6 of a row. Speculation
// that adds more time than tokens makes serving slower than no speculation at all.
//
// So the decoder caps every sequence's budget at one of a few caps (0: no speculation, 1, 2, 4, none) and
// keeps, per cap and per batch size (powers of two of the verifying sequences), an EWMA of what steps run
// under it delivered: committed tokens per millisecond of drafting + target pass. Each step takes the cap with
// the best rate (a multi-armed bandit): each cap is tried `minSamples` times first, and every
// `exploreEvery`-th step tries the next other cap in turn, so a cap whose rate changed (another mix of
// requests, a drafter that learned) is seen again. Measuring the outcome directly needs no model of how
// acceptance falls with depth or how pass time grows with rows, which differ per drafter, request and
// machine; a model fitted from a few passes shut drafting off on its first unlucky ones. Pure bookkeeping, no
// clock: the decoder passes the times in.

export interface DraftCapOptions {
  /** Weight of the newest step in each cap's rate EWMA (the plain mean over the first 1 / alpha steps). */
  alpha: number;
  /** Steps each cap is tried before the best is exploited. */
  minSamples: number;
  /** Every this many steps (per batch size), another cap is tried. */
  exploreEvery: number;
}

export function defaultDraftCapOptions(): DraftCapOptions {
  return { alpha: 0.1, minSamples: 4, exploreEvery: 8 };
}

/** The caps tried: no speculation, 1, 2 and 4 nodes, and the policy's budgets as they are. */
export const DRAFT_CAPS: readonly number[] = Object.freeze([Number.POSITIVE_INFINITY, 0, 1, 2, 4]);

export interface CapDecision {
  /** The cap on every sequence's budget this step (Infinity: none). */
  cap: number;
  /** "warmup": a cap still being tried its first times; "explore": a scheduled try; "best": exploitation. */
  reason: "warmup" | "explore" | "best";
}

interface Arm {
  rate: number;
  n: number;
}

/** The arms of one batch size. */
class Bandit {
  readonly arms: Arm[] = DRAFT_CAPS.map(() => ({ rate: 0, n: 0 }));
  steps = 0;
  explored = 0;
}

export class DraftCapTuner {
  private readonly options: DraftCapOptions;
  private readonly bandits = new Map<number, Bandit>();

  constructor(options: Partial<DraftCapOptions> = {}) {
    this.options = { ...defaultDraftCapOptions(), ...options };
  }

  /** The cap for a step in which `sequences` sequences verify (and some would draft). */
  choose(sequences: number): CapDecision {
    const b = this.bandit(sequences);
    b.steps++;
    const fresh = b.arms.findIndex((a) => a.n < this.options.minSamples);
    if (fresh >= 0) return { cap: DRAFT_CAPS[fresh] as number, reason: "warmup" };
    const best = this.bestArm(b);
    if (b.steps % this.options.exploreEvery === 0) {
      // The other arms in turn.
      const others = DRAFT_CAPS.map((_, i) => i).filter((i) => i !== best);
      const i = others[b.explored++ % others.length] as number;
      return { cap: DRAFT_CAPS[i] as number, reason: "explore" };
    }
    return { cap: DRAFT_CAPS[best] as number, reason: "best" };
  }

  /** What a step run under `cap` with `sequences` verifying delivered: `tokens` committed in `ms`. */
  observe(sequences: number, cap: number, tokens: number, ms: number): void {
    const i = DRAFT_CAPS.indexOf(cap);
    if (i < 0 || !(ms > 0) || !Number.isFinite(ms) || !(tokens >= 0)) return;
    const a = this.bandit(sequences).arms[i] as Arm;
    a.n++;
    a.rate += Math.max(this.options.alpha, 1 / a.n) * (tokens / ms - a.rate);
  }

  /** Tokens per ms each cap has delivered at this batch size (NaN: not tried), in DRAFT_CAPS order. */
  rates(sequences: number): number[] {
    return this.bandit(sequences).arms.map((a) => (a.n === 0 ? Number.NaN : a.rate));
  }

  private bestArm(b: Bandit): number {
    let best = 0;
    b.arms.forEach((a, i) => {
      if (a.rate > (b.arms[best] as Arm).rate) best = i;
    });
    return best;
  }

  /** One bandit per power of two of the batch: a step's rate grows with the sequences in it. */
  private bandit(sequences: number): Bandit {
    const key = 2 ** Math.floor(Math.log2(Math.max(1, sequences)));
    let b = this.bandits.get(key);
    if (b === undefined) {
      b = new Bandit();
      this.bandits.set(key, b);
    }
    return b;
  }
}
