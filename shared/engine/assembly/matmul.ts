import { DTYPE_BF16, DTYPE_F16, DTYPE_F32 } from "../src/backends/cpu/kernel-abi";

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
//   (V8 keeps one as scratch). n = 1 takes a 1 x 4 tile with separate accumulators for the even and odd
//   weights of each 8-weight step (eight independent add chains); n > 1 takes 4 x 2 tiles, then 2 x 2 and
//   1 x 2 for the rest of the positions.
// - 2-byte weights are split into even and odd weights rather than low and high halves (wLo/wHi below):
//   one shift or mask per 4 weights instead of an extend and a shift, against one reordered copy of x per
//   call (interleave()): faster at n = 1, the same at n >= 4, which the multiply and add ports bound
//   (bench/results/cpu-matmul.md, "even/odd bf16").
// - Row blocks are the outer loop, positions the inner: a block's weights (R rows) stay in L1 while every
//   position passes over them, so W is read from memory once per call whatever n is.
// - The memory is JS-managed (no allocator here, runtime stub): every pointer is a byte offset given by
//   the host. Loads are unaligned v128 loads, which wasm allows at full speed on x64 and arm64.

// The weights' dtype codes, shared with the host (src/backends/cpu/kernel-abi.ts).
const F32 = DTYPE_F32;
const F16 = DTYPE_F16;
const BF16 = DTYPE_BF16;

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

// Eight weights of a row as two f32x4, p pointing at weight i. f32: weights i..i+3 and i+4..i+7. 2-byte
// dtypes: u is the 16 bytes at p read once, and the two vectors are the even weights (i, i+2, i+4, i+6: the
// low half of each 32-bit lane) and the odd ones (the high halves), so that widening is one shift or mask per
// vector (bf16 is the top half of an f32: the odd ones need only their low half cleared) instead of an
// extend and a shift. x is read in the same order from a copy whose 8-value blocks are stored evens first
// (interleave() below); sums are unchanged, only their order of terms.
// @ts-ignore: decorator
@inline function wLo(u: v128, p: usize, dt: i32): v128 {
  if (dt === F32) return v128.load(p);
  if (dt === BF16) return i32x4.shl(u, 16);
  return halfToF32(v128.and(u, i32x4.splat(0xffff)));
}

// @ts-ignore: decorator
@inline function wHi(u: v128, p: usize, dt: i32): v128 {
  if (dt === F32) return v128.load(p, 16);
  if (dt === BF16) return v128.and(u, i32x4.splat(0xffff0000));
  return halfToF32(i32x4.shr_u(u, 16));
}

// The 16 bytes of 2-byte weights at p (unused for f32, where the select folds away at each call site).
// @ts-ignore: decorator
@inline function wRaw(p: usize, dt: i32): v128 {
  return dt === F32 ? i32x4.splat(0) : v128.load(p);
}

/**
 * xv = x [n, k] with each whole 8-value block of a row stored evens first (x0 x2 x4 x6 x1 x3 x5 x7), the order
 * the 2-byte kernels read x in; the k % 8 tail of a row is not copied (finish() reads it from x).
 */
