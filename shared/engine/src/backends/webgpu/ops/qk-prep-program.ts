// The inputs of attention for any batch in one dispatch (prefill, verification): Qwen3's per-head q/k RMSNorm
// (optional) and RoPE, q into its output, k and v into the cache at each row's slot. The encoding is in
// attention.ts (encodeRopeAttention).
import type { DType } from "../../../tensor.js";
import { LINEAR_WORKGROUP, weightScalar } from "../wgsl.js";

/**
 * The inputs of attention for any batch, in one dispatch: per (row, head) of q and of k, Qwen3's per-head
 * RMSNorm (optional) then RoPE, q into its output, k into the cache at the row's slot; the value heads are
 * copied into the cache beside. 64 threads per workgroup; the same f32 operations in the same order as
 * rmsNorm, rope and writeKv.
 */
export function qkPrepWgsl(norm: DType | null): string {
  const scaled = (src: string, base: string, at: string, w: string) =>
    norm ? `${src}[${base} + ${at}] * inv * ${w}At(${at})` : `${src}[${base} + ${at}]`;
  const rot = (
    src: string,
    base: string,
    dst: string,
    dbase: string,
    w: string,
  ) => `for (var p = lid; p < half; p += 64u) {
      let cs = ropeCs[r * half + p];
      let a = ${scaled(src, base, "p", w)};
      let b = ${scaled(src, base, "p + half", w)};
      ${dst}[${dbase} + p] = a * cs.x - b * cs.y;
      ${dst}[${dbase} + p + half] = b * cs.x + a * cs.y;
    }`;
  return `${LINEAR_WORKGROUP}
struct Params { rows: u32, heads: u32, kvHeads: u32, headDim: u32, slotsOffset: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> batchMeta: array<i32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read> ropeCs: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> qOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(8) var<storage, read_write> vCache: array<f32>;
${norm ? `${weightScalar(9, "qn", norm)}\n${weightScalar(10, "kn", norm)}` : ""}
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = linearWorkgroup(wid, nwg);
  let perRow = params.heads + params.kvHeads;
  // g is the same for the whole workgroup: the return and the branches keep the barriers uniform.
  if (g >= params.rows * perRow) { return; }
  let r = g / perRow;
  let h = g % perRow;
  let isQ = h < params.heads;
  let width = params.kvHeads * params.headDim;
  let base = select(r * width + (h - params.heads) * params.headDim, (r * params.heads + h) * params.headDim, isQ);
  let half = params.headDim / 2u;
  var inv = 1.0;
  ${
    norm
      ? `var s = 0.0;
  for (var i = lid; i < params.headDim; i += 64u) {
    var x: f32;
    if (isQ) { x = q[base + i]; } else { x = k[base + i]; }
    s += x * x;
  }
  part[lid] = s;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { part[lid] += part[lid + stride]; }
    workgroupBarrier();
  }
  // As rms-norm.ts: 1 / sqrt, not inverseSqrt.
  inv = 1.0 / sqrt(part[0] / f32(params.headDim) + params.eps);`
      : ""
  }
  if (isQ) {
    ${rot("q", "base", "qOut", "base", "qn")}
  } else {
    let at = u32(batchMeta[params.slotsOffset + r]) * width + (h - params.heads) * params.headDim;
    ${rot("k", "base", "kCache", "at", "kn")}
    for (var i = lid; i < params.headDim; i += 64u) { vCache[at + i] = v[base + i]; }
  }
}`;
}

const programs = new Map<DType | null, { key: string; wgsl: () => string }>();

/** The pipeline key and source for a q/k norm weight dtype (null: no norm), cached. */
export function qkPrepProgram(norm: DType | null): { key: string; wgsl: () => string } {
  let p = programs.get(norm);
  if (!p) {
    p = { key: `qkPrep:${norm}`, wgsl: () => qkPrepWgsl(norm) };
    programs.set(norm, p);
  }
  return p;
}
