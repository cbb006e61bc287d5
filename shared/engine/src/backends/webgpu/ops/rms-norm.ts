// RMSNorm per group of columns: one workgroup per group (a row, or one head for Qwen3's q/k norm) sums the
// squares in a tree reduction, then scales each element by 1/rms and the weight.
import type { DType } from "../../../tensor.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuWeight, gpuBuf } from "../resources.js";
import { LINEAR_WORKGROUP, weightScalar } from "../wgsl.js";

/** Small groups (a head of 64-256) get a small workgroup so that few threads idle; rows get 256. */
export function rmsNormWorkgroupSize(groupSize: number): number {
  return groupSize <= 512 ? 64 : 256;
}

export function rmsNormWgsl(dtype: DType, wg: number): string {
  return `${LINEAR_WORKGROUP}
struct Params { groups: u32, groupSize: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightScalar(2, "w", dtype)}
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, ${wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = linearWorkgroup(wid, nwg);
  // g is the same for the whole workgroup, so this return keeps the barriers below in uniform control flow.
  if (g >= params.groups) { return; }
  let base = g * params.groupSize;
  var s = 0.0;
  for (var i = lid; i < params.groupSize; i += ${wg}u) {
    let v = x[base + i];
    s += v * v;
  }
  part[lid] = s;
  workgroupBarrier();
  for (var stride = ${wg / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { part[lid] += part[lid + stride]; }
    workgroupBarrier();
  }
  // 1 / sqrt rather than inverseSqrt: the latter may be a 2-ulp approximation on some drivers.
  let inv = 1.0 / sqrt(part[0] / f32(params.groupSize) + params.eps);
  for (var i = lid; i < params.groupSize; i += ${wg}u) {
    y[base + i] = x[base + i] * inv * wAt(i);
  }
}`;
}

export function encodeRmsNorm(
  rec: Recorder,
  x: GpuActivation,
  w: GpuWeight,
  eps: number,
  groupSize: number,
): GpuActivation {
  if (x.cols % groupSize !== 0 || w.rows * w.cols !== groupSize) {
    throw new RangeError(`rmsNorm: ${x.cols} columns, group ${groupSize}, weight [${w.shape}]`);
  }
  const y = rec.activation(x.rows, x.cols);
  const groups = x.elements / groupSize;
  const wg = rmsNormWorkgroupSize(groupSize);
  rec.dispatch({
    key: `rmsNorm:${w.dtype}:${wg}`,
    wgsl: () => rmsNormWgsl(w.dtype, wg),
    params: new ParamBlock().u32(groups).u32(groupSize).f32(eps),
    buffers: [gpuBuf(x), w.buffer, gpuBuf(y)],
    workgroups: groups,
  });
  return y;
}
