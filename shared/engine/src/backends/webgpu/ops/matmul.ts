// y [n, m] = x [n, k] W^T + b, W in Hugging Face linear layout [m, k] (rows padded to 8 elements): the shape
// logic and encoding of every product. Few rows (decode, verification, up to MATVEC_CHUNKED_MAX_ROWS) take,
// in chunks of up to MATVEC_MAX_ROWS rows, the matrix-vector program (matvec-program.ts: one row) or the
// skinny program (skinny-program.ts: 2-16 rows); both serve the fused ops (q/k/v in one dispatch, gate/up
// with silu-mul, a residual in the epilogue, the RMSNorm of x folded in). Many rows (long prefills) take the
// tiled program (tiled-program.ts).
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuWeight, gpuBuf } from "../resources.js";
import { encodeAdd } from "./add.js";
import { MATVEC_WG, type MatvecMode, type MatvecSpec, matvecProgram } from "./matvec-program.js";
import { encodeRmsNorm } from "./rms-norm.js";
import { encodeSiluMul } from "./silu-mul.js";
import { kindsPerOut, SKINNY_OUTPUTS, skinnyProgram } from "./skinny-program.js";
import { SKINNY_REDUCE_WG, skinnyReduceProgram } from "./skinny-reduce-program.js";
import { TILE, tiledProgram } from "./tiled-program.js";

/**
 * Rows of one matrix-vector chunk at most (its accumulators are per row, in registers): a decode batch of up
 * to 16 is one chunk.
 */
export const MATVEC_MAX_ROWS = 16;
/**
 * Up to this many rows take the few-row programs, in chunks of MATVEC_MAX_ROWS (each chunk reads the weights
 * again): a batch's verification trees (16 sequences x 1 + 8 drafted nodes = 144 rows). The tiled kernel
 * gives such a pass only (m / 64) x (n / 64) workgroups, each walking all of k, and measured 2.4x slower
 * (bench/results/gpu-decode-h100.md).
 */
export const MATVEC_CHUNKED_MAX_ROWS = 256;

/**
 * Products of 2-16 rows with at least this many outputs take the skinny program; narrower ones the
 * matrix-vector program, since the skinny one's 32 outputs a workgroup leave most of the GPU idle for them
 * (the 0.6B shape's o_proj and down, 1,024 outputs: bench/results/gpu-decode-h100.md, round 4).
 */
export const SKINNY_MIN_OUTPUTS = 3072;
/** From this many outputs (an LM head) a skinny lane takes two outputs: half the workgroups, twice the use of x. */
const SKINNY_TWO_PER_LANE = 32768;

/**
 * A skinny product with fewer workgroups than this is split over k (SkinnySpec.split) until it has about as
 * many: at 2-16 rows a block of 32 outputs is one workgroup, so the 0.6B shape's o_proj and down (1,024
 * outputs) were 32 workgroups, gate/up 96 and q/k/v 192 on a GPU of 132 multiprocessors, each walking all of
 * k with few loads in flight (bench/results/gpu-decode-h100-round5.md). Used where Recorder.skinnySplits is
 * "auto" (off by default until measured on the GPU).
 */
export const SPLIT_TARGET_WORKGROUPS = 512;
/** At most this many splits, each of at least SPLIT_MIN_CHUNKS chunks of 8 (4 per slice of a workgroup). */
export const MAX_SPLITS = 8;
const SPLIT_MIN_CHUNKS = 32;

/**
 * Splits of k for a skinny product of `workgroups` workgroups over `full` whole chunks of 8, by
 * SPLIT_TARGET_WORKGROUPS (`force`: that many, at most one per 2 chunks; tests).
 */
export function skinnySplits(workgroups: number, full: number, force = 0): number {
  if (force > 0) return Math.max(1, Math.min(force, Math.floor(full / 2)));
  if (workgroups >= SPLIT_TARGET_WORKGROUPS) return 1;
  const wanted = Math.ceil(SPLIT_TARGET_WORKGROUPS / workgroups);
  return Math.max(1, Math.min(wanted, MAX_SPLITS, Math.floor(full / SPLIT_MIN_CHUNKS)));
}

