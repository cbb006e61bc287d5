// Attention over the paged KV cache, one workgroup per (row, query head). GQA: query head h reads KV head
// h / (numHeads / numKvHeads). Two kernels:
// - with subgroups (attentionSgWgsl): the workgroup's subgroups split the row's keys (subgroup s takes keys
//   s, s + NSG, ...); for one key the subgroup's lanes hold the head's dimensions, so K and V rows are read
//   coalesced and q.k is one subgroupAdd, with no barrier in the loop. Each subgroup keeps its own online
//   softmax (running maximum, sum, output) and the subgroups' states are merged in workgroup memory at the
//   end. Its `fused` form also prepares the inputs for a decode step (every sequence one new token): the
//   head's q and the row's new key get Qwen3's per-head RMSNorm (optional) and RoPE in the prologue, the new
//   key and value are written to the cache, and the row's own (last) key is taken from workgroup memory,
//   so norm, RoPE, KV write and attention are one dispatch.
// - without (attentionWgsl): 64 threads walk the keys in chunks of 64, one key per thread: q.k per thread,
//   reductions in workgroup memory, then each thread accumulates its share of the output dimensions.
// Either way a key's slot is found through its sequence's block table and the mask is causal for a chain,
// the ancestor bitset for a tree.
import type { RopeSpec } from "../../../backend.js";
import type { DType } from "../../../tensor.js";
import { type GpuBatch, SEQ_WORDS } from "../batch.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuKvStorage, type GpuWeight, gpuBuf } from "../resources.js";
import { LINEAR_WORKGROUP, weightScalar } from "../wgsl.js";
import { ropeTable } from "./rope.js";

const T = 64;

/**
 * WGSL: row `row`'s sequence from the batch metadata (see batch.ts): a padding row (seq < 0) writes zeros with
 * its `threads` threads and returns; otherwise i (its index among the sequence's new tokens), newTokens,
 * cached, the block table, the tree mask and the number of keys it may see.
 */
function rowSequenceWgsl(threads: string): string {
  return `let seq = batchMeta[row];
  if (seq < 0) {
    for (var d = lid; d < D; d += ${threads}) { out[qBase + d] = 0.0; }
    return;
  }
  let sb = params.seqsOffset + u32(seq) * ${SEQ_WORDS}u;
  let i = row - u32(batchMeta[sb]);
  let newTokens = u32(batchMeta[sb + 1u]);
  let cached = u32(batchMeta[sb + 2u]);
  let table = u32(batchMeta[sb + 3u]);
  let maskAt = batchMeta[sb + 4u];
  let maskWords = (newTokens + 31u) / 32u;
  // A chain sees its own prefix; a tree may see any earlier new token, filtered by the mask.
  let keys = select(cached + newTokens, cached + i + 1u, maskAt < 0);`;
}

