// y [n, m] = x [n, k] W^T + b, W in Hugging Face linear layout [m, k] (rows padded to 8 elements).
//
// Two kernels. Few rows (decode, a short verification): the matrix-vector kernel, memory-bound, reads each
// weight once for all rows: 256 threads = 8 outputs x 32 lanes; a lane takes chunks of 8 weights with one
// 16-byte load (two for f32), and the 32 lanes of an output are summed in workgroup memory. Many rows
// (prefill): a tiled kernel, 64 x 64 outputs per workgroup of 16 x 16 threads, each 4 x 4, k in steps of
// 16 through workgroup memory, so each weight is read from memory once per 64 rows.
import type { DType } from "../../../tensor.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuWeight, gpuBuf } from "../resources.js";
import { F8_STRUCT, LINEAR_WORKGROUP, weightScalar, weightVec8 } from "../wgsl.js";

/**
 * Up to this many rows take the matrix-vector kernel (its accumulators are per row, in registers): decode
 * batches and verification passes of a few drafted tokens. The tiled kernel would give such a pass only
 * m / 64 workgroups, too few to fill a GPU.
 */
export const MATVEC_MAX_ROWS = 16;
const LANES = 32;
const OUTS = 8;
const TILE = 64;
const TK = 16;

/**
 * `rows` is a power of two >= the batch's rows (params.n): one pipeline serves several batch sizes, which
 * keeps the number of pipelines (and lavapipe's compile time, which grows with rows) small.
 * `bias` is the bias's dtype, or null for none.
 */
export function matvecWgsl(rows: number, dtype: DType, bias: DType | null): string {
  return `${LINEAR_WORKGROUP}
${F8_STRUCT}
struct Params { k: u32, m: u32, chunks: u32, full: u32, n: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${weightVec8(2, "w", dtype)}
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${bias ? weightScalar(4, "bias", bias) : ""}
const R: u32 = ${rows}u;
// Rows padded by one so that the lanes summing different rows of a column hit different banks.
var<workgroup> part: array<array<f32, ${LANES * OUTS + 1}>, R>;

fn x8(at: u32) -> F8 {
  return F8(vec4<f32>(x[at], x[at + 1u], x[at + 2u], x[at + 3u]),
            vec4<f32>(x[at + 4u], x[at + 5u], x[at + 6u], x[at + 7u]));
}

@compute @workgroup_size(${LANES * OUTS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let lane = lid % ${LANES}u;
  let j = linearWorkgroup(wid, nwg) * ${OUTS}u + lid / ${LANES}u;
  var acc: array<f32, R>;
  if (j < params.m) {
    let rowChunk = j * params.chunks;
    // Whole chunks: k / 8 of them, no bounds checks on x.
    for (var c = lane; c < params.full; c += ${LANES}u) {
      let wv = w8(rowChunk + c);
      for (var r = 0u; r < R; r++) {
        if (r >= params.n) { break; }
        let xv = x8(r * params.k + c * 8u);
        acc[r] += dot(wv.a, xv.a) + dot(wv.b, xv.b);
      }
    }
    // The last, partial chunk (k % 8 values): its weights are zero padding past k, but x past k belongs to
    // the next row (or past the buffer), so it is read element by element.
    if (lane == 0u && params.full < params.chunks) {
      let wv = w8(rowChunk + params.full);
      let wa = array<f32, 8>(wv.a.x, wv.a.y, wv.a.z, wv.a.w, wv.b.x, wv.b.y, wv.b.z, wv.b.w);
      for (var e = 0u; e < params.k - params.full * 8u; e++) {
        for (var r = 0u; r < params.n; r++) { acc[r] += wa[e] * x[r * params.k + params.full * 8u + e]; }
      }
    }
  }
  for (var r = 0u; r < R; r++) { part[r][lid] = acc[r]; }
  workgroupBarrier();
  // Lane r of each output sums that output's 32 partial sums of row r: one barrier, and code that does
  // not grow with R (a tree reduction unrolled per row made lavapipe's compile time grow past 10 s).
  if (lane < params.n && j < params.m) {
    let first = lid - lane;
    var sum = 0.0;
    for (var l = 0u; l < ${LANES}u; l++) { sum += part[lane][first + l]; }
    y[lane * params.m + j] = sum${bias ? " + biasAt(j)" : ""};
  }
}`;
}

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

export function encodeMatmul(rec: Recorder, x: GpuActivation, w: GpuWeight, bias?: GpuWeight): GpuActivation {
  const [m, k] = w.shape as [number, number];
  if (w.shape.length !== 2 || k !== x.cols) {
    throw new RangeError(`matmul: x [${x.rows}, ${x.cols}] by weight ${w.name} [${w.shape}]`);
  }
  if (bias && bias.rows * bias.cols !== m)
    throw new RangeError(`matmul: bias [${bias.shape}] for ${m} outputs`);
  const y = rec.activation(x.rows, m);
  const n = x.rows;
  if (n === 0) return y;
  const buffers = [gpuBuf(x), w.buffer, gpuBuf(y), ...(bias ? [bias.buffer] : [])];
  const biasDtype = bias?.dtype ?? null;
  if (n <= MATVEC_MAX_ROWS) {
    const rows = 2 ** Math.ceil(Math.log2(n));
    rec.dispatch({
      key: `matvec:${rows}:${w.dtype}:${biasDtype}`,
      wgsl: () => matvecWgsl(rows, w.dtype, biasDtype),
      params: new ParamBlock()
        .u32(k)
        .u32(m)
        .u32(w.rowStride / 8)
        .u32(Math.floor(k / 8))
        .u32(n),
      buffers,
      workgroups: Math.ceil(m / OUTS),
    });
    return y;
  }
  const tilesM = Math.ceil(m / TILE);
  rec.dispatch({
    key: `matmulTiled:${w.dtype}:${biasDtype}`,
    wgsl: () => tiledWgsl(w.dtype, biasDtype),
    params: new ParamBlock().u32(n).u32(k).u32(m).u32(w.rowStride).u32(tilesM),
    buffers,
    workgroups: tilesM * Math.ceil(n / TILE),
  });
  return y;
}
