// y [n, m] = x [n, k] W^T + b, W in Hugging Face linear layout [m, k] (rows padded to 8 elements).
//
// Two kernels. Few rows (decode, a short verification): the matrix-vector kernel, memory-bound, reads each
// weight once for all rows: 256 threads = 8 outputs x 32 lanes; a lane takes chunks of 8 weights with one
// 16-byte load (two for f32), and the 32 lanes of an output are summed in workgroup memory. The same kernel
// serves the fused ops (MatvecMode): q/k/v in one dispatch, gate/up with silu-mul, a residual in the epilogue. Many rows
// (prefill): a tiled kernel, 64 x 64 outputs per workgroup of 16 x 16 threads, each 4 x 4, k in steps of
// 16 through workgroup memory, so each weight is read from memory once per 64 rows.
import type { DType } from "../../../tensor.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuWeight, gpuBuf } from "../resources.js";
import { F8_STRUCT, LINEAR_WORKGROUP, weightScalar, weightVec8 } from "../wgsl.js";
import { encodeAdd } from "./add.js";
import { encodeSiluMul } from "./silu-mul.js";

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
 * What a matrix-vector dispatch computes besides y = x W^T (+ bias):
 * - plain: that alone, or plus a residual [n, m] (the o_proj and down projections fold the residual add in);
 * - gateUp: two weights of the same shape read in the same pass, y = silu(x G^T) * (x U^T) (the MLP's gate,
 *   up and silu-mul as one dispatch: x is read once and nothing is written but the product);
 * - qkv: three weights with the same k stacked as one output range (q, then k, then v), each output written
 *   to its own buffer: the attention's three projections as one dispatch with enough outputs to fill the GPU
 *   (k and v alone are small).
 */
export type MatvecMode = "plain" | "gateUp" | "qkv";

export interface MatvecSpec {
  /** A power of two >= the batch's rows (params.n): one pipeline serves several batch sizes. */
  rows: number;
  dtype: DType;
  /** The bias's dtype, or null for none (plain only). */
  bias: DType | null;
  /** Adds a residual [n, m] (plain only). */
  residual: boolean;
  mode: MatvecMode;
}

/**
 * The matrix-vector kernel. One pipeline per `rows` keeps the number of pipelines (and lavapipe's compile
 * time, which grows with rows) small.
 */
