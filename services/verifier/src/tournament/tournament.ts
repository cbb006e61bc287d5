// V1-Infer's pairwise tournament as a pure function over candidate indices and a judge. It knows nothing
// of models or gRPC: the service (and the simulation benchmark) hand it a judge.
//
// Phase 1, topology coverage: a random disjoint pairing, then one link per pair into a single cycle through
// all pairs (winner meets winner, loser meets loser, alternately, so the links already compare like with
// like). Every candidate is then compared twice and the graph is connected, for n calls; with fewer calls the
// closing link goes first, leaving a path (still connected at n - 1 calls).
// Phase 2, Swiss refinement: fit Bradley-Terry scores, pair the candidates whose comparison is most uncertain
// (closest scores), weighted toward those in contention for first place, in small rounds, refit, repeat until
// the budget is spent (see swissRound).
// No pair is judged twice: once every pair has been judged the tournament ends early, under budget, since
// a deterministic judge (the model's, at temperature 0) would only repeat itself.
import { InvalidArgumentError } from "@specloop/runtime";
import { InvalidVerdictError } from "../errors.js";
import { fitBradleyTerry, rankByScore, sigmoid } from "./bradley-terry.js";
import { Rng } from "./rng.js";

/** 1 = topology coverage, 2 = Swiss refinement. */
export type Phase = 1 | 2;

export interface Comparison {
  a: number;
  b: number;
  /** Probability that a is better than b, from the judge. */
  pA: number;
  phase: Phase;
}

/** Probability that candidate a is better than candidate b. */
export type PairJudge = (a: number, b: number) => Promise<number>;

export interface TournamentOptions {
  /** Most judge calls; the tournament may use fewer (every pair judged). */
  budget: number;
  /** Seeds the random first round; the same seed and judge replay the same tournament. */
  seed?: number;
  /** Told of each comparison as it is judged, in order (the service streams them). */
  onComparison?: (comparison: Comparison, index: number) => void;
}

export interface TournamentResult {
  /** Candidate indices, best first; ranking[0] is the chosen one. */
  ranking: number[];
  /** Bradley-Terry score per candidate index. */
  scores: number[];
  comparisons: Comparison[];
}

export const DEFAULT_TOURNAMENT_SEED = 0;
/**
 * A Swiss round pairs at most ceil(n / SWISS_ROUND_DIVISOR) disjoint pairs before the scores are refitted.
 * Small rounds spend the budget where the last verdicts point; bench/results/verifier-tournament.md measured
 * rounds of n/2 (classic Swiss), n/4, n/8 and n/16 pairs, and n/16 picked the best most often.
 */
export const SWISS_ROUND_DIVISOR = 16;

/**
 * The next Swiss round: unjudged pairs by priority, greedily made disjoint. A pair's priority is how
 * uncertain its outcome is, p (1 - p) with p = sigmoid(s_a - s_b) (largest for the closest scores: V1's
 * "most uncertain decisions"), times how much the two are in contention for first place,
 * exp(s_a - s_max) + exp(s_b - s_max); without that weight the budget goes on ordering the bottom of the
 * field, which does not change the pick.
 */
export function swissRound(
  scores: readonly number[],
  judged: { judged(a: number, b: number): boolean },
  size: number,
): [number, number][] {
  const n = scores.length;
  const top = Math.max(...scores);
  const contention = scores.map((x) => Math.exp(x - top));
  const candidates: { priority: number; a: number; b: number }[] = [];
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      if (judged.judged(a, b)) continue;
      const p = sigmoid((scores[a] as number) - (scores[b] as number));
      const priority = ((contention[a] as number) + (contention[b] as number)) * p * (1 - p);
      candidates.push({ priority, a, b });
    }
  }
  // Ties in priority go to the lower indices, so the round is deterministic.
  candidates.sort((x, y) => y.priority - x.priority || x.a - y.a || x.b - y.b);
  const busy = new Set<number>();
  const round: [number, number][] = [];
  for (const { a, b } of candidates) {
    if (round.length >= size) break;
    if (busy.has(a) || busy.has(b)) continue;
    round.push([a, b]);
    busy.add(a).add(b);
  }
  return round;
}

