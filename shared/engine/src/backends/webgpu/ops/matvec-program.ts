// The matrix-vector program: y [n, m] = x [n, k] W^T for few rows (decode, verification), memory-bound. A
// workgroup of 256 threads is 256 / tpr thread groups; a group takes `outs` outputs and a chunk of up to
// `rows` rows of x, and each of its threads walks k in chunks of 8 weights (one 16-byte load per output for
// 2-byte weights), multiplying them with every row of the chunk: each weight is read once per chunk of rows,
// and each x load serves `outs` outputs. The group's partial sums are then added with subgroupAdd (workgroup
// memory on adapters without subgroups). The rows and outputs are unrolled in the generated source, so that
// the accumulators stay in registers. The same program serves the fused ops (MatvecMode). The encoding (shape
// logic, which spec a product gets) is in matmul.ts.
import type { DType } from "../../../tensor.js";
import { F8_STRUCT, LINEAR_WORKGROUP, weightScalar, weightVec8 } from "../wgsl.js";

/** Threads per matrix-vector workgroup. */
export const MATVEC_WG = 256;

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
  /** Rows of x a workgroup takes (a chunk; matmul.ts's matvecChunkRows). */
  rows: number;
  /** Outputs per thread group: each x load is used this many times. */
  outs: number;
  dtype: DType;
  /** The bias's dtype (qkv: of all three), or null for none. */
  bias: DType | null;
  /** Adds a residual [n, m] (plain only). */
  residual: boolean;
  mode: MatvecMode;
  /** The fused RMSNorm's weight dtype, or null for none. */
  norm: DType | null;
  /** Threads per group (a multiple of the subgroup size, at least `rows`). */
  tpr: number;
  /** k is a multiple of 8: x is read as 16-byte vectors and there is no partial chunk. */
  vec: boolean;
  /** Subgroup size the reduction is built for (subgroupAdd), or 0: workgroup memory. */
  sg: number;
  /**
   * Also writes the workgroup's best output and its index (plain, one row, one output a group: a one-row LM
   * head), lowest index on ties, to partV / partI at [row * blocks + block]: ops/argmax.ts's final pass then
   * gives each row's argmax.
   */
  argmax: boolean;
  /**
   * Buffers (0-3) whose contents extra workgroups read after the product's own (the workgroups from
   * params.pfFirst on): the next product's weights, brought into the L2 cache while this one runs, so that
   * the next one waits on the cache rather than on memory (one-row products are bound by that latency, not
   * by bandwidth). Nothing read is used.
   */
  prefetch: number;
}

/** The per-row values a thread accumulates: name and how many (per output for the products). */
function sums(spec: MatvecSpec): { name: string; perOutput: boolean }[] {
  return [
    { name: "acc", perOutput: true },
    ...(spec.mode === "gateUp" ? [{ name: "acc2", perOutput: true }] : []),
    ...(spec.norm ? [{ name: "ss", perOutput: false }] : []),
  ];
}

/** Index of (output o, row r) in a per-output accumulator array. */
const at = (spec: MatvecSpec, o: number, r: number) => o * spec.rows + r;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The stores of output `o` for row `row` (a WGSL expression), from totals `tot(name)` (WGSL expressions). */
function storeOutput(spec: MatvecSpec, o: number, row: string, tot: (name: string) => string): string {
  const scale = spec.norm ? " * inv" : "";
  const out = `(rb + ${row})`;
  if (spec.mode === "qkv") {
    const b = (name: string) => (spec.bias ? ` + ${name}At(row${o})` : "");
    const v = `${tot("acc")}${scale}`;
    return `if (seg${o} == 0u) { yq[${out} * params.m0 + row${o}] = ${v}${b("bq")}; }
      else if (seg${o} == 1u) { yk[${out} * params.m1 + row${o}] = ${v}${b("bk")}; }
      else { yv[${out} * (params.m - params.m0 - params.m1) + row${o}] = ${v}${b("bv")}; }`;
  }
  if (spec.mode === "gateUp") {
    // For g below about -88, e^-g overflows to +inf and g / inf is -0: the limit, no NaN (as siluMul).
    return `{ let g = ${tot("acc")}${scale};
      y[${out} * params.m + row${o}] = g / (1.0 + exp(-g)) * (${tot("acc2")}${scale}); }`;
  }
  let v = `${tot("acc")}${scale}`;
  if (spec.bias) v += ` + biasAt(row${o})`;
  // residual + (x W^T + b), the order the reference's add(residual, matmul) sums in.
  if (spec.residual) v = `res[${out} * params.m + row${o}] + (${v})`;
  if (spec.argmax) {
    return `let yv = ${v};
      y[${out} * params.m + row${o}] = yv;
      amV[lid / ${spec.tpr}u] = yv;
      amI[lid / ${spec.tpr}u] = row${o};`;
  }
  return `y[${out} * params.m + row${o}] = ${v};`;
}

