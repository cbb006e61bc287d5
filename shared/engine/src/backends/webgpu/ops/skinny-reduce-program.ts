// The second half of a skinny product split over k (skinny-program.ts, SkinnySpec.split): one thread per
// (row, output) adds the splits' partial sums and finishes the output as the unsplit program's epilogue does
// (the fused RMSNorm's scale from the summed squares of x, silu(gate) * up, the bias, the residual, the
// q/k/v segments). The sums are added in split order, so the result is the same on every run.
import type { DType } from "../../../tensor.js";
import { LINEAR_WORKGROUP, weightScalar } from "../wgsl.js";
import type { MatvecMode } from "./matvec-program.js";
import { kindsPerOut } from "./skinny-program.js";

export const SKINNY_REDUCE_WG = 256;

export interface SkinnyReduceSpec {
  mode: MatvecMode;
  /** The bias's dtype (qkv: of all three), or null for none. */
  bias: DType | null;
  /** Adds a residual [n, m] (plain only). */
  residual: boolean;
  /** The product had a fused RMSNorm: scale by the inverse RMS from the summed squares. */
  norm: boolean;
}

/** WGSL source of the reduction for `spec` (bindings: params, the partial sums, then as the unsplit program). */
export function skinnyReduceWgsl(spec: SkinnyReduceSpec): string {
  const { mode, bias, residual, norm } = spec;
  const gu = mode === "gateUp";
  let next = 2;
  const decls: string[] = [];
  if (mode === "qkv") {
    for (const y of ["yq", "yk", "yv"])
      decls.push(`@group(0) @binding(${next++}) var<storage, read_write> ${y}: array<f32>;`);
    if (bias) for (const b of ["bq", "bk", "bv"]) decls.push(weightScalar(next++, b, bias));
  } else {
    decls.push(`@group(0) @binding(${next++}) var<storage, read_write> y: array<f32>;`);
    if (bias) decls.push(weightScalar(next++, "bias", bias));
    if (residual) decls.push(`@group(0) @binding(${next++}) var<storage, read> res: array<f32>;`);
  }
  const scale = norm ? " * inv" : "";
  let store: string;
  if (mode === "qkv") {
    const b = (name: string, row: string) => (bias ? ` + ${name}At(${row})` : "");
    store = `if (j < params.m0) { yq[orow * params.m0 + j] = acc${scale}${b("bq", "j")}; }
    else if (j < params.m0 + params.m1) {
      let r = j - params.m0;
      yk[orow * params.m1 + r] = acc${scale}${b("bk", "r")};
    } else {
      let r = j - params.m0 - params.m1;
      yv[orow * (params.m - params.m0 - params.m1) + r] = acc${scale}${b("bv", "r")};
    }`;
  } else if (gu) {
    // For g below about -88, e^-g overflows to +inf and g / inf is -0: the limit, no NaN (as siluMul).
    store = `let g = acc${scale};
    y[orow * params.m + j] = g / (1.0 + exp(-g)) * (up${scale});`;
  } else {
    let v = `acc${scale}`;
    if (bias) v += " + biasAt(j)";
    // residual + (x W^T + b), the order the reference's add(residual, matmul) sums in.
    if (residual) v = `res[orow * params.m + j] + (${v})`;
    store = `y[orow * params.m + j] = ${v};`;
  }
  const kinds = kindsPerOut(gu);
  return `${LINEAR_WORKGROUP}
// As skinny-program.ts's Params (this program reads k, m, n, m0, m1, eps and splits).
struct Params { k: u32, m: u32, chunks: u32, full: u32, n: u32, m0: u32, m1: u32, eps: f32, blocks: u32,
                splits: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
${decls.join("\n")}

@compute @workgroup_size(${SKINNY_REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = linearWorkgroup(wid, nwg) * ${SKINNY_REDUCE_WG}u + lid;
  if (idx >= params.n * params.m) { return; }
  let orow = idx / params.m;
  let j = idx % params.m;
  let plane = params.n * params.m;
  var acc = 0.0;
  ${gu ? "var up = 0.0;" : ""}
  ${norm ? "var ss = 0.0;" : ""}
  for (var s = 0u; s < params.splits; s++) {
    acc += part[s * plane + idx];
    ${gu ? "up += part[(params.splits + s) * plane + idx];" : ""}
    ${norm ? `ss += part[${kinds}u * params.splits * plane + s * params.n + orow];` : ""}
  }
  ${norm ? "// As rms-norm.ts: 1 / sqrt, not inverseSqrt.\n  let inv = 1.0 / sqrt(ss / f32(params.k) + params.eps);" : ""}
  ${store}
}`;
}

const MODES: readonly MatvecMode[] = ["plain", "gateUp", "qkv"];
const DTYPE_CODES: Record<DType, number> = { f32: 1, f16: 2, bf16: 3 };
const programs = new Map<number, { key: string; wgsl: () => string }>();

/** The pipeline key and source of `spec`, cached by a number packed from it. */
export function skinnyReduceProgram(spec: SkinnyReduceSpec): { key: string; wgsl: () => string } {
  let code = MODES.indexOf(spec.mode);
  code = code * 4 + (spec.bias === null ? 0 : DTYPE_CODES[spec.bias]);
  code = code * 2 + (spec.residual ? 1 : 0);
  code = code * 2 + (spec.norm ? 1 : 0);
  let p = programs.get(code);
  if (!p) {
    const s = { ...spec };
    p = {
      key: `skinny-reduce:${s.mode}:${s.bias}:${s.residual}:${s.norm}`,
      wgsl: () => skinnyReduceWgsl(s),
    };
    programs.set(code, p);
  }
  return p;
}
