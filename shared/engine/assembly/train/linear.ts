// The eagle trainer's linear products as WebAssembly SIMD kernels (f32x4), the `cpu` counterpart of the
// host ops in src/train/ops/linear.ts, which are their reference (src/train/ops/linear-wasm.test.ts checks
// them against it). Built on its own, not into the cpu backend's kernels.wasm:
//   npx tsx shared/engine/src/train/wasm/build.ts   (writes src/train/wasm/linear-kernels.gen.ts)
// Memory is imported; every pointer is a byte offset of f32 data, row-major. Sums are f32 (four lanes, then
// the lanes added): about 1e-6 relative to the reference's f64 sums over the widths the head uses.

// c[m, n] = a[m, k] b[n, k]^T: tiles of four rows of a by two rows of b, eight f32x4 sums along k.
export function abT(a: usize, b: usize, c: usize, m: i32, n: i32, k: i32): void {
  const m4 = m & ~3;
  const n2 = n & ~1;
  const rb = (<usize>k) << 2;
  // Columns in blocks of J_BLOCK rows of b (96 KiB at k = 384: they stay in L2 while every row tile of a
  // passes over them), rather than every row tile streaming all n rows of b (the lm_head) from memory.
  for (let j0 = 0; j0 < n2; j0 += J_BLOCK) {
    const j1 = n2 - j0 < J_BLOCK ? n2 : j0 + J_BLOCK;
    abTBlock(a, b, c, m4, n, k, rb, j0, j1);
  }
  // Edges: rows past m4 against every column, the last column (odd n) against the tiled rows.
  for (let r = 0; r < m; r++) {
    for (let j = r < m4 ? n2 : 0; j < n; j++) {
      store<f32>(c + ((<usize>r * <usize>n + <usize>j) << 2), dot(a + <usize>r * rb, b + <usize>j * rb, k));
    }
  }
}

const J_BLOCK = 64;

function abTBlock(a: usize, b: usize, c: usize, m4: i32, n: i32, k: i32, rb: usize, j0: i32, j1: i32): void {
  const k4 = k & ~3;
  for (let r = 0; r < m4; r += 4) {
    const a0 = a + <usize>r * rb;
    const a1 = a0 + rb;
    const a2 = a1 + rb;
    const a3 = a2 + rb;
    for (let j = j0; j < j1; j += 2) {
      const b0 = b + <usize>j * rb;
      const b1 = b0 + rb;
      let s00 = f32x4.splat(0);
      let s01 = f32x4.splat(0);
      let s10 = f32x4.splat(0);
      let s11 = f32x4.splat(0);
      let s20 = f32x4.splat(0);
      let s21 = f32x4.splat(0);
      let s30 = f32x4.splat(0);
      let s31 = f32x4.splat(0);
      for (let i = 0; i < k4; i += 4) {
        const o = (<usize>i) << 2;
        const w0 = v128.load(b0 + o);
        const w1 = v128.load(b1 + o);
        let x = v128.load(a0 + o);
        s00 = f32x4.add(s00, f32x4.mul(x, w0));
        s01 = f32x4.add(s01, f32x4.mul(x, w1));
        x = v128.load(a1 + o);
        s10 = f32x4.add(s10, f32x4.mul(x, w0));
        s11 = f32x4.add(s11, f32x4.mul(x, w1));
        x = v128.load(a2 + o);
        s20 = f32x4.add(s20, f32x4.mul(x, w0));
        s21 = f32x4.add(s21, f32x4.mul(x, w1));
        x = v128.load(a3 + o);
        s30 = f32x4.add(s30, f32x4.mul(x, w0));
        s31 = f32x4.add(s31, f32x4.mul(x, w1));
      }
      const row = c + ((<usize>r * <usize>n + <usize>j) << 2);
      const cb = (<usize>n) << 2;
      store<f32>(row, hsum(s00) + tail(a0, b0, k4, k));
      store<f32>(row + 4, hsum(s01) + tail(a0, b1, k4, k));
      store<f32>(row + cb, hsum(s10) + tail(a1, b0, k4, k));
      store<f32>(row + cb + 4, hsum(s11) + tail(a1, b1, k4, k));
      store<f32>(row + 2 * cb, hsum(s20) + tail(a2, b0, k4, k));
      store<f32>(row + 2 * cb + 4, hsum(s21) + tail(a2, b1, k4, k));
      store<f32>(row + 3 * cb, hsum(s30) + tail(a3, b0, k4, k));
      store<f32>(row + 3 * cb + 4, hsum(s31) + tail(a3, b1, k4, k));
    }
  }
}

