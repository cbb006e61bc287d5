// AssemblyScript, compiled to WebAssembly SIMD by `npm run asbuild -w @specloop/engine` (twice: plain SIMD,
// and with relaxed SIMD for fused multiply-add). y[n, m] = x[n, k] · W[m, k]ᵀ (+ bias[m]) for output columns
// [j0, j1) only, so that worker threads can split one product by rows of W.
//
// Why it is shaped this way:
// - Weights stay in their checkpoint dtype (bf16/f16 2 bytes, f32 4) and are widened in registers: decode
//   reads every weight once per token, so the bytes read are the cost.
// - Register tiling: a tile of P positions x R weight rows keeps P*R f32x4 accumulators; each widened
//   weight vector is loaded once and used for P positions. The weights of a tile (R rows) are loaded first,
//   then each position's x vectors: P*R + 2R + 2 live vectors, at most 14, under x64's 16 xmm registers
//   (V8 keeps one as scratch). n = 1 takes a 1 x 4 tile with separate accumulators for the low and high
//   halves of each 8-weight step (eight independent add chains: 12.7 to 18 GFLOP/s on one thread of the
//   development machine); n > 1 takes 4 x 2 tiles, then 2 x 2 and 1 x 2 for the rest of the positions.
// - Row blocks are the outer loop, positions the inner: a block's weights (R rows) stay in L1 while every
//   position passes over them, so W is read from memory once per call whatever n is.
// - The memory is JS-managed (no allocator here, runtime stub): every pointer is a byte offset given by
//   the host. Loads are unaligned v128 loads, which wasm allows at full speed on x64 and arm64.

const F32: i32 = 0;
const F16: i32 = 1;
const BF16: i32 = 2;

// a * b + c: fused (one rounding) where relaxed SIMD is compiled in, else a multiply then an add.
// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

// f16 bits (in the low 16 bits of each i32 lane) to f32 without a table: exponent and mantissa move into
// f32's fields (<< 13) and a product by 2^112 re-biases the exponent (15 to 127); subnormal halves come
// out as exact normal floats from the same product. Infinities and NaNs are not kept (weights have none).
// @ts-ignore: decorator
@inline function halfToF32(u: v128): v128 {
  const mag = i32x4.shl(v128.and(u, i32x4.splat(0x7fff)), 13);
  const sign = i32x4.shl(v128.and(u, i32x4.splat(0x8000)), 16);
  return v128.or(f32x4.mul(mag, f32x4.splat(reinterpret<f32>(0x77800000))), sign);
}

// Weights i..i+3 and i+4..i+7 of a row as f32x4, p pointing at weight i. bf16 is the top half of an f32,
// so widening is a zero-extend and a shift.
// @ts-ignore: decorator
@inline function wLo(p: usize, dt: i32): v128 {
  if (dt === F32) return v128.load(p);
  const u = i32x4.extend_low_i16x8_u(v128.load(p));
  return dt === BF16 ? i32x4.shl(u, 16) : halfToF32(u);
}

// @ts-ignore: decorator
@inline function wHi(p: usize, dt: i32): v128 {
  if (dt === F32) return v128.load(p, 16);
  const u = i32x4.extend_high_i16x8_u(v128.load(p));
  return dt === BF16 ? i32x4.shl(u, 16) : halfToF32(u);
}

// @ts-ignore: decorator
@inline function wScalar(p: usize, dt: i32): f32 {
  if (dt === F32) return load<f32>(p);
  const u = <u32>load<u16>(p);
  if (dt === BF16) return reinterpret<f32>(u << 16);
  const mag = reinterpret<f32>((u & 0x7fff) << 13) * reinterpret<f32>(0x77800000);
  return reinterpret<f32>(reinterpret<u32>(mag) | ((u & 0x8000) << 16));
}

