// Attention of one query row over a list of KV slots (its sequence's visible tokens: the host resolves the
// paged block table and the tree mask into `slots`, once per batch, as they are the same for every layer
// and head). K and V are f32 [slots, width] per layer, width = kvHeads * headDim, in the shared memory.
//
// Per head: scores = q.k * scale with f32x4 dot products, softmax with the maximum subtracted (exp never
// overflows), then out = sum p * v / total with f32x4 accumulators over headDim. Scores and their exp are
// kept in f64 like the reference's; the dot products and the weighted V sum are f32 (within the
// conformance bound, and what keeps this a SIMD loop).

// @ts-ignore: decorator
@inline function hsum4(a: v128): f32 {
  const s = f32x4.add(a, i32x4.shuffle(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/**
 * out[h * headDim + d] for every head h of one row: q and out are that row's f32 [numHeads * headDim];
 * k and v one layer's caches; slots i32 [nSlots]; scores f64 scratch [nSlots]. GQA: head h reads KV head
 * h / group.
 */
export function attention(
  q: usize, k: usize, v: usize, slots: usize, nSlots: i32, out: usize,
  numHeads: i32, group: i32, headDim: i32, width: i32, scale: f64, scores: usize,
): void {
  const end = headDim & ~3;
  const rowBytes = <usize>width << 2;
  for (let h = 0; h < numHeads; h++) {
    const qh = q + (<usize>(h * headDim) << 2);
    const kvo = <usize>((h / group) * headDim) << 2;
    let max = -Infinity;
    for (let t = 0; t < nSlots; t++) {
      const kr = k + <usize>load<i32>(slots + (<usize>t << 2)) * rowBytes + kvo;
      let acc = f32x4.splat(0);
      for (let d = 0; d < end; d += 4) {
        const o = <usize>d << 2;
        acc = f32x4.add(acc, f32x4.mul(v128.load(qh + o), v128.load(kr + o)));
      }
      let dot = hsum4(acc);
      for (let d = end; d < headDim; d++) dot += load<f32>(qh + (<usize>d << 2)) * load<f32>(kr + (<usize>d << 2));
      const s = <f64>dot * scale;
      store<f64>(scores + (<usize>t << 3), s);
      if (s > max) max = s;
    }
    let total: f64 = 0;
    for (let t = 0; t < nSlots; t++) {
      const p = scores + (<usize>t << 3);
      const e = Math.exp(load<f64>(p) - max);
      store<f64>(p, e);
      total += e;
    }
    const oh = out + (<usize>(h * headDim) << 2);
    const inv = <f32>(1 / total);
    // The weighted sum of V rows, 4 dimensions at a time, each in its own accumulator pass over the slots
    // (headDim / 4 passes): keeps the accumulator in a register instead of a memory round trip per slot.
    for (let d = 0; d < end; d += 4) {
      const o = <usize>d << 2;
      let acc = f32x4.splat(0);
      for (let t = 0; t < nSlots; t++) {
        const vr = v + <usize>load<i32>(slots + (<usize>t << 2)) * rowBytes + kvo;
        acc = f32x4.add(acc, f32x4.mul(f32x4.splat(<f32>load<f64>(scores + (<usize>t << 3))), v128.load(vr + o)));
      }
      v128.store(oh + o, f32x4.mul(acc, f32x4.splat(inv)));
    }
    for (let d = end; d < headDim; d++) {
      let acc: f32 = 0;
      for (let t = 0; t < nSlots; t++) {
        const vr = v + <usize>load<i32>(slots + (<usize>t << 2)) * rowBytes + kvo;
        acc += <f32>load<f64>(scores + (<usize>t << 3)) * load<f32>(vr + (<usize>d << 2));
      }
      store<f32>(oh + (<usize>d << 2), acc * inv);
    }
  }
}
