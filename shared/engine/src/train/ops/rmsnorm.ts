// RMSNorm as transformers' LlamaRMSNorm (and the reference backend's rmsNorm): y = x * r * w per row,
// r = 1 / sqrt(mean(x^2) + eps), and its gradients:
//   dw_i += sum_rows dy_i x_i r
//   dx_i  = r w_i dy_i - x_i r^3 / n * sum_j dy_j w_j x_j
// The forward keeps r per row for the backward.

export interface RmsNormOutput {
  y: Float32Array;
  /** 1 / sqrt(mean(x^2) + eps) of each row. */
  inv: Float64Array;
}

export function rmsNormForward(
  x: Float32Array,
  w: Float32Array,
  rows: number,
  cols: number,
  eps: number,
): RmsNormOutput {
  if (x.length !== rows * cols || w.length !== cols)
    throw new RangeError(`rmsNormForward: x of ${x.length} for [${rows}, ${cols}], weight of ${w.length}`);
  const y = new Float32Array(rows * cols);
  const inv = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let sq = 0;
    for (let i = 0; i < cols; i++) sq += x[o + i]! * x[o + i]!;
    const ri = 1 / Math.sqrt(sq / cols + eps);
    inv[r] = ri;
    for (let i = 0; i < cols; i++) y[o + i] = x[o + i]! * ri * w[i]!;
  }
  return { y, inv };
}

/** Returns dx (added into `into` when given); adds the weight's gradient into dw. */
export function rmsNormBackward(
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  inv: Float64Array,
  rows: number,
  cols: number,
  dw: Float32Array | undefined,
  into?: Float32Array,
): Float32Array {
  if (dy.length !== rows * cols || x.length !== rows * cols || inv.length !== rows || w.length !== cols)
    throw new RangeError(`rmsNormBackward: shapes do not match [${rows}, ${cols}]`);
  const dx = into ?? new Float32Array(rows * cols);
  const dwAcc = dw === undefined ? undefined : new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const ri = inv[r]!;
    let dot = 0;
    for (let i = 0; i < cols; i++) dot += dy[o + i]! * w[i]! * x[o + i]!;
    const c = (ri * ri * ri * dot) / cols;
    for (let i = 0; i < cols; i++) dx[o + i]! += ri * w[i]! * dy[o + i]! - x[o + i]! * c;
    if (dwAcc !== undefined) for (let i = 0; i < cols; i++) dwAcc[i]! += dy[o + i]! * x[o + i]! * ri;
  }
  if (dw !== undefined && dwAcc !== undefined) for (let i = 0; i < cols; i++) dw[i]! += dwAcc[i]!;
  return dx;
}
