// Scaled dot-product attention of each new token over its sequence's cached tokens and the new tokens it
// may see: all earlier new tokens for a chain (causal), its ancestors and itself for a tree. GQA: query
// head h reads KV head floor(h / (numHeads / numKvHeads)). The keys are read back from the paged cache
// (writeKv runs first), so this op also checks that the slots were written where the layout says.
import type { KvCacheSpec, SequenceLayout } from "../../backend.js";
import { RefActivation, type RefBatch, type RefKvStorage, slotOf } from "./types.js";

/** Logical positions (in the cache) that new token i of `seq` attends to, in increasing order. */
export function visiblePositions(seq: SequenceLayout, i: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < seq.cachedTokens; p++) out.push(p);
  if (seq.treeParents === undefined) {
    for (let j = 0; j <= i; j++) out.push(seq.cachedTokens + j);
    return out;
  }
  const path: number[] = [];
  for (let j = i; j !== -1; j = seq.treeParents[j] as number) {
    if (!(j >= 0 && j < seq.newTokens) || path.length > seq.newTokens) {
      throw new RangeError(`attention: tree parent chain of node ${i} is broken at ${j}`);
    }
    path.push(j);
  }
  for (const j of path.reverse()) out.push(seq.cachedTokens + j);
  return out;
}

/**
 * Throws unless q [rows, cols] holds numHeads heads of the cache's head size and the heads split evenly over
 * its KV heads; every backend's attention checks the same way.
 */
export function checkAttention(q: { rows: number; cols: number }, spec: KvCacheSpec, numHeads: number): void {
  const { headDim, numKvHeads } = spec;
  if (q.cols !== numHeads * headDim || numHeads % numKvHeads !== 0) {
    throw new RangeError(
      `attention: q [${q.rows}, ${q.cols}] with ${numHeads} heads of ${headDim}, ${numKvHeads} KV heads`,
    );
  }
}

export function attention(
  q: RefActivation,
  kv: RefKvStorage,
  layer: number,
  batch: RefBatch,
  numHeads: number,
  scale: number,
): RefActivation {
  checkAttention(q, kv.spec, numHeads);
  const { headDim, numKvHeads } = kv.spec;
  const kc = kv.k[layer];
  const vc = kv.v[layer];
  if (kc === undefined || vc === undefined) throw new RangeError(`attention: no layer ${layer}`);
  const group = numHeads / numKvHeads;
  const width = kv.slotWidth;
  const out = RefActivation.zeros(q.rows, q.cols);
  for (const seq of batch.layout.sequences) {
    for (let i = 0; i < seq.newTokens; i++) {
      const row = seq.rowStart + i;
      const slots = visiblePositions(seq, i).map((p) => slotOf(seq.blockTable, batch.blockSize, p));
      for (let h = 0; h < numHeads; h++) {
        const qo = row * q.cols + h * headDim;
        const kvo = Math.floor(h / group) * headDim;
        const scores = new Float64Array(slots.length);
        let max = Number.NEGATIVE_INFINITY;
        slots.forEach((slot, t) => {
          let dot = 0;
          for (let d = 0; d < headDim; d++)
            dot += (q.data[qo + d] as number) * (kc[slot * width + kvo + d] as number);
          scores[t] = dot * scale;
          max = Math.max(max, dot * scale);
        });
        // Softmax with the maximum subtracted so exp never overflows.
        let total = 0;
        for (let t = 0; t < scores.length; t++) {
          scores[t] = Math.exp((scores[t] as number) - max);
          total += scores[t] as number;
        }
        const acc = new Float64Array(headDim);
        slots.forEach((slot, t) => {
          const p = scores[t] as number;
          for (let d = 0; d < headDim; d++)
            acc[d] = (acc[d] as number) + p * (vc[slot * width + kvo + d] as number);
        });
        for (let d = 0; d < headDim; d++) out.data[qo + d] = (acc[d] as number) / total;
      }
    }
  }
  return out;
}
