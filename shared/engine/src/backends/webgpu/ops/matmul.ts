// y [n, m] = x [n, k] W^T + b, W in Hugging Face linear layout [m, k] (rows padded to 8 elements).
//
// Two kernels. Few rows (decode, verification): the matrix-vector kernel, memory-bound, reads each weight
// once per chunk of up to 16 rows (one chunk: decode; several: a batch's verification trees): 256 threads = 256 / tpr outputs x tpr threads (an output per subgroup, or two
// when there are few outputs); a thread takes chunks of 8 weights with one 16-byte load (two for f32), and
// an output's partial sums are added with subgroupAdd (workgroup memory on adapters without subgroups). The
// same kernel serves the fused ops (MatvecMode): q/k/v in one dispatch, gate/up with silu-mul, a residual in
// the epilogue, and any of them with the RMSNorm of x folded in. Many rows (long prefill): a tiled kernel, 64 x 64
// outputs per workgroup of 16 x 16 threads, each 4 x 4, k in steps of 16 through workgroup memory, so each
// weight is read from memory once per 64 rows.
import type { DType } from "../../../tensor.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuWeight, gpuBuf } from "../resources.js";
import { F8_STRUCT, LINEAR_WORKGROUP, weightScalar, weightVec8 } from "../wgsl.js";
import { encodeAdd } from "./add.js";
import { encodeRmsNorm } from "./rms-norm.js";
import { encodeSiluMul } from "./silu-mul.js";

/**
 * Rows of one matrix-vector workgroup (its accumulators are per row, in registers): a decode batch of up to
 * 16 is one chunk.
 */
export const MATVEC_MAX_ROWS = 16;
/**
 * Up to this many rows take the matrix-vector kernel, in chunks of MATVEC_MAX_ROWS (each chunk reads the
 * weights again): a batch's verification trees (16 sequences x 1 + 8 drafted nodes = 144 rows). The tiled
 * kernel gives such a pass only (m / 64) x (n / 64) workgroups, each walking all of k: on the H100 a 16-row
 * batch's pass with 2 rows per sequence (32 rows, tiny-code) took 2.9 ms there against 1.2 ms for 16 rows.
 */
export const MATVEC_CHUNKED_MAX_ROWS = 256;
const MATVEC_WG = 256;
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
 * Any mode may also take the RMSNorm of x first (`norm`): the sum of squares of each row of x falls out of
 * the same pass over x that the products make, so y = (x * g) W^T / rms(x) costs no extra dispatch.
 */
export type MatvecMode = "plain" | "gateUp" | "qkv";

export interface MatvecSpec {
  /** A power of two >= the rows of a chunk (min(params.n, 16)): one pipeline serves several batch sizes. */
  rows: number;
  dtype: DType;
  /** The bias's dtype (qkv: of all three), or null for none. */
  bias: DType | null;
  /** Adds a residual [n, m] (plain only). */
  residual: boolean;
  mode: MatvecMode;
  /** The fused RMSNorm's weight dtype, or null for none. */
  norm: DType | null;
  /** Threads per output (a multiple of the subgroup size, at least `rows`; 256 / tpr outputs per workgroup). */
  tpr: number;
  /** k is a multiple of 8: x is read as 16-byte vectors and there is no partial chunk. */
  vec: boolean;
  /** Subgroup size the reduction is built for (subgroupAdd), or 0: workgroup memory. */
  sg: number;
}

/** The values a matrix-vector thread accumulates per row: the product, the up product, the sum of squares. */
function matvecSums(spec: MatvecSpec): string[] {
  return ["acc", ...(spec.mode === "gateUp" ? ["acc2"] : []), ...(spec.norm ? ["ss"] : [])];
}

/**
 * The reduction of each output's `tpr` partial sums, leaving in `tot0`, `tot1`, ... (one per matvecSums) the
 * totals of row `t` for threads t < n of the output. Subgroups: subgroupAdd, then workgroup memory when an
 * output spans several subgroups; otherwise workgroup memory alone, one sum at a time (a row's partial sums
 * padded by one so that the lanes summing different rows of a column hit different banks).
 */
