// Index of each row's largest value, lowest index on ties, in two dispatches: each workgroup of 256 threads
// takes a slice of SLICE columns of a row (a vocabulary row of 151,936 is 38 slices: enough workgroups to
// fill a GPU, where one workgroup per row was 0.23 ms on the H100), each thread scanning a strided part of
// it in increasing order (strict > keeps its first maximum), then a tree reduction that prefers the lower
// index among equal values; the second dispatch reduces each row's slices the same way.
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, gpuBuf } from "../resources.js";
import { LINEAR_WORKGROUP } from "../wgsl.js";

const WG = 256;
/** Columns per workgroup of the first pass. */
const SLICE = 4096;

/** The shared reduction: (bestV, bestI) of 256 threads to thread 0, lower index first among equal values. */
const REDUCE = `var<workgroup> bestV: array<f32, ${WG}>;
var<workgroup> bestI: array<u32, ${WG}>;

fn reduceBest(lid: u32, v: f32, idx: u32) {
  bestV[lid] = v;
  bestI[lid] = idx;
  workgroupBarrier();
  for (var stride = ${WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let ov = bestV[lid + stride];
      let oi = bestI[lid + stride];
      let mine = bestI[lid];
      if (oi != 0xffffffffu && (mine == 0xffffffffu || ov > bestV[lid] || (ov == bestV[lid] && oi < mine))) {
        bestV[lid] = ov;
        bestI[lid] = oi;
      }
    }
    workgroupBarrier();
  }
}`;

/** First pass: per (row, slice), the slice's best value and its column. */
export function argmaxPartialWgsl(): string {
  return `${LINEAR_WORKGROUP}
struct Params { rows: u32, cols: u32, slices: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partV: array<f32>;
@group(0) @binding(3) var<storage, read_write> partI: array<u32>;
${REDUCE}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = linearWorkgroup(wid, nwg);
  if (w >= params.rows * params.slices) { return; }
  let r = w / params.slices;
  let start = (w % params.slices) * ${SLICE}u;
  let end = min(start + ${SLICE}u, params.cols);
  let base = r * params.cols;
  // Threads past the slice's end keep index 0xffffffff, which loses every comparison (v is then unused).
  var v = 0.0;
  var idx = 0xffffffffu;
  for (var c = start + lid; c < end; c += ${WG}u) {
    let xv = x[base + c];
    if (idx == 0xffffffffu || xv > v) { v = xv; idx = c; }
  }
  reduceBest(lid, v, idx);
  if (lid == 0u) {
    partV[w] = bestV[0];
    partI[w] = bestI[0];
  }
}`;
}

/** Second pass: per row, the best of its slices' bests. */
export function argmaxFinalWgsl(): string {
  return `${LINEAR_WORKGROUP}
struct Params { rows: u32, cols: u32, slices: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partV: array<f32>;
@group(0) @binding(2) var<storage, read> partI: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<i32>;
${REDUCE}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = linearWorkgroup(wid, nwg);
  if (r >= params.rows) { return; }
  var v = 0.0;
  var idx = 0xffffffffu;
  // Slices in increasing order per thread: a later slice wins only with a strictly larger value.
  for (var s = lid; s < params.slices; s += ${WG}u) {
    let pv = partV[r * params.slices + s];
    if (idx == 0xffffffffu || pv > v) { v = pv; idx = partI[r * params.slices + s]; }
  }
  reduceBest(lid, v, idx);
  if (lid == 0u) { out[r] = i32(bestI[0]); }
}`;
}

/** Records the argmax; returns the i32 [rows] buffer to read back (the caller releases it). */
export function encodeArgmax(rec: Recorder, x: GpuActivation): GpuActivation {
  // An i32 result in an activation-sized buffer: one column, read back as Int32Array.
  const out = rec.activation(x.rows, 1);
  dispatchArgmax(rec, x, gpuBuf(out));
  return out;
}

/** Records the argmax of each row of x into `out` (i32 [rows]). */
export function dispatchArgmax(rec: Recorder, x: GpuActivation, out: GPUBuffer): void {
  const parts = x.argmaxParts;
  if (parts) {
    // The product that made x wrote each slice's best already (ops/matmul.ts): the final pass alone.
    rec.dispatch({
      key: "argmax:final",
      wgsl: argmaxFinalWgsl,
      params: new ParamBlock().u32(x.rows).u32(x.cols).u32(parts.slices),
      buffers: [parts.values, parts.indices, out],
      workgroups: x.rows,
    });
    return;
  }
  const slices = Math.max(1, Math.ceil(x.cols / SLICE));
  const partV = rec.activation(x.rows, slices);
  const partI = rec.activation(x.rows, slices);
  const params = () => new ParamBlock().u32(x.rows).u32(x.cols).u32(slices);
  rec.dispatch({
    key: "argmax:partial",
    wgsl: argmaxPartialWgsl,
    params: params(),
    buffers: [gpuBuf(x), gpuBuf(partV), gpuBuf(partI)],
    workgroups: x.rows * slices,
  });
  rec.dispatch({
    key: "argmax:final",
    wgsl: argmaxFinalWgsl,
    params: params(),
    buffers: [gpuBuf(partV), gpuBuf(partI), out],
    workgroups: x.rows,
  });
  // Released now, reused only by commands recorded later: the pool's ordering argument (buffer-pool.ts).
  rec.pool.release(gpuBuf(partV));
  rec.pool.release(gpuBuf(partI));
}
