// The objective terms beyond the KL anchor, on a row's softmax q = softmax(logits) (from softCrossEntropy):
//
// - rejected: a proposal t that the target rejected pushes q(t) down to the target's own p(t), no further:
//     R = -log(1 - max(0, q(t) - p(t)))
//   zero where the head already gives t no more than the target does (the KL anchor's optimum q = p is left
//   alone), growing as the head over-proposes t. d R / d q(t) = 1 / (1 - (q(t) - p(t))) where positive.
// - acceptance: 1 - sum_x min(p_x, q_x), one minus the probability that sampled verification accepts a token
//   drawn from q (Leviathan et al.). d / d q_x = -1 where q_x < p_x, else 0.
// Both reach the logits through the softmax: d q_x / d logit_j = q_x (delta_xj - q_j).

/** Adds weight * R's gradient to dLogits' row; returns R (unweighted). */
export function rejectedTerm(
  probs: Float64Array,
  rowOffset: number,
  cols: number,
  col: number,
  targetP: number,
  weight: number,
  dLogits: Float32Array,
): number {
  if (!(col >= 0 && col < cols)) throw new RangeError(`rejectedTerm: column ${col} outside [0, ${cols})`);
  const q = probs[rowOffset + col]!;
  const excess = q - targetP;
  if (excess <= 0) return 0;
  // 1 - excess >= 1 - q + p > 0 unless q = 1 and p = 0: floor it so one saturated row cannot give Infinity.
  const rest = Math.max(1 - excess, 1e-12);
  const g = (weight / rest) * q; // d(weight R)/d q(t) * q(t)
  for (let j = 0; j < cols; j++) dLogits[rowOffset + j]! -= g * probs[rowOffset + j]!;
  dLogits[rowOffset + col]! += g;
  return -Math.log(rest);
}

/** Adds weight * (1 - sum min(p, q))'s gradient to dLogits' row; returns 1 - sum min(p, q). */
export function acceptanceTerm(
  probs: Float64Array,
  rowOffset: number,
  cols: number,
  targetFull: Float64Array,
  weight: number,
  dLogits: Float32Array,
): number {
  if (targetFull.length !== cols)
    throw new RangeError(`acceptanceTerm: ${targetFull.length} target values for ${cols}`);
  let overlap = 0;
  // g_x = -1 where q_x < p_x; sum_x g_x q_x:
  let gq = 0;
  for (let x = 0; x < cols; x++) {
    const q = probs[rowOffset + x]!;
    const p = targetFull[x]!;
    if (q < p) {
      overlap += q;
      gq -= q;
    } else overlap += p;
  }
  for (let j = 0; j < cols; j++) {
    const q = probs[rowOffset + j]!;
    const gj = q < targetFull[j]! ? -1 : 0;
    dLogits[rowOffset + j]! += weight * q * (gj - gq);
  }
  return 1 - overlap;
}
