// Attention with subgroup operations, one workgroup per (row, query head): the workgroup's subgroups split the
// row's keys (subgroup s takes keys s, s + NSG, ...); for one key the subgroup's lanes hold the head's dimensions, so K and V rows are read
// coalesced and q.k is one subgroupAdd, with no barrier in the loop. Each subgroup keeps its own online softmax
// (running maximum, sum, output) and the subgroups' states are merged in workgroup memory at the end. The
// `fused` form also prepares the inputs of a decode step (every sequence one new token): the head's q and the
// row's new key get Qwen3's per-head RMSNorm (optional) and RoPE in the prologue, the new key and value are
// written to the cache, and the row's own (last) key is taken from workgroup memory, so norm, RoPE, KV write
// and attention are one dispatch.
import type { DType } from "../../../tensor.js";
import { LINEAR_WORKGROUP, weightScalar } from "../wgsl.js";
import { ATTENTION_PARAMS, rowSequenceWgsl } from "./attention-common.js";

export interface AttentionSgSpec {
  headDim: number;
  sg: number;
  /** Subgroups per workgroup (attentionSubgroups). */
  nsg: number;
  /** Decode form: q, k, v raw; norm and RoPE in the prologue; the new K and V written (see the header). */
  fused: boolean;
  /** Qwen3's q/k norm weight dtype (fused only), or null for none. */
  norm: DType | null;
}