function matvecReduce(spec: MatvecSpec): { decls: string; code: string } {
  const sums = matvecSums(spec);
  const R = spec.rows;
  const totDecl = sums.map((_, i) => `var tot${i} = 0.0;`).join(" ");
  if (spec.sg > 0) {
    const ns = spec.tpr / spec.sg;
    const shuffle = `for (var r = 0u; r < R; r++) {
    if (r >= nr) { break; }
    ${sums.map((v) => `${v}[r] = subgroupAdd(${v}[r]);`).join(" ")}
  }`;
    if (ns === 1) {
      return {
        decls: "",
        code: `${shuffle}
  ${totDecl}
  if (t < nr) { ${sums.map((v, i) => `tot${i} = ${v}[t];`).join(" ")} }`,
      };
    }
    const subs = MATVEC_WG / spec.sg;
    return {
      decls: `var<workgroup> red: array<f32, ${sums.length * R * subs}>;`,
      code: `${shuffle}
  let sgi = lid / ${spec.sg}u;
  if (lid % ${spec.sg}u == 0u) {
    for (var r = 0u; r < R; r++) {
      ${sums.map((v, i) => `red[(${i}u * R + r) * ${subs}u + sgi] = ${v}[r];`).join(" ")}
    }
  }
  workgroupBarrier();
  ${totDecl}
  if (t < nr) {
    let first = (lid / ${spec.tpr}u) * ${ns}u;
    for (var i = 0u; i < ${ns}u; i++) {
      ${sums.map((_, i) => `tot${i} += red[(${i}u * R + t) * ${subs}u + first + i];`).join(" ")}
    }
  }`,
    };
  }
  const steps = sums.map(
    (v, i) => `for (var r = 0u; r < R; r++) { part[r][lid] = ${v}[r]; }
  workgroupBarrier();
  if (t < nr) {
    let first = lid - t;
    for (var l = 0u; l < ${spec.tpr}u; l++) { tot${i} += part[t][first + l]; }
  }
  workgroupBarrier();`,
  );
  return {
    decls: `var<workgroup> part: array<array<f32, ${MATVEC_WG + 1}>, R>;`,
    code: `${totDecl}
  ${steps.join("\n  ")}`,
  };
}

/**
 * The matrix-vector kernel: 256 threads = 256 / tpr outputs x tpr threads; a thread takes chunks of 8
 * weights with one 16-byte load (two for f32) for every row of x. One pipeline per `rows` keeps the number
 * of pipelines (and lavapipe's compile time, which grows with rows) small.
 */
