// Rotary embedding in Hugging Face's "rotate half" layout: within each head, column i pairs with column
// i + headDim/2, both rotated by angle position * invFreq[i].
import type { RopeSpec } from "../../backend.js";
import { RefActivation } from "./types.js";

export function rope(x: RefActivation, positions: Int32Array, spec: RopeSpec): RefActivation {
  const d = spec.headDim;
  const half = d / 2;
  if (x.cols % d !== 0 || positions.length !== x.rows || spec.invFreq.length !== half) {
    throw new RangeError(`rope: x [${x.rows}, ${x.cols}], ${positions.length} positions, head dim ${d}`);
  }
  const out = RefActivation.zeros(x.rows, x.cols);
  for (let r = 0; r < x.rows; r++) {
    const pos = positions[r] as number;
    for (let i = 0; i < half; i++) {
      // transformers forms the angle as an f32 product (inv_freq @ position_ids in float32); rounding it
      // the same way keeps long positions within the parity bound.
      const angle = Math.fround(pos * (spec.invFreq[i] as number));
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      for (let h = r * x.cols; h < (r + 1) * x.cols; h += d) {
        const a = x.data[h + i] as number;
        const b = x.data[h + i + half] as number;
        out.data[h + i] = a * cos - b * sin;
        out.data[h + i + half] = b * cos + a * sin;
      }
    }
  }
  return out;
}
