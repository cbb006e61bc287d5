// Which head rows a training batch runs at each unrolled draft step ("training-time test"), where they
// sit, and what each one attends to. It mirrors how the node drafts (eagle-drafter.ts):
//
//   step 0, row i of an example: reads (f_i, token i+1), RoPE position i; its output predicts token i+2,
//           so its target is the target's distribution at position i+1.
//   step k, row i: reads (h of row i at step k-1, token i+1+k), position i+k; target at position i+1+k.
//           That is draft depth k from the committed row i: at serving time the token is the head's own
//           proposal, equal to the ground truth exactly while the chain is being accepted.
//   attention of row i at step k: the step-0 rows j <= i of its example (the committed context in the
//           head's KV) and its own rows at steps 1..k (its chain so far), as SpecForge's eagle3 mask.
//
// Only rows that matter run: with `trainFrom` the first trained target position and K steps, steps k >= 1
// (and step 0's query part) run rows i in [lo, T - 2 - k], lo = max(0, trainFrom - K); step-0 rows below
// lo are context only: their K and V are attended to, so they run fc, the input norm and k/v, no more.
// Step 0's rows are ordered context rows first (all examples), then query rows; steps k >= 1 hold query
// rows only. Within each part, rows go example by example, i ascending.
import type { AttentionMask } from "./ops/attention.js";

export interface ExampleSpan {
  /** Committed tokens of the example. */
  length: number;
  /** First target position trained. */
  trainFrom: number;
}

export interface StepRows {
  /** Rows run at this step (step 0: context and query rows). */
  count: number;
  /** Leading context rows (step 0 only; 0 elsewhere). */
  context: number;
  /** Per row: its example, its index i, and its RoPE position (i + step). */
  example: Int32Array;
  index: Int32Array;
  position: Int32Array;
  /**
   * Query rows (count - context) only: the query row of step - 1 (0-based among that step's query rows)
   * whose output hidden this row reads (step >= 1; -1 at step 0).
   */
  parent: Int32Array;
  /** Attention of the query rows over the keys of steps 0..step concatenated in step order. */
  mask: AttentionMask;
}

export interface TttLayout {
  steps: StepRows[];
  /** Per example: lo (the first query row index). */
  lo: Int32Array;
  /** Rows of step m start at keyBase[m] in the concatenated keys. */
  keyBase: Int32Array;
}

export function tttLayout(spans: readonly ExampleSpan[], unroll: number): TttLayout {
  if (!(Number.isInteger(unroll) && unroll >= 1)) throw new RangeError(`tttLayout: ${unroll} steps`);
  const E = spans.length;
  const lo = new Int32Array(E);
  // qStart[k][e]: index (within step k's rows) of example e's first query row.
  const qStart: Int32Array[] = [];
  const ctxStart = new Int32Array(E);
  const last = (e: number, k: number) => spans[e]!.length - 2 - k; // last row index at step k
  spans.forEach((s, e) => {
    lo[e] = Math.min(Math.max(0, s.trainFrom - unroll), Math.max(0, s.length - 1));
  });
  let contextCount = 0;
  for (let e = 0; e < E; e++) {
    ctxStart[e] = contextCount;
    contextCount += Math.min(lo[e]!, Math.max(0, spans[e]!.length - 1));
  }
  const steps: StepRows[] = [];
  const keyBase = new Int32Array(unroll + 1);
  for (let k = 0; k < unroll; k++) {
    const context = k === 0 ? contextCount : 0;
    const starts = new Int32Array(E);
    let count = context;
    for (let e = 0; e < E; e++) {
      starts[e] = count;
      count += Math.max(0, last(e, k) - lo[e]! + 1);
    }
    qStart.push(starts);
    const example = new Int32Array(count);
    const index = new Int32Array(count);
    const position = new Int32Array(count);
    const parent = new Int32Array(count - context).fill(-1);
    const offsets = new Int32Array(count - context + 1);
    const keys: number[] = [];
    if (k === 0) {
      for (let e = 0; e < E; e++) {
        for (let i = 0; i < Math.min(lo[e]!, spans[e]!.length - 1); i++) {
          const r = ctxStart[e]! + i;
          example[r] = e;
          index[r] = i;
          position[r] = i;
        }
      }
    }
    /** Key index of example e's step-0 row j. */
    const step0Key = (e: number, j: number) => (j < lo[e]! ? ctxStart[e]! : qStart[0]![e]! - lo[e]!) + j;
    for (let e = 0; e < E; e++) {
      for (let i = lo[e]!; i <= last(e, k); i++) {
        const r = starts[e]! + i - lo[e]!;
        example[r] = e;
        index[r] = i;
        position[r] = i + k;
        if (k > 0) parent[r] = qStart[k - 1]![e]! - steps[k - 1]!.context + i - lo[e]!;
        for (let j = 0; j <= i; j++) keys.push(step0Key(e, j));
        for (let m = 1; m <= k; m++) keys.push(keyBase[m]! + qStart[m]![e]! + i - lo[e]!);
        offsets[r - context + 1] = keys.length;
      }
    }
    keyBase[k + 1] = keyBase[k]! + count;
    steps.push({
      count,
      context,
      example,
      index,
      position,
      parent,
      mask: { offsets, keys: Int32Array.from(keys) },
    });
  }
  return { steps, lo, keyBase };
}