export function matvecWgsl(spec: MatvecSpec): string {
  const { rows, dtype, bias, residual, mode, norm, tpr, vec, sg } = spec;
  const gu = mode === "gateUp";
  // Bindings in the order matvecBuffers passes them: x, norm, weight(s), output(s), bias(es), residual.
  let next = 2;
  const decls: string[] = [];
  if (norm) decls.push(weightVec8(next++, "g", norm));
  let weightAt: string;
  if (mode === "qkv") {
    decls.push(
      weightVec8(next++, "wq", dtype),
      weightVec8(next++, "wk", dtype),
      weightVec8(next++, "wv", dtype),
    );
    for (const y of ["yq", "yk", "yv"])
      decls.push(`@group(0) @binding(${next++}) var<storage, read_write> ${y}: array<f32>;`);
    if (bias) for (const b of ["bq", "bk", "bv"]) decls.push(weightScalar(next++, b, bias));
    decls.push(`// The segment is the same for all the threads of an output: no divergence.
fn wAt8(seg: u32, c: u32) -> F8 {
  if (seg == 0u) { return wq8(c); }
  if (seg == 1u) { return wk8(c); }
  return wv8(c);
}`);
    weightAt = "wAt8(seg, ";
  } else {
    decls.push(weightVec8(next++, "w", dtype));
    if (gu) decls.push(weightVec8(next++, "u", dtype));
    decls.push(`@group(0) @binding(${next++}) var<storage, read_write> y: array<f32>;`);
    if (bias) decls.push(weightScalar(next++, "bias", bias));
    if (residual) decls.push(`@group(0) @binding(${next++}) var<storage, read> res: array<f32>;`);
    weightAt = "w8(";
  }
  // tot0: the product (the gate's in gateUp), tot1: the up product, then the sum of squares.
  const ssTot = gu ? "tot2" : "tot1";
  const scale = norm ? " * inv" : "";
  let store: string;
  if (mode === "qkv") {
    const b = (name: string) => (bias ? ` + ${name}At(row)` : "");
    store = `if (seg == 0u) { yq[o * params.m0 + row] = tot0${scale}${b("bq")}; }
    else if (seg == 1u) { yk[o * params.m1 + row] = tot0${scale}${b("bk")}; }
    else { yv[o * (params.m - params.m0 - params.m1) + row] = tot0${scale}${b("bv")}; }`;
  } else if (gu) {
    // For g below about -88, e^-g overflows to +inf and g / inf is -0: the limit, no NaN (as siluMul).
    store = `let g = tot0${scale};
    y[o * params.m + j] = g / (1.0 + exp(-g)) * (tot1${scale});`;
  } else {
    let v = `tot0${scale}`;
    if (bias) v += " + biasAt(j)";
    // residual + (x W^T + b), the order the reference's add(residual, matmul) sums in.
    if (residual) v = `res[o * params.m + j] + (${v})`;
    store = `y[o * params.m + j] = ${v};`;
  }
  const reduce = matvecReduce(spec);
  const xDecl = vec
    ? `@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
fn x8(r: u32, c: u32) -> F8 {
  let at = r * (params.k / 4u) + 2u * c;
  return F8(x[at], x[at + 1u]);
}`
    : `@group(0) @binding(1) var<storage, read> x: array<f32>;
fn x8(r: u32, c: u32) -> F8 {
  let at = r * params.k + c * 8u;
  return F8(vec4<f32>(x[at], x[at + 1u], x[at + 2u], x[at + 3u]),
            vec4<f32>(x[at + 4u], x[at + 5u], x[at + 6u], x[at + 7u]));
}`;
  // The last, partial chunk (k % 8 values; scalar x only): its weights are zero padding past k, but x past k
  // belongs to the next row (or past the buffer), so it is read element by element.
  const arr8 = (v: string) =>
    `array<f32, 8>(${v}.a.x, ${v}.a.y, ${v}.a.z, ${v}.a.w, ${v}.b.x, ${v}.b.y, ${v}.b.z, ${v}.b.w)`;
  const partial = vec
    ? ""
    : `if (t == 0u && params.full < params.chunks) {
      let wa = ${arr8(`${weightAt}rowChunk + params.full)`)};
      ${gu ? `let ua = ${arr8("u8(rowChunk + params.full)")};` : ""}
      ${norm ? `let ga = ${arr8("g8(params.full)")};` : ""}
      for (var e = 0u; e < params.k - params.full * 8u; e++) {
        for (var r = 0u; r < nr; r++) {
          var xe = x[(rb + r) * params.k + params.full * 8u + e];
          ${norm ? "ss[r] += xe * xe;\n          xe = xe * ga[e];" : ""}
          acc[r] += wa[e] * xe;
          ${gu ? "acc2[r] += ua[e] * xe;" : ""}
        }
      }
    }`;
  return `${sg > 0 ? "enable subgroups;\ndiagnostic(off, subgroup_uniformity);" : ""}
${LINEAR_WORKGROUP}
${F8_STRUCT}
// m: outputs in all; m0, m1: the sizes of the q and k segments (qkv mode only); eps: the fused RMSNorm's;
// blocks: workgroups per chunk of R rows (workgroup w takes outputs of block w % blocks, rows of chunk
// w / blocks).
struct Params { k: u32, m: u32, chunks: u32, full: u32, n: u32, m0: u32, m1: u32, eps: f32, blocks: u32 }
@group(0) @binding(0) var<uniform> params: Params;
${xDecl}
${decls.join("\n")}
const R: u32 = ${rows}u;
${reduce.decls}

@compute @workgroup_size(${MATVEC_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = lid % ${tpr}u;
  let wg = linearWorkgroup(wid, nwg);
  // This workgroup's rows: rb .. rb + nr (none for the spare workgroups of a split over y).
  let rb = (wg / params.blocks) * R;
  let nr = select(0u, min(R, params.n - rb), rb < params.n);
  let j = (wg % params.blocks) * ${MATVEC_WG / tpr}u + lid / ${tpr}u;
  ${
    mode === "qkv"
      ? `// Which weight output j is in, and its row there.
  let seg = select(select(2u, 1u, j < params.m0 + params.m1), 0u, j < params.m0);
  let row = j - select(select(params.m0 + params.m1, params.m0, seg == 1u), 0u, seg == 0u);`
      : "let row = j;"
  }
  ${matvecSums(spec)
    .map((v) => `var ${v}: array<f32, R>;`)
    .join("\n  ")}
  if (j < params.m) {
    let rowChunk = row * params.chunks;
    // Whole chunks: k / 8 of them, no bounds checks on x.
    for (var c = t; c < params.full; c += ${tpr}u) {
      let wv = ${weightAt}rowChunk + c);
      ${gu ? "let uv = u8(rowChunk + c);" : ""}
      ${norm ? "let gv = g8(c);" : ""}
      for (var r = 0u; r < R; r++) {
        if (r >= nr) { break; }
        ${norm ? "let xr = x8(rb + r, c);\n        ss[r] += dot(xr.a, xr.a) + dot(xr.b, xr.b);\n        let xv = F8(xr.a * gv.a, xr.b * gv.b);" : "let xv = x8(rb + r, c);"}
        acc[r] += dot(wv.a, xv.a) + dot(wv.b, xv.b);
        ${gu ? "acc2[r] += dot(uv.a, xv.a) + dot(uv.b, xv.b);" : ""}
      }
    }
    ${partial}
  }
  ${reduce.code}
  if (j < params.m && t < nr) {
    let o = rb + t;
    ${norm ? `// As rms-norm.ts: 1 / sqrt, not inverseSqrt.\n    let inv = 1.0 / sqrt(${ssTot} / f32(params.k) + params.eps);` : ""}
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

