import {
  ATT_GROUP, ATT_HEAD_DIM, ATT_HEADS, ATT_K, ATT_LONGEST, ATT_OFFSETS, ATT_OUT, ATT_SCALE, ATT_SCORES, ATT_SLOTS,
  ATT_V, ATT_WIDTH, CHUNK_MASK, JOB_AUX, JOB_CHUNKS, JOB_DTYPE, JOB_FIXED, JOB_K, JOB_MODE, JOB_N, JOB_SEGMENT,
  JOB_SEGMENTS, JOB_X, MODE_ADD, MODE_ATTENTION, MODE_LINEAR, MODE_SILU_MUL, MODE_TOPK, SEG_AUX, SEG_BIAS, SEG_M,
  SEG_OUT, SEG_W, TOPK_K,
} from "../src/backends/cpu/kernel-abi";
import { attentionChunk } from "./attention";
import { siluMulRow } from "./elementwise";
import { matmul } from "./matmul";
import { topkRows } from "./topk";

// The kernels' side of the cpu backend's thread pool (src/backends/cpu/pool.ts): one pool hand-off per fused
// op. The host writes a job's arguments as i32 slots into the control block, laid out as
// src/backends/cpu/kernel-abi.ts says (the one source of the slot numbers and modes, compiled into this module
// and into the host); the job's output columns are cut into JOB_CHUNKS pieces (multiples of
// 4 columns, here, not in each caller, so no two threads can disagree on one), and threads claim chunks one at
// a time (job() below) until none are left: a thread the OS has not scheduled yet simply takes none, and the
// others do its part, where fixed shares made every product wait for it.
// LINEAR: the segments are independent products of the same x (q, k, v), their output columns laid end
//   to end and cut in multiples of 4 (the n = 1 row tile), so narrow k/v projections are not each split
//   into slivers.
// SILU_MUL: segment 0 is gate (out: a scratch), segment 1 is up (out: the result); a chunk computes both
//   products for the same columns, then silu(gate) * up over them while they are still in cache.
// ADD: one segment; its aux is the residual [n, m]: out = residual + product (+ bias), as add(residual, y).
// TOPK: not a product: softmax + top-k partials of x [n, k] (topk.ts, topkRows) with TOPK_K the number of
//   values kept per row and JOB_AUX the records' address; the columns are split, not the rows.
// ATTENTION: not a product: attention of x (q) [n rows] over the KV cache (attention.ts, attentionChunk), the
//   (row, head) pairs cut into the chunks; its other arguments in the ATT_* slots.