// c[p', :] += sum_{t < s} A(p', t) b[t, :], A(p', t) = a[p' * sp + t * st] (dx = dy W and dW = dy^T x):
// tiles of four values of p' by eight columns, eight f32x4 sums along t, added into c once per block of t.
export function atB(a: usize, sp: i32, st: i32, b: usize, s: i32, p: i32, q: i32, c: usize): void {
  // t in blocks of T_BLOCK rows of b (with q = 384, 96 KiB: stays in L2 while every tile of c passes over
  // it), rather than every tile streaming all s rows of b from memory.
  for (let t0 = 0; t0 < s; t0 += T_BLOCK) {
    atBBlock(a + ((<usize>(t0 * st)) << 2), sp, st, b + ((<usize>t0 * <usize>q) << 2), s - t0 < T_BLOCK ? s - t0 : T_BLOCK, p, q, c);
  }
}

const T_BLOCK = 64;

function atBBlock(a: usize, sp: i32, st: i32, b: usize, s: i32, p: i32, q: i32, c: usize): void {
  const q8 = q & ~7;
  const qb = (<usize>q) << 2;
  for (let r0 = 0; r0 < p; r0 += 4) {
    // Rows past p read row r0's coefficients (valid memory) and are never stored.
    const r1 = r0 + 1 < p ? r0 + 1 : r0;
    const r2 = r0 + 2 < p ? r0 + 2 : r0;
    const r3 = r0 + 3 < p ? r0 + 3 : r0;
    const rows = p - r0 < 4 ? p - r0 : 4;
    const p0 = a + ((<usize>(r0 * sp)) << 2);
    const p1 = a + ((<usize>(r1 * sp)) << 2);
    const p2 = a + ((<usize>(r2 * sp)) << 2);
    const p3 = a + ((<usize>(r3 * sp)) << 2);
    const tb = (<usize>st) << 2;
    for (let i = 0; i < q8; i += 8) {
      let c00 = f32x4.splat(0);
      let c01 = f32x4.splat(0);
      let c10 = f32x4.splat(0);
      let c11 = f32x4.splat(0);
      let c20 = f32x4.splat(0);
      let c21 = f32x4.splat(0);
      let c30 = f32x4.splat(0);
      let c31 = f32x4.splat(0);
      let bo = b + ((<usize>i) << 2);
      let to: usize = 0;
      for (let t = 0; t < s; t++) {
        const v0 = v128.load(bo);
        const v1 = v128.load(bo, 16);
        let g = f32x4.splat(load<f32>(p0 + to));
        c00 = f32x4.add(c00, f32x4.mul(g, v0));
        c01 = f32x4.add(c01, f32x4.mul(g, v1));
        g = f32x4.splat(load<f32>(p1 + to));
        c10 = f32x4.add(c10, f32x4.mul(g, v0));
        c11 = f32x4.add(c11, f32x4.mul(g, v1));
        g = f32x4.splat(load<f32>(p2 + to));
        c20 = f32x4.add(c20, f32x4.mul(g, v0));
        c21 = f32x4.add(c21, f32x4.mul(g, v1));
        g = f32x4.splat(load<f32>(p3 + to));
        c30 = f32x4.add(c30, f32x4.mul(g, v0));
        c31 = f32x4.add(c31, f32x4.mul(g, v1));
        bo += qb;
        to += tb;
      }
      const co = c + <usize>r0 * qb + ((<usize>i) << 2);
      addTo(co, c00, c01);
      if (rows > 1) addTo(co + qb, c10, c11);
      if (rows > 2) addTo(co + 2 * qb, c20, c21);
      if (rows > 3) addTo(co + 3 * qb, c30, c31);
    }
    // Columns past q8: one at a time.
    for (let rr = 0; rr < rows; rr++) {
      const pr = a + ((<usize>((r0 + rr) * sp)) << 2);
      for (let i = q8; i < q; i++) {
        let sum: f32 = 0;
        for (let t = 0; t < s; t++) {
          sum += load<f32>(pr + ((<usize>(t * st)) << 2)) * load<f32>(b + ((<usize>t * <usize>q + <usize>i) << 2));
        }
        const at = c + ((<usize>(r0 + rr) * <usize>q + <usize>i) << 2);
        store<f32>(at, load<f32>(at) + sum);
      }
    }
  }
}

function addTo(at: usize, lo: v128, hi: v128): void {
  v128.store(at, f32x4.add(v128.load(at), lo));
  v128.store(at, f32x4.add(v128.load(at, 16), hi), 16);
}

function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

// sum_{i in [from, k)} a[i] b[i]
function tail(a: usize, b: usize, from: i32, k: i32): f32 {
  let sum: f32 = 0;
  for (let i = from; i < k; i++) sum += load<f32>(a + ((<usize>i) << 2)) * load<f32>(b + ((<usize>i) << 2));
  return sum;
}

function dot(a: usize, b: usize, k: i32): f32 {
  const k4 = k & ~3;
  let acc = f32x4.splat(0);
  for (let i = 0; i < k4; i += 4) {
    const o = (<usize>i) << 2;
    acc = f32x4.add(acc, f32x4.mul(v128.load(a + o), v128.load(b + o)));
  }
  return hsum(acc) + tail(a, b, k4, k);
}
