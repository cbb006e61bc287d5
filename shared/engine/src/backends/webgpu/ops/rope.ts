// Rotary embedding, HF "rotate half" layout: column i of each head pairs with i + headDim/2. The cos/sin
// table of the batch's positions is built on the host once per batch and RopeSpec, and reused by every
// layer: WGSL (like Vulkan) leaves sin/cos precision unspecified outside [-pi, pi], and angles reach 1e5
// radians at long positions, while the host computes them in f64 from the same f32-rounded angle as
// transformers.
import type { RopeSpec } from "../../../backend.js";
import type { GpuBatch } from "../batch.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, gpuBuf } from "../resources.js";
import { elementwiseKernel, elementwiseWorkgroups } from "./elementwise-common.js";

export function ropeTable(positions: Int32Array, spec: RopeSpec): Float32Array {
  const half = spec.headDim / 2;
  const table = new Float32Array(positions.length * half * 2);
  positions.forEach((pos, r) => {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * (spec.invFreq[i] as number));
      table[2 * (r * half + i)] = Math.cos(angle);
      table[2 * (r * half + i) + 1] = Math.sin(angle);
    }
  });
  return table;
}

export function ropeWgsl(): string {
  // One thread per rotary pair: i indexes [rows, cols / 2] as (row, head, pair).
  return elementwiseKernel(
    `@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`,
    `let half = params.headDim / 2u;
  let pairsPerRow = params.cols / 2u;
  let r = i / pairsPerRow;
  let rest = i % pairsPerRow;
  let p = rest % half;
  let at = r * params.cols + (rest / half) * params.headDim + p;
  let cs = table[r * half + p];
  let a = x[at];
  let b = x[at + half];
  y[at] = a * cs.x - b * cs.y;
  y[at + half] = b * cs.x + a * cs.y;`,
    ["cols", "headDim"],
  );
}

export function encodeRope(rec: Recorder, x: GpuActivation, batch: GpuBatch, spec: RopeSpec): GpuActivation {
  const d = spec.headDim;
  if (x.cols % d !== 0 || d % 2 !== 0 || x.rows !== batch.layout.rows || spec.invFreq.length !== d / 2) {
    throw new RangeError(
      `rope: x [${x.rows}, ${x.cols}], ${batch.layout.rows} rows in the batch, head dim ${d}`,
    );
  }
  const table = batch.ropeTable(spec.invFreq, () => ropeTable(batch.layout.positions, spec));
  const y = rec.activation(x.rows, x.cols);
  const pairs = x.elements / 2;
  rec.dispatch({
    key: "rope",
    wgsl: ropeWgsl,
    params: new ParamBlock().u32(pairs).u32(x.cols).u32(d),
    buffers: [gpuBuf(x), table, gpuBuf(y)],
    workgroups: elementwiseWorkgroups(pairs),
  });
  return y;
}