/** The inverse RMS of row `row` from its sum of squares (as rms-norm.ts: 1 / sqrt, not inverseSqrt). */
const invDecl = (spec: MatvecSpec, ss: string) =>
  spec.norm ? `let inv = 1.0 / sqrt(${ss} / f32(params.k) + params.eps);` : "";

/** Stores of every valid output for row `row` (WGSL), the totals given per (name, output). */
function storeRow(spec: MatvecSpec, row: string, tot: (name: string, o: number) => string): string {
  return `${invDecl(spec, tot("ss", 0))}
      ${range(spec.outs)
        .map((o) => `if (j + ${o}u < params.m) { ${storeOutput(spec, o, row, (name) => tot(name, o))} }`)
        .join("\n      ")}`;
}

/**
 * The reduction of each value's `tpr` partial sums and the stores: thread t of a group stores row t of each
 * of its outputs. Subgroups: subgroupAdd (every lane then holds every total), then workgroup memory when a
 * group spans several subgroups; otherwise workgroup memory alone, one value at a time (a row's partial sums
 * padded by one so that the lanes summing different rows of a column hit different banks).
 */
function reduceAndStore(spec: MatvecSpec): { decls: string; code: string } {
  const R = spec.rows;
  const values = sums(spec).flatMap((s) =>
    s.perOutput
      ? range(spec.outs).flatMap((o) => range(R).map((r) => `${s.name}[${at(spec, o, r)}]`))
      : range(R).map((r) => `${s.name}[${r}]`),
  );
  // Position of value (name, o, row) in `values`: the layout of the subgroups' workgroup memory.
  const base: Record<string, number> = {};
  let next = 0;
  for (const s of sums(spec)) {
    base[s.name] = next;
    next += s.perOutput ? spec.outs * R : R;
  }
  const slot = (name: string, o: number, row: string) =>
    `${(base[name] as number) + (name === "ss" ? 0 : o * R)}u + ${row}`;
  if (spec.sg > 0) {
    const ns = spec.tpr / spec.sg;
    const adds = values.map((v) => `${v} = subgroupAdd(${v});`).join("\n  ");
    if (ns === 1) {
      // Every lane holds every total: lane r stores row r (constant indices keep the sums in registers).
      const stores = range(R)
        .map(
          (r) => `if (t == ${r}u && ${r}u < nr) {
      ${storeRow(spec, `${r}u`, (name, o) => (name === "ss" ? `ss[${r}]` : `${name}[${at(spec, o, r)}]`))}
    }`,
        )
        .join("\n    ");
      return { decls: "", code: `${adds}\n  ${stores}` };
    }
    const subs = MATVEC_WG / spec.sg;
    return {
      decls: `var<workgroup> red: array<f32, ${values.length * subs}>;`,
      code: `${adds}
  let sgi = lid / ${spec.sg}u;
  if (lid % ${spec.sg}u == 0u) {
    ${values.map((v, i) => `red[${i * subs}u + sgi] = ${v};`).join("\n    ")}
  }
  workgroupBarrier();
  if (t < nr) {
    let first = (lid / ${spec.tpr}u) * ${ns}u;
    ${storeRow(spec, "t", (name, o) => `sumRed(${slot(name, o, "t")}, first)`)}
  }`,
    };
  }
  // Workgroup memory: one value (name, output) at a time, all rows of the workgroup at once; thread t keeps
  // the totals of row t, tot[i] for the i-th (name, output).
  const pairs = sums(spec).flatMap((s) => (s.perOutput ? range(spec.outs) : [0]).map((o) => ({ s, o })));
  const totAt = (name: string, o: number) => pairs.findIndex((p) => p.s.name === name && p.o === o);
  const steps = pairs.map(
    (
      { s, o },
      i,
    ) => `for (var r = 0u; r < R; r++) { part[r][lid] = ${s.name}[${s.perOutput ? `${o * R}u + ` : ""}r]; }
  workgroupBarrier();
  if (t < nr) {
    let first = lid - t;
    for (var l = 0u; l < ${spec.tpr}u; l++) { tot[${i}] += part[t][first + l]; }
  }
  workgroupBarrier();`,
  );
  return {
    decls: `var<workgroup> part: array<array<f32, ${MATVEC_WG + 1}>, R>;`,
    code: `var tot: array<f32, ${pairs.length}>;
  ${steps.join("\n  ")}
  if (t < nr) {
    ${storeRow(spec, "t", (name, o) => `tot[${totAt(name, name === "ss" ? 0 : o)}]`)}
  }`,
  };
}