/**
 * The rows a matrix-vector pipeline is built for, for chunks of n rows: n itself up to 4, then multiples of
 * 4 (rows past n are computed from a repeated row and not stored): few pipelines, little waste.
 */
export function matvecChunkRows(n: number): number {
  return n <= 4 ? n : Math.ceil(n / 4) * 4;
}

/**
 * One-row products with at least this many outputs (an LM head: a vocabulary) write argmax partials beside
 * their outputs (Recorder.fuseArgmax), which makes a decode step's argmax one dispatch of a few microseconds
 * instead of two, the first re-reading every logit.
 */
export const ARGMAX_FUSED_MIN_OUTPUTS = 4096;

/** How a product is spread over threads (MatvecSpec's outs and tpr); matvecShape's choice or a benchmark's. */
export interface MatvecShape {
  outs: number;
  tpr: number;
}

/**
 * Outputs per thread group and threads per group for m outputs and chunks of `rows`: at batch 1 an output
 * per subgroup (32 threads without subgroups), two subgroups when there are few outputs (o_proj, down:
 * 1024), which keeps more loads in flight per output. With more rows each x load is worth more weights: 4
 * outputs per group for wide products, 2 for narrow ones (the number of groups, and so of warps on the GPU,
 * stays near the batch-1 kernel's for the narrow ones). A group has at least as many threads as rows (thread
 * t stores row t).
 */
export function matvecShape(m: number, rows: number, sg: number): MatvecShape {
  const outs = rows === 1 ? 1 : m >= 4096 ? 4 : 2;
  const groups = Math.ceil(m / outs);
  const tpr = Math.max((sg || 32) * (groups <= 2048 ? 2 : 1), rows);
  return { outs, tpr };
}

/**
 * Prefetch (Recorder.prefetch): the next product's weights are read only up to this size (an LM head's 300
 * MB would not stay in a 50 MB L2), each prefetching thread reading about this many 16-byte words.
 */
const PREFETCH_MAX_BYTES = 32 * 1024 * 1024;
const PREFETCH_WORDS_PER_THREAD = 16;
/** Params of a dispatch without prefetch: no prefetch workgroups. */
const NO_PREFETCH: readonly number[] = [0xffffffff, 0, 0, 0, 0];

