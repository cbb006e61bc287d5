// Softmax + top-k of rows (Backend.topKRows), in two steps so that threads can share a vocabulary-sized row:
// - topkRows: thread t of `threads` takes columns [c0, c1) of every row (shareLo, multiples of 4) and writes one
//   record per (row, thread): the maximum m of its columns, s = sum exp(v - m) over them, and its best
//   min(k, c1 - c0) (value, id) pairs as a min-heap (root = the worst kept).
// - topkMerge (one thread, after every share is done): per row, M = max m_t, S = sum s_t exp(m_t - M),
//   logSumExp = M + ln S; the best k of every record's pairs, sorted largest first.
// Order: a before b when a.value > b.value, or equal values and a.id < b.id (the lowest id wins ties). A share
// scans its columns in ascending id order, so a value equal to the heap's worst never displaces it (the kept
// one has the lower id) and the scan only needs a strict >, tested four columns at a time against the worst.
//
// exp is a Cephes-style f32x4 polynomial (about 1 ulp for the arguments met here, v - m <= 0), summed in f64
// lanes: the error of the log-sum-exp is of the order of its own f32 rounding (about 1e-7 relative), and one
// row of 8192 columns costs a few microseconds where f64 Math.exp per column costs about 100.
//
// Record layout, `stride` = 16 + 8k bytes: 0 m f32, 4 count i32, 8 s f64, 16.. count pairs (value f32, id i32)
// (the host allocates the records: the header and pair sizes are src/backends/cpu/kernel-abi.ts's).
import { TOPK_PAIR_BYTES, TOPK_RECORD_HEADER } from "../src/backends/cpu/kernel-abi";

// @ts-ignore: decorator
@inline function recordStride(k: i32): usize {
  return <usize>TOPK_RECORD_HEADER + <usize>k * <usize>TOPK_PAIR_BYTES;
}

// @ts-ignore: decorator
@inline function better(va: f32, ia: i32, vb: f32, ib: i32): bool {
  return va > vb || (va == vb && ia < ib);
}

// @ts-ignore: decorator
@inline function pv(h: usize, i: i32): f32 {
  return load<f32>(h + (<usize>i << 3));
}

// @ts-ignore: decorator
@inline function pid(h: usize, i: i32): i32 {
  return load<i32>(h + (<usize>i << 3), 4);
}

// @ts-ignore: decorator
@inline function put(h: usize, i: i32, v: f32, id: i32): void {
  store<f32>(h + (<usize>i << 3), v);
  store<i32>(h + (<usize>i << 3), id, 4);
}

/** Min-heap (root = worst) of `size` pairs at h: moves (v, id) from slot i up to its place. */
function siftUp(h: usize, i: i32, v: f32, id: i32): void {
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!better(pv(h, p), pid(h, p), v, id)) break;
    put(h, i, pv(h, p), pid(h, p));
    i = p;
  }
  put(h, i, v, id);
}

/** Puts (v, id) at the root of a heap of `size` and moves it down to its place. */
function siftDown(h: usize, size: i32, v: f32, id: i32): void {
  let i = 0;
  for (;;) {
    let c = 2 * i + 1;
    if (c >= size) break;
    // The worse child.
    if (c + 1 < size && better(pv(h, c), pid(h, c), pv(h, c + 1), pid(h, c + 1))) c++;
    if (!better(v, id, pv(h, c), pid(h, c))) break;
    put(h, i, pv(h, c), pid(h, c));
    i = c;
  }
  put(h, i, v, id);
}

// exp(x) for lanes x <= 0: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by Cephes expf's polynomial, times 2^n built in
// the exponent field. Below -87.3 the result would leave f32's normal range: clamped there (about 1e-38, nothing
// beside the row maximum's exp(0) = 1).
// @ts-ignore: decorator
@inline export function expNeg(x: v128): v128 {
  x = f32x4.pmax(x, f32x4.splat(-87.33654));
  // n = round(x log2 e) by adding 1.5 * 2^23: the sum's low mantissa bits are n (two's complement), so the
  // same bits shifted into the exponent field give 2^n below.
  const t = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504088896341)), f32x4.splat(12582912.0));
  const n = f32x4.sub(t, f32x4.splat(12582912.0));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1));
  const scale = i32x4.add(i32x4.shl(t, 23), i32x4.splat(127 << 23));
  return f32x4.mul(p, scale);
}

