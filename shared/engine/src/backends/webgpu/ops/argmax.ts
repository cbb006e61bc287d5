// Index of each row's largest value, lowest index on ties: one workgroup of 256 threads per row, each
// scanning a strided slice in increasing order (strict > keeps its first maximum), then a tree reduction
// that prefers the lower index among equal values.
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, gpuBuf } from "../resources.js";
import { LINEAR_WORKGROUP } from "../wgsl.js";

const WG = 256;

export function argmaxWgsl(): string {
  return `${LINEAR_WORKGROUP}
struct Params { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;
var<workgroup> bestV: array<f32, ${WG}>;
var<workgroup> bestI: array<u32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = linearWorkgroup(wid, nwg);
  if (r >= params.rows) { return; }
  let base = r * params.cols;
  // Threads past the row's end keep index 0xffffffff, which loses every comparison (v is then unused).
  var v = 0.0;
  var idx = 0xffffffffu;
  for (var c = lid; c < params.cols; c += ${WG}u) {
    let xv = x[base + c];
    if (idx == 0xffffffffu || xv > v) { v = xv; idx = c; }
  }
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
  if (lid == 0u) { out[r] = i32(bestI[0]); }
}`;
}

/** Records the argmax; returns the i32 [rows] buffer to read back (the caller releases it). */
export function encodeArgmax(rec: Recorder, x: GpuActivation): GpuActivation {
  // An i32 result in an activation-sized buffer: one column, read back as Int32Array.
  const out = rec.activation(x.rows, 1);
  rec.dispatch({
    key: "argmax",
    wgsl: argmaxWgsl,
    params: new ParamBlock().u32(x.rows).u32(x.cols),
    buffers: [gpuBuf(x), gpuBuf(out)],
    workgroups: x.rows,
  });
  return out;
}
