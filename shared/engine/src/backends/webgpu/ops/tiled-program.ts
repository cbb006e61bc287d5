// The tiled matrix product for many rows (long prefills): 64 x 64 outputs per workgroup of 16 x 16 threads,
// each 4 x 4, k in steps of 16 through workgroup memory, so that each weight is read from memory once per 64
// rows. The encoding is in matmul.ts.
import type { DType } from "../../../tensor.js";
import { LINEAR_WORKGROUP, weightScalar } from "../wgsl.js";

/** Rows and outputs of a workgroup's tile. */
export const TILE = 64;
/** The k step through workgroup memory. */
const TK = 16;

export function tiledWgsl(dtype: DType, bias: DType | null): string {
  return `${LINEAR_WORKGROUP}
struct Params { n: u32, k: u32, m: u32, rowStride: u32, tilesM: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightScalar(2, "w", dtype)}
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${bias ? weightScalar(4, "bias", bias) : ""}
// Tiles stored k-major ([k][row]) so that the inner product loop reads consecutive addresses.
var<workgroup> xs: array<f32, ${TILE * TK}>;
var<workgroup> ws: array<f32, ${TILE * TK}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let tile = linearWorkgroup(wid, nwg);
  // tile is uniform over the workgroup: returning here keeps the barriers in uniform control flow.
  if (tile >= params.tilesM * ((params.n + ${TILE - 1}u) / ${TILE}u)) { return; }
  let row0 = (tile / params.tilesM) * ${TILE}u;
  let col0 = (tile % params.tilesM) * ${TILE}u;
  let tx = lid % 16u;
  let ty = lid / 16u;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < params.k; k0 += ${TK}u) {
    // 64 x 16 values of each operand, 4 per thread; consecutive threads take consecutive k (coalesced).
    for (var e = 0u; e < 4u; e++) {
      let idx = lid + e * 256u;
      let rr = idx / ${TK}u;
      let kk = idx % ${TK}u;
      let gk = k0 + kk;
      var xv = 0.0;
      if (row0 + rr < params.n && gk < params.k) { xv = x[(row0 + rr) * params.k + gk]; }
      xs[kk * ${TILE}u + rr] = xv;
      var wv = 0.0;
      if (col0 + rr < params.m && gk < params.k) { wv = wAt((col0 + rr) * params.rowStride + gk); }
      ws[kk * ${TILE}u + rr] = wv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      let a = vec4<f32>(xs[kk * ${TILE}u + ty * 4u], xs[kk * ${TILE}u + ty * 4u + 1u],
                        xs[kk * ${TILE}u + ty * 4u + 2u], xs[kk * ${TILE}u + ty * 4u + 3u]);
      let b = vec4<f32>(ws[kk * ${TILE}u + tx * 4u], ws[kk * ${TILE}u + tx * 4u + 1u],
                        ws[kk * ${TILE}u + tx * 4u + 2u], ws[kk * ${TILE}u + tx * 4u + 3u]);
      for (var i = 0u; i < 4u; i++) {
        acc[i * 4u] += a[i] * b.x;
        acc[i * 4u + 1u] += a[i] * b.y;
        acc[i * 4u + 2u] += a[i] * b.z;
        acc[i * 4u + 3u] += a[i] * b.w;
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + ty * 4u + i;
    for (var jj = 0u; jj < 4u; jj++) {
      let c = col0 + tx * 4u + jj;
      if (r < params.n && c < params.m) { y[r * params.m + c] = acc[i * 4u + jj]${bias ? " + biasAt(c)" : ""}; }
    }
  }
}`;
}

/** The pipeline key and source of the tiled program for a weight and bias dtype. */
export function tiledProgram(dtype: DType, bias: DType | null): { key: string; wgsl: () => string } {
  return { key: `matmulTiled:${dtype}:${bias}`, wgsl: () => tiledWgsl(dtype, bias) };
}