function checkLinear(op: string, x: GpuActivation, w: GpuWeight): [number, number] {
  const [m, k] = w.shape as [number, number];
  if (w.shape.length !== 2 || k !== x.cols) {
    throw new RangeError(`${op}: x [${x.rows}, ${x.cols}] by weight ${w.name} [${w.shape}]`);
  }
  return [m, k];
}

/** A fused RMSNorm of the matrix-vector kernel's input: its weight [k] and epsilon. */
export interface MatvecNorm {
  weight: GpuWeight;
  eps: number;
}

function checkNorm(op: string, x: GpuActivation, norm: MatvecNorm | undefined): void {
  if (norm && norm.weight.rows * norm.weight.cols !== x.cols)
    throw new RangeError(`${op}: norm weight [${norm.weight.shape}] for ${x.cols} columns`);
}

/**
 * Records one matrix-vector dispatch (x.rows <= MATVEC_CHUNKED_MAX_ROWS): `weights` (1, or 2 for gateUp, or 3 for qkv)
 * into `outs`, with the options of MatvecSpec. m: outputs in all (qkv: m0 + m1 + the v rows).
 */
function dispatchMatvec(
  rec: Recorder,
  mode: MatvecMode,
  x: GpuActivation,
  weights: readonly GpuWeight[],
  outs: readonly GpuActivation[],
  m: number,
  opts: {
    norm?: MatvecNorm;
    biases?: readonly GpuWeight[];
    residual?: GpuActivation;
    m0?: number;
    m1?: number;
  } = {},
): void {
  const w = weights[0] as GpuWeight;
  const k = x.cols;
  const n = x.rows;
  const sg = rec.subgroupSize >= 4 && rec.subgroupSize <= 128 ? rec.subgroupSize : 0;
  // An output per subgroup (32 threads without subgroups); few outputs (o_proj, down: 1024) get two, which
  // keeps more loads in flight per output. (On lavapipe, subgroups of 8, both paths of matvecReduce run.)
  // Thread t of an output stores row t, so an output has at least as many threads as rows.
  const rows = matvecRows(Math.min(n, MATVEC_MAX_ROWS));
  const tpr = Math.max((sg || 32) * (m <= 2048 ? 2 : 1), rows);
  const spec: MatvecSpec = {
    rows,
    dtype: w.dtype,
    bias: opts.biases?.[0]?.dtype ?? null,
    residual: opts.residual !== undefined,
    mode,
    norm: opts.norm?.weight.dtype ?? null,
    tpr,
    vec: k % 8 === 0,
    sg,
  };
  const kernel = matvecKernel(spec);
  const blocks = Math.ceil(m / (MATVEC_WG / tpr));
  const buffers: GPUBuffer[] = [gpuBuf(x)];
  if (opts.norm) buffers.push(opts.norm.weight.buffer);
  for (const wt of weights) buffers.push(wt.buffer);
  for (const o of outs) buffers.push(gpuBuf(o));
  if (opts.biases) for (const b of opts.biases) buffers.push(b.buffer);
  if (opts.residual) buffers.push(gpuBuf(opts.residual));
  rec.dispatch({
    key: kernel.key,
    wgsl: kernel.wgsl,
    params: new ParamBlock()
      .u32(k)
      .u32(m)
      .u32(w.rowStride / 8)
      .u32(Math.floor(k / 8))
      .u32(n)
      .u32(opts.m0 ?? 0)
      .u32(opts.m1 ?? 0)
      .f32(opts.norm?.eps ?? 0)
      .u32(blocks),
    buffers,
    workgroups: blocks * Math.ceil(n / MATVEC_MAX_ROWS),
  });
}