/** One row's columns [c0, c1) into the record at rec (layout above). */
function partial(row: usize, c0: i32, c1: i32, k: i32, rec: usize): void {
  const h = rec + TOPK_RECORD_HEADER;
  const lim = min(k, max(c1 - c0, 0));
  let m: f32 = -Infinity;
  let c = c0;
  // The first `lim` columns fill the heap.
  for (let i = 0; i < lim; i++, c++) {
    const v = load<f32>(row + (<usize>c << 2));
    if (v > m) m = v;
    siftUp(h, i, v, c);
  }
  // The rest: sixteen columns at a time against the worst kept (one test for the four vectors); a column
  // that beats it replaces the root. pmax (one maxps on x64; rows have no NaN) in four independent lanes.
  let m0 = f32x4.splat(m), m1 = m0, m2 = m0, m3 = m0;
  if (lim > 0) {
    let worst = pv(h, 0);
    for (; c + 16 <= c1; c += 16) {
      const p = row + (<usize>c << 2);
      const v0 = v128.load(p), v1 = v128.load(p, 16), v2 = v128.load(p, 32), v3 = v128.load(p, 48);
      m0 = f32x4.pmax(m0, v0);
      m1 = f32x4.pmax(m1, v1);
      m2 = f32x4.pmax(m2, v2);
      m3 = f32x4.pmax(m3, v3);
      const wv = f32x4.splat(worst);
      const hit = v128.or(v128.or(f32x4.gt(v0, wv), f32x4.gt(v1, wv)), v128.or(f32x4.gt(v2, wv), f32x4.gt(v3, wv)));
      if (v128.any_true(hit)) {
        for (let j = 0; j < 16; j++) {
          const x = load<f32>(p + (<usize>j << 2));
          if (x > worst) {
            siftDown(h, lim, x, c + j);
            worst = pv(h, 0);
          }
        }
      }
    }
    for (; c < c1; c++) {
      const x = load<f32>(row + (<usize>c << 2));
      if (x > m) m = x;
      if (x > worst) {
        siftDown(h, lim, x, c);
        worst = pv(h, 0);
      }
    }
  }
  const mv = f32x4.pmax(f32x4.pmax(m0, m1), f32x4.pmax(m2, m3));
  m = max(m, max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3))));
  // s = sum exp(v - m), f64 lanes.
  let s0 = f64x2.splat(0);
  let s1 = f64x2.splat(0);
  const ms = f32x4.splat(m);
  c = c0;
  // Eight columns a step: the two exps are independent, and their f32 sum (two terms <= 1 each, one rounding)
  // goes into the f64 lanes.
  for (; c + 8 <= c1; c += 8) {
    const p = row + (<usize>c << 2);
    const e = f32x4.add(expNeg(f32x4.sub(v128.load(p), ms)), expNeg(f32x4.sub(v128.load(p, 16), ms)));
    s0 = f64x2.add(s0, f64x2.promote_low_f32x4(e));
    s1 = f64x2.add(s1, f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 0, 1)));
  }
  const s2 = f64x2.add(s0, s1);
  let s = f64x2.extract_lane(s2, 0) + f64x2.extract_lane(s2, 1);
  for (; c < c1; c++) s += Math.exp(<f64>(load<f32>(row + (<usize>c << 2)) - m));
  store<f32>(rec, m);
  store<i32>(rec, lim, 4);
  store<f64>(rec, s, 8);
}

// @ts-ignore: decorator
@inline function shareLo(total: i32, threads: i32, t: i32): i32 {
  const per = ((total + threads * 4 - 1) / (threads * 4)) * 4;
  return min(total, t * per);
}

/**
 * Thread t's share of every row of x [rows, cols] (f32): its records at part + (r * threads + t) * stride.
 * A thread whose share is empty still writes an empty record (count 0, m = -inf, s = 0).
 */
export function topkRows(x: usize, rows: i32, cols: i32, k: i32, threads: i32, t: i32, part: usize): void {
  const stride = recordStride(k);
  const c0 = shareLo(cols, threads, t);
  const c1 = shareLo(cols, threads, t + 1);
  for (let r = 0; r < rows; r++) {
    const rec = part + (<usize>(r * threads + t)) * stride;
    partial(x + (<usize>r * <usize>cols << 2), c0, c1, k, rec);
  }
}

