// The training objective of one unrolled step, from the head's logits on the step's loss rows:
//   w_k * [ klWeight * KL(p || q) + rejectedWeight * R + acceptanceWeight * (1 - sum min(p, q)) ]
// summed over the rows, with w_k = stepDecay^k / N_k (N_k: the step's rows with a KL target; Aurora's
// per-step mean weighted 0.8^k). p is the target's distribution renormalised over the trained
// vocabulary for the KL, and the target's own probabilities for the acceptance term (a token outside a
// draft vocabulary can never be accepted). Rows whose target argmax lies outside a draft vocabulary carry
// no KL (EAGLE-3 masks them), but a rejected proposal there is still pushed down.
import type { BatchPlan } from "./examples.js";
import { softCrossEntropy } from "./ops/cross-entropy.js";
import { acceptanceTerm, rejectedTerm } from "./ops/draft-objective.js";
import type { EagleTrainerOptions } from "./options.js";

export interface StepObjective {
  /** The weighted objective of this step. */
  loss: number;
  /** Its parts, each already weighted (by w_k and the term's own weight). */
  kl: number;
  rejected: number;
  acceptance: number;
  dLogits: Float32Array;
  /** The head's argmax column per loss row (for accuracy and the simulated acceptance). */
  argmax: Int32Array;
  /** The target's most likely token (a target id) per loss row; -1 where no distribution was given. */
  targetArgmax: Int32Array;
  /**
   * Per loss row, sum_x min(p(x), q(x)): the probability that sampled verification accepts a token drawn
   * from the head (temperature 1 on both sides); 0 where no distribution was given.
   */
  overlap: Float64Array;
}

type Weights = Pick<EagleTrainerOptions, "stepDecay" | "klWeight" | "rejectedWeight" | "acceptanceWeight">;

export function stepObjective(
  plan: BatchPlan,
  k: number,
  logits: Float32Array,
  cols: number,
  o: Weights,
): StepObjective {
  const rows = plan.rows[k] ?? [];
  const n = rows.length;
  if (logits.length !== n * cols)
    throw new RangeError(`stepObjective: ${logits.length} logits for [${n}, ${cols}]`);
  const N = plan.klRows[k]! > 0 ? plan.klRows[k]! : Math.max(1, n);
  const wk = o.stepDecay ** k / N;
  const targets = new Float64Array(n * cols);
  const weights = new Float64Array(n);
  const fulls: (Float64Array | undefined)[] = [];
  const targetArgmax = new Int32Array(n).fill(-1);
  rows.forEach((row, j) => {
    const t = plan.target(row);
    fulls.push(t?.full);
    if (t !== undefined) targetArgmax[j] = t.argmax;
    if (row.kl && t !== undefined) {
      targets.set(t.train, j * cols);
      weights[j] = wk * o.klWeight;
    }
  });
  const ce = softCrossEntropy(logits, targets, weights, n, cols);
  let rejected = 0;
  let acceptance = 0;
  rows.forEach((row, j) => {
    const full = fulls[j];
    if (o.rejectedWeight > 0) {
      for (const col of row.rejected) {
        const r = rejectedTerm(
          ce.probs,
          j * cols,
          cols,
          col,
          full?.[col] ?? 0,
          wk * o.rejectedWeight,
          ce.dLogits,
        );
        rejected += wk * o.rejectedWeight * r;
      }
    }
    if (o.acceptanceWeight > 0 && row.kl && full !== undefined) {
      const a = acceptanceTerm(ce.probs, j * cols, cols, full, wk * o.acceptanceWeight, ce.dLogits);
      acceptance += wk * o.acceptanceWeight * a;
    }
  });
  const overlap = new Float64Array(n);
  fulls.forEach((full, j) => {
    if (full === undefined) return;
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.min(full[c]!, ce.probs[j * cols + c]!);
    overlap[j] = sum;
  });
  const argmax = new Int32Array(n);
  for (let j = 0; j < n; j++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (logits[j * cols + c]! > logits[j * cols + best]!) best = c;
    argmax[j] = best;
  }
  return {
    loss: ce.kl + rejected + acceptance,
    kl: ce.kl,
    rejected,
    acceptance,
    dLogits: ce.dLogits,
    argmax,
    targetArgmax,
    overlap,
  };
}