// @ts-ignore: decorator
@inline function slot(args: usize, i: i32): i32 {
  return load<i32>(args + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline function segment(args: usize, s: i32, f: i32): i32 {
  return slot(args, JOB_FIXED + s * JOB_SEGMENT + f);
}

/** Columns [lo, hi) of `total` for chunk t of `chunks`, in whole 4-column tiles. */
// @ts-ignore: decorator
@inline function shareLo(total: i32, chunks: i32, t: i32): i32 {
  const per = ((total + chunks * 4 - 1) / (chunks * 4)) * 4;
  return min(total, t * per);
}

/**
 * Claims chunks of the job at args until none are left, and runs them. claim (i32) holds the job's tag in
 * its high 16 bits and the next unclaimed chunk in its low 16 (0xffff: none, while the host rewrites the
 * arguments); done (i32) counts finished chunks. A claim is a compare-exchange of claim from (tag, c) to
 * (tag, c + 1): it fails for a thread that read a finished job's value, so a late thread never runs a
 * chunk of arguments being rewritten, and the arguments cannot change while a claimed chunk runs (the host
 * waits for done = chunks first). Returns 1 if this call finished the job's last chunk (the caller
 * wakes the host), else 0.
 */
export function job(args: usize, claim: usize, done: usize): i32 {
  let last = 0;
  for (;;) {
    const cur = atomic.load<i32>(claim);
    if ((cur & CHUNK_MASK) >= atomic.load<i32>(args, JOB_CHUNKS << 2)) break;
    if (atomic.cmpxchg<i32>(claim, cur, cur + 1) !== cur) continue;
    runChunk(args, cur & CHUNK_MASK);
    if (atomic.add<i32>(done, 1) + 1 === slot(args, JOB_CHUNKS)) last = 1;
  }
  return last;
}

/** Every chunk of the job at args on the calling thread (a job not handed to the workers). */
export function jobAll(args: usize): void {
  const chunks = slot(args, JOB_CHUNKS);
  for (let c = 0; c < chunks; c++) runChunk(args, c);
}

function runChunk(args: usize, t: i32): void {
  const mode = slot(args, JOB_MODE);
  const x = <usize>slot(args, JOB_X);
  const n = slot(args, JOB_N);
  const threads = slot(args, JOB_CHUNKS);
  if (mode === MODE_TOPK) {
    topkRows(x, n, slot(args, JOB_K), slot(args, TOPK_K), threads, t, <usize>slot(args, JOB_AUX));
    return;
  }
  if (mode === MODE_ATTENTION) {
    attentionChunk(
      x, <usize>slot(args, ATT_K), <usize>slot(args, ATT_V), <usize>slot(args, ATT_SLOTS),
      <usize>slot(args, ATT_OFFSETS), <usize>slot(args, ATT_OUT), n, slot(args, ATT_HEADS),
      slot(args, ATT_GROUP), slot(args, ATT_HEAD_DIM), slot(args, ATT_WIDTH),
      reinterpret<f32>(slot(args, ATT_SCALE)), <usize>slot(args, ATT_SCORES), slot(args, ATT_LONGEST), threads, t,
    );
    return;
  }
  const k = slot(args, JOB_K);
  const dt = slot(args, JOB_DTYPE);
  const segments = slot(args, JOB_SEGMENTS);
  const xv = <usize>slot(args, JOB_AUX);
  let total = 0;
  for (let s = 0; s < segments; s++) total += mode === MODE_LINEAR ? segment(args, s, SEG_M) : 0;
  if (mode !== MODE_LINEAR) total = segment(args, 0, SEG_M);
  const lo = shareLo(total, threads, t);
  const hi = shareLo(total, threads, t + 1);
  if (hi <= lo) return;
  if (mode === MODE_LINEAR) {
    let base = 0;
    for (let s = 0; s < segments; s++) {
      const m = segment(args, s, SEG_M);
      const j0 = max(lo - base, 0);
      const j1 = min(hi - base, m);
      if (j1 > j0) {
        const w = <usize>segment(args, s, SEG_W), bias = <usize>segment(args, s, SEG_BIAS);
        const out = <usize>segment(args, s, SEG_OUT);
        matmul(x, xv, w, bias, out, n, k, m, j0, j1, dt);
      }
      base += m;
    }
    return;
  }
  const m = total;
  const out = <usize>segment(args, 0, SEG_OUT);
  matmul(x, xv, <usize>segment(args, 0, SEG_W), <usize>segment(args, 0, SEG_BIAS), out, n, k, m, lo, hi, dt);
  if (mode === MODE_ADD) {
    // Residual added after the product (and bias), in that order: add(residual, matmul(x, w, bias)).
    const res = <usize>segment(args, 0, SEG_AUX);
    for (let r = 0; r < n; r++) {
      const row = <usize>r * <usize>m;
      for (let j = lo; j < hi; j++) {
        const p = (row + <usize>j) << 2;
        store<f32>(out + p, load<f32>(res + p) + load<f32>(out + p));
      }
    }
    return;
  }
  if (mode === MODE_SILU_MUL) {
    const up = <usize>segment(args, 1, SEG_OUT);
    matmul(x, xv, <usize>segment(args, 1, SEG_W), <usize>segment(args, 1, SEG_BIAS), up, n, k, m, lo, hi, dt);
    // silu(g) * u = g / (1 + e^-g) * u, four columns at a time with the f32x4 exp (elementwise.ts): f64
    // Math.exp per value cost 15 ns, 12 us a token on tiny-code and a tenth of a 4-token verification pass.
    for (let r = 0; r < n; r++) siluMulRow(out, up, up, (<usize>r * <usize>m + <usize>lo) << 2, hi - lo);
  }
}