export function matvecWgsl(spec: MatvecSpec): string {
  const { rows, dtype, bias, residual, mode } = spec;
  // Bindings in the order encodeMatvec passes buffers: x, the weight(s), the output(s), bias, residual.
  let decls: string;
  let weightAt: string;
  if (mode === "qkv") {
    decls = `${weightVec8(2, "wq", dtype)}
${weightVec8(3, "wk", dtype)}
${weightVec8(4, "wv", dtype)}
@group(0) @binding(5) var<storage, read_write> yq: array<f32>;
@group(0) @binding(6) var<storage, read_write> yk: array<f32>;
@group(0) @binding(7) var<storage, read_write> yv: array<f32>;
// The segment is the same for the 32 lanes of an output (one subgroup on most GPUs): no divergence.
fn wAt8(seg: u32, c: u32) -> F8 {
  if (seg == 0u) { return wq8(c); }
  if (seg == 1u) { return wk8(c); }
  return wv8(c);
}`;
    weightAt = "wAt8(seg, ";
  } else if (mode === "gateUp") {
    decls = `${weightVec8(2, "w", dtype)}
${weightVec8(3, "u", dtype)}
@group(0) @binding(4) var<storage, read_write> y: array<f32>;`;
    weightAt = "w8(";
  } else {
    let next = 4;
    const extra: string[] = [];
    if (bias) extra.push(weightScalar(next++, "bias", bias));
    if (residual) extra.push(`@group(0) @binding(${next++}) var<storage, read> res: array<f32>;`);
    decls = `${weightVec8(2, "w", dtype)}
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${extra.join("\n")}`;
    weightAt = "w8(";
  }
  const gu = mode === "gateUp";
  let store: string;
  if (mode === "qkv") {
    store = `if (seg == 0u) { yq[lane * params.m0 + row] = sum; }
    else if (seg == 1u) { yk[lane * params.m1 + row] = sum; }
    else { yv[lane * (params.m - params.m0 - params.m1) + row] = sum; }`;
  } else if (gu) {
    // For g below about -88, e^-g overflows to +inf and g / inf is -0: the limit, no NaN (as siluMul).
    store = "y[lane * params.m + j] = gsum / (1.0 + exp(-gsum)) * sum;";
  } else {
    let v = "sum";
    if (bias) v += " + biasAt(j)";
    // residual + (x W^T + b), the order the reference's add(residual, matmul) sums in.
    if (residual) v = `res[lane * params.m + j] + (${v})`;
    store = `y[lane * params.m + j] = ${v};`;
  }
  const reduce = (into: string) => `if (lane < params.n && j < params.m) {
    let first = lid - lane;
    for (var l = 0u; l < ${LANES}u; l++) { ${into} += part[lane][first + l]; }
  }`;
  return `${LINEAR_WORKGROUP}
${F8_STRUCT}
// m: outputs in all; m0, m1: the sizes of the q and k segments (qkv mode only).
struct Params { k: u32, m: u32, chunks: u32, full: u32, n: u32, m0: u32, m1: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${decls}
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
  ${
    mode === "qkv"
      ? `// Which weight output j is in, and its row there.
  let seg = select(select(2u, 1u, j < params.m0 + params.m1), 0u, j < params.m0);
  let row = j - select(select(params.m0 + params.m1, params.m0, seg == 1u), 0u, seg == 0u);`
      : "let row = j;"
  }
  var acc: array<f32, R>;
  ${gu ? "var acc2: array<f32, R>;" : ""}
  if (j < params.m) {
    let rowChunk = row * params.chunks;
    // Whole chunks: k / 8 of them, no bounds checks on x.
    for (var c = lane; c < params.full; c += ${LANES}u) {
      let wv = ${weightAt}rowChunk + c);
      ${gu ? "let uv = u8(rowChunk + c);" : ""}
      for (var r = 0u; r < R; r++) {
        if (r >= params.n) { break; }
        let xv = x8(r * params.k + c * 8u);
        acc[r] += dot(wv.a, xv.a) + dot(wv.b, xv.b);
        ${gu ? "acc2[r] += dot(uv.a, xv.a) + dot(uv.b, xv.b);" : ""}
      }
    }
    // The last, partial chunk (k % 8 values): its weights are zero padding past k, but x past k belongs to
    // the next row (or past the buffer), so it is read element by element.
    if (lane == 0u && params.full < params.chunks) {
      let wv = ${weightAt}rowChunk + params.full);
      let wa = array<f32, 8>(wv.a.x, wv.a.y, wv.a.z, wv.a.w, wv.b.x, wv.b.y, wv.b.z, wv.b.w);
      ${
        gu
          ? `let uv = u8(rowChunk + params.full);
      let ua = array<f32, 8>(uv.a.x, uv.a.y, uv.a.z, uv.a.w, uv.b.x, uv.b.y, uv.b.z, uv.b.w);`
          : ""
      }
      for (var e = 0u; e < params.k - params.full * 8u; e++) {
        for (var r = 0u; r < params.n; r++) {
          let xe = x[r * params.k + params.full * 8u + e];
          acc[r] += wa[e] * xe;
          ${gu ? "acc2[r] += ua[e] * xe;" : ""}
        }
      }
    }
  }
  // Lane r of each output sums that output's 32 partial sums of row r: one barrier, and code that does
  // not grow with R (a tree reduction unrolled per row made lavapipe's compile time grow past 10 s).
  for (var r = 0u; r < R; r++) { part[r][lid] = acc[r]; }
  workgroupBarrier();
  ${
    gu
      ? `// The gate's sums first, then the same workgroup memory for the up projection's (two arrays of
  // partial sums would pass lavapipe's 32 KiB of workgroup memory at 16 rows).
  var gsum = 0.0;
  ${reduce("gsum")}
  workgroupBarrier();
  for (var r = 0u; r < R; r++) { part[r][lid] = acc2[r]; }
  workgroupBarrier();`
      : ""
  }
  var sum = 0.0;
  ${reduce("sum")}
  if (lane < params.n && j < params.m) {
    ${store}
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

function matvecRows(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}

function matvecParams(k: number, m: number, w: GpuWeight, n: number, m0 = 0, m1 = 0): ParamBlock {
  return new ParamBlock()
    .u32(k)
    .u32(m)
    .u32(w.rowStride / 8)
    .u32(Math.floor(k / 8))
    .u32(n)
    .u32(m0)
    .u32(m1);
}

function checkLinear(op: string, x: GpuActivation, w: GpuWeight): [number, number] {
  const [m, k] = w.shape as [number, number];
  if (w.shape.length !== 2 || k !== x.cols) {
    throw new RangeError(`${op}: x [${x.rows}, ${x.cols}] by weight ${w.name} [${w.shape}]`);
  }
  return [m, k];
}

/** residual + x W^T (+ bias) in one dispatch (few rows), else the product then an add. */
export function encodeMatmulAdd(
  rec: Recorder,
  x: GpuActivation,
  w: GpuWeight,
  residual: GpuActivation,
  bias?: GpuWeight,
): GpuActivation {
  const [m, k] = checkLinear("matmulAdd", x, w);
  if (residual.rows !== x.rows || residual.cols !== m) {
    throw new RangeError(`matmulAdd: residual [${residual.rows}, ${residual.cols}] for [${x.rows}, ${m}]`);
  }
  if (bias && bias.rows * bias.cols !== m)
    throw new RangeError(`matmulAdd: bias [${bias.shape}] for ${m} outputs`);
  const n = x.rows;
  if (n === 0 || n > MATVEC_MAX_ROWS) {
    const y = encodeMatmul(rec, x, w, bias);
    const out = encodeAdd(rec, residual, y);
    rec.pool.release(gpuBuf(y));
    return out;
  }
  const y = rec.activation(n, m);
  const spec: MatvecSpec = {
    rows: matvecRows(n),
    dtype: w.dtype,
    bias: bias?.dtype ?? null,
    residual: true,
    mode: "plain",
  };
  rec.dispatch({
    key: `matvec:${spec.rows}:${spec.dtype}:${spec.bias}:res`,
    wgsl: () => matvecWgsl(spec),
    params: matvecParams(k, m, w, n),
    buffers: [gpuBuf(x), w.buffer, gpuBuf(y), ...(bias ? [bias.buffer] : []), gpuBuf(residual)],
    workgroups: Math.ceil(m / OUTS),
  });
  return y;
}

/** silu(x G^T) * (x U^T) in one dispatch (few rows), else two products and siluMul. */
export function encodeGateUpSilu(
  rec: Recorder,
  x: GpuActivation,
  gate: GpuWeight,
  up: GpuWeight,
): GpuActivation {
  const [m, k] = checkLinear("gateUpSilu", x, gate);
  if (up.shape[0] !== m || up.shape[1] !== k || up.dtype !== gate.dtype || up.shape.length !== 2) {
    throw new RangeError(`gateUpSilu: gate ${gate.dtype} [${gate.shape}], up ${up.dtype} [${up.shape}]`);
  }
  const n = x.rows;
  if (n === 0 || n > MATVEC_MAX_ROWS) {
    const g = encodeMatmul(rec, x, gate);
    const u = encodeMatmul(rec, x, up);
    const out = encodeSiluMul(rec, g, u);
    rec.pool.release(gpuBuf(g));
    rec.pool.release(gpuBuf(u));
    return out;
  }
  const y = rec.activation(n, m);
  const spec: MatvecSpec = {
    rows: matvecRows(n),
    dtype: gate.dtype,
    bias: null,
    residual: false,
    mode: "gateUp",
  };
  rec.dispatch({
    key: `matvec:${spec.rows}:${spec.dtype}:gateUp`,
    wgsl: () => matvecWgsl(spec),
    params: matvecParams(k, m, gate, n),
    buffers: [gpuBuf(x), gate.buffer, up.buffer, gpuBuf(y)],
    workgroups: Math.ceil(m / OUTS),
  });
  return y;
}

/** x q^T, x k^T, x v^T in one dispatch (few rows, no biases, one dtype), else three products. */
export function encodeQkvProject(
  rec: Recorder,
  x: GpuActivation,
  wq: GpuWeight,
  wk: GpuWeight,
  wv: GpuWeight,
  biases: readonly (GpuWeight | undefined)[],
): [GpuActivation, GpuActivation, GpuActivation] {
  const [mq, k] = checkLinear("qkvProject", x, wq);
  const [mk] = checkLinear("qkvProject", x, wk);
  const [mv] = checkLinear("qkvProject", x, wv);
  const n = x.rows;
  const fused =
    n > 0 &&
    n <= MATVEC_MAX_ROWS &&
    biases.every((b) => b === undefined) &&
    wk.dtype === wq.dtype &&
    wv.dtype === wq.dtype;
  if (!fused) {
    return [
      encodeMatmul(rec, x, wq, biases[0]),
      encodeMatmul(rec, x, wk, biases[1]),
      encodeMatmul(rec, x, wv, biases[2]),
    ];
  }
  const q = rec.activation(n, mq);
  const kk = rec.activation(n, mk);
  const v = rec.activation(n, mv);
  const m = mq + mk + mv;
  const spec: MatvecSpec = { rows: matvecRows(n), dtype: wq.dtype, bias: null, residual: false, mode: "qkv" };
  rec.dispatch({
    key: `matvec:${spec.rows}:${spec.dtype}:qkv`,
    wgsl: () => matvecWgsl(spec),
    params: matvecParams(k, m, wq, n, mq, mk),
    buffers: [gpuBuf(x), wq.buffer, wk.buffer, wv.buffer, gpuBuf(q), gpuBuf(kk), gpuBuf(v)],
    workgroups: Math.ceil(m / OUTS),
  });
  return [q, kk, v];
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
    const spec: MatvecSpec = {
      rows: matvecRows(n),
      dtype: w.dtype,
      bias: biasDtype,
      residual: false,
      mode: "plain",
    };
    rec.dispatch({
      key: `matvec:${spec.rows}:${w.dtype}:${biasDtype}`,
      wgsl: () => matvecWgsl(spec),
      params: matvecParams(k, m, w, n),
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
