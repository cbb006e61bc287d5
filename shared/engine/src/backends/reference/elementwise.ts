// Row gathers and elementwise ops.
import { RefActivation } from "./types.js";

/** Rows `ids` of a [n, cols] table. */
export function gather(table: Float32Array, cols: number, ids: Int32Array): RefActivation {
  const n = table.length / cols;
  const out = RefActivation.zeros(ids.length, cols);
  ids.forEach((id, r) => {
    if (!(id >= 0 && id < n)) throw new RangeError(`gather: row ${id} outside [0, ${n})`);
    out.data.set(table.subarray(id * cols, (id + 1) * cols), r * cols);
  });
  return out;
}

function sameShape(op: string, a: RefActivation, b: RefActivation): void {
  if (a.rows !== b.rows || a.cols !== b.cols) {
    throw new RangeError(`${op}: [${a.rows}, ${a.cols}] and [${b.rows}, ${b.cols}]`);
  }
}

/** silu(gate) * up, silu(x) = x / (1 + e^-x). */
export function siluMul(gate: RefActivation, up: RefActivation): RefActivation {
  sameShape("siluMul", gate, up);
  const out = RefActivation.zeros(gate.rows, gate.cols);
  for (let i = 0; i < out.data.length; i++) {
    const g = gate.data[i] as number;
    out.data[i] = (g / (1 + Math.exp(-g))) * (up.data[i] as number);
  }
  return out;
}

export function add(a: RefActivation, b: RefActivation): RefActivation {
  sameShape("add", a, b);
  const out = RefActivation.zeros(a.rows, a.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = (a.data[i] as number) + (b.data[i] as number);
  return out;
}

/** Index of each row's largest value; the lowest index wins a tie (strict > keeps the first). */
export function argmaxRows(x: RefActivation): Int32Array {
  const out = new Int32Array(x.rows);
  for (let r = 0; r < x.rows; r++) {
    let best = 0;
    let bestValue = x.data[r * x.cols] as number;
    for (let c = 1; c < x.cols; c++) {
      const v = x.data[r * x.cols + c] as number;
      if (v > bestValue) {
        best = c;
        bestValue = v;
      }
    }
    out[r] = best;
  }
  return out;
}
