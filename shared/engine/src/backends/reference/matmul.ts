// y = x W^T + b with W in Hugging Face linear layout [out, in]. Sums in f64 (a JS number): the reference
// should be at least as exact as the backends checked against it.
import { RefActivation } from "./types.js";

export function matmul(
  x: RefActivation,
  w: Float32Array,
  shape: readonly number[],
  bias?: Float32Array,
): RefActivation {
  const [m, k] = shape as [number, number];
  if (shape.length !== 2 || k !== x.cols) {
    throw new RangeError(`matmul: x [${x.rows}, ${x.cols}] by weight [${shape}]`);
  }
  if (bias !== undefined && bias.length !== m)
    throw new RangeError(`matmul: bias of ${bias.length} for ${m} outputs`);
  const out = RefActivation.zeros(x.rows, m);
  for (let r = 0; r < x.rows; r++) {
    const xo = r * k;
    for (let j = 0; j < m; j++) {
      const wo = j * k;
      let sum = 0;
      for (let i = 0; i < k; i++) sum += (x.data[xo + i] as number) * (w[wo + i] as number);
      out.data[r * m + j] = sum + (bias === undefined ? 0 : (bias[j] as number));
    }
  }
  return out;
}