export function attentionWgsl(headDim: number): string {
  const perThread = Math.ceil(headDim / T);
  return `${LINEAR_WORKGROUP}
struct Params { rows: u32, heads: u32, group: u32, width: u32, blockSize: u32, seqsOffset: u32, scale: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> batchMeta: array<i32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kCache: array<f32>;
@group(0) @binding(4) var<storage, read> vCache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
const D: u32 = ${headDim}u;
const T: u32 = ${T}u;
// Masked keys score below any real score; they are given probability 0 explicitly, never by exp underflow,
// so that a chunk in which every key is masked leaves the running sums untouched.
const MASKED: f32 = -3.0e38;
var<workgroup> qs: array<f32, D>;
var<workgroup> probs: array<f32, T>;
var<workgroup> keySlot: array<u32, T>;
var<workgroup> red: array<f32, T>;

fn reduceMax(lid: u32) -> f32 {
  for (var s = T / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  return m;
}

fn reduceSum(lid: u32) -> f32 {
  for (var s = T / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  return m;
}

@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = linearWorkgroup(wid, nwg);
  // w, and everything below derived from it and from meta, is uniform over the workgroup: the early return
  // and the chunk loop keep the barriers in uniform control flow.
  if (w >= params.rows * params.heads) { return; }
  let row = w / params.heads;
  let head = w % params.heads;
  let qBase = row * params.heads * D + head * D;
  let kvBase = (head / params.group) * D;
  ${rowSequenceWgsl("T")}

  for (var d = lid; d < D; d += T) { qs[d] = q[qBase + d]; }
  workgroupBarrier();

  var runMax = MASKED;
  var runSum = 0.0;
  var acc: array<f32, ${perThread}>;
  for (var k0 = 0u; k0 < keys; k0 += T) {
    let key = k0 + lid;
    var score = MASKED;
    var slot = 0u;
    if (key < keys) {
      var visible = true;
      if (maskAt >= 0 && key >= cached) {
        let j = key - cached;
        let bits = u32(batchMeta[u32(maskAt) + i * maskWords + j / 32u]);
        visible = ((bits >> (j % 32u)) & 1u) == 1u;
      }
      if (visible) {
        slot = u32(batchMeta[table + key / params.blockSize]) * params.blockSize + key % params.blockSize;
        let kb = slot * params.width + kvBase;
        var dot = 0.0;
        for (var d = 0u; d < D; d++) { dot += qs[d] * kCache[kb + d]; }
        score = dot * params.scale;
      }
    }
    red[lid] = score;
    workgroupBarrier();
    let newMax = max(runMax, reduceMax(lid));
    let p = select(exp(score - newMax), 0.0, score <= MASKED);
    probs[lid] = p;
    keySlot[lid] = slot;
    red[lid] = p;
    workgroupBarrier();
    let chunkSum = reduceSum(lid);
    // Rescale what was summed under the old maximum (exp(MASKED - x) is 0 when nothing was seen yet).
    let alpha = exp(runMax - newMax);
    runSum = runSum * alpha + chunkSum;
    runMax = newMax;
    let n = min(T, keys - k0);
    for (var t = 0u; t < ${perThread}u; t++) {
      let d = lid + t * T;
      if (d < D) {
        var a = acc[t] * alpha;
        for (var c = 0u; c < n; c++) {
          let pc = probs[c];
          if (pc != 0.0) { a += pc * vCache[keySlot[c] * params.width + kvBase + d]; }
        }
        acc[t] = a;
      }
    }
    // probs and keySlot are rewritten by the next chunk.
    workgroupBarrier();
  }
  for (var t = 0u; t < ${perThread}u; t++) {
    let d = lid + t * T;
    if (d < D) { out[qBase + d] = acc[t] / runSum; }
  }
}`;
}

/**
 * The subgroup kernel's shape: subgroups per workgroup, at most 32, within the device's workgroup size and
 * with the merge buffer (subgroups x headDim f32) at most half its workgroup memory.
 */
export function attentionSubgroups(
  sg: number,
  headDim: number,
  maxThreads: number,
  maxBytes: number,
): number {
  return Math.max(1, Math.min(32, Math.floor(maxThreads / sg), Math.floor(maxBytes / (8 * headDim))));
}

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

/** Params of both attention kernels (the fused fields are unused by the others). */
const ATTENTION_PARAMS = `struct Params { rows: u32, heads: u32, group: u32, width: u32, blockSize: u32, seqsOffset: u32,
  scale: f32, slotsOffset: u32, eps: f32 }`;

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

/**
 * The inputs of attention for any batch, in one dispatch: per (row, head) of q and of k, Qwen3's per-head
 * RMSNorm (optional) then RoPE, q into its output, k into the cache at the row's slot; the value heads are
 * copied into the cache beside. 64 threads per workgroup; the same f32 operations in the same order as
 * rmsNorm, rope and writeKv.
 */
