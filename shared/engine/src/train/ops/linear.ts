// A linear layer without bias, y = x W^T with W in Hugging Face's layout [out, in], and its two gradients:
// dx = dy W (the input's) and dW += dy^T x (the weight's, accumulated: a weight used at several unrolled
// draft steps sums its gradients).
//
// Plain TypeScript over Float32Array, sums in f64 (JS numbers). The loops run four rows at a time so each
// weight row is read once per four outputs: the same formulas, ordered so a training step on one core is
// not dominated by reloading W (about 2x over the naive order on this machine's V8).

/** y[rows, out] = x[rows, in] W^T. */
export function linearForward(
  x: Float32Array,
  w: Float32Array,
  rows: number,
  inF: number,
  outF: number,
): Float32Array {
  checkShapes("linearForward", x, w, rows, inF, outF);
  const y = new Float32Array(rows * outF);
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const a0 = r * inF;
    const a1 = a0 + inF;
    const a2 = a1 + inF;
    const a3 = a2 + inF;
    for (let j = 0; j < outF; j++) {
      const wo = j * inF;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let i = 0; i < inF; i++) {
        const wv = w[wo + i]!;
        s0 += x[a0 + i]! * wv;
        s1 += x[a1 + i]! * wv;
        s2 += x[a2 + i]! * wv;
        s3 += x[a3 + i]! * wv;
      }
      y[r * outF + j] = s0;
      y[(r + 1) * outF + j] = s1;
      y[(r + 2) * outF + j] = s2;
      y[(r + 3) * outF + j] = s3;
    }
  }
  for (; r < rows; r++) {
    const a = r * inF;
    for (let j = 0; j < outF; j++) {
      const wo = j * inF;
      let s = 0;
      for (let i = 0; i < inF; i++) s += x[a + i]! * w[wo + i]!;
      y[r * outF + j] = s;
    }
  }
  return y;
}

/**
 * dx[rows, in] = dy[rows, out] W; added into `into` when given (a tensor read by several ops sums the
 * gradients of each), else a new array.
 */
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
  // Four rows at a time, accumulated in f64 (a value of dx sums `out` terms), then added once.
  const acc = new Float64Array(4 * inF);
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    acc.fill(0);
    for (let j = 0; j < outF; j++) {
      const g0 = dy[r * outF + j]!;
      const g1 = dy[(r + 1) * outF + j]!;
      const g2 = dy[(r + 2) * outF + j]!;
      const g3 = dy[(r + 3) * outF + j]!;
      if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0) continue;
      const wo = j * inF;
      for (let i = 0; i < inF; i++) {
        const wv = w[wo + i]!;
        acc[i]! += g0 * wv;
        acc[inF + i]! += g1 * wv;
        acc[2 * inF + i]! += g2 * wv;
        acc[3 * inF + i]! += g3 * wv;
      }
    }
    const xo = r * inF;
    for (let i = 0; i < 4 * inF; i++) dx[xo + i]! += acc[i]!;
  }
  for (; r < rows; r++) {
    acc.fill(0, 0, inF);
    for (let j = 0; j < outF; j++) {
      const g = dy[r * outF + j]!;
      if (g === 0) continue;
      const wo = j * inF;
      for (let i = 0; i < inF; i++) acc[i]! += g * w[wo + i]!;
    }
    const xo = r * inF;
    for (let i = 0; i < inF; i++) dx[xo + i]! += acc[i]!;
  }
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
  const acc = new Float64Array(inF);
  for (let j = 0; j < outF; j++) {
    acc.fill(0);
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const g0 = dy[r * outF + j]!;
      const g1 = dy[(r + 1) * outF + j]!;
      const g2 = dy[(r + 2) * outF + j]!;
      const g3 = dy[(r + 3) * outF + j]!;
      if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0) continue;
      const a0 = r * inF;
      const a1 = a0 + inF;
      const a2 = a1 + inF;
      const a3 = a2 + inF;
      for (let i = 0; i < inF; i++) {
        acc[i]! += g0 * x[a0 + i]! + g1 * x[a1 + i]! + g2 * x[a2 + i]! + g3 * x[a3 + i]!;
      }
    }
    for (; r < rows; r++) {
      const g = dy[r * outF + j]!;
      if (g === 0) continue;
      const a = r * inF;
      for (let i = 0; i < inF; i++) acc[i]! += g * x[a + i]!;
    }
    const wo = j * inF;
    for (let i = 0; i < inF; i++) dw[wo + i]! += acc[i]!;
  }
}

function checkShapes(
  op: string,
  x: Float32Array,
  w: Float32Array,
  rows: number,
  inF: number,
  outF: number,
): void {
  if (x.length !== rows * inF || w.length !== outF * inF) {
    throw new RangeError(
      `${op}: x of ${x.length} for [${rows}, ${inF}], W of ${w.length} for [${outF}, ${inF}]`,
    );
  }
}
