// The machine's own ceilings, as bench/cpu-decode.ts measures them from inside WebAssembly (the same code
// generation the kernels get): a bulk copy, a read-only streaming sum, and a multiply-add loop. Not used by the
// backend; they live in the kernels' module so that the bench needs no second build.

/** memory.copy of `bytes` from src to dst (a single bulk-memory instruction: V8 calls its memmove). */
export function probeCopy(dst: usize, src: usize, bytes: i32): void {
  memory.copy(dst, src, <usize>bytes);
}

/** Sum of `bytes` (a multiple of 64) as f32x4 lanes: 64 bytes a step into four independent accumulators. */
export function probeSum(p: usize, bytes: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const end = p + <usize>bytes;
  for (; p < end; p += 64) {
    a0 = f32x4.add(a0, v128.load(p));
    a1 = f32x4.add(a1, v128.load(p, 16));
    a2 = f32x4.add(a2, v128.load(p, 32));
    a3 = f32x4.add(a3, v128.load(p, 48));
  }
  const s = f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

// a * b + c as the matmul kernel does it: fused where relaxed SIMD is compiled in, else a multiply then an add.
// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/**
 * `iters` steps of 10 independent f32x4 multiply-add chains (enough to cover the add or FMA latency on two
 * ports): 80 flops a step. Register-only, so the arithmetic and not memory is what it measures.
 */
export function probeMadd(iters: i32, seed: f32): f32 {
  const m = f32x4.splat(0.999999), d = f32x4.splat(seed);
  let a0 = d, a1 = d, a2 = d, a3 = d, a4 = d, a5 = d, a6 = d, a7 = d, a8 = d, a9 = d;
  for (let i = 0; i < iters; i++) {
    a0 = madd(a0, m, d); a1 = madd(a1, m, d); a2 = madd(a2, m, d); a3 = madd(a3, m, d); a4 = madd(a4, m, d);
    a5 = madd(a5, m, d); a6 = madd(a6, m, d); a7 = madd(a7, m, d); a8 = madd(a8, m, d); a9 = madd(a9, m, d);
  }
  const s = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(f32x4.add(a6, a7), f32x4.add(a8, a9))));
  return f32x4.extract_lane(s, 0);
}
