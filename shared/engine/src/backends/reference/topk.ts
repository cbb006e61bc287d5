// Softmax + top-k per row (Backend.topKRows), written as the definition: the row's log-sum-exp in f64 with
// the maximum subtracted (so exp never overflows), and the k best columns by sorting every column id by
// value, largest first, the lower id first among equal values.
import type { TopKRows } from "../../backend.js";
import type { RefActivation } from "./types.js";

/** Throws unless k is a whole number in [1, cols]; every backend's topKRows checks the same way. */
export function checkTopK(k: number, cols: number): void {
  if (!(Number.isInteger(k) && k >= 1 && k <= cols))
    throw new RangeError(`topKRows: k ${k} for rows of ${cols} values (1 <= k <= ${cols})`);
}

export function topKRows(x: RefActivation, k: number): TopKRows {
  checkTopK(k, x.cols);
  const { rows, cols } = x;
  const ids = new Int32Array(rows * k);
  const values = new Float32Array(rows * k);
  const logSumExp = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = x.data.subarray(r * cols, (r + 1) * cols);
    let max = Number.NEGATIVE_INFINITY;
    for (const v of row) if (v > max) max = v;
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    logSumExp[r] = max + Math.log(sum);
    const order = Array.from({ length: cols }, (_, c) => c);
    order.sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
    for (let i = 0; i < k; i++) {
      const c = order[i] as number;
      ids[r * k + i] = c;
      values[r * k + i] = row[c] as number;
    }
  }
  return { k, ids, values, logSumExp };
}
