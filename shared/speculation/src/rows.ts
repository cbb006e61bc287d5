// Row statistics over a logit row (traces' top-k log-probabilities when the backend has no topKRows).
import { argmax } from "@specloop/engine";

/** Ids of the k largest values, largest first, lowest id on ties. */
export function topKOf(row: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (best.length === k && v <= (row[best[k - 1] as number] as number)) continue;
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

export function logSumExp(row: ArrayLike<number>): number {
  const m = row[argmax(row)] as number;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp((row[i] as number) - m);
  return m + Math.log(sum);
}
