// Attention of one query row over a list of KV slots (its sequence's visible tokens: the host resolves the
// paged block table and the tree mask into `slots`, once per batch, as they are the same for every layer
// and head). K and V are f32 [slots, width] per layer, width = kvHeads * headDim, in the shared memory.
//
// Per head, three passes over the visible slots:
// 1. scores = q.k * scale, f32x4 dot products (two accumulators), and their maximum;
// 2. p = exp(score - max) four slots at a time (topk.ts's f32x4 exp, about 1 ulp), summed in f32x4 lanes;
// 3. out = sum p * v / sum p, slots outer and up to 8 f32x4 accumulators (32 dimensions) inner, so that each
//    probability is splatted once per chunk of dimensions and V rows are read in order.
// All f32 where the reference sums in f64: within the conformance bound (F32_NMSE), and about 5x faster than
// f64 Math.exp per score with a pass over every slot per 4 dimensions (measured: bench/results/cpu-decode.md).
import { expNeg } from "./topk";

// @ts-ignore: decorator
@inline function hsum4(a: v128): f32 {
  const s = f32x4.add(a, i32x4.shuffle(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

// @ts-ignore: decorator
@inline function slotRow(base: usize, slots: usize, t: i32, rowBytes: usize): usize {
  return base + <usize>load<i32>(slots + (<usize>t << 2)) * rowBytes;
}

/**
 * out[h * headDim + d] for heads h0 <= h < h1 of one row: q and out are that row's f32 [numHeads * headDim];
 * k and v one layer's caches; slots i32 [nSlots]; scores f32 scratch [nSlots] (16-byte aligned). GQA: head h
 * reads KV head h / group.
 */
export function attention(
  q: usize, k: usize, v: usize, slots: usize, nSlots: i32, out: usize,
  h0: i32, h1: i32, group: i32, headDim: i32, width: i32, scale: f32, scores: usize,
): void {
  const end = headDim & ~3;
  const rowBytes = <usize>width << 2;
  const sc = scale;
  for (let h = h0; h < h1; h++) {
    const qh = q + (<usize>(h * headDim) << 2);
    const kvo = <usize>((h / group) * headDim) << 2;
    // 1. Scores and their maximum.
    let max: f32 = -Infinity;
    for (let t = 0; t < nSlots; t++) {
      const kr = slotRow(k, slots, t, rowBytes) + kvo;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      let d = 0;
      for (; d + 8 <= end; d += 8) {
        const o = <usize>d << 2;
        a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + o), v128.load(kr + o)));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(qh + o, 16), v128.load(kr + o, 16)));
      }
      if (d < end) a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + (<usize>d << 2)), v128.load(kr + (<usize>d << 2))));
      let dot = hsum4(f32x4.add(a0, a1));
      for (d = end; d < headDim; d++) dot += load<f32>(qh + (<usize>d << 2)) * load<f32>(kr + (<usize>d << 2));
      const s = dot * sc;
      store<f32>(scores + (<usize>t << 2), s);
      if (s > max) max = s;
    }
    // 2. Probabilities (unnormalised) and their total.
    const ms = f32x4.splat(max);
    let acc = f32x4.splat(0);
    let t = 0;
    for (; t + 4 <= nSlots; t += 4) {
      const p = scores + (<usize>t << 2);
      const e = expNeg(f32x4.sub(v128.load(p), ms));
      v128.store(p, e);
      acc = f32x4.add(acc, e);
    }
    let total = hsum4(acc);
    for (; t < nSlots; t++) {
      const p = scores + (<usize>t << 2);
      const e = <f32>Math.exp(<f64>(load<f32>(p) - max));
      store<f32>(p, e);
      total += e;
    }
    // 3. The weighted sum of V rows, 32 dimensions (8 accumulators) a pass over the slots, then 4 at a time.
    const oh = out + (<usize>(h * headDim) << 2);
    const inv = f32x4.splat(<f32>1 / total);
    let d = 0;
    for (; d + 32 <= end; d += 32) {
      const o = kvo + (<usize>d << 2);
      let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
      for (let s = 0; s < nSlots; s++) {
        const vr = slotRow(v, slots, s, rowBytes) + o;
        const p = f32x4.splat(load<f32>(scores + (<usize>s << 2)));
        c0 = f32x4.add(c0, f32x4.mul(p, v128.load(vr)));
        c1 = f32x4.add(c1, f32x4.mul(p, v128.load(vr, 16)));
        c2 = f32x4.add(c2, f32x4.mul(p, v128.load(vr, 32)));
        c3 = f32x4.add(c3, f32x4.mul(p, v128.load(vr, 48)));
        c4 = f32x4.add(c4, f32x4.mul(p, v128.load(vr, 64)));
        c5 = f32x4.add(c5, f32x4.mul(p, v128.load(vr, 80)));
        c6 = f32x4.add(c6, f32x4.mul(p, v128.load(vr, 96)));
        c7 = f32x4.add(c7, f32x4.mul(p, v128.load(vr, 112)));
      }
      const od = oh + (<usize>d << 2);
      v128.store(od, f32x4.mul(c0, inv));
      v128.store(od, f32x4.mul(c1, inv), 16);
      v128.store(od, f32x4.mul(c2, inv), 32);
      v128.store(od, f32x4.mul(c3, inv), 48);
      v128.store(od, f32x4.mul(c4, inv), 64);
      v128.store(od, f32x4.mul(c5, inv), 80);
      v128.store(od, f32x4.mul(c6, inv), 96);
      v128.store(od, f32x4.mul(c7, inv), 112);
    }
    for (; d < end; d += 4) {
      const o = kvo + (<usize>d << 2);
      let c0 = f32x4.splat(0);
      for (let s = 0; s < nSlots; s++) {
        const vr = slotRow(v, slots, s, rowBytes) + o;
        c0 = f32x4.add(c0, f32x4.mul(f32x4.splat(load<f32>(scores + (<usize>s << 2))), v128.load(vr)));
      }
      v128.store(oh + (<usize>d << 2), f32x4.mul(c0, inv));
    }
    const invS = <f32>1 / total;
    for (; d < headDim; d++) {
      let c: f32 = 0;
      for (let s = 0; s < nSlots; s++) {
        c += load<f32>(scores + (<usize>s << 2)) * load<f32>(slotRow(v, slots, s, rowBytes) + kvo + (<usize>d << 2));
      }
      store<f32>(oh + (<usize>d << 2), c * invS);
    }
  }
}

