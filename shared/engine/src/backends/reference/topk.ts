// Softmax + top-k per row (Backend.topKRows), written as the definition: the row's log-sum-exp in f64 with
// the maximum subtracted (so exp never overflows), and the k best columns, largest first, the lower id first
// among equal values. topKIds is the engine's one top-k of a host row (the decoder, the drafters and the CLI
// import it); logSumExp's home is sampling/sample.ts, beside argmax and logSoftmax.
import type { TopKRows } from "../../backend.js";
import { logSumExp } from "../../sampling/sample.js";
import type { RefActivation } from "./types.js";

/** Throws unless k is a whole number in [1, cols]; every backend's topKRows checks the same way. */
export function checkTopK(k: number, cols: number): void {
  if (!(Number.isInteger(k) && k >= 1 && k <= cols))
    throw new RangeError(`topKRows: k ${k} for rows of ${cols} values (1 <= k <= ${cols})`);
}

/**
 * Ids of the k largest values of `row`, largest first, the lower id first among equal values (fewer when
 * the row is shorter). One pass keeping the best k in order: a value that does not beat the k-th is
 * dropped at one comparison, so a vocabulary-sized row costs about one pass for small k.
 */
export function topKIds(row: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  if (k <= 0) return best;
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (best.length === k && v <= (row[best[k - 1] as number] as number)) continue;
    // Insert i at the end (or over the k-th), then move it up past every strictly smaller value: an equal
    // one has a lower id and stays ahead.
    let j = best.length < k ? best.length : k - 1;
    best[j] = i;
    while (j > 0 && (row[best[j - 1] as number] as number) < v) {
      best[j] = best[j - 1] as number;
      best[j - 1] = i;
      j--;
    }
  }
  return best;
}

export function topKRows(x: RefActivation, k: number): TopKRows {
  checkTopK(k, x.cols);
  const { rows, cols } = x;
  const ids = new Int32Array(rows * k);
  const values = new Float32Array(rows * k);
  const logSumExps = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = x.data.subarray(r * cols, (r + 1) * cols);
    logSumExps[r] = logSumExp(row);
    topKIds(row, k).forEach((c, i) => {
      ids[r * k + i] = c;
      values[r * k + i] = row[c] as number;
    });
  }
  return { k, ids, values, logSumExp: logSumExps };
}
