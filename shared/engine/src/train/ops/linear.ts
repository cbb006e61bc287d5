// A linear layer without bias, y = x W^T with W in Hugging Face's layout [out, in], and its two gradients:
// dx = dy W (the input's) and dW += dy^T x (the weight's, accumulated: a weight used at several unrolled
// draft steps sums its gradients).
//
// Plain TypeScript over Float32Array, sums in f64 (JS numbers). Each product runs in 4 x 4 tiles: four
// rows against four columns, sixteen running sums fed by eight loads per step of the inner index, so a
// value read from memory serves four multiply-adds instead of one (about 3x over the naive loop order in
// V8 on this machine). Edges that do not fill a tile take the plain loop. The formulas are the textbook
// ones; gradcheck.test.ts checks all three against finite differences on shapes that exercise the edges.

/** y[rows, out] = x[rows, in] W^T. */
export function linearForward(
  x: Float32Array,
  w: Float32Array,
  rows: number,
  inF: number,
  outF: number,
): Float32Array {
  if (x.length !== rows * inF || w.length !== outF * inF)
    throw new RangeError(
      `linearForward: x of ${x.length} for [${rows}, ${inF}], W of ${w.length} for [${outF}, ${inF}]`,
    );
  const y = new Float32Array(rows * outF);
  abT(x, w, rows, outF, inF, y);
  return y;
}

/** dx[rows, in] = dy[rows, out] W; added into `into` when given, else a new array. */
export function linearBackwardInput(
  dy: Float32Array,
  w: Float32Array,
  rows: number,
  inF: number,
  outF: number,
  into?: Float32Array,
): Float32Array {
  if (dy.length !== rows * outF || w.length !== outF * inF)
    throw new RangeError(`linearBackwardInput: dy ${dy.length} for [${rows}, ${outF}], W ${w.length}`);
  const dx = into ?? new Float32Array(rows * inF);
  if (dx.length !== rows * inF) throw new RangeError(`linearBackwardInput: dx of ${dx.length}`);
  // dx[r, :] = sum_j dy[r, j] W[j, :].
  accumulateAtB(dy, outF, 1, w, outF, rows, inF, dx);
  return dx;
}

/** dW[out, in] += dy[rows, out]^T x[rows, in]. */
export function linearBackwardWeight(
  dy: Float32Array,
  x: Float32Array,
  rows: number,
  inF: number,
  outF: number,
  dw: Float32Array,
): void {
  if (dy.length !== rows * outF || x.length !== rows * inF || dw.length !== outF * inF) {
    throw new RangeError(
      `linearBackwardWeight: dy ${dy.length}, x ${x.length}, dW ${dw.length} for ${rows} rows, [${outF}, ${inF}]`,
    );
  }
  // dW[j, :] = sum_r dy[r, j] x[r, :].
  accumulateAtB(dy, 1, outF, x, rows, outF, inF, dw);
}

/** c[m, n] = a[m, k] b[n, k]^T (both read along k). */
function abT(a: Float32Array, b: Float32Array, m: number, n: number, k: number, c: Float32Array): void {
  const m4 = m - (m % 4);
  const n4 = n - (n % 4);
  for (let r = 0; r < m4; r += 4) {
    const a0 = r * k;
    const a1 = a0 + k;
    const a2 = a1 + k;
    const a3 = a2 + k;
    for (let j = 0; j < n4; j += 4) {
      const b0 = j * k;
      const b1 = b0 + k;
      const b2 = b1 + k;
      const b3 = b2 + k;
      let s00 = 0,
        s01 = 0,
        s02 = 0,
        s03 = 0,
        s10 = 0,
        s11 = 0,
        s12 = 0,
        s13 = 0;
      let s20 = 0,
        s21 = 0,
        s22 = 0,
        s23 = 0,
        s30 = 0,
        s31 = 0,
        s32 = 0,
        s33 = 0;
      for (let i = 0; i < k; i++) {
        const x0 = a[a0 + i]!;
        const x1 = a[a1 + i]!;
        const x2 = a[a2 + i]!;
        const x3 = a[a3 + i]!;
        const w0 = b[b0 + i]!;
        const w1 = b[b1 + i]!;
        const w2 = b[b2 + i]!;
        const w3 = b[b3 + i]!;
        s00 += x0 * w0;
        s01 += x0 * w1;
        s02 += x0 * w2;
        s03 += x0 * w3;
        s10 += x1 * w0;
        s11 += x1 * w1;
        s12 += x1 * w2;
        s13 += x1 * w3;
        s20 += x2 * w0;
        s21 += x2 * w1;
        s22 += x2 * w2;
        s23 += x2 * w3;
        s30 += x3 * w0;
        s31 += x3 * w1;
        s32 += x3 * w2;
        s33 += x3 * w3;
      }
      let o = r * n + j;
      c[o] = s00;
      c[o + 1] = s01;
      c[o + 2] = s02;
      c[o + 3] = s03;
      o += n;
      c[o] = s10;
      c[o + 1] = s11;
      c[o + 2] = s12;
      c[o + 3] = s13;
      o += n;
      c[o] = s20;
      c[o + 1] = s21;
      c[o + 2] = s22;
      c[o + 3] = s23;
      o += n;
      c[o] = s30;
      c[o + 1] = s31;
      c[o + 2] = s32;
      c[o + 3] = s33;
    }
  }
  // Edges: the rows past m4 against every column, the columns past n4 against the tiled rows.
  for (let r = 0; r < m; r++) {
    for (let j = r < m4 ? n4 : 0; j < n; j++) {
      const ao = r * k;
      const bo = j * k;
      let s = 0;
      for (let i = 0; i < k; i++) s += a[ao + i]! * b[bo + i]!;
      c[r * n + j] = s;
    }
  }
}