/**
 * Chunk c of `chunks` of an attention job (the pool's MODE_ATTENTION, jobs.ts): the (row, head) pairs
 * [rows * heads * c / chunks, rows * heads * (c + 1) / chunks), row by row. offsets i32 [rows + 1]: row r
 * sees slots[offsets[r] .. offsets[r + 1]); scores: `chunks` scratch regions of `longest` f32 each.
 */
export function attentionChunk(
  q: usize, k: usize, v: usize, slots: usize, offsets: usize, out: usize, rows: i32, heads: i32, group: i32,
  headDim: i32, width: i32, scale: f32, scores: usize, longest: i32, chunks: i32, c: i32,
): void {
  const units = rows * heads;
  const lo = <i32>((<i64>units * c) / chunks);
  const hi = <i32>((<i64>units * (c + 1)) / chunks);
  const mine = scores + (<usize>(c * ((longest + 3) & ~3)) << 2);
  const rowBytes = <usize>(heads * headDim) << 2;
  let u = lo;
  while (u < hi) {
    const r = u / heads;
    const h0 = u - r * heads;
    const h1 = min(heads, h0 + hi - u);
    const from = load<i32>(offsets + (<usize>r << 2));
    const count = load<i32>(offsets + (<usize>(r + 1) << 2)) - from;
    const qr = q + <usize>r * rowBytes;
    attention(qr, k, v, slots + (<usize>from << 2), count, out + <usize>r * rowBytes, h0, h1, group, headDim, width, scale, mine);
    u += h1 - h0;
  }
}
