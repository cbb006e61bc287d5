// Rotary embedding in Hugging Face's "rotate half" layout, as the reference backend's rope: within each
// head, column i pairs with column i + headDim/2, both rotated by angle position * invFreq[i] (the angle
// rounded to f32 as transformers forms it). The rotation is orthogonal, so the backward is the rotation
// by the opposite angle: da = dA cos + dB sin, db = dB cos - dA sin.
import type { RopeSpec } from "../../backend.js";

function rotate(x: Float32Array, cols: number, positions: Int32Array, spec: RopeSpec, sign: 1 | -1) {
  const d = spec.headDim;
  const half = d / 2;
  const rows = positions.length;
  if (cols % d !== 0 || x.length !== rows * cols || spec.invFreq.length !== half)
    throw new RangeError(`rope: x of ${x.length} for [${rows}, ${cols}], head dim ${d}`);
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    const pos = positions[r]!;
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * spec.invFreq[i]!);
      const cos = Math.cos(angle);
      const sin = sign * Math.sin(angle);
      for (let h = r * cols; h < (r + 1) * cols; h += d) {
        const a = x[h + i]!;
        const b = x[h + i + half]!;
        out[h + i] = a * cos - b * sin;
        out[h + i + half] = b * cos + a * sin;
      }
    }
  }
  return out;
}

/** x [rows, cols] (cols a multiple of headDim), one position per row. */
export function ropeForward(
  x: Float32Array,
  cols: number,
  positions: Int32Array,
  spec: RopeSpec,
): Float32Array {
  return rotate(x, cols, positions, spec, 1);
}

/** dx from dy: the inverse rotation. */
export function ropeBackward(
  dy: Float32Array,
  cols: number,
  positions: Int32Array,
  spec: RopeSpec,
): Float32Array {
  return rotate(dy, cols, positions, spec, -1);
}