export function qkPrepWgsl(norm: DType | null): string {
  const scaled = (src: string, base: string, at: string, w: string) =>
    norm ? `${src}[${base} + ${at}] * inv * ${w}At(${at})` : `${src}[${base} + ${at}]`;
  const rot = (
    src: string,
    base: string,
    dst: string,
    dbase: string,
    w: string,
  ) => `for (var p = lid; p < half; p += 64u) {
      let cs = ropeCs[r * half + p];
      let a = ${scaled(src, base, "p", w)};
      let b = ${scaled(src, base, "p + half", w)};
      ${dst}[${dbase} + p] = a * cs.x - b * cs.y;
      ${dst}[${dbase} + p + half] = b * cs.x + a * cs.y;
    }`;
  return `${LINEAR_WORKGROUP}
struct Params { rows: u32, heads: u32, kvHeads: u32, headDim: u32, slotsOffset: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> batchMeta: array<i32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read> ropeCs: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> qOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(8) var<storage, read_write> vCache: array<f32>;
${norm ? `${weightScalar(9, "qn", norm)}\n${weightScalar(10, "kn", norm)}` : ""}
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = linearWorkgroup(wid, nwg);
  let perRow = params.heads + params.kvHeads;
  // g is the same for the whole workgroup: the return and the branches keep the barriers uniform.
  if (g >= params.rows * perRow) { return; }
  let r = g / perRow;
  let h = g % perRow;
  let isQ = h < params.heads;
  let width = params.kvHeads * params.headDim;
  let base = select(r * width + (h - params.heads) * params.headDim, (r * params.heads + h) * params.headDim, isQ);
  let half = params.headDim / 2u;
  var inv = 1.0;
  ${
    norm
      ? `var s = 0.0;
  for (var i = lid; i < params.headDim; i += 64u) {
    var x: f32;
    if (isQ) { x = q[base + i]; } else { x = k[base + i]; }
    s += x * x;
  }
  part[lid] = s;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { part[lid] += part[lid + stride]; }
    workgroupBarrier();
  }
  // As rms-norm.ts: 1 / sqrt, not inverseSqrt.
  inv = 1.0 / sqrt(part[0] / f32(params.headDim) + params.eps);`
      : ""
  }
  if (isQ) {
    ${rot("q", "base", "qOut", "base", "qn")}
  } else {
    let at = u32(batchMeta[params.slotsOffset + r]) * width + (h - params.heads) * params.headDim;
    ${rot("k", "base", "kCache", "at", "kn")}
    for (var i = lid; i < params.headDim; i += 64u) { vCache[at + i] = v[base + i]; }
  }
}`;
}

function checkAttention(
  op: string,
  q: GpuActivation,
  kv: GpuKvStorage,
  layer: number,
  batch: GpuBatch,
  numHeads: number,
): [GPUBuffer, GPUBuffer] {
  const { headDim, numKvHeads, blockSize } = kv.spec;
  if (q.cols !== numHeads * headDim || numHeads % numKvHeads !== 0 || q.rows !== batch.layout.rows) {
    throw new RangeError(
      `${op}: q [${q.rows}, ${q.cols}] with ${numHeads} heads of ${headDim}, ${numKvHeads} KV heads`,
    );
  }
  if (batch.blockSize !== blockSize) {
    throw new RangeError(`${op}: batch prepared for blocks of ${batch.blockSize}, cache has ${blockSize}`);
  }
  const kCache = kv.k[layer];
  const vCache = kv.v[layer];
  if (!kCache || !vCache) throw new RangeError(`${op}: layer ${layer} of ${kv.spec.numLayers}`);
  return [kCache, vCache];
}

function attentionParams(
  q: GpuActivation,
  kv: GpuKvStorage,
  batch: GpuBatch,
  numHeads: number,
  scale: number,
  eps = 0,
): ParamBlock {
  return new ParamBlock()
    .u32(q.rows)
    .u32(numHeads)
    .u32(numHeads / kv.spec.numKvHeads)
    .u32(kv.slotWidth)
    .u32(kv.spec.blockSize)
    .u32(batch.meta.seqsOffset)
    .f32(scale)
    .u32(batch.meta.slotsOffset)
    .f32(eps);
}

export function encodeAttention(
  rec: Recorder,
  q: GpuActivation,
  kv: GpuKvStorage,
  layer: number,
  batch: GpuBatch,
  numHeads: number,
  scale: number,
): GpuActivation {
  const [kCache, vCache] = checkAttention("attention", q, kv, layer, batch, numHeads);
  const headDim = kv.spec.headDim;
  const y = rec.activation(q.rows, q.cols);
  const sg = rec.subgroupSize;
  const nsg = sg > 0 ? attentionSubgroups(sg, headDim, rec.maxWorkgroupThreads, rec.maxWorkgroupBytes) : 0;
  const spec: AttentionSgSpec = { headDim, sg, nsg, fused: false, norm: null };
  rec.dispatch({
    key: sg > 0 ? `attentionSg:${headDim}:${sg}:${nsg}` : `attention:${headDim}`,
    wgsl: sg > 0 ? () => attentionSgWgsl(spec) : () => attentionWgsl(headDim),
    params: attentionParams(q, kv, batch, numHeads, scale),
    buffers: [batch.buffer, gpuBuf(q), kCache, vCache, gpuBuf(y)],
    workgroups: q.rows * numHeads,
  });
  return y;
}

/** Qwen3's per-head q/k RMSNorm: the two weights [headDim] and epsilon. */
export interface QkNorm {
  q: GpuWeight;
  k: GpuWeight;
  eps: number;
}

