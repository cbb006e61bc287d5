// Token choice from one row of host logits: greedy (temperature 0), or sampling from the softmax at a
// temperature restricted to the top-k tokens and then to the top-p nucleus. samplingProbs gives the
// exact distribution sample() draws from, which rejection sampling needs.
import type { Rng } from "./rng.js";

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** Keep only the k most likely tokens (0 or absent: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose mass reaches p (1 or absent: all). */
  topP?: number;
}

export const GREEDY: SamplingParams = { temperature: 0 };

export function checkSamplingParams(p: SamplingParams): void {
  if (!(Number.isFinite(p.temperature) && p.temperature >= 0)) {
    throw new RangeError(`temperature must be >= 0, got ${p.temperature}`);
  }
  if (p.topK !== undefined && !(Number.isInteger(p.topK) && p.topK >= 0)) {
    throw new RangeError(`top-k must be a non-negative integer, got ${p.topK}`);
  }
  if (p.topP !== undefined && !(p.topP > 0 && p.topP <= 1))
    throw new RangeError(`top-p must be in (0, 1], got ${p.topP}`);
}

/** Index of the largest logit; the lowest index on ties. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if ((logits[i] as number) > (logits[best] as number)) best = i;
  return best;
}

/**
 * log(sum(exp(row))), in f64 with the row's maximum subtracted first, so that exp never overflows and the
 * largest term is exactly 1. NaN if any value is NaN; otherwise a row whose maximum is not finite gives that
 * maximum (-Infinity for an empty row or one of -Infinity only, Infinity if any value is).
 */
export function logSumExp(row: ArrayLike<number>): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (v > max) max = v;
    else if (Number.isNaN(v)) return Number.NaN;
  }
  if (!Number.isFinite(max)) return max;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp((row[i] as number) - max);
  return max + Math.log(sum);
}

/** log softmax(logits / temperature), in f64. */
export function logSoftmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const out = Float64Array.from(logits, (v) => v / temperature);
  const logZ = logSumExp(out);
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) - logZ;
  return out;
}

/** Token ids by descending logit, ties by ascending id (a stable order). */
function ranked(logits: ArrayLike<number>): number[] {
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  return ids.sort((a, b) => (logits[b] as number) - (logits[a] as number) || a - b);
}

/**
 * The distribution sample() draws from: one-hot on the argmax for greedy, else softmax(logits / T) with
 * everything outside top-k and the top-p nucleus set to 0 and the rest renormalised.
 */
export function samplingProbs(logits: ArrayLike<number>, params: SamplingParams): Float64Array {
  checkSamplingParams(params);
  const probs = new Float64Array(logits.length);
  if (params.temperature === 0) {
    probs[argmax(logits)] = 1;
    return probs;
  }
  const logp = logSoftmax(logits, params.temperature);
  const order = ranked(logits);
  const k = params.topK ? Math.min(params.topK, order.length) : order.length;
  const topP = params.topP ?? 1;
  // Top-p is applied to the top-k distribution (as transformers' warpers chain): keep tokens in rank
  // order while the mass before them is short of top-p of the top-k mass, so at least one is kept.
  let topKMass = 0;
  for (let r = 0; r < k; r++) topKMass += Math.exp(logp[order[r] as number] as number);
  let mass = 0;
  let kept = 0;
  while (kept < k && (kept === 0 || mass < topP * topKMass)) {
    mass += Math.exp(logp[order[kept] as number] as number);
    kept++;
  }
  for (let r = 0; r < kept; r++) {
    const id = order[r] as number;
    probs[id] = Math.exp(logp[id] as number) / mass;
  }
  return probs;
}

/** Draws one token id from `probs` (which sum to 1) with one uniform number. */
export function drawFrom(probs: ArrayLike<number>, rng: Rng): number {
  const u = rng.next();
  let cum = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i] as number;
    if (p <= 0) continue;
    cum += p;
    last = i;
    if (u < cum) return i;
  }
  // Rounding left the total just under 1 and u above it: the last token with mass.
  return last;
}

/** One token from a row of logits. Greedy never touches the rng. */
export function sample(logits: ArrayLike<number>, params: SamplingParams, rng: Rng): number {
  if (params.temperature === 0) return argmax(logits);
  return drawFrom(samplingProbs(logits, params), rng);
}