/** The matrix-vector program's workgroups per chunk of rows for m outputs (matvecShape's layout). */
function matvecBlocks(m: number, rows: number, subgroupSize: number): number {
  const sg = subgroupSize >= 4 && subgroupSize <= 128 ? subgroupSize : 0;
  const { outs, tpr } = matvecShape(m, rows, sg);
  return Math.ceil(m / ((MATVEC_WG / tpr) * outs));
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

/** What a matrix-vector dispatch takes besides x, the weights and the outputs. */
export interface MatvecOptions {
  norm?: MatvecNorm;
  biases?: readonly GpuWeight[];
  residual?: GpuActivation;
  /** qkv: the q and k segments' sizes. */
  m0?: number;
  m1?: number;
  /** Argmax partials to write (one row, plain; MatvecSpec.argmax), one per workgroup. */
  argmax?: { values: GPUBuffer; indices: GPUBuffer };
  /**
   * The matrix-vector program with this layout, whatever the rows (benchmarks: bench/gpu-matvec.ts); by
   * default 2 or more rows of a wide product take the skinny program (see SKINNY_MIN_OUTPUTS and
   * Recorder.fewRows), other products the matrix-vector one with matvecShape's layout.
   */
  shape?: MatvecShape;
}

/**
 * Records one matrix-vector dispatch (x.rows <= MATVEC_CHUNKED_MAX_ROWS): `weights` (1, or 2 for gateUp, or 3
 * for qkv) into `outs`, with the options of MatvecSpec. m: outputs in all (qkv: m0 + m1 + the v rows).
 */
export function dispatchMatvec(
  rec: Recorder,
  mode: MatvecMode,
  x: GpuActivation,
  weights: readonly GpuWeight[],
  outs: readonly GpuActivation[],
  m: number,
  opts: MatvecOptions = {},
): void {
  const w = weights[0] as GpuWeight;
  const k = x.cols;
  const n = x.rows;
  // (On lavapipe, subgroups of 8: both reductions of a group spanning one or several subgroups run.)
  const sg = rec.subgroupSize >= 4 && rec.subgroupSize <= 128 ? rec.subgroupSize : 0;
  const rows = matvecChunkRows(Math.min(n, MATVEC_MAX_ROWS));
  const buffers: GPUBuffer[] = [gpuBuf(x)];
  if (opts.norm) buffers.push(opts.norm.weight.buffer);
  for (const wt of weights) buffers.push(wt.buffer);
  for (const o of outs) buffers.push(gpuBuf(o));
  if (opts.biases) for (const b of opts.biases) buffers.push(b.buffer);
  if (opts.residual) buffers.push(gpuBuf(opts.residual));
  if (opts.argmax) buffers.push(opts.argmax.values, opts.argmax.indices);
  const params = (blocks: number, splits = 1, pf: readonly number[] = NO_PREFETCH) =>
    new ParamBlock()
      .u32(k)
      .u32(m)
      .u32(w.rowStride / 8)
      .u32(Math.floor(k / 8))
      .u32(n)
      .u32(opts.m0 ?? 0)
      .u32(opts.m1 ?? 0)
      .f32(opts.norm?.eps ?? 0)
      .u32(blocks)
      .u32(splits)
      .u32(pf[0] as number)
      .u32(pf[1] as number)
      .u32(pf[2] as number)
      .u32(pf[3] as number)
      .u32(pf[4] as number);
  const full = Math.floor(k / 8);
  const rowChunks = Math.ceil(n / rows);
  const perLane = m >= SKINNY_TWO_PER_LANE ? 2 : 1;
  const blocks = Math.ceil(m / (SKINNY_OUTPUTS * perLane));
  const splits =
    rows >= 2 && opts.shape === undefined && rec.fewRows !== "matvec" && rec.skinnySplits !== 0
      ? skinnySplits(blocks * rowChunks, full, rec.skinnySplits === "auto" ? 0 : rec.skinnySplits)
      : 1;
  const skinny =
    rows >= 2 &&
    opts.shape === undefined &&
    (rec.fewRows === "skinny" || (rec.fewRows === "auto" && (m >= SKINNY_MIN_OUTPUTS || splits > 1)));
  if (skinny) {
    const split = splits > 1;
    const program = skinnyProgram({
      rows,
      perLane,
      dtype: w.dtype,
      bias: opts.biases?.[0]?.dtype ?? null,
      residual: opts.residual !== undefined,
      mode,
      norm: opts.norm?.weight.dtype ?? null,
      vec: k % 8 === 0,
      split,
    });
    if (!split) {
      rec.dispatch({
        key: program.key,
        wgsl: program.wgsl,
        params: params(blocks, 1),
        buffers,
        workgroups: blocks * rowChunks,
      });
      return;
    }
    // The partial sums (skinny-reduce-program.ts's layout), then the reduction into the outputs.
    const partial = rec.activation(1, kindsPerOut(mode === "gateUp") * splits * n * m + splits * n);
    const sources = [gpuBuf(x)];
    if (opts.norm) sources.push(opts.norm.weight.buffer);
    for (const wt of weights) sources.push(wt.buffer);
    rec.dispatch({
      key: program.key,
      wgsl: program.wgsl,
      params: params(blocks, splits),
      buffers: [...sources, gpuBuf(partial)],
      workgroups: blocks * splits * rowChunks,
    });
    const reduce = skinnyReduceProgram({
      mode,
      bias: opts.biases?.[0]?.dtype ?? null,
      residual: opts.residual !== undefined,
      norm: opts.norm !== undefined,
    });
    const finish: GPUBuffer[] = [gpuBuf(partial)];
    for (const o of outs) finish.push(gpuBuf(o));
    if (opts.biases) for (const b of opts.biases) finish.push(b.buffer);
    if (opts.residual) finish.push(gpuBuf(opts.residual));
    rec.dispatch({
      key: reduce.key,
      wgsl: reduce.wgsl,
      params: params(blocks, splits),
      buffers: finish,
      workgroups: Math.ceil((n * m) / SKINNY_REDUCE_WG),
    });
    // Released now, reused only by commands recorded later: the pool's ordering argument (buffer-pool.ts).
    rec.pool.release(gpuBuf(partial));
    return;
  }
  const { outs: perGroup, tpr } = opts.shape ?? matvecShape(m, rows, sg);
  const spec: MatvecSpec = {
    rows,
    outs: perGroup,
    dtype: w.dtype,
    bias: opts.biases?.[0]?.dtype ?? null,
    residual: opts.residual !== undefined,
    mode,
    norm: opts.norm?.weight.dtype ?? null,
    tpr,
    vec: k % 8 === 0,
    sg,
    argmax: opts.argmax !== undefined,
    prefetch: 0,
  };
  const mvBlocks = Math.ceil(m / ((MATVEC_WG / tpr) * perGroup));
  let pf = NO_PREFETCH;
  let pfGroups = 0;
  if (rec.prefetch && rows === 1 && opts.shape === undefined) {
    const target = rec.prefetchTarget(weights.map((wt) => wt.buffer));
    const words = target?.map((b) => Math.floor(b.size / 16)) ?? [];
    const total = words.reduce((a, b) => a + b, 0);
    if (
      target &&
      total > 0 &&
      total * 16 <= PREFETCH_MAX_BYTES &&
      buffers.length + target.length <= rec.device.limits.maxStorageBuffersPerShaderStage
    ) {
      pfGroups = Math.ceil(total / (MATVEC_WG * PREFETCH_WORDS_PER_THREAD));
      const ends = words.map((_, i) => words.slice(0, i + 1).reduce((a, b) => a + b, 0));
      pf = [mvBlocks * rowChunks, pfGroups, ends[0] ?? 0, ends[1] ?? 0, ends[2] ?? 0];
      buffers.push(...target);
      spec.prefetch = target.length;
    }
  }
  const program = matvecProgram(spec);
  rec.dispatch({
    key: program.key,
    wgsl: program.wgsl,
    params: params(mvBlocks, 1, pf),
    buffers,
    workgroups: mvBlocks * rowChunks + pfGroups,
  });
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
  if (n === 1 && bias === undefined && m >= ARGMAX_FUSED_MIN_OUTPUTS && rec.fuseArgmax) {
    // A one-row LM head: its workgroups' best logits too, for an argmax of one small dispatch.
    const y = rec.activation(n, m);
    const slices = matvecBlocks(m, 1, rec.subgroupSize);
    const values = gpuBuf(rec.activation(1, slices));
    const indices = gpuBuf(rec.activation(1, slices));
    dispatchMatvec(rec, "plain", x, [w], [y], m, { norm, argmax: { values, indices } });
    y.argmaxParts = { values, indices, slices };
    return y;
  }
  if (n <= MATVEC_CHUNKED_MAX_ROWS) {
    const y = rec.activation(n, m);
    dispatchMatvec(rec, "plain", x, [w], [y], m, { norm, biases: bias ? [bias] : undefined });
    return y;
  }
  const xn = normed(rec, x, norm);
  const y = rec.activation(n, m);
  const biasDtype = bias?.dtype ?? null;
  const tilesM = Math.ceil(m / TILE);
  const program = tiledProgram(w.dtype, biasDtype);
  rec.dispatch({
    key: program.key,
    wgsl: program.wgsl,
    params: new ParamBlock().u32(n).u32(k).u32(m).u32(w.rowStride).u32(tilesM),
    buffers: [gpuBuf(xn), w.buffer, gpuBuf(y), ...(bias ? [bias.buffer] : [])],
    workgroups: tilesM * Math.ceil(n / TILE),
  });
  dropNormed(rec, xn, x);
  return y;
}
