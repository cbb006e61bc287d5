// The skinny product: y [n, m] = x [n, k] W^T for 2-16 rows (a decode batch, a verification pass), where
// the matrix-vector program's layout (threads over k, every output's partial sums reduced across them) spends
// more on reductions and x loads than on the weights. Here a workgroup of 256 threads takes 32 outputs, one
// per lane of each of 8 slices of k: each thread walks its slice of its output's weight row, 16 bytes a step,
// and multiplies them with every row of x; the 32 lanes of a slice read the same x values at once (one
// broadcast load serves 32 outputs), so each weight is read once per chunk of rows and the arithmetic is
// 8 * rows multiply-adds per 16-byte load. The 8 slices' sums are added in workgroup memory at the end. The
// fused RMSNorm folds its weight g into the weight row (w * g, 8 products a step instead of 8 * rows) and
// each lane also sums the squares of one row of x. No subgroup operations: every adapter runs the same code.
// The encoding (which products take it) is in matmul.ts.
import type { DType } from "../../../tensor.js";
import { F8_STRUCT, LINEAR_WORKGROUP, weightScalar, weightVec8 } from "../wgsl.js";
import type { MatvecMode } from "./matvec-program.js";

/** Threads per workgroup, outputs per workgroup (one per lane of a slice) and slices of k. */
export const SKINNY_WG = 256;
export const SKINNY_OUTPUTS = 32;
const SLICES = SKINNY_WG / SKINNY_OUTPUTS;