// @ts-ignore: decorator
@inline function hsum(a: v128): f32 {
  const s = f32x4.add(a, i32x4.shuffle(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

// Stores the sum of accumulator a plus the k % 8 tail and bias for position r, output column j.
// @ts-ignore: decorator
@inline function finish(
  a: v128, x: usize, w: usize, bias: usize, out: usize, k: i32, m: i32, r: i32, j: i32, i0: i32, dt: i32,
): void {
  let s = hsum(a);
  const ws: usize = dt === F32 ? 4 : 2;
  const xr = x + <usize>r * <usize>k * 4;
  const wr = w + <usize>j * <usize>k * ws;
  for (let i = i0; i < k; i++) s += load<f32>(xr + <usize>i * 4) * wScalar(wr + <usize>i * ws, dt);
  if (bias !== 0) s += load<f32>(bias + <usize>j * 4);
  store<f32>(out + (<usize>r * <usize>m + <usize>j) * 4, s);
}

// One tile: positions r..r+P-1 by weight rows j..j+R-1 (P in 1, 2, 4; R in 1, 2, 4, P * R <= 8). P, R and
// dt are constants at every call, so after inlining the optimiser keeps only the live accumulators.
// @ts-ignore: decorator
@inline function tile(
  P: i32, R: i32, dt: i32, x: usize, w: usize, bias: usize, out: usize, k: i32, m: i32, r: i32, j: i32,
): void {
  const ws: usize = dt === F32 ? 4 : 2;
  const rowBytes = <usize>k * ws;
  const w0 = w + <usize>j * rowBytes;
  const w1 = w0 + rowBytes;
  const w2 = w1 + rowBytes;
  const w3 = w2 + rowBytes;
  const xStride = <usize>k * 4;
  const x0 = x + <usize>r * xStride;
  const x1 = x0 + xStride;
  const x2 = x1 + xStride;
  const x3 = x2 + xStride;
  const z = f32x4.splat(0);
  let a00 = z, a01 = z, a02 = z, a03 = z;
  let a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z;
  // One position: the high halves get their own accumulators (b0r), so each of 2R chains has one
  // dependent add per step instead of two; the add latency, not the loads, bounds n = 1 otherwise.
  let b00 = z, b01 = z, b02 = z, b03 = z;
  const end = k & ~7;
  if (P === 1) {
    for (let i = 0; i < end; i += 8) {
      const wo = <usize>i * ws;
      const xo = <usize>i * 4;
      const xl = v128.load(x0 + xo), xh = v128.load(x0 + xo, 16);
      a00 = madd(wLo(w0 + wo, dt), xl, a00); b00 = madd(wHi(w0 + wo, dt), xh, b00);
      if (R > 1) { a01 = madd(wLo(w1 + wo, dt), xl, a01); b01 = madd(wHi(w1 + wo, dt), xh, b01); }
      if (R > 2) {
        a02 = madd(wLo(w2 + wo, dt), xl, a02); b02 = madd(wHi(w2 + wo, dt), xh, b02);
        a03 = madd(wLo(w3 + wo, dt), xl, a03); b03 = madd(wHi(w3 + wo, dt), xh, b03);
      }
    }
    a00 = f32x4.add(a00, b00); a01 = f32x4.add(a01, b01); a02 = f32x4.add(a02, b02); a03 = f32x4.add(a03, b03);
  }
  for (let i = 0; P > 1 && i < end; i += 8) {
    const wo = <usize>i * ws;
    const xo = <usize>i * 4;
    const l0 = wLo(w0 + wo, dt), h0 = wHi(w0 + wo, dt);
    let l1 = z, h1 = z, l2 = z, h2 = z, l3 = z, h3 = z;
    if (R > 1) { l1 = wLo(w1 + wo, dt); h1 = wHi(w1 + wo, dt); }
    if (R > 2) { l2 = wLo(w2 + wo, dt); h2 = wHi(w2 + wo, dt); l3 = wLo(w3 + wo, dt); h3 = wHi(w3 + wo, dt); }
    let xl = v128.load(x0 + xo), xh = v128.load(x0 + xo, 16);
    a00 = madd(h0, xh, madd(l0, xl, a00));
    if (R > 1) a01 = madd(h1, xh, madd(l1, xl, a01));
    if (R > 2) { a02 = madd(h2, xh, madd(l2, xl, a02)); a03 = madd(h3, xh, madd(l3, xl, a03)); }
    if (P > 1) {
      xl = v128.load(x1 + xo); xh = v128.load(x1 + xo, 16);
      a10 = madd(h0, xh, madd(l0, xl, a10));
      if (R > 1) a11 = madd(h1, xh, madd(l1, xl, a11));
    }
    if (P > 2) {
      xl = v128.load(x2 + xo); xh = v128.load(x2 + xo, 16);
      a20 = madd(h0, xh, madd(l0, xl, a20));
      if (R > 1) a21 = madd(h1, xh, madd(l1, xl, a21));
      xl = v128.load(x3 + xo); xh = v128.load(x3 + xo, 16);
      a30 = madd(h0, xh, madd(l0, xl, a30));
      if (R > 1) a31 = madd(h1, xh, madd(l1, xl, a31));
    }
  }
  finish(a00, x, w, bias, out, k, m, r, j, end, dt);
  if (R > 1) finish(a01, x, w, bias, out, k, m, r, j + 1, end, dt);
  if (R > 2) { finish(a02, x, w, bias, out, k, m, r, j + 2, end, dt); finish(a03, x, w, bias, out, k, m, r, j + 3, end, dt); }
  if (P > 1) {
    finish(a10, x, w, bias, out, k, m, r + 1, j, end, dt);
    if (R > 1) finish(a11, x, w, bias, out, k, m, r + 1, j + 1, end, dt);
  }
  if (P > 2) {
    finish(a20, x, w, bias, out, k, m, r + 2, j, end, dt);
    finish(a30, x, w, bias, out, k, m, r + 3, j, end, dt);
    if (R > 1) { finish(a21, x, w, bias, out, k, m, r + 2, j + 1, end, dt); finish(a31, x, w, bias, out, k, m, r + 3, j + 1, end, dt); }
  }
}

// Positions r.. of one block of R weight rows: 4-position tiles, then 2, then 1.
// @ts-ignore: decorator
@inline function positions(
  R: i32, dt: i32, x: usize, w: usize, bias: usize, out: usize, n: i32, k: i32, m: i32, j: i32,
): void {
  let r = 0;
  if (R < 4) {
    for (; r + 4 <= n; r += 4) tile(4, R, dt, x, w, bias, out, k, m, r, j);
    if (r + 2 <= n) { tile(2, R, dt, x, w, bias, out, k, m, r, j); r += 2; }
  }
  for (; r < n; r++) tile(1, R, dt, x, w, bias, out, k, m, r, j);
}

// @ts-ignore: decorator
@inline function run(
  dt: i32, x: usize, w: usize, bias: usize, out: usize, n: i32, k: i32, m: i32, j0: i32, j1: i32,
): void {
  let j = j0;
  if (n === 1) {
    for (; j + 4 <= j1; j += 4) positions(4, dt, x, w, bias, out, n, k, m, j);
  } else {
    for (; j + 2 <= j1; j += 2) positions(2, dt, x, w, bias, out, n, k, m, j);
  }
  for (; j < j1; j++) positions(1, dt, x, w, bias, out, n, k, m, j);
}

/**
 * out[r * m + j] = sum_i x[r * k + i] * W[j * k + i] (+ bias[j]) for r < n, j0 <= j < j1. Pointers are
 * byte offsets; x, bias and out are f32; W is f32 (dt 0), f16 (1) or bf16 (2); bias 0 means none.
 */
export function matmul(
  x: usize, w: usize, bias: usize, out: usize, n: i32, k: i32, m: i32, j0: i32, j1: i32, dt: i32,
): void {
  if (dt === BF16) run(BF16, x, w, bias, out, n, k, m, j0, j1);
  else if (dt === F16) run(F16, x, w, bias, out, n, k, m, j0, j1);
  else run(F32, x, w, bias, out, n, k, m, j0, j1);
}

// Jobs: one pool hand-off per fused op. The host writes a job's arguments as i32 slots (layout below) into
// the control block and every thread calls job() with its index; the job's output columns are split
// here, not in each caller, so the main thread and the workers cannot disagree on a share.
//   0 mode, 1 x, 2 n, 3 k, 4 dtype, 5 threads, 6 segments, 7 unused,
//   then per segment s at 8 + 5s: w, bias, out, m, aux.
// LINEAR: the segments are independent products of the same x (q, k, v), their output columns laid end
//   to end and cut in multiples of 4 (the n = 1 row tile) across the threads, so narrow k/v projections
//   are not each split into slivers.
// SILU_MUL: segment 0 is gate (out: a scratch), segment 1 is up (out: the result); each thread computes
//   both products for the same columns, then silu(gate) * up over them while they are still in cache.
// ADD: one segment; aux is the residual [n, m]: out = residual + product (+ bias), as add(residual, y).
const LINEAR: i32 = 0;
const SILU_MUL: i32 = 1;
const ADD: i32 = 2;

// @ts-ignore: decorator
@inline function slot(args: usize, i: i32): i32 {
  return load<i32>(args + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline function segment(args: usize, s: i32, f: i32): i32 {
  return slot(args, 8 + s * 5 + f);
}

/** Columns [lo, hi) of `total` for thread t of `threads`, in whole 4-column tiles. */
// @ts-ignore: decorator
@inline function shareLo(total: i32, threads: i32, t: i32): i32 {
  const per = ((total + threads * 4 - 1) / (threads * 4)) * 4;
  return min(total, t * per);
}

export function job(args: usize, t: i32): void {
  const mode = slot(args, 0);
  const x = <usize>slot(args, 1);
  const n = slot(args, 2);
  const k = slot(args, 3);
  const dt = slot(args, 4);
  const threads = slot(args, 5);
  const segments = slot(args, 6);
  let total = 0;
  for (let s = 0; s < segments; s++) total += mode === LINEAR ? segment(args, s, 3) : 0;
  if (mode !== LINEAR) total = segment(args, 0, 3);
  const lo = shareLo(total, threads, t);
  const hi = shareLo(total, threads, t + 1);
  if (hi <= lo) return;
  if (mode === LINEAR) {
    let base = 0;
    for (let s = 0; s < segments; s++) {
      const m = segment(args, s, 3);
      const j0 = max(lo - base, 0);
      const j1 = min(hi - base, m);
      if (j1 > j0) {
        const w = <usize>segment(args, s, 0), bias = <usize>segment(args, s, 1), out = <usize>segment(args, s, 2);
        matmul(x, w, bias, out, n, k, m, j0, j1, dt);
      }
      base += m;
    }
    return;
  }
  const m = total;
  const out = <usize>segment(args, 0, 2);
  matmul(x, <usize>segment(args, 0, 0), <usize>segment(args, 0, 1), out, n, k, m, lo, hi, dt);
  if (mode === ADD) {
    // Residual added after the product (and bias), in that order: add(residual, matmul(x, w, bias)).
    const res = <usize>segment(args, 0, 4);
    for (let r = 0; r < n; r++) {
      const row = <usize>r * <usize>m;
      for (let j = lo; j < hi; j++) {
        const p = (row + <usize>j) << 2;
        store<f32>(out + p, load<f32>(res + p) + load<f32>(out + p));
      }
    }
    return;
  }
  if (mode === SILU_MUL) {
    const up = <usize>segment(args, 1, 2);
    matmul(x, <usize>segment(args, 1, 0), <usize>segment(args, 1, 1), up, n, k, m, lo, hi, dt);
    // silu(g) * u in f64 like the reference (x / (1 + e^-x)), rounded once to f32: these are a few
    // thousand values per token, so exactness costs nothing measurable.
    for (let r = 0; r < n; r++) {
      const row = <usize>r * <usize>m;
      for (let j = lo; j < hi; j++) {
        const p = (row + <usize>j) << 2;
        const g = <f64>load<f32>(out + p);
        const e = Math.exp(-g);
        store<f32>(up + p, <f32>((g / (1.0 + e)) * <f64>load<f32>(up + p)));
      }
    }
  }
}

// The other kernels of the cpu backend share this module (one module, one instance per thread).
export { attention } from "./attention";
export { add, rmsNorm, rope, siluMul } from "./elementwise";
