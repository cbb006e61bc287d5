// The cpu backend's elementwise and per-row ops: RMSNorm (whole row or per head), RoPE, silu(gate) * up,
// add. They run on the main thread alone (a few thousand values per token: a hand-off to a worker costs
// more than the op). f32x4 where the op is arithmetic (silu's exp too); the norm's scale in f64 like the
// reference.

import { expNeg } from "./topk";

/** out = x / sqrt(mean(x^2) + eps) * w over each group of `groupSize` values; total = rows * cols. */
export function rmsNorm(x: usize, w: usize, out: usize, total: i32, groupSize: i32, eps: f64): void {
  const end = groupSize & ~3;
  for (let g = 0; g < total; g += groupSize) {
    const xg = x + (<usize>g << 2);
    const og = out + (<usize>g << 2);
    // Sum of squares in f64 (as the reference): groups are at most a few thousand wide, so this scalar
    // loop is a few microseconds, and the scale it feeds multiplies every output.
    let sq: f64 = 0;
    for (let i = 0; i < groupSize; i++) {
      const v = <f64>load<f32>(xg + (<usize>i << 2));
      sq += v * v;
    }
    const inv = 1 / Math.sqrt(sq / <f64>groupSize + eps);
    const s = f32x4.splat(<f32>inv);
    for (let i = 0; i < end; i += 4) {
      const o = <usize>i << 2;
      v128.store(og + o, f32x4.mul(f32x4.mul(v128.load(xg + o), s), v128.load(w + o)));
    }
    for (let i = end; i < groupSize; i++) {
      const o = <usize>i << 2;
      store<f32>(og + o, <f32>(<f64>load<f32>(xg + o) * inv * <f64>load<f32>(w + o)));
    }
  }
}

/**
 * Rotate-half RoPE of x [rows, cols] (heads of headDim) into out (may be x): column i of a head pairs
 * with i + headDim / 2. cs is f32 [rows, headDim]: each row's cos for the half pairs, then its sin,
 * computed by the host once per batch (the angles are the same for every layer and head).
 */
export function rope(x: usize, out: usize, cs: usize, rows: i32, cols: i32, headDim: i32): void {
  const half = headDim >> 1;
  const end = half & ~3;
  for (let r = 0; r < rows; r++) {
    const cr = cs + (<usize>(r * headDim) << 2);
    const sr = cr + (<usize>half << 2);
    for (let h = r * cols; h < (r + 1) * cols; h += headDim) {
      const xa = x + (<usize>h << 2);
      const xb = xa + (<usize>half << 2);
      const oa = out + (<usize>h << 2);
      const ob = oa + (<usize>half << 2);
      for (let i = 0; i < end; i += 4) {
        const o = <usize>i << 2;
        const a = v128.load(xa + o), b = v128.load(xb + o);
        const c = v128.load(cr + o), s = v128.load(sr + o);
        v128.store(oa + o, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
        v128.store(ob + o, f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s)));
      }
      for (let i = end; i < half; i++) {
        const o = <usize>i << 2;
        const a = load<f32>(xa + o), b = load<f32>(xb + o);
        const c = load<f32>(cr + o), s = load<f32>(sr + o);
        store<f32>(oa + o, a * c - b * s);
        store<f32>(ob + o, b * c + a * s);
      }
    }
  }
}

// exp of f32x4 lanes anywhere in [-87.3, 88]: topk.ts's expNeg, clamped above too (silu needs e^-g for g of
// either sign, and past the clamp g / (1 + e^-g) is g or about 0 either way).
// @ts-ignore: decorator
@inline function expV(x: v128): v128 {
  return expNeg(f32x4.pmin(x, f32x4.splat(88.0)));
}

/**
 * out = silu(gate) * up = gate / (1 + e^-gate) * up over `len` values from byte offset o of each (out may be
 * up): f32x4 with the exp above (about 1 ulp), the last len % 4 in f64 like the reference.
 */
export function siluMulRow(gate: usize, up: usize, out: usize, o: usize, len: i32): void {
  const end = <usize>(len & ~3) << 2;
  const one = f32x4.splat(1);
  let i: usize = 0;
  for (; i < end; i += 16) {
    const g = v128.load(gate + o + i);
    const s = f32x4.div(g, f32x4.add(one, expV(f32x4.neg(g))));
    v128.store(out + o + i, f32x4.mul(s, v128.load(up + o + i)));
  }
  for (; i < <usize>len << 2; i += 4) {
    const g = <f64>load<f32>(gate + o + i);
    store<f32>(out + o + i, <f32>((g / (1.0 + Math.exp(-g))) * <f64>load<f32>(up + o + i)));
  }
}

/** out = silu(gate) * up, elementwise over len values. */
export function siluMul(gate: usize, up: usize, out: usize, len: i32): void {
  siluMulRow(gate, up, out, 0, len);
}

/** out = a + b. */
export function add(a: usize, b: usize, out: usize, len: i32): void {
  const end = len & ~3;
  for (let i = 0; i < end; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (let i = end; i < len; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}