export interface SkinnySpec {
  /** Rows of x a workgroup takes (2..16; matmul.ts's matvecChunkRows). */
  rows: number;
  /**
   * Outputs per lane (1 or 2): each x load then serves twice as many weights, for products with enough
   * outputs that halving the workgroups leaves plenty (the LM head).
   */
  perLane: number;
  dtype: DType;
  /** The bias's dtype (qkv: of all three), or null for none. */
  bias: DType | null;
  /** Adds a residual [n, m] (plain only). */
  residual: boolean;
  mode: MatvecMode;
  /** The fused RMSNorm's weight dtype, or null for none. */
  norm: DType | null;
  /** k is a multiple of 8: x is read as 16-byte vectors and there is no partial chunk. */
  vec: boolean;
  /**
   * Split k over `params.splits` workgroups per block of outputs, each writing its raw sums (products, up
   * products, squares of x) to a buffer of partial sums that skinny-reduce-program.ts adds up and finishes
   * (norm, silu, bias, residual, q/k/v): more workgroups for products with few outputs, which otherwise leave
   * most of a large GPU idle. Without it the workgroup stores its outputs itself.
   */
  split: boolean;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** WGSL source of the skinny program for `spec` (same bindings and Params as matvec-program.ts). */
export function skinnyWgsl(spec: SkinnySpec): string {
  const { rows: R, perLane: L, dtype, bias, residual, mode, norm, vec, split } = spec;
  const gu = mode === "gateUp";
  const qkv = mode === "qkv";
  const outsPerWg = SKINNY_OUTPUTS * L;
  let next = 2;
  const decls: string[] = [];
  if (norm) decls.push(weightVec8(next++, "g", norm));
  if (split) {
    // The partial sums: per kind (products, then up products), split and row, m values; then the squares of
    // x per split and row (skinny-reduce-program.ts reads the same layout).
    if (qkv)
      decls.push(
        weightVec8(next++, "wq", dtype),
        weightVec8(next++, "wk", dtype),
        weightVec8(next++, "wv", dtype),
        WQKV_SELECT,
      );
    else {
      decls.push(weightVec8(next++, "w", dtype));
      if (gu) decls.push(weightVec8(next++, "u", dtype));
    }
    decls.push(`@group(0) @binding(${next++}) var<storage, read_write> part: array<f32>;`);
  } else if (qkv) {
    decls.push(
      weightVec8(next++, "wq", dtype),
      weightVec8(next++, "wk", dtype),
      weightVec8(next++, "wv", dtype),
    );
    for (const y of ["yq", "yk", "yv"])
      decls.push(`@group(0) @binding(${next++}) var<storage, read_write> ${y}: array<f32>;`);
    if (bias) for (const b of ["bq", "bk", "bv"]) decls.push(weightScalar(next++, b, bias));
    decls.push(WQKV_SELECT);
  } else {
    decls.push(weightVec8(next++, "w", dtype));
    if (gu) decls.push(weightVec8(next++, "u", dtype));
    decls.push(`@group(0) @binding(${next++}) var<storage, read_write> y: array<f32>;`);
    if (bias) decls.push(weightScalar(next++, "bias", bias));
    if (residual) decls.push(`@group(0) @binding(${next++}) var<storage, read> res: array<f32>;`);
  }
  const wAt = (o: number, c: string) => (qkv ? `wAt8(seg${o}, rc${o} + ${c})` : `w8(rc${o} + ${c})`);
  // Output `j`'s weight row (and qkv segment), declared with suffix `sfx`.
  const locate = (j: string, sfx: string) =>
    qkv
      ? `let seg${sfx} = select(select(2u, 1u, ${j} < params.m0 + params.m1), 0u, ${j} < params.m0);
    let row${sfx} = ${j} - select(select(params.m0 + params.m1, params.m0, seg${sfx} == 1u), 0u, seg${sfx} == 0u);`
      : `let row${sfx} = ${j};`;
  // x is read at precomputed row offsets (xb0 .. xb{R-1}, in x's elements): a step adds only the chunk.
  const xDecl = vec
    ? `@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
// Chunk c of the row starting at vec4 xb.
fn x8(xb: u32, c: u32) -> F8 {
  let at = xb + 2u * c;
  return F8(x[at], x[at + 1u]);
}`
    : `@group(0) @binding(1) var<storage, read> x: array<f32>;
// Chunk c of the row starting at element xb.
fn x8(xb: u32, c: u32) -> F8 {
  let at = xb + c * 8u;
  return F8(vec4<f32>(x[at], x[at + 1u], x[at + 2u], x[at + 3u]),
            vec4<f32>(x[at + 4u], x[at + 5u], x[at + 6u], x[at + 7u]));
}`;
  const rowStride = vec ? "(params.k / 4u)" : "params.k";
  // The sums a lane keeps: per output, the products (and the up products), R rows each.
  const kinds = range(L).flatMap((o) => [`acc${o}`, ...(gu ? [`up${o}`] : [])]);
  // One step: chunk `c` of the lane's weight rows times every row of x (rows past nr repeat the last row:
  // valid memory, never stored), and the squares of the lane's own row for the norm.
  const step = (c: string) => `{
      ${norm ? `let gv = g8(${c});` : ""}
      ${range(L)
        .map(
          (o) =>
            `var w${o} = ${wAt(o, c)};${gu ? ` var u${o} = u8(rc${o} + ${c});` : ""}${
              norm
                ? `\n      w${o} = F8(w${o}.a * gv.a, w${o}.b * gv.b);${gu ? ` u${o} = F8(u${o}.a * gv.a, u${o}.b * gv.b);` : ""}`
                : ""
            }`,
        )
        .join("\n      ")}
      ${norm ? `let xs = x8(ssBase, ${c});\n      ss += dot(xs.a, xs.a) + dot(xs.b, xs.b);` : ""}
      ${range(R)
        .map(
          (r) => `{ let xv = x8(xb${r}, ${c});
        ${range(L)
          .map(
            (o) =>
              `acc${o}[${r}] += dot(w${o}.a, xv.a) + dot(w${o}.b, xv.b);${gu ? ` up${o}[${r}] += dot(u${o}.a, xv.a) + dot(u${o}.b, xv.b);` : ""}`,
          )
          .join("\n        ")} }`,
        )
        .join("\n      ")}
    }`;
  // The last, partial chunk (k % 8 values; scalar x only): its weights are zero padding past k, but x past k
  // belongs to the next row, so it is read element by element. Slice 0 takes it.
  const arr8 = (v: string) =>
    `array<f32, 8>(${v}.a.x, ${v}.a.y, ${v}.a.z, ${v}.a.w, ${v}.b.x, ${v}.b.y, ${v}.b.z, ${v}.b.w)`;
  const partial = vec
    ? ""
    : `if (slice == 0u && split == params.splits - 1u && params.full < params.chunks) {
    ${norm ? `let gf = g8(params.full);\n    let ga = ${arr8("gf")};` : ""}
    ${range(L)
      .map(
        (o) =>
          `let wf${o} = ${wAt(o, "params.full")};\n    let wa${o} = ${arr8(`wf${o}`)};` +
          (gu ? `\n    let uf${o} = u8(rc${o} + params.full);\n    let ua${o} = ${arr8(`uf${o}`)};` : ""),
      )
      .join("\n    ")}
    for (var e = 0u; e < params.k - params.full * 8u; e++) {
      let at = params.full * 8u + e;
      ${norm ? "let xs = x[ssBase + at];\n      ss += xs * xs;" : ""}
      ${range(R)
        .map(
          (r) => `{ let xe = x[xb${r} + at];
        ${range(L)
          .map(
            (o) =>
              `acc${o}[${r}] += ${norm ? `wa${o}[e] * ga[e]` : `wa${o}[e]`} * xe;` +
              (gu ? ` up${o}[${r}] += ${norm ? `ua${o}[e] * ga[e]` : `ua${o}[e]`} * xe;` : ""),
          )
          .join("\n        ")} }`,
        )
        .join("\n      ")}
    }
  }`;
  // Workgroup memory: per slice, every (row, lane) sum of one kind at a time (all at once would pass
  // lavapipe's 32 KiB), then the squares per row.
  const perSlice = R * SKINNY_OUTPUTS;
  const at = (sl: string, r: string, l: string) => `${sl} * ${perSlice}u + ${r} * ${SKINNY_OUTPUTS}u + ${l}`;
  const ssRed = SLICES * perSlice;
  const redSize = ssRed + (norm ? SLICES * R : 0);
  // The (row, lane) pairs a thread finishes: p = lid + i * SKINNY_WG.
  const pairs = Math.ceil(perSlice / SKINNY_WG);
  const gather = (kind: string) => `${range(R)
    .map((r) => `red[${at("slice", `${r}u`, "lane")}] = ${kind}[${r}];`)
    .join("\n  ")}
  workgroupBarrier();
  for (var i = 0u; i < ${pairs}u; i++) {
    let p = lid + i * ${SKINNY_WG}u;
    if (p < ${perSlice}u) {
      for (var s = 0u; s < ${SLICES}u; s++) {
        t_${kind}[i] += red[${at("s", `(p / ${SKINNY_OUTPUTS}u)`, `(p % ${SKINNY_OUTPUTS}u)`)}];
      }
    }
  }
  workgroupBarrier();`;
  const scale = norm ? " * inv" : "";
  const store = (o: number) => {
    if (split) {
      // Raw sums: kind 0 (products) and 1 (up products) at ((kind * splits + split) * n + row) * m + j.
      const at = (kind: number) => `((${kind}u * params.splits + split) * params.n + orow) * params.m + j`;
      return `part[${at(0)}] = t_acc${o}[i];${gu ? `\n          part[${at(1)}] = t_up${o}[i];` : ""}`;
    }
    const tot = `t_acc${o}[i]${scale}`;
    if (qkv) {
      const b = (name: string) => (bias ? ` + ${name}At(row${o})` : "");
      return `if (seg${o} == 0u) { yq[orow * params.m0 + row${o}] = ${tot}${b("bq")}; }
        else if (seg${o} == 1u) { yk[orow * params.m1 + row${o}] = ${tot}${b("bk")}; }
        else { yv[orow * (params.m - params.m0 - params.m1) + row${o}] = ${tot}${b("bv")}; }`;
    }
    if (gu) {
      // For g below about -88, e^-g overflows to +inf and g / inf is -0: the limit, no NaN (as siluMul).
      return `let g = ${tot};
        y[orow * params.m + row${o}] = g / (1.0 + exp(-g)) * (t_up${o}[i]${scale});`;
    }
    let v = tot;
    if (bias) v += ` + biasAt(row${o})`;
    // residual + (x W^T + b), the order the reference's add(residual, matmul) sums in.
    if (residual) v = `res[orow * params.m + row${o}] + (${v})`;
    return `y[orow * params.m + row${o}] = ${v};`;
  };
  return `${LINEAR_WORKGROUP}
${F8_STRUCT}
// As matvec-program.ts: m outputs in all; m0, m1 the q and k segments (qkv); eps the fused RMSNorm's; blocks:
// workgroups per chunk of R rows (workgroup w takes outputs of block w % blocks, rows of chunk w / blocks).
// splits: workgroups over k per block of outputs (1: none; see SkinnySpec.split).
struct Params { k: u32, m: u32, chunks: u32, full: u32, n: u32, m0: u32, m1: u32, eps: f32, blocks: u32,
                splits: u32 }
@group(0) @binding(0) var<uniform> params: Params;
${xDecl}
${decls.join("\n")}
const R: u32 = ${R}u;
var<workgroup> red: array<f32, ${redSize}>;

@compute @workgroup_size(${SKINNY_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = linearWorkgroup(wid, nwg);
  // Workgroup wg: block wg % blocks of outputs, split (wg / blocks) % splits of k, chunk of rows
  // wg / (blocks * splits). rb is the same for the whole workgroup: returning keeps the barriers below in
  // uniform control flow.
  let split = (wg / params.blocks) % params.splits;
  let rb = (wg / (params.blocks * params.splits)) * R;
  if (rb >= params.n) { return; }
  let nr = min(R, params.n - rb);
  let lane = lid % ${SKINNY_OUTPUTS}u;
  let slice = lid / ${SKINNY_OUTPUTS}u;
  // The workgroup's first output; the lane's outputs are first + lane + ${SKINNY_OUTPUTS} * o.
  let first = (wg % params.blocks) * ${outsPerWg}u;
  ${kinds.map((k) => `var ${k}: array<f32, ${R}>;`).join("\n  ")}
  ${norm ? "var ss = 0.0;" : ""}
  {
    // The lane's weight rows (the spare lanes of the last block read the last output's row, and store
    // nothing), and where the rows of x start.
    ${range(L)
      .map(
        (o) => `let j${o} = min(first + lane + ${SKINNY_OUTPUTS * o}u, params.m - 1u);
    ${locate(`j${o}`, `${o}`)}
    let rc${o} = row${o} * params.chunks;`,
      )
      .join("\n    ")}
    ${range(R)
      .map((r) => `let xb${r} = (rb + min(${r}u, nr - 1u)) * ${rowStride};`)
      .join("\n    ")}
    ${norm ? `// The row of x whose squares this lane sums.\n    let ssBase = (rb + min(lane % R, nr - 1u)) * ${rowStride};` : ""}
    // This split's chunks of k (an even count, so that splits start on 32-byte sectors), then this slice's
    // part of them, two at a time (32 bytes of a 2-byte weight row: a whole memory sector).
    let perSplit = ((params.full + 2u * params.splits - 1u) / (2u * params.splits)) * 2u;
    let s0 = min(split * perSplit, params.full);
    let s1 = min(s0 + perSplit, params.full);
    let per = ((s1 - s0 + ${2 * SLICES - 1}u) / ${2 * SLICES}u) * 2u;
    let c0 = s0 + slice * per;
    let c1 = min(c0 + per, s1);
    for (var c = c0; c + 1u < c1; c += 2u) {
      ${step("c")}
      ${step("c + 1u")}
    }
    if (c0 < c1 && (c1 - c0) % 2u == 1u) ${step("c1 - 1u")}
    ${partial}
  }
  // The slices' sums of each (row, lane) pair this thread finishes, kind by kind, then the epilogue.
  ${kinds.map((k) => `var t_${k}: array<f32, ${pairs}>;`).join("\n  ")}
  ${kinds.map(gather).join("\n  ")}
  ${norm ? `if (lane < R) { red[${ssRed}u + slice * R + lane] = ss; }\n  workgroupBarrier();` : ""}
  for (var i = 0u; i < ${pairs}u; i++) {
    let p = lid + i * ${SKINNY_WG}u;
    let r = p / ${SKINNY_OUTPUTS}u;
    if (p < ${perSlice}u && r < nr) {
      let orow = rb + r;
      ${norm ? `var sst = 0.0;\n      for (var s = 0u; s < ${SLICES}u; s++) { sst += red[${ssRed}u + s * R + r]; }` : ""}
      ${
        norm && split
          ? `// The squares of this split's part of the row, once (by the first block's lane 0).
      if (p % ${SKINNY_OUTPUTS}u == 0u && wg % params.blocks == 0u) {
        part[${kindsPerOut(gu)}u * params.splits * params.n * params.m + split * params.n + orow] = sst;
      }`
          : norm
            ? "// As rms-norm.ts: 1 / sqrt, not inverseSqrt.\n      let inv = 1.0 / sqrt(sst / f32(params.k) + params.eps);"
            : ""
      }
      ${range(L)
        .map(
          (o) => `{
        let j = first + p % ${SKINNY_OUTPUTS}u + ${SKINNY_OUTPUTS * o}u;
        if (j < params.m) {
          ${locate("j", `${o}`)}
          ${store(o)}
        }
      }`,
        )
        .join("\n      ")}
    }
  }
}`;
}

/** Kinds of per-output sums: the products, and the up products in gateUp mode. */
export const kindsPerOut = (gateUp: boolean): number => (gateUp ? 2 : 1);

const WQKV_SELECT = `// Lanes of a slice read rows of different weights only where its outputs straddle two.
fn wAt8(seg: u32, c: u32) -> F8 {
  if (seg == 0u) { return wq8(c); }
  if (seg == 1u) { return wk8(c); }
  return wv8(c);
}`;

const MODES: readonly MatvecMode[] = ["plain", "gateUp", "qkv"];
const DTYPE_CODES: Record<DType, number> = { f32: 1, f16: 2, bf16: 3 };
const programs = new Map<number, { key: string; wgsl: () => string }>();

/** The pipeline key and source of `spec`, cached by a number packed from it (no key string per dispatch). */
export function skinnyProgram(spec: SkinnySpec): { key: string; wgsl: () => string } {
  const dt = (d: DType | null) => (d === null ? 0 : DTYPE_CODES[d]);
  let code = MODES.indexOf(spec.mode);
  code = code * 32 + spec.rows;
  code = code * 4 + spec.perLane;
  code = code * 4 + dt(spec.dtype);
  code = code * 4 + dt(spec.bias);
  code = code * 2 + (spec.residual ? 1 : 0);
  code = code * 4 + dt(spec.norm);
  code = code * 2 + (spec.vec ? 1 : 0);
  code = code * 2 + (spec.split ? 1 : 0);
  let p = programs.get(code);
  if (!p) {
    const s = { ...spec };
    p = {
      key: `skinny:${s.mode}:${s.rows}x${s.perLane}:${s.dtype}:${s.bias}:${s.residual}:${s.norm}:${s.vec}:${s.split}`,
      wgsl: () => skinnyWgsl(s),
    };
    programs.set(code, p);
  }
  return p;
}