export function attentionSgWgsl(spec: AttentionSgSpec): string {
  const { headDim, sg, nsg, fused, norm } = spec;
  const per = Math.ceil(headDim / sg);
  const fusedDecls = fused
    ? `@group(0) @binding(6) var<storage, read> kRaw: array<f32>;
@group(0) @binding(7) var<storage, read> vRaw: array<f32>;
@group(0) @binding(8) var<storage, read> ropeCs: array<vec2<f32>>;
${norm ? `${weightScalar(9, "qn", norm)}\n${weightScalar(10, "kn", norm)}` : ""}
var<workgroup> ks: array<f32, D>;
var<workgroup> vs: array<f32, D>;
var<workgroup> red: array<f32, NSG>;

/** The workgroup's sum of v (every thread gets it). */
fn wgSum(v: f32, lid: u32) -> f32 {
  let s = subgroupAdd(v);
  if (lid % SG == 0u) { red[lid / SG] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < NSG; i++) { t += red[i]; }
  workgroupBarrier();
  return t;
}`
    : "";
  // One head of src at base (norm weight w, inverse rms inv) rotated into dst: the operations of rmsNorm then
  // rope, in their order.
  const rotate = (src: string, base: string, dst: string, w: string, inv: string) => {
    const scaled = (at: string) =>
      norm ? `${src}[${base} + ${at}] * ${inv} * ${w}At(${at})` : `${src}[${base} + ${at}]`;
    return `for (var p = lid; p < half; p += WG) {
      let cs = ropeCs[row * half + p];
      let a = ${scaled("p")};
      let b = ${scaled("p + half")};
      ${dst}[p] = a * cs.x - b * cs.y;
      ${dst}[p + half] = b * cs.x + a * cs.y;
    }`;
  };
  const prologue = fused
    ? `// The head's q and the row's new key, normalised (Qwen3) and rotated; the new value as it is.
  let half = D / 2u;
  let kRow = row * params.width + kvBase;
  ${
    norm
      ? `var qss = 0.0;
  var kss = 0.0;
  for (var d = lid; d < D; d += WG) {
    let a = q[qBase + d];
    qss += a * a;
    let b = kRaw[kRow + d];
    kss += b * b;
  }
  // As rms-norm.ts: 1 / sqrt, not inverseSqrt.
  let qinv = 1.0 / sqrt(wgSum(qss, lid) / f32(D) + params.eps);
  let kinv = 1.0 / sqrt(wgSum(kss, lid) / f32(D) + params.eps);`
      : ""
  }
  ${rotate("q", "qBase", "qs", "qn", "qinv")}
  ${rotate("kRaw", "kRow", "ks", "kn", "kinv")}
  for (var d = lid; d < D; d += WG) { vs[d] = vRaw[kRow + d]; }
  workgroupBarrier();
  // The first query head of each KV group writes the new key and value (nothing reads that slot here).
  if (head % params.group == 0u) {
    let at = u32(batchMeta[params.slotsOffset + row]) * params.width + kvBase;
    for (var d = lid; d < D; d += WG) {
      kCache[at + d] = ks[d];
      vCache[at + d] = vs[d];
    }
  }`
    : `for (var d = lid; d < D; d += WG) { qs[d] = q[qBase + d]; }
  workgroupBarrier();`;
  const access = fused ? "read_write" : "read";
  const load = `let slot = u32(batchMeta[table + key / params.blockSize]) * params.blockSize + key % params.blockSize;
        let kb = slot * params.width + kvBase;
        for (var t = 0u; t < PER; t++) {
          let d = lane + t * SG;
          if (d < D) {
            dot += qv[t] * kCache[kb + d];
            vv[t] = vCache[kb + d];
          }
        }`;
  return `enable subgroups;
diagnostic(off, subgroup_uniformity);
${LINEAR_WORKGROUP}
${ATTENTION_PARAMS}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> batchMeta: array<i32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, ${access}> kCache: array<f32>;
@group(0) @binding(4) var<storage, ${access}> vCache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
const D: u32 = ${headDim}u;
const SG: u32 = ${sg}u;
const NSG: u32 = ${nsg}u;
const WG: u32 = ${sg * nsg}u;
// Dimensions per lane: d = lane + t * SG.
const PER: u32 = ${per}u;
const MASKED: f32 = -3.0e38;
var<workgroup> qs: array<f32, D>;
var<workgroup> sm: array<f32, NSG>;
var<workgroup> sl: array<f32, NSG>;
var<workgroup> sacc: array<f32, ${nsg * headDim}>;
${fusedDecls}

@compute @workgroup_size(${sg * nsg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = linearWorkgroup(wid, nwg);
  // w and everything derived from it and from meta is uniform over the workgroup: the early returns keep
  // the barriers in uniform control flow.
  if (w >= params.rows * params.heads) { return; }
  let row = w / params.heads;
  let head = w % params.heads;
  let qBase = row * params.heads * D + head * D;
  let kvBase = (head / params.group) * D;
  ${prologue}
  ${rowSequenceWgsl("WG")}

  let lane = lid % SG;
  let sgi = lid / SG;
  var qv: array<f32, PER>;
  for (var t = 0u; t < PER; t++) {
    let d = lane + t * SG;
    if (d < D) { qv[t] = qs[d]; }
  }
  var m = MASKED;
  var l = 0.0;
  var acc: array<f32, PER>;
  // Everything in this loop is uniform over the subgroup (one key at a time).
  for (var key = sgi; key < keys; key += NSG) {
    var visible = true;
    if (maskAt >= 0 && key >= cached) {
      let j = key - cached;
      let bits = u32(batchMeta[u32(maskAt) + i * maskWords + j / 32u]);
      visible = ((bits >> (j % 32u)) & 1u) == 1u;
    }
    if (visible) {
      var dot = 0.0;
      var vv: array<f32, PER>;
      ${
        fused
          ? `if (key == keys - 1u) {
        // The row's own new token: from workgroup memory (its cache slot is being written).
        for (var t = 0u; t < PER; t++) {
          let d = lane + t * SG;
          if (d < D) {
            dot += qv[t] * ks[d];
            vv[t] = vs[d];
          }
        }
      } else {
        ${load}
      }`
          : load
      }
      let score = subgroupAdd(dot) * params.scale;
      let mNew = max(m, score);
      // exp(MASKED - x) is 0: nothing was summed before this subgroup's first key.
      let alpha = exp(m - mNew);
      let p = exp(score - mNew);
      l = l * alpha + p;
      for (var t = 0u; t < PER; t++) { acc[t] = acc[t] * alpha + p * vv[t]; }
      m = mNew;
    }
  }
  // Merge the subgroups' softmax states (a subgroup that saw no key has m = MASKED, l = 0: weight 0).
  if (lane == 0u) {
    sm[sgi] = m;
    sl[sgi] = l;
  }
  for (var t = 0u; t < PER; t++) {
    let d = lane + t * SG;
    if (d < D) { sacc[sgi * D + d] = acc[t]; }
  }
  workgroupBarrier();
  var mAll = MASKED;
  for (var s = 0u; s < NSG; s++) { mAll = max(mAll, sm[s]); }
  var lAll = 0.0;
  for (var s = 0u; s < NSG; s++) { lAll += sl[s] * exp(sm[s] - mAll); }
  for (var d = lid; d < D; d += WG) {
    var o = 0.0;
    for (var s = 0u; s < NSG; s++) { o += sacc[s * D + d] * exp(sm[s] - mAll); }
    out[qBase + d] = o / lAll;
  }
}`;
}

const NORM_CODES = { null: 0, f32: 1, f16: 2, bf16: 3 } as const;
const programs = new Map<number, { key: string; wgsl: () => string }>();

/** The pipeline key and source of `spec`, cached by a number packed from it (no key string per dispatch). */
export function attentionSgProgram(spec: AttentionSgSpec): { key: string; wgsl: () => string } {
  const code =
    (((spec.headDim * 256 + spec.sg) * 64 + spec.nsg) * 2 + (spec.fused ? 1 : 0)) * 4 +
    NORM_CODES[spec.norm ?? "null"];
  let p = programs.get(code);
  if (!p) {
    const s = { ...spec };
    p = {
      key: `attentionSg:${s.headDim}:${s.sg}:${s.nsg}${s.fused ? `:fused:${s.norm}` : ""}`,
      wgsl: () => attentionSgWgsl(s),
    };
    programs.set(code, p);
  }
  return p;
}