/** WGSL source of the matrix-vector program for `spec`. */
export function matvecWgsl(spec: MatvecSpec): string {
  const { rows: R, outs: O, dtype, bias, residual, mode, norm, tpr, vec, sg } = spec;
  const gu = mode === "gateUp";
  // Bindings in the order matmul.ts passes buffers: x, norm, weight(s), output(s), bias(es), residual.
  let nextBinding = 2;
  const decls: string[] = [];
  if (norm) decls.push(weightVec8(nextBinding++, "g", norm));
  let weight: (o: number, chunk: string) => string;
  if (mode === "qkv") {
    decls.push(
      weightVec8(nextBinding++, "wq", dtype),
      weightVec8(nextBinding++, "wk", dtype),
      weightVec8(nextBinding++, "wv", dtype),
    );
    for (const y of ["yq", "yk", "yv"])
      decls.push(`@group(0) @binding(${nextBinding++}) var<storage, read_write> ${y}: array<f32>;`);
    if (bias) for (const b of ["bq", "bk", "bv"]) decls.push(weightScalar(nextBinding++, b, bias));
    decls.push(`// The segment is the same for all the threads of a group: no divergence.
fn wAt8(seg: u32, c: u32) -> F8 {
  if (seg == 0u) { return wq8(c); }
  if (seg == 1u) { return wk8(c); }
  return wv8(c);
}`);
    weight = (o, chunk) => `wAt8(seg${o}, rc${o} + ${chunk})`;
  } else {
    decls.push(weightVec8(nextBinding++, "w", dtype));
    if (gu) decls.push(weightVec8(nextBinding++, "u", dtype));
    decls.push(`@group(0) @binding(${nextBinding++}) var<storage, read_write> y: array<f32>;`);
    if (bias) decls.push(weightScalar(nextBinding++, "bias", bias));
    if (residual) decls.push(`@group(0) @binding(${nextBinding++}) var<storage, read> res: array<f32>;`);
    if (spec.argmax) {
      decls.push(
        `@group(0) @binding(${nextBinding++}) var<storage, read_write> partV: array<f32>;`,
        `@group(0) @binding(${nextBinding++}) var<storage, read_write> partI: array<u32>;`,
        `// Each group's stored output and its index (0xffffffff: none, past m).
var<workgroup> amV: array<f32, ${MATVEC_WG / spec.tpr}>;
var<workgroup> amI: array<u32, ${MATVEC_WG / spec.tpr}>;`,
      );
    }
    weight = (o, chunk) => `w8(rc${o} + ${chunk})`;
  }
  for (let i = 0; i < spec.prefetch; i++)
    decls.push(`@group(0) @binding(${nextBinding++}) var<storage, read> pf${i}: array<vec4<u32>>;`);
  const red = reduceAndStore(spec);
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
  const sumRed =
    sg > 0 && tpr / sg > 1
      ? `// The total of value slot i over the subgroups first .. first + ${tpr / sg} of a group.
fn sumRed(i: u32, first: u32) -> f32 {
  var s = 0.0;
  for (var g = 0u; g < ${tpr / sg}u; g++) { s += red[i * ${MATVEC_WG / sg}u + first + g]; }
  return s;
}`
      : "";
  // Per output: its row in its weight, clamped to the last output so that the spare outputs of the last
  // group read valid memory (their sums are not stored); qkv: the weight it is in and its row there.
  const outputs = range(O)
    .map((o) => {
      const jo = `min(j + ${o}u, params.m - 1u)`;
      if (mode !== "qkv") return `let row${o} = ${jo};\n  let rc${o} = row${o} * params.chunks;`;
      return `let j${o} = ${jo};
  let seg${o} = select(select(2u, 1u, j${o} < params.m0 + params.m1), 0u, j${o} < params.m0);
  let row${o} = j${o} - select(select(params.m0 + params.m1, params.m0, seg${o} == 1u), 0u, seg${o} == 0u);
  let rc${o} = row${o} * params.chunks;`;
    })
    .join("\n  ");
  // Rows past nr repeat the last row (valid memory; their sums are not stored).
  const xRows = range(R)
    .map((r) => `let xr${r} = rb + min(${r}u, nr - 1u);`)
    .join("\n  ");
  const products = (xv: string, r: number, w: string, u: string) =>
    range(O)
      .map(
        (o) =>
          `acc[${at(spec, o, r)}] += dot(${w}${o}.a, ${xv}.a) + dot(${w}${o}.b, ${xv}.b);` +
          (gu ? ` acc2[${at(spec, o, r)}] += dot(${u}${o}.a, ${xv}.a) + dot(${u}${o}.b, ${xv}.b);` : ""),
      )
      .join("\n        ");
  const body = range(R)
    .map(
      (r) => `{
        ${
          norm
            ? `let xr = x8(xr${r}, c);
        ss[${r}] += dot(xr.a, xr.a) + dot(xr.b, xr.b);
        let xv = F8(xr.a * gv.a, xr.b * gv.b);`
            : `let xv = x8(xr${r}, c);`
        }
        ${products("xv", r, "w", "u")}
      }`,
    )
    .join("\n      ");
  // The last, partial chunk (k % 8 values; scalar x only): its weights are zero padding past k, but x past k
  // belongs to the next row (or past the buffer), so it is read element by element.
  const arr8 = (v: string) =>
    `array<f32, 8>(${v}.a.x, ${v}.a.y, ${v}.a.z, ${v}.a.w, ${v}.b.x, ${v}.b.y, ${v}.b.z, ${v}.b.w)`;
  const partial = vec
    ? ""
    : `if (t == 0u && params.full < params.chunks) {
    ${range(O)
      .map(
        (o) =>
          `let wf${o} = ${weight(o, "params.full")};\n    let wa${o} = ${arr8(`wf${o}`)};` +
          (gu ? `\n    let uf${o} = u8(rc${o} + params.full);\n    let ua${o} = ${arr8(`uf${o}`)};` : ""),
      )
      .join("\n    ")}
    ${norm ? `let gf = g8(params.full);\n    let ga = ${arr8("gf")};` : ""}
    for (var e = 0u; e < params.k - params.full * 8u; e++) {
      ${range(R)
        .map(
          (r) => `{
        var xe = x[xr${r} * params.k + params.full * 8u + e];
        ${norm ? `ss[${r}] += xe * xe;\n        xe = xe * ga[e];` : ""}
        ${range(O)
          .map(
            (o) =>
              `acc[${at(spec, o, r)}] += wa${o}[e] * xe;` +
              (gu ? ` acc2[${at(spec, o, r)}] += ua${o}[e] * xe;` : ""),
          )
          .join("\n        ")}
      }`,
        )
        .join("\n      ")}
    }
  }`;
  return `${sg > 0 ? "enable subgroups;\ndiagnostic(off, subgroup_uniformity);" : ""}
${LINEAR_WORKGROUP}
${F8_STRUCT}
// m: outputs in all; m0, m1: the sizes of the q and k segments (qkv mode only); eps: the fused RMSNorm's;
// blocks: workgroups per chunk of R rows (workgroup w takes outputs of block w % blocks, rows of chunk
// w / blocks).
// splits: unused here (skinny-program.ts's); pfFirst, pfCount: the first prefetch workgroup and how many;
// pfEnd0..2: where each prefetched buffer ends, in 16-byte words of their concatenation.
struct Params { k: u32, m: u32, chunks: u32, full: u32, n: u32, m0: u32, m1: u32, eps: f32, blocks: u32,
                splits: u32, pfFirst: u32, pfCount: u32, pfEnd0: u32, pfEnd1: u32, pfEnd2: u32 }
@group(0) @binding(0) var<uniform> params: Params;
${xDecl}
${decls.join("\n")}
const R: u32 = ${R}u;
${red.decls}
${sumRed}

@compute @workgroup_size(${MATVEC_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = lid % ${tpr}u;
  let wg = linearWorkgroup(wid, nwg);
  ${
    spec.prefetch > 0
      ? `if (wg >= params.pfFirst) {
    // A prefetch workgroup (the same for all its threads, so returning keeps the barriers below uniform).
    var h = 0u;
    for (var i = (wg - params.pfFirst) * ${MATVEC_WG}u + lid; i < params.pfEnd${spec.prefetch - 1}; i += params.pfCount * ${MATVEC_WG}u) {
      var q: vec4<u32>;
      ${range(spec.prefetch)
        .map((b) =>
          b === 0
            ? "if (i < params.pfEnd0) { q = pf0[i]; }"
            : `else if (i < params.pfEnd${b}) { q = pf${b}[i - params.pfEnd${b - 1}]; }`,
        )
        .join("\n      ")}
      h ^= q.x ^ q.y ^ q.z ^ q.w;
    }
    // Never true (pfFirst is a real workgroup index): a use of h, so that the loads are made.
    if (params.pfFirst == 0xffffffffu && h == 1u) { ${mode === "qkv" ? "yq" : "y"}[0] = 0.0; }
    return;
  }`
      : ""
  }
  // This workgroup's rows: rb .. rb + nr. The spare workgroups of a split over y have none; rb is the same
  // for the whole workgroup, so returning keeps the barriers below in uniform control flow.
  let rb = (wg / params.blocks) * R;
  if (rb >= params.n) { return; }
  let nr = min(R, params.n - rb);
  // The group's first output.
  let j = ((wg % params.blocks) * ${MATVEC_WG / tpr}u + lid / ${tpr}u) * ${O}u;
  ${outputs}
  ${xRows}
  var acc: array<f32, ${O * R}>;
  ${gu ? `var acc2: array<f32, ${O * R}>;` : ""}
  ${norm ? "var ss: array<f32, R>;" : ""}
  // Whole chunks: k / 8 of them, no bounds checks on x.
  for (var c = t; c < params.full; c += ${tpr}u) {
    ${range(O)
      .map((o) => `let w${o} = ${weight(o, "c")};${gu ? ` let u${o} = u8(rc${o} + c);` : ""}`)
      .join("\n    ")}
    ${norm ? "let gv = g8(c);" : ""}
    ${body}
  }
  ${partial}
  ${spec.argmax ? `if (t == 0u) { amI[lid / ${tpr}u] = 0xffffffffu; }` : ""}
  ${red.code}
  ${
    spec.argmax
      ? `// The groups' outputs in increasing index order: a later one wins only with a strictly larger value.
  workgroupBarrier();
  if (lid == 0u) {
    var bv = 0.0;
    var bi = 0xffffffffu;
    for (var g = 0u; g < ${MATVEC_WG / tpr}u; g++) {
      let gi = amI[g];
      if (gi != 0xffffffffu && (bi == 0xffffffffu || amV[g] > bv)) { bv = amV[g]; bi = gi; }
    }
    partV[wg] = bv;
    partI[wg] = bi;
  }`
      : ""
  }
}`;
}