const MODES: readonly MatvecMode[] = ["plain", "gateUp", "qkv"];
const DTYPE_CODES: Record<DType, number> = { f32: 1, f16: 2, bf16: 3 };
/** Pipeline keys and sources by a number packed from the spec: the recording path builds no key string. */
const matvecKernels = new Map<number, { key: string; wgsl: () => string }>();

function matvecKernel(spec: MatvecSpec): { key: string; wgsl: () => string } {
  const dt = (d: DType | null) => (d === null ? 0 : DTYPE_CODES[d]);
  let code = MODES.indexOf(spec.mode);
  code = code * 32 + spec.rows;
  code = code * 4 + dt(spec.dtype);
  code = code * 4 + dt(spec.bias);
  code = code * 2 + (spec.residual ? 1 : 0);
  code = code * 4 + dt(spec.norm);
  code = code * 512 + spec.tpr;
  code = code * 2 + (spec.vec ? 1 : 0);
  code = code * 256 + spec.sg;
  let k = matvecKernels.get(code);
  if (!k) {
    const s = { ...spec };
    k = {
      key: `matvec:${s.mode}:${s.rows}:${s.dtype}:${s.bias}:${s.residual}:${s.norm}:${s.tpr}:${s.vec}:${s.sg}`,
      wgsl: () => matvecWgsl(s),
    };
    matvecKernels.set(code, k);
  }
  return k;
}

/** x, RMS-normalised first when `norm` is given, as its own activation (the unfused path). */
function normed(rec: Recorder, x: GpuActivation, norm: MatvecNorm | undefined): GpuActivation {
  return norm ? encodeRmsNorm(rec, x, norm.weight, norm.eps, x.cols) : x;
}

/** Releases `a` when it is not `x` (an intermediate made by `normed`). */
function dropNormed(rec: Recorder, a: GpuActivation, x: GpuActivation): void {
  if (a !== x) rec.pool.release(gpuBuf(a));
}

/** residual + x W^T (+ bias) in one dispatch (few rows), else the product then an add. */
export function encodeMatmulAdd(
  rec: Recorder,
  x: GpuActivation,
  w: GpuWeight,
  residual: GpuActivation,
  bias?: GpuWeight,
): GpuActivation {
  const [m] = checkLinear("matmulAdd", x, w);
  if (residual.rows !== x.rows || residual.cols !== m) {
    throw new RangeError(`matmulAdd: residual [${residual.rows}, ${residual.cols}] for [${x.rows}, ${m}]`);
  }
  if (bias && bias.rows * bias.cols !== m)
    throw new RangeError(`matmulAdd: bias [${bias.shape}] for ${m} outputs`);
  const n = x.rows;
  if (n === 0 || n > MATVEC_CHUNKED_MAX_ROWS) {
    const y = encodeMatmul(rec, x, w, bias);
    const out = encodeAdd(rec, residual, y);
    rec.pool.release(gpuBuf(y));
    return out;
  }
  const y = rec.activation(n, m);
  dispatchMatvec(rec, "plain", x, [w], [y], m, { biases: bias ? [bias] : undefined, residual });
  return y;
}

/** silu(x' G^T) * (x' U^T), x' = rmsNorm(x) when `norm` is given, in one dispatch (few rows). */
export function encodeGateUpSilu(
  rec: Recorder,
  x: GpuActivation,
  gate: GpuWeight,
  up: GpuWeight,
  norm?: MatvecNorm,
): GpuActivation {
  const [m, k] = checkLinear("gateUpSilu", x, gate);
  if (up.shape[0] !== m || up.shape[1] !== k || up.dtype !== gate.dtype || up.shape.length !== 2) {
    throw new RangeError(`gateUpSilu: gate ${gate.dtype} [${gate.shape}], up ${up.dtype} [${up.shape}]`);
  }
  checkNorm("gateUpSilu", x, norm);
  const n = x.rows;
  if (n === 0 || n > MATVEC_CHUNKED_MAX_ROWS) {
    const xn = normed(rec, x, norm);
    const g = encodeMatmul(rec, xn, gate);
    const u = encodeMatmul(rec, xn, up);
    dropNormed(rec, xn, x);
    const out = encodeSiluMul(rec, g, u);
    rec.pool.release(gpuBuf(g));
    rec.pool.release(gpuBuf(u));
    return out;
  }
  const y = rec.activation(n, m);
  dispatchMatvec(rec, "gateUp", x, [gate, up], [y], m, { norm });
  return y;
}

