// RMSNorm as transformers' LlamaRMSNorm: y = x / sqrt(mean(x^2) + eps) * w, per group of `groupSize`
// columns (the whole row, or one head for Qwen3's q/k norm).
import { RefActivation } from "./types.js";

export function rmsNorm(x: RefActivation, w: Float32Array, eps: number, groupSize = x.cols): RefActivation {
  if (x.cols % groupSize !== 0 || w.length !== groupSize) {
    throw new RangeError(`rmsNorm: ${x.cols} columns, group ${groupSize}, weight of ${w.length}`);
  }
  const out = RefActivation.zeros(x.rows, x.cols);
  for (let g = 0; g < x.data.length; g += groupSize) {
    let sq = 0;
    for (let i = 0; i < groupSize; i++) sq += (x.data[g + i] as number) ** 2;
    const inv = 1 / Math.sqrt(sq / groupSize + eps);
    for (let i = 0; i < groupSize; i++) out.data[g + i] = (x.data[g + i] as number) * inv * (w[i] as number);
  }
  return out;
}