export function interleave(x: usize, xv: usize, n: i32, k: i32): void {
  const end = k & ~7;
  for (let r = 0; r < n; r++) {
    const row = <usize>r * <usize>k << 2;
    for (let i = 0; i < end; i += 8) {
      const o = row + (<usize>i << 2);
      const a = v128.load(x + o), b = v128.load(x + o, 16);
      v128.store(xv + o, i32x4.shuffle(a, b, 0, 2, 4, 6));
      v128.store(xv + o, i32x4.shuffle(a, b, 1, 3, 5, 7), 16);
    }
  }
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
  P: i32, R: i32, dt: i32, x: usize, xv: usize, w: usize, bias: usize, out: usize, k: i32, m: i32, r: i32, j: i32,
): void {
  const ws: usize = dt === F32 ? 4 : 2;
  const rowBytes = <usize>k * ws;
  const w0 = w + <usize>j * rowBytes;
  const w1 = w0 + rowBytes;
  const w2 = w1 + rowBytes;
  const w3 = w2 + rowBytes;
  const xStride = <usize>k * 4;
  const x0 = xv + <usize>r * xStride;
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
      const u0 = wRaw(w0 + wo, dt);
      a00 = madd(wLo(u0, w0 + wo, dt), xl, a00); b00 = madd(wHi(u0, w0 + wo, dt), xh, b00);
      if (R > 1) {
        const u1 = wRaw(w1 + wo, dt);
        a01 = madd(wLo(u1, w1 + wo, dt), xl, a01); b01 = madd(wHi(u1, w1 + wo, dt), xh, b01);
      }
      if (R > 2) {
        const u2 = wRaw(w2 + wo, dt), u3 = wRaw(w3 + wo, dt);
        a02 = madd(wLo(u2, w2 + wo, dt), xl, a02); b02 = madd(wHi(u2, w2 + wo, dt), xh, b02);
        a03 = madd(wLo(u3, w3 + wo, dt), xl, a03); b03 = madd(wHi(u3, w3 + wo, dt), xh, b03);
      }
    }
    a00 = f32x4.add(a00, b00); a01 = f32x4.add(a01, b01); a02 = f32x4.add(a02, b02); a03 = f32x4.add(a03, b03);
  }
  for (let i = 0; P > 1 && i < end; i += 8) {
    const wo = <usize>i * ws;
    const xo = <usize>i * 4;
    const u0 = wRaw(w0 + wo, dt);
    const l0 = wLo(u0, w0 + wo, dt), h0 = wHi(u0, w0 + wo, dt);
    let l1 = z, h1 = z, l2 = z, h2 = z, l3 = z, h3 = z;
    if (R > 1) { const u1 = wRaw(w1 + wo, dt); l1 = wLo(u1, w1 + wo, dt); h1 = wHi(u1, w1 + wo, dt); }
    if (R > 2) {
      const u2 = wRaw(w2 + wo, dt), u3 = wRaw(w3 + wo, dt);
      l2 = wLo(u2, w2 + wo, dt); h2 = wHi(u2, w2 + wo, dt); l3 = wLo(u3, w3 + wo, dt); h3 = wHi(u3, w3 + wo, dt);
    }
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
  R: i32, dt: i32, x: usize, xv: usize, w: usize, bias: usize, out: usize, n: i32, k: i32, m: i32, j: i32,
): void {
  let r = 0;
  if (R < 4) {
    for (; r + 4 <= n; r += 4) tile(4, R, dt, x, xv, w, bias, out, k, m, r, j);
    if (r + 2 <= n) { tile(2, R, dt, x, xv, w, bias, out, k, m, r, j); r += 2; }
  }
  for (; r < n; r++) tile(1, R, dt, x, xv, w, bias, out, k, m, r, j);
}

// @ts-ignore: decorator
@inline function run(
  dt: i32, x: usize, xv: usize, w: usize, bias: usize, out: usize, n: i32, k: i32, m: i32, j0: i32, j1: i32,
): void {
  let j = j0;
  if (n === 1) {
    for (; j + 4 <= j1; j += 4) positions(4, dt, x, xv, w, bias, out, n, k, m, j);
  } else {
    for (; j + 2 <= j1; j += 2) positions(2, dt, x, xv, w, bias, out, n, k, m, j);
  }
  for (; j < j1; j++) positions(1, dt, x, xv, w, bias, out, n, k, m, j);
}

/**
 * out[r * m + j] = sum_i x[r * k + i] * W[j * k + i] (+ bias[j]) for r < n, j0 <= j < j1. Pointers are
 * byte offsets; x, bias and out are f32; W is f32 (dt 0), f16 (1) or bf16 (2); bias 0 means none. For 2-byte
 * W, xv is interleave(x) (unused for f32).
 */
export function matmul(
  x: usize, xv: usize, w: usize, bias: usize, out: usize, n: i32, k: i32, m: i32, j0: i32, j1: i32, dt: i32,
): void {
  if (dt === BF16) run(BF16, x, xv, w, bias, out, n, k, m, j0, j1);
  else if (dt === F16) run(F16, x, xv, w, bias, out, n, k, m, j0, j1);
  else run(F32, x, x, w, bias, out, n, k, m, j0, j1);
}
