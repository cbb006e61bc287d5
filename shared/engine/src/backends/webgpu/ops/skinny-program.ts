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
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** WGSL source of the skinny program for `spec` (same bindings and Params as matvec-program.ts). */
export function skinnyWgsl(spec: SkinnySpec): string {
  const { rows: R, dtype, bias, residual, mode, norm, vec } = spec;
  const gu = mode === "gateUp";
  const qkv = mode === "qkv";
  let next = 2;
  const decls: string[] = [];
  if (norm) decls.push(weightVec8(next++, "g", norm));
  if (qkv) {
    decls.push(
      weightVec8(next++, "wq", dtype),
      weightVec8(next++, "wk", dtype),
      weightVec8(next++, "wv", dtype),
    );
    for (const y of ["yq", "yk", "yv"])
      decls.push(`@group(0) @binding(${next++}) var<storage, read_write> ${y}: array<f32>;`);
    if (bias) for (const b of ["bq", "bk", "bv"]) decls.push(weightScalar(next++, b, bias));
    decls.push(`// Lanes of a slice read rows of different weights only where the group of 32 outputs straddles two.
fn w8(seg: u32, c: u32) -> F8 {
  if (seg == 0u) { return wq8(c); }
  if (seg == 1u) { return wk8(c); }
  return wv8(c);
}`);
  } else {
    decls.push(weightVec8(next++, "w", dtype));
    if (gu) decls.push(weightVec8(next++, "u", dtype));
    decls.push(`@group(0) @binding(${next++}) var<storage, read_write> y: array<f32>;`);
    if (bias) decls.push(weightScalar(next++, "bias", bias));
    if (residual) decls.push(`@group(0) @binding(${next++}) var<storage, read> res: array<f32>;`);
  }
  const wAt = (c: string) => (qkv ? `w8(seg, rc + ${c})` : `w8(rc + ${c})`);
  // An output's weight row and (qkv) segment, for output index `j` (clamped into range by the caller).
  const locate = (j: string) =>
    qkv
      ? `let seg = select(select(2u, 1u, ${j} < params.m0 + params.m1), 0u, ${j} < params.m0);
  let row = ${j} - select(select(params.m0 + params.m1, params.m0, seg == 1u), 0u, seg == 0u);`
      : `let row = ${j};`;
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
  // One step: chunk `c` of the lane's weight row(s) times every row of x (rows past nr repeat the last row:
  // valid memory, never stored), and the squares of the lane's own row for the norm.
  const step = (c: string) => `{
      var wv = ${wAt(c)};
      ${gu ? `var uv = u8(rc + ${c});` : ""}
      ${
        norm
          ? `let gv = g8(${c});
      wv = F8(wv.a * gv.a, wv.b * gv.b);
      ${gu ? "uv = F8(uv.a * gv.a, uv.b * gv.b);" : ""}
      let xs = x8(ssRow, ${c});
      ss += dot(xs.a, xs.a) + dot(xs.b, xs.b);`
          : ""
      }
      ${range(R)
        .map(
          (r) => `{ let xv = x8(rb + min(${r}u, nr - 1u), ${c});
        acc[${r}] += dot(wv.a, xv.a) + dot(wv.b, xv.b);${gu ? `\n        acc2[${r}] += dot(uv.a, xv.a) + dot(uv.b, xv.b);` : ""} }`,
        )
        .join("\n      ")}
    }`;
  // The last, partial chunk (k % 8 values; scalar x only): its weights are zero padding past k, but x past k
  // belongs to the next row, so it is read element by element. Slice 0 takes it.
  const arr8 = (v: string) =>
    `array<f32, 8>(${v}.a.x, ${v}.a.y, ${v}.a.z, ${v}.a.w, ${v}.b.x, ${v}.b.y, ${v}.b.z, ${v}.b.w)`;
  const partial = vec
    ? ""
    : `if (slice == 0u && params.full < params.chunks) {
    let wf = ${wAt("params.full")};
    let wa = ${arr8("wf")};
    ${gu ? `let uf = u8(rc + params.full);\n    let ua = ${arr8("uf")};` : ""}
    ${norm ? `let gf = g8(params.full);\n    let ga = ${arr8("gf")};` : ""}
    for (var e = 0u; e < params.k - params.full * 8u; e++) {
      let at = params.full * 8u + e;
      ${norm ? "let xs = x[ssRow * params.k + at];\n      ss += xs * xs;" : ""}
      ${range(R)
        .map(
          (r) => `{ let xe = x[(rb + min(${r}u, nr - 1u)) * params.k + at];
        acc[${r}] += ${norm ? "wa[e] * ga[e]" : "wa[e]"} * xe;${gu ? `\n        acc2[${r}] += ${norm ? "ua[e] * ga[e]" : "ua[e]"} * xe;` : ""} }`,
        )
        .join("\n      ")}
    }
  }`;
  // Workgroup memory: per slice, every (row, lane) sum of one kind at a time (the products, then the up
  // products: both at once would pass lavapipe's 32 KiB), then the squares per row.
  const perSlice = R * SKINNY_OUTPUTS;
  const at = (sl: string, r: string, l: string) => `${sl} * ${perSlice}u + ${r} * ${SKINNY_OUTPUTS}u + ${l}`;
  const ssBase = SLICES * perSlice;
  const redSize = ssBase + (norm ? SLICES * R : 0);
  // The (row, lane) pairs a thread finishes: p = lid + i * SKINNY_WG.
  const pairs = Math.ceil(perSlice / SKINNY_WG);
  const gather = (arr: string, tot: string) => `${range(R)
    .map((r) => `red[${at("slice", `${r}u`, "lane")}] = ${arr}[${r}];`)
    .join("\n  ")}
  workgroupBarrier();
  for (var i = 0u; i < ${pairs}u; i++) {
    let p = lid + i * ${SKINNY_WG}u;
    if (p < ${perSlice}u) {
      for (var s = 0u; s < ${SLICES}u; s++) {
        ${tot}[i] += red[${at("s", `(p / ${SKINNY_OUTPUTS}u)`, `(p % ${SKINNY_OUTPUTS}u)`)}];
      }
    }
  }`;
  const scale = norm ? " * inv" : "";
  let store: string;
  if (qkv) {
    const b = (name: string) => (bias ? ` + ${name}At(row)` : "");
    store = `let v = tot[i]${scale};
      if (seg == 0u) { yq[o * params.m0 + row] = v${b("bq")}; }
      else if (seg == 1u) { yk[o * params.m1 + row] = v${b("bk")}; }
      else { yv[o * (params.m - params.m0 - params.m1) + row] = v${b("bv")}; }`;
  } else if (gu) {
    // For g below about -88, e^-g overflows to +inf and g / inf is -0: the limit, no NaN (as siluMul).
    store = `let g = tot[i]${scale};
      y[o * params.m + row] = g / (1.0 + exp(-g)) * (tot2[i]${scale});`;
  } else {
    let v = `tot[i]${scale}`;
    if (bias) v += " + biasAt(row)";
    // residual + (x W^T + b), the order the reference's add(residual, matmul) sums in.
    if (residual) v = `res[o * params.m + row] + (${v})`;
    store = `y[o * params.m + row] = ${v};`;
  }
  return `${LINEAR_WORKGROUP}
${F8_STRUCT}
// As matvec-program.ts: m outputs in all; m0, m1 the q and k segments (qkv); eps the fused RMSNorm's; blocks:
// workgroups per chunk of R rows (workgroup w takes outputs of block w % blocks, rows of chunk w / blocks).
struct Params { k: u32, m: u32, chunks: u32, full: u32, n: u32, m0: u32, m1: u32, eps: f32, blocks: u32 }
@group(0) @binding(0) var<uniform> params: Params;
${xDecl}
${decls.join("\n")}
const R: u32 = ${R}u;
var<workgroup> red: array<f32, ${redSize}>;

@compute @workgroup_size(${SKINNY_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = linearWorkgroup(wid, nwg);
  // rb is the same for the whole workgroup: returning keeps the barrier below in uniform control flow.
  let rb = (wg / params.blocks) * R;
  if (rb >= params.n) { return; }
  let nr = min(R, params.n - rb);
  let lane = lid % ${SKINNY_OUTPUTS}u;
  let slice = lid / ${SKINNY_OUTPUTS}u;
  let first = (wg % params.blocks) * ${SKINNY_OUTPUTS}u;
  var acc: array<f32, ${R}>;
  ${gu ? `var acc2: array<f32, ${R}>;` : ""}
  ${norm ? "var ss = 0.0;" : ""}
  {
    // This lane's output (the spare lanes of the last block read the last output's row, and store nothing).
    let j = min(first + lane, params.m - 1u);
    ${locate("j")}
    let rc = row * params.chunks;
    ${norm ? "// The row of x whose squares this lane sums.\n    let ssRow = rb + min(lane % R, nr - 1u);" : ""}
    // This slice's chunks of k, two at a time (32 bytes of a 2-byte weight row: a whole memory sector).
    let per = ((params.full + ${2 * SLICES - 1}u) / ${2 * SLICES}u) * 2u;
    let c0 = slice * per;
    let c1 = min(c0 + per, params.full);
    for (var c = c0; c + 1u < c1; c += 2u) {
      ${step("c")}
      ${step("c + 1u")}
    }
    if (c0 < c1 && (c1 - c0) % 2u == 1u) ${step("c1 - 1u")}
    ${partial}
  }
  // The slices' sums of each (row, lane) pair this thread finishes, then the epilogue.
  var tot: array<f32, ${pairs}>;
  ${gather("acc", "tot")}
  ${gu ? `var tot2: array<f32, ${pairs}>;\n  workgroupBarrier();\n  ${gather("acc2", "tot2")}` : ""}
  ${norm ? `if (lane < R) { red[${ssBase}u + slice * R + lane] = ss; }\n  workgroupBarrier();` : ""}
  for (var i = 0u; i < ${pairs}u; i++) {
    let p = lid + i * ${SKINNY_WG}u;
    let r = p / ${SKINNY_OUTPUTS}u;
    let j = first + p % ${SKINNY_OUTPUTS}u;
    if (p < ${perSlice}u && r < nr && j < params.m) {
      ${norm ? `var sst = 0.0;\n      for (var s = 0u; s < ${SLICES}u; s++) { sst += red[${ssBase}u + s * R + r]; }\n      // As rms-norm.ts: 1 / sqrt, not inverseSqrt.\n      let inv = 1.0 / sqrt(sst / f32(params.k) + params.eps);` : ""}
      ${locate("j")}
      let o = rb + r;
      ${store}
    }
  }
}`;
}

const MODES: readonly MatvecMode[] = ["plain", "gateUp", "qkv"];
const DTYPE_CODES: Record<DType, number> = { f32: 1, f16: 2, bf16: 3 };
const programs = new Map<number, { key: string; wgsl: () => string }>();

/** The pipeline key and source of `spec`, cached by a number packed from it (no key string per dispatch). */
export function skinnyProgram(spec: SkinnySpec): { key: string; wgsl: () => string } {
  const dt = (d: DType | null) => (d === null ? 0 : DTYPE_CODES[d]);
  let code = MODES.indexOf(spec.mode);
  code = code * 32 + spec.rows;
  code = code * 4 + dt(spec.dtype);
  code = code * 4 + dt(spec.bias);
  code = code * 2 + (spec.residual ? 1 : 0);
  code = code * 4 + dt(spec.norm);
  code = code * 2 + (spec.vec ? 1 : 0);
  let p = programs.get(code);
  if (!p) {
    const s = { ...spec };
    p = {
      key: `skinny:${s.mode}:${s.rows}:${s.dtype}:${s.bias}:${s.residual}:${s.norm}:${s.vec}`,
      wgsl: () => skinnyWgsl(s),
    };
    programs.set(code, p);
  }
  return p;
}