/** Every row's K and V slot inside the cache (a slot outside would be clamped onto another token's). */
function checkSlots(op: string, kv: GpuKvStorage, batch: GpuBatch): void {
  for (const s of batch.layout.slots) {
    if (!(s >= 0 && s < kv.slots)) throw new RangeError(`${op}: slot ${s} outside [0, ${kv.slots})`);
  }
}

/**
 * attention(rope(norm?(q)), ...) after writeKv(rope(norm?(k)), v): one dispatch for a decode batch (every
 * sequence one new token, subgroups), else the preparation (qkPrepWgsl) then attention.
 */
export function encodeRopeAttention(
  rec: Recorder,
  q: GpuActivation,
  k: GpuActivation,
  v: GpuActivation,
  kv: GpuKvStorage,
  layer: number,
  batch: GpuBatch,
  rope: RopeSpec,
  numHeads: number,
  scale: number,
  norm?: QkNorm,
): GpuActivation {
  const [kCache, vCache] = checkAttention("ropeAttention", q, kv, layer, batch, numHeads);
  const { headDim, numKvHeads } = kv.spec;
  const width = kv.slotWidth;
  if (
    k.cols !== width ||
    v.cols !== width ||
    k.rows !== q.rows ||
    v.rows !== q.rows ||
    rope.headDim !== headDim ||
    rope.invFreq.length !== headDim / 2 ||
    headDim % 2 !== 0
  ) {
    throw new RangeError(
      `ropeAttention: q [${q.rows}, ${q.cols}], k [${k.rows}, ${k.cols}], v [${v.rows}, ${v.cols}] for ` +
        `${numHeads} heads, ${numKvHeads} KV heads of ${headDim} (RoPE head dim ${rope.headDim})`,
    );
  }
  if (norm && (norm.q.rows * norm.q.cols !== headDim || norm.k.rows * norm.k.cols !== headDim))
    throw new RangeError(
      `ropeAttention: q/k norm weights [${norm.q.shape}], [${norm.k.shape}] for ${headDim}`,
    );
  checkSlots("ropeAttention", kv, batch);
  const table = batch.ropeTable(rope.invFreq, () => ropeTable(batch.layout.positions, rope));
  const normDtype = norm ? norm.q.dtype : null;
  const normBuffers = norm ? [norm.q.buffer, norm.k.buffer] : [];
  if (norm && norm.k.dtype !== norm.q.dtype) {
    throw new RangeError(`ropeAttention: q/k norm weights of ${norm.q.dtype} and ${norm.k.dtype}`);
  }
  const sg = rec.subgroupSize;
  if (sg > 0 && batch.meta.decodeOnly) {
    const y = rec.activation(q.rows, q.cols);
    const nsg = attentionSubgroups(sg, headDim, rec.maxWorkgroupThreads, rec.maxWorkgroupBytes);
    const spec: AttentionSgSpec = { headDim, sg, nsg, fused: true, norm: normDtype };
    rec.dispatch({
      key: `attentionSg:${headDim}:${sg}:${nsg}:fused:${normDtype}`,
      wgsl: () => attentionSgWgsl(spec),
      params: attentionParams(q, kv, batch, numHeads, scale, norm?.eps ?? 0),
      buffers: [
        batch.buffer,
        gpuBuf(q),
        kCache,
        vCache,
        gpuBuf(y),
        gpuBuf(k),
        gpuBuf(v),
        table,
        ...normBuffers,
      ],
      workgroups: q.rows * numHeads,
    });
    return y;
  }
  const qRot = rec.activation(q.rows, q.cols);
  rec.dispatch({
    key: `qkPrep:${normDtype}`,
    wgsl: () => qkPrepWgsl(normDtype),
    params: new ParamBlock()
      .u32(q.rows)
      .u32(numHeads)
      .u32(numKvHeads)
      .u32(headDim)
      .u32(batch.meta.slotsOffset)
      .f32(norm?.eps ?? 0),
    buffers: [
      batch.buffer,
      gpuBuf(q),
      gpuBuf(k),
      gpuBuf(v),
      table,
      gpuBuf(qRot),
      kCache,
      vCache,
      ...normBuffers,
    ],
    workgroups: q.rows * (numHeads + numKvHeads),
  });
  const y = encodeAttention(rec, qRot, kv, layer, batch, numHeads, scale);
  // Released now, reused only by commands recorded later: the pool's ordering argument (buffer-pool.ts).
  rec.pool.release(gpuBuf(qRot));
  return y;
}
