// Soft cross-entropy to a target distribution, the eagle head's anchor objective (forward KL to the
// target: KL(p || q) = CE(p, q) - H(p), with the same gradient in the logits, q - p). The head's logits
// cover the trained vocabulary: the target's whole vocabulary, or a reduced draft vocabulary given as a
// d2t map (draft id i is target id d2t[i], EAGLE-3's most frequent tokens). The target's distribution
// comes as its full-vocabulary logits (the trainer's own copy of the target) or as top-k logprobs (what a
// trace carries), and is restricted to the trained vocabulary here.

/** A target distribution over the trained vocabulary (its columns), for one position. */
export interface TargetRow {
  /** Renormalised over the trained vocabulary: what the KL pulls the head towards. Sums to 1. */
  train: Float64Array;
  /** The target's own probability of each trained token (not renormalised): acceptance is sum min(p, q). */
  full: Float64Array;
  /** Whether the target's most likely token is in the trained vocabulary (EAGLE-3 masks the row if not). */
  argmaxInside: boolean;
  /** The target's most likely token (a target id). */
  argmax: number;
}

/** target id -> draft column, -1 outside: the inverse of d2t. */
export function inverseVocab(d2t: Int32Array, vocabSize: number): Int32Array {
  const t2d = new Int32Array(vocabSize).fill(-1);
  d2t.forEach((id, i) => {
    if (!(id >= 0 && id < vocabSize))
      throw new RangeError(`draft vocabulary: id ${id} outside [0, ${vocabSize})`);
    if (t2d[id] !== -1) throw new RangeError(`draft vocabulary: id ${id} listed twice`);
    t2d[id] = i;
  });
  return t2d;
}

/** From one row of the target's full-vocabulary logits; d2t undefined: the whole vocabulary. */
export function targetFromLogits(logits: Float32Array, d2t: Int32Array | undefined): TargetRow {
  let max = Number.NEGATIVE_INFINITY;
  let argmax = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i]! > max) {
      max = logits[i]!;
      argmax = i;
    }
  }
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i]! - max);
  const cols = d2t === undefined ? logits.length : d2t.length;
  const full = new Float64Array(cols);
  let inside = 0;
  let argmaxInside = d2t === undefined;
  for (let c = 0; c < cols; c++) {
    const id = d2t === undefined ? c : d2t[c]!;
    if (id === argmax) argmaxInside = true;
    full[c] = Math.exp(logits[id]! - max) / total;
    inside += full[c]!;
  }
  const train = full.map((p) => p / inside);
  return { train, full, argmaxInside, argmax };
}

/**
 * From a trace's top-k at one position: `ids` and their `logprobs` (the target's, natural log). Ids
 * outside the trained vocabulary are dropped and the rest renormalised; `t2d` maps target ids to columns
 * (undefined: the whole vocabulary, `cols` wide).
 */
export function targetFromTopK(
  ids: Int32Array,
  logprobs: Float32Array,
  t2d: Int32Array | undefined,
  cols: number,
): TargetRow {
  const full = new Float64Array(cols);
  let inside = 0;
  let best = Number.NEGATIVE_INFINITY;
  let argmax = ids[0] ?? 0;
  let argmaxCol = -1;
  ids.forEach((id, j) => {
    const col = t2d === undefined ? id : (t2d[id] ?? -1);
    const lp = logprobs[j]!;
    if (lp > best) {
      best = lp;
      argmax = id;
      argmaxCol = col;
    }
    if (col < 0 || col >= cols) return;
    full[col] = Math.exp(lp);
    inside += full[col]!;
  });
  const train = inside > 0 ? full.map((p) => p / inside) : full;
  return { train, full, argmaxInside: argmaxCol >= 0 && argmaxCol < cols && inside > 0, argmax };
}

export interface SoftCrossEntropyOutput {
  /** sum_r weight_r * CE(target_r, softmax(logits_r)). */
  loss: number;
  /** sum_r weight_r * KL(target_r || softmax(logits_r)): CE less the target's entropy, 0 at a perfect fit. */
  kl: number;
  /** d loss / d logits. */
  dLogits: Float32Array;
  /** softmax(logits), per row (for the other objective terms). */
  probs: Float64Array;
}

/**
 * Rows of `logits` [rows, cols] against dense target rows [rows, cols] (each summing to 1), weighted per
 * row (a weight of 0 masks the row).
 */
export function softCrossEntropy(
  logits: Float32Array,
  targets: Float64Array,
  weights: Float64Array,
  rows: number,
  cols: number,
): SoftCrossEntropyOutput {
  if (logits.length !== rows * cols || targets.length !== rows * cols || weights.length !== rows)
    throw new RangeError(
      `softCrossEntropy: logits ${logits.length}, targets ${targets.length} for [${rows}, ${cols}]`,
    );
  const dLogits = new Float32Array(rows * cols);
  const probs = new Float64Array(rows * cols);
  let loss = 0;
  let kl = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let max = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < cols; c++) if (logits[o + c]! > max) max = logits[o + c]!;
    // exp once per value: kept in probs, then scaled by the row's total.
    let total = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp(logits[o + c]! - max);
      probs[o + c] = e;
      total += e;
    }
    const logZ = max + Math.log(total);
    const inv = 1 / total;
    const w = weights[r]!;
    let ce = 0;
    let entropy = 0;
    for (let c = 0; c < cols; c++) {
      const q = probs[o + c]! * inv;
      const p = targets[o + c]!;
      probs[o + c] = q;
      if (p > 0) {
        ce -= p * (logits[o + c]! - logZ);
        entropy -= p * Math.log(p);
      }
      dLogits[o + c] = w * (q - p);
    }
    loss += w * ce;
    kl += w * (ce - entropy);
  }
  return { loss, kl, dLogits, probs };
}