const MODES: readonly MatvecMode[] = ["plain", "gateUp", "qkv"];
const DTYPE_CODES: Record<DType, number> = { f32: 1, f16: 2, bf16: 3 };
/** Pipeline keys and sources by a number packed from the spec: the recording path builds no key string. */
const programs = new Map<number, { key: string; wgsl: () => string }>();

/** The pipeline key and source of `spec`, cached. */
export function matvecProgram(spec: MatvecSpec): { key: string; wgsl: () => string } {
  const dt = (d: DType | null) => (d === null ? 0 : DTYPE_CODES[d]);
  let code = MODES.indexOf(spec.mode);
  code = code * 32 + spec.rows;
  code = code * 16 + spec.outs;
  code = code * 4 + dt(spec.dtype);
  code = code * 4 + dt(spec.bias);
  code = code * 2 + (spec.residual ? 1 : 0);
  code = code * 4 + dt(spec.norm);
  code = code * 512 + spec.tpr;
  code = code * 2 + (spec.vec ? 1 : 0);
  code = code * 256 + spec.sg;
  code = code * 2 + (spec.argmax ? 1 : 0);
  code = code * 4 + spec.prefetch;
  let p = programs.get(code);
  if (!p) {
    const s = { ...spec };
    p = {
      key: `matvec:${s.mode}:${s.rows}x${s.outs}:${s.dtype}:${s.bias}:${s.residual}:${s.norm}:${s.tpr}:${s.vec}:${s.sg}${s.argmax ? ":argmax" : ""}${s.prefetch ? `:pf${s.prefetch}` : ""}`,
      wgsl: () => matvecWgsl(s),
    };
    programs.set(code, p);
  }
  return p;
}