/**
 * x' q^T, x' k^T, x' v^T (+ biases), x' = rmsNorm(x) when `norm` is given: one dispatch (few rows, one
 * dtype, all three biases or none), else three products.
 */
export function encodeQkvProject(
  rec: Recorder,
  x: GpuActivation,
  wq: GpuWeight,
  wk: GpuWeight,
  wv: GpuWeight,
  biases: readonly (GpuWeight | undefined)[],
  norm?: MatvecNorm,
): [GpuActivation, GpuActivation, GpuActivation] {
  const [mq] = checkLinear("qkvProject", x, wq);
  const [mk] = checkLinear("qkvProject", x, wk);
  const [mv] = checkLinear("qkvProject", x, wv);
  checkNorm("qkvProject", x, norm);
  const outs = [mq, mk, mv];
  biases.forEach((b, i) => {
    if (b && b.rows * b.cols !== outs[i])
      throw new RangeError(`qkvProject: bias [${b.shape}] for ${outs[i]} outputs`);
  });
  const n = x.rows;
  const allBiases = biases.length === 3 && biases.every((b) => b !== undefined);
  const fused =
    n > 0 &&
    n <= MATVEC_CHUNKED_MAX_ROWS &&
    (allBiases ? biases.every((b) => b?.dtype === biases[0]?.dtype) : biases.every((b) => b === undefined)) &&
    wk.dtype === wq.dtype &&
    wv.dtype === wq.dtype;
  if (!fused) {
    const xn = normed(rec, x, norm);
    const out: [GpuActivation, GpuActivation, GpuActivation] = [
      encodeMatmul(rec, xn, wq, biases[0]),
      encodeMatmul(rec, xn, wk, biases[1]),
      encodeMatmul(rec, xn, wv, biases[2]),
    ];
    dropNormed(rec, xn, x);
    return out;
  }
  const q = rec.activation(n, mq);
  const kk = rec.activation(n, mk);
  const v = rec.activation(n, mv);
  dispatchMatvec(rec, "qkv", x, [wq, wk, wv], [q, kk, v], mq + mk + mv, {
    norm,
    biases: allBiases ? (biases as GpuWeight[]) : undefined,
    m0: mq,
    m1: mk,
  });
  return [q, kk, v];
}

/** x' W^T (+ bias), x' = rmsNorm(x) when `norm` is given (fused on the matrix-vector path). */
export function encodeMatmul(
  rec: Recorder,
  x: GpuActivation,
  w: GpuWeight,
  bias?: GpuWeight,
  norm?: MatvecNorm,
): GpuActivation {
  const [m, k] = checkLinear("matmul", x, w);
  if (bias && bias.rows * bias.cols !== m)
    throw new RangeError(`matmul: bias [${bias.shape}] for ${m} outputs`);
  checkNorm("matmul", x, norm);
  const n = x.rows;
  if (n === 0) return rec.activation(n, m);
  if (n <= MATVEC_CHUNKED_MAX_ROWS) {
    const y = rec.activation(n, m);
    dispatchMatvec(rec, "plain", x, [w], [y], m, { norm, biases: bias ? [bias] : undefined });
    return y;
  }
  const xn = normed(rec, x, norm);
  const y = rec.activation(n, m);
  const biasDtype = bias?.dtype ?? null;
  const tilesM = Math.ceil(m / TILE);
  rec.dispatch({
    key: `matmulTiled:${w.dtype}:${biasDtype}`,
    wgsl: () => tiledWgsl(w.dtype, biasDtype),
    params: new ParamBlock().u32(n).u32(k).u32(m).u32(w.rowStride).u32(tilesM),
    buffers: [gpuBuf(xn), w.buffer, gpuBuf(y), ...(bias ? [bias.buffer] : [])],
    workgroups: tilesM * Math.ceil(n / TILE),
  });
  dropNormed(rec, xn, x);
  return y;
}
