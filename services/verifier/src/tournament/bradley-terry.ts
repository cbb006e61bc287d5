// Scores from pairwise outcomes: a Bradley-Terry fit, P(a beats b) = sigmoid(s_a - s_b), with soft
// outcomes (a judge's probability rather than a 0/1 win) and a small Gaussian prior on each score.
// The prior keeps scores finite when a candidate wins every comparison (a perfect judge), and makes the
// fit unique when the comparison graph is not connected (unlinked groups are pulled to the same level).
// Newton's method: the objective is strictly concave, n is small (the verifier's maximum N), so an
// n-by-n solve per step is cheap and converges in a handful of steps.

export interface Outcome {
  a: number;
  b: number;
  /** Probability that a is better than b, in [0, 1]. */
  pA: number;
}

/** Strength of the prior: scores ~ N(0, 1 / ridge). */
export const DEFAULT_BT_RIDGE = 0.1;
const MAX_ITERATIONS = 100;
const TOLERANCE = 1e-9;
/** Largest change of a score in one Newton step; keeps early steps on separable data from overshooting. */
const MAX_STEP = 4;

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** The maximum a posteriori scores of n candidates given the outcomes. */
export function fitBradleyTerry(n: number, outcomes: readonly Outcome[], ridge = DEFAULT_BT_RIDGE): number[] {
  const s = new Array<number>(n).fill(0);
  if (outcomes.length === 0) return s;
  const h = new Float64Array(n * n);
  const g = new Float64Array(n);
  for (let iter = 0; iter < MAX_ITERATIONS; iter++) {
    h.fill(0);
    for (let i = 0; i < n; i++) {
      g[i] = -ridge * (s[i] as number);
      h[i * n + i] = ridge;
    }
    for (const { a, b, pA } of outcomes) {
      const p = sigmoid((s[a] as number) - (s[b] as number));
      const r = pA - p;
      g[a] = (g[a] as number) + r;
      g[b] = (g[b] as number) - r;
      const w = p * (1 - p);
      h[a * n + a] = (h[a * n + a] as number) + w;
      h[b * n + b] = (h[b * n + b] as number) + w;
      h[a * n + b] = (h[a * n + b] as number) - w;
      h[b * n + a] = (h[b * n + a] as number) - w;
    }
    const step = solveSymmetric(h, g, n);
    let largest = 0;
    for (const d of step) largest = Math.max(largest, Math.abs(d));
    const scale = largest > MAX_STEP ? MAX_STEP / largest : 1;
    for (let i = 0; i < n; i++) s[i] = (s[i] as number) + scale * (step[i] as number);
    if (largest * scale < TOLERANCE) break;
  }
  return s;
}

/** Solves H x = g for a symmetric positive definite H (Cholesky); H and g are left unchanged. */
function solveSymmetric(h: Float64Array, g: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = h[i * n + j] as number;
      for (let k = 0; k < j; k++) sum -= (l[i * n + k] as number) * (l[j * n + k] as number);
      if (i === j) l[i * n + i] = Math.sqrt(Math.max(sum, 1e-300));
      else l[i * n + j] = sum / (l[j * n + j] as number);
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sum = g[i] as number;
    for (let k = 0; k < i; k++) sum -= (l[i * n + k] as number) * (y[k] as number);
    y[i] = sum / (l[i * n + i] as number);
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let sum = y[i] as number;
    for (let k = i + 1; k < n; k++) sum -= (l[k * n + i] as number) * (x[k] as number);
    x[i] = sum / (l[i * n + i] as number);
  }
  return x;
}

/** Candidate indices by score, best first; equal scores keep index order, so the result is deterministic. */
export function rankByScore(scores: readonly number[]): number[] {
  return scores.map((_, i) => i).sort((x, y) => (scores[y] as number) - (scores[x] as number) || x - y);
}
