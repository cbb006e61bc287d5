// Rotary embedding, HF "rotate half" layout: column i of each head pairs with i + headDim/2. The cos/sin
// table of the batch's positions is built on the host once per batch and RopeSpec, and reused by every
// layer: WGSL (like Vulkan) leaves sin/cos precision unspecified outside [-pi, pi], and angles reach 1e5
// radians at long positions, while the host computes them in f64 from the same f32-rounded angle as
// transformers.
import type { RopeSpec } from "../../../backend.js";
import type { DType } from "../../../tensor.js";
import type { GpuBatch } from "../batch.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuWeight, gpuBuf } from "../resources.js";
import { LINEAR_WORKGROUP, weightScalar } from "../wgsl.js";
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

/**
 * Qwen3's per-head q/k RMSNorm and the rotary embedding in one dispatch: one workgroup of 64 threads per
 * (row, head) sums the head's squares, then each thread normalises both halves of its rotary pairs and
 * rotates them, with the same f32 operations in the same order as rmsNorm followed by rope.
 */
export function rmsNormRopeWgsl(dtype: DType): string {
  return `${LINEAR_WORKGROUP}
struct Params { groups: u32, headDim: u32, eps: f32, headsPerRow: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightScalar(2, "w", dtype)}
@group(0) @binding(3) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = linearWorkgroup(wid, nwg);
  // g is the same for the whole workgroup, so this return keeps the barriers below in uniform control flow.
  if (g >= params.groups) { return; }
  let base = g * params.headDim;
  var s = 0.0;
  for (var i = lid; i < params.headDim; i += 64u) {
    let v = x[base + i];
    s += v * v;
  }
  part[lid] = s;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { part[lid] += part[lid + stride]; }
    workgroupBarrier();
  }
  // As rms-norm.ts: 1 / sqrt, not inverseSqrt.
  let inv = 1.0 / sqrt(part[0] / f32(params.headDim) + params.eps);
  let half = params.headDim / 2u;
  let r = g / params.headsPerRow;
  for (var p = lid; p < half; p += 64u) {
    let a = x[base + p] * inv * wAt(p);
    let b = x[base + p + half] * inv * wAt(p + half);
    let cs = table[r * half + p];
    y[base + p] = a * cs.x - b * cs.y;
    y[base + p + half] = b * cs.x + a * cs.y;
  }
}`;
}

export function encodeRmsNormRope(
  rec: Recorder,
  x: GpuActivation,
  w: GpuWeight,
  eps: number,
  batch: GpuBatch,
  spec: RopeSpec,
): GpuActivation {
  const d = spec.headDim;
  if (
    x.cols % d !== 0 ||
    d % 2 !== 0 ||
    x.rows !== batch.layout.rows ||
    spec.invFreq.length !== d / 2 ||
    w.rows * w.cols !== d
  ) {
    throw new RangeError(
      `rmsNormRope: x [${x.rows}, ${x.cols}], ${batch.layout.rows} rows in the batch, head dim ${d}, weight [${w.shape}]`,
    );
  }
  const table = batch.ropeTable(spec.invFreq, () => ropeTable(batch.layout.positions, spec));
  const y = rec.activation(x.rows, x.cols);
  const groups = x.elements / d;
  rec.dispatch({
    key: `rmsNormRope:${w.dtype}`,
    wgsl: () => rmsNormRopeWgsl(w.dtype),
    params: new ParamBlock()
      .u32(groups)
      .u32(d)
      .f32(eps)
      .u32(x.cols / d),
    buffers: [gpuBuf(x), w.buffer, table, gpuBuf(y)],
    workgroups: groups,
  });
  return y;
}
