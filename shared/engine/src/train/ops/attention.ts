// Scaled dot-product attention over an explicit mask, with grouped-query heads (query head h reads KV head
// floor(h / (numHeads / numKvHeads))), and its backward. The mask lists, per query row, the key rows it
// sees (CSR: keys[offsets[r] .. offsets[r + 1])): causal for packed sequences (causalMask), or the
// training-time-test mask the trainer builds (ttt-layout.ts), where a draft step's query sees the step-0
// keys of its prefix and its own earlier draft steps. Per query and head, with s_t = scale q.k_t,
// p = softmax(s), o = sum_t p_t v_t:
//   dv_t += p_t do;  dp_t = do.v_t;  ds_t = p_t (dp_t - sum_u p_u dp_u);  dq = scale sum_t ds_t k_t;
//   dk_t += scale ds_t q
// The forward keeps p for the backward.

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/** Key rows seen by each query row: keys[offsets[r] .. offsets[r + 1]). */
export interface AttentionMask {
  offsets: Int32Array;
  keys: Int32Array;
}

/** Causal attention within each of several sequences packed back to back (queries = keys = rows). */
export function causalMask(lengths: readonly number[]): AttentionMask {
  const rows = lengths.reduce((a, b) => a + b, 0);
  const offsets = new Int32Array(rows + 1);
  const keys: number[] = [];
  let base = 0;
  let r = 0;
  for (const n of lengths) {
    for (let i = 0; i < n; i++, r++) {
      for (let j = 0; j <= i; j++) keys.push(base + j);
      offsets[r + 1] = keys.length;
    }
    base += n;
  }
  return { offsets, keys: Int32Array.from(keys) };
}

export interface AttentionOutput {
  /** [queries, numHeads * headDim]. */
  out: Float32Array;
  /** Softmax weights: query r, head h, visible key t at (offsets[r] * numHeads + h * count_r + t). */
  probs: Float64Array;
}

function check(
  op: string,
  nq: number,
  nk: number,
  s: AttentionShape,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  m: AttentionMask,
) {
  const kvw = s.numKvHeads * s.headDim;
  if (s.numHeads % s.numKvHeads !== 0)
    throw new RangeError(`${op}: ${s.numKvHeads} KV heads for ${s.numHeads} heads`);
  if (q.length !== nq * s.numHeads * s.headDim || k.length !== nk * kvw || v.length !== nk * kvw)
    throw new RangeError(
      `${op}: q of ${q.length}, k of ${k.length}, v of ${v.length} for ${nq} queries, ${nk} keys`,
    );
  if (m.offsets.length !== nq + 1 || m.offsets[nq] !== m.keys.length)
    throw new RangeError(`${op}: mask for ${m.offsets.length - 1} queries, ${nq} given`);
  for (const key of m.keys)
    if (!(key >= 0 && key < nk)) throw new RangeError(`${op}: mask key ${key} outside [0, ${nk})`);
  for (let r = 0; r < nq; r++) {
    if (m.offsets[r + 1]! <= m.offsets[r]!) throw new RangeError(`${op}: query ${r} sees no key`);
  }
}

export function attentionForward(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  nq: number,
  nk: number,
  shape: AttentionShape,
  mask: AttentionMask,
  scale: number,
): AttentionOutput {
  check("attentionForward", nq, nk, shape, q, k, v, mask);
  const { numHeads, numKvHeads, headDim } = shape;
  const group = numHeads / numKvHeads;
  const qw = numHeads * headDim;
  const kvw = numKvHeads * headDim;
  const out = new Float32Array(nq * qw);
  const probs = new Float64Array(mask.keys.length * numHeads);
  const acc = new Float64Array(headDim);
  for (let r = 0; r < nq; r++) {
    const start = mask.offsets[r]!;
    const count = mask.offsets[r + 1]! - start;
    for (let h = 0; h < numHeads; h++) {
      const qo = r * qw + h * headDim;
      const kvo = Math.floor(h / group) * headDim;
      const p0 = start * numHeads + h * count;
      let max = Number.NEGATIVE_INFINITY;
      for (let t = 0; t < count; t++) {
        const ko = mask.keys[start + t]! * kvw + kvo;
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[qo + d]! * k[ko + d]!;
        probs[p0 + t] = dot * scale;
        if (dot * scale > max) max = dot * scale;
      }
      // Softmax with the maximum subtracted so exp never overflows.
      let total = 0;
      for (let t = 0; t < count; t++) {
        const e = Math.exp(probs[p0 + t]! - max);
        probs[p0 + t] = e;
        total += e;
      }
      acc.fill(0);
      for (let t = 0; t < count; t++) {
        const p = probs[p0 + t]! / total;
        probs[p0 + t] = p;
        const vo = mask.keys[start + t]! * kvw + kvo;
        for (let d = 0; d < headDim; d++) acc[d]! += p * v[vo + d]!;
      }
      for (let d = 0; d < headDim; d++) out[qo + d] = acc[d]!;
    }
  }
  return { out, probs };
}

/** Returns dq; adds the keys' and values' gradients into dk and dv ([nk, numKvHeads * headDim]). */
export function attentionBackward(
  dOut: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  probs: Float64Array,
  nq: number,
  nk: number,
  shape: AttentionShape,
  mask: AttentionMask,
  scale: number,
  dk: Float32Array,
  dv: Float32Array,
): Float32Array {
  check("attentionBackward", nq, nk, shape, q, k, v, mask);
  const { numHeads, numKvHeads, headDim } = shape;
  const group = numHeads / numKvHeads;
  const qw = numHeads * headDim;
  const kvw = numKvHeads * headDim;
  if (
    dOut.length !== nq * qw ||
    dk.length !== nk * kvw ||
    dv.length !== nk * kvw ||
    probs.length !== mask.keys.length * numHeads
  )
    throw new RangeError("attentionBackward: gradient shapes do not match");
  const dq = new Float32Array(nq * qw);
  let most = 0;
  for (let r = 0; r < nq; r++) most = Math.max(most, mask.offsets[r + 1]! - mask.offsets[r]!);
  const ds = new Float64Array(most);
  const dqAcc = new Float64Array(headDim);
  for (let r = 0; r < nq; r++) {
    const start = mask.offsets[r]!;
    const count = mask.offsets[r + 1]! - start;
    for (let h = 0; h < numHeads; h++) {
      const qo = r * qw + h * headDim;
      const kvo = Math.floor(h / group) * headDim;
      const p0 = start * numHeads + h * count;
      let sum = 0;
      for (let t = 0; t < count; t++) {
        const vo = mask.keys[start + t]! * kvw + kvo;
        const p = probs[p0 + t]!;
        let dp = 0;
        for (let d = 0; d < headDim; d++) {
          dp += dOut[qo + d]! * v[vo + d]!;
          dv[vo + d]! += p * dOut[qo + d]!;
        }
        ds[t] = dp;
        sum += p * dp;
      }
      dqAcc.fill(0);
      for (let t = 0; t < count; t++) {
        const g = probs[p0 + t]! * (ds[t]! - sum) * scale;
        const ko = mask.keys[start + t]! * kvw + kvo;
        for (let d = 0; d < headDim; d++) {
          dqAcc[d]! += g * k[ko + d]!;
          dk[ko + d]! += g * q[qo + d]!;
        }
      }
      for (let d = 0; d < headDim; d++) dq[qo + d] = dqAcc[d]!;
    }
  }
  return dq;
}