/**
 * Per row, the `parts` records written by topkRows combined: ids i32 [rows, k] and values f32 [rows, k] largest
 * first, lse f32 [rows]. heap: scratch of k pairs (8k bytes).
 */
export function topkMerge(
  part: usize, rows: i32, k: i32, parts: i32, ids: usize, values: usize, lse: usize, heap: usize,
): void {
  const stride = recordStride(k);
  for (let r = 0; r < rows; r++) {
    const first = part + (<usize>(r * parts)) * stride;
    let big: f64 = -Infinity;
    for (let p = 0; p < parts; p++) {
      const rec = first + <usize>p * stride;
      if (load<i32>(rec, 4) > 0) big = max(big, <f64>load<f32>(rec));
    }
    let sum: f64 = 0;
    let size = 0;
    for (let p = 0; p < parts; p++) {
      const rec = first + <usize>p * stride;
      const count = load<i32>(rec, 4);
      if (count === 0) continue;
      sum += load<f64>(rec, 8) * Math.exp(<f64>load<f32>(rec) - big);
      const h = rec + TOPK_RECORD_HEADER;
      for (let i = 0; i < count; i++) {
        const v = pv(h, i);
        const id = pid(h, i);
        if (size < k) {
          siftUp(heap, size, v, id);
          size++;
        } else if (better(v, id, pv(heap, 0), pid(heap, 0))) {
          siftDown(heap, size, v, id);
        }
      }
    }
    store<f32>(lse + (<usize>r << 2), <f32>(big + Math.log(sum)));
    // Pop the worst first into the last place: the row comes out largest first.
    const out = <usize>(r * k) << 2;
    for (let n = size; n > 0; n--) {
      store<i32>(ids + out + (<usize>(n - 1) << 2), pid(heap, 0));
      store<f32>(values + out + (<usize>(n - 1) << 2), pv(heap, 0));
      const lastV = pv(heap, n - 1);
      const lastId = pid(heap, n - 1);
      siftDown(heap, n - 1, lastV, lastId);
    }
  }
}

/**
 * out[r] = the index of row r's largest value, the lowest index on ties (k = 1 without the softmax): the
 * maximum four columns at a time, then the first column equal to it. Rows must be free of NaN.
 */
export function argmaxRows(x: usize, rows: i32, cols: i32, out: usize): void {
  for (let r = 0; r < rows; r++) {
    const row = x + (<usize>r * <usize>cols << 2);
    // pmax (a < b ? b : a) is one maxps on x64 where max's NaN and -0 rules take a longer sequence; four
    // accumulators keep its latency off the critical path.
    let m0 = f32x4.splat(-Infinity), m1 = m0, m2 = m0, m3 = m0;
    let c = 0;
    for (; c + 16 <= cols; c += 16) {
      const p = row + (<usize>c << 2);
      m0 = f32x4.pmax(m0, v128.load(p));
      m1 = f32x4.pmax(m1, v128.load(p, 16));
      m2 = f32x4.pmax(m2, v128.load(p, 32));
      m3 = f32x4.pmax(m3, v128.load(p, 48));
    }
    for (; c + 4 <= cols; c += 4) m0 = f32x4.pmax(m0, v128.load(row + (<usize>c << 2)));
    const mv = f32x4.pmax(f32x4.pmax(m0, m1), f32x4.pmax(m2, m3));
    let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
    for (; c < cols; c++) m = max(m, load<f32>(row + (<usize>c << 2)));
    const ms = f32x4.splat(m);
    c = 0;
    while (c + 16 <= cols) {
      const p = row + (<usize>c << 2);
      const e = v128.or(
        v128.or(f32x4.eq(v128.load(p), ms), f32x4.eq(v128.load(p, 16), ms)),
        v128.or(f32x4.eq(v128.load(p, 32), ms), f32x4.eq(v128.load(p, 48), ms)),
      );
      if (v128.any_true(e)) break;
      c += 16;
    }
    while (c + 4 <= cols && !v128.any_true(f32x4.eq(v128.load(row + (<usize>c << 2)), ms))) c += 4;
    while (c < cols && load<f32>(row + (<usize>c << 2)) != m) c++;
    store<i32>(out + (<usize>r << 2), c);
  }
}