/**
 * c[p', :] += sum_t A(p', t) b[t, :] for t < s, where A(p', t) = a[p' * sp + t * st]: dx = dy W (A = dy,
 * t over the outputs) and dW = dy^T x (A = dy read down its columns, t over the rows). Tiles of four
 * values of p' by four of t: sixteen coefficients in registers, and per column four loads of b and four
 * read-modify-writes of the f64 accumulators for sixteen multiply-adds.
 */
function accumulateAtB(
  a: Float32Array,
  sp: number,
  st: number,
  b: Float32Array,
  s: number,
  p: number,
  q: number,
  c: Float32Array,
): void {
  const acc = new Float64Array(4 * q);
  const s4 = s - (s % 4);
  const A = (r: number, t: number) => (r < p ? a[r * sp + t * st]! : 0);
  for (let r0 = 0; r0 < p; r0 += 4) {
    acc.fill(0);
    for (let t = 0; t < s4; t += 4) {
      const g00 = A(r0, t),
        g01 = A(r0, t + 1),
        g02 = A(r0, t + 2),
        g03 = A(r0, t + 3);
      const g10 = A(r0 + 1, t),
        g11 = A(r0 + 1, t + 1),
        g12 = A(r0 + 1, t + 2),
        g13 = A(r0 + 1, t + 3);
      const g20 = A(r0 + 2, t),
        g21 = A(r0 + 2, t + 1),
        g22 = A(r0 + 2, t + 2),
        g23 = A(r0 + 2, t + 3);
      const g30 = A(r0 + 3, t),
        g31 = A(r0 + 3, t + 1),
        g32 = A(r0 + 3, t + 2),
        g33 = A(r0 + 3, t + 3);
      const b0 = t * q;
      const b1 = b0 + q;
      const b2 = b1 + q;
      const b3 = b2 + q;
      for (let i = 0; i < q; i++) {
        const v0 = b[b0 + i]!;
        const v1 = b[b1 + i]!;
        const v2 = b[b2 + i]!;
        const v3 = b[b3 + i]!;
        acc[i]! += g00 * v0 + g01 * v1 + g02 * v2 + g03 * v3;
        acc[q + i]! += g10 * v0 + g11 * v1 + g12 * v2 + g13 * v3;
        acc[2 * q + i]! += g20 * v0 + g21 * v1 + g22 * v2 + g23 * v3;
        acc[3 * q + i]! += g30 * v0 + g31 * v1 + g32 * v2 + g33 * v3;
      }
    }
    const rows = Math.min(4, p - r0);
    for (let t = s4; t < s; t++) {
      const bo = t * q;
      for (let rr = 0; rr < rows; rr++) {
        const g = A(r0 + rr, t);
        const ao = rr * q;
        for (let i = 0; i < q; i++) acc[ao + i]! += g * b[bo + i]!;
      }
    }
    const co = r0 * q;
    for (let i = 0; i < rows * q; i++) c[co + i]! += acc[i]!;
  }
}