export async function runTournament(
  n: number,
  judge: PairJudge,
  options: TournamentOptions,
): Promise<TournamentResult> {
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("n", `must be an integer >= 1, got ${n}`);
  const { budget } = options;
  if (!Number.isInteger(budget) || budget < 0) {
    throw new InvalidArgumentError("budget", `must be an integer >= 0, got ${budget}`);
  }
  const seed = options.seed ?? DEFAULT_TOURNAMENT_SEED;
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new InvalidArgumentError("seed", `must be a non-negative safe integer, got ${seed}`);
  }
  const t = new Tally(n, budget, judge, options.onComparison);
  const rng = new Rng(seed);

  // Phase 1: random disjoint pairs; an odd n leaves one candidate on its own.
  const order = rng.shuffled(range(n));
  const pairs: [number, number][] = [];
  for (let i = 0; i + 1 < n; i += 2) pairs.push([order[i] as number, order[i + 1] as number]);
  await t.round(pairs, 1);

  // Link the groups (pairs, and the odd one out) into one cycle. A group is entered at one end and left at
  // the other; walking it loser-first, then winner-first, alternately makes consecutive links W-W, L-L.
  const groups = pairs.map(([a, b]) => (t.beat(a, b) ? { w: a, l: b } : { w: b, l: a }));
  if (n % 2 === 1) groups.push({ w: order[n - 1] as number, l: order[n - 1] as number });
  const cycle = rng.shuffled(groups);
  if (cycle.length >= 2) {
    const exits = cycle.map((g, k) => (k % 2 === 0 ? g.w : g.l));
    const entries = cycle.map((g, k) => (k % 2 === 0 ? g.l : g.w));
    const links: [number, number][] = [];
    for (let k = 0; k < cycle.length; k++) {
      const to = entries[(k + 1) % cycle.length] as number;
      links.push([exits[k] as number, to]);
    }
    // The closing link last: a budget that stops one short still leaves a connected path.
    await t.round(
      links.filter(([a, b]) => a !== b),
      1,
    );
  }

  // Phase 2: small Swiss rounds on the current scores until the budget is spent or every pair is judged.
  const roundSize = Math.max(1, Math.ceil(n / SWISS_ROUND_DIVISOR));
  while (t.remaining > 0 && !t.allJudged) {
    await t.round(swissRound(t.scores(), t, roundSize), 2);
  }

  const scores = t.scores();
  return { ranking: rankByScore(scores), scores, comparisons: t.comparisons };
}

/** What has been judged so far, and the budget left. */
class Tally {
  readonly comparisons: Comparison[] = [];
  private readonly seen = new Set<number>();
  private readonly pairCount: number;
  remaining: number;

  constructor(
    private readonly n: number,
    budget: number,
    private readonly judge: PairJudge,
    private readonly onComparison: TournamentOptions["onComparison"],
  ) {
    this.remaining = budget;
    this.pairCount = (n * (n - 1)) / 2;
  }

  get allJudged(): boolean {
    return this.seen.size >= this.pairCount;
  }

  judged(a: number, b: number): boolean {
    return this.seen.has(this.key(a, b));
  }

  /** Whether a was judged better than b (ties go to a, the first asked). */
  beat(a: number, b: number): boolean {
    const c = this.comparisons.find((x) => (x.a === a && x.b === b) || (x.a === b && x.b === a));
    if (c === undefined) return true;
    return c.a === a ? c.pA >= 0.5 : c.pA <= 0.5;
  }

  scores(): number[] {
    return fitBradleyTerry(this.n, this.comparisons);
  }

  /**
   * Judges the pairs not yet judged, as many as the budget allows, concurrently; records them in the
   * round's order whatever order the judge answers in, so a seed replays the same tournament.
   */
  async round(pairs: readonly [number, number][], phase: Phase): Promise<void> {
    const unjudged = pairs.filter(([a, b]) => !this.judged(a, b)).slice(0, this.remaining);
    if (unjudged.length === 0) return;
    this.remaining -= unjudged.length;
    for (const [a, b] of unjudged) this.seen.add(this.key(a, b));
    const verdicts = await Promise.all(unjudged.map(([a, b]) => this.judge(a, b)));
    unjudged.forEach(([a, b], k) => {
      const pA = verdicts[k] as number;
      if (!(Number.isFinite(pA) && pA >= 0 && pA <= 1)) {
        throw new InvalidVerdictError(`judge answered ${pA} for (${a}, ${b}); expected a probability`);
      }
      const c: Comparison = { a, b, pA, phase };
      this.comparisons.push(c);
      this.onComparison?.(c, this.comparisons.length - 1);
    });
  }

  private key(a: number, b: number): number {
    return a < b ? a * this.n + b : b * this.n + a;
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
