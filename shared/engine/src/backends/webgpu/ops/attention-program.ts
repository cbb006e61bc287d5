// Attention without subgroup operations, one workgroup of 64 threads per (row, query head): the threads walk
// the keys in chunks of 64, one key per thread (q.k per thread, maximum and sum reduced in workgroup memory),
// then each thread accumulates its share of the head's output dimensions. GQA: query head h reads KV head
// h / (numHeads / numKvHeads); a key's slot comes from its sequence's block table, the mask is causal for a
// chain and the ancestor bitset for a tree.
import { LINEAR_WORKGROUP } from "../wgsl.js";
import { rowSequenceWgsl } from "./attention-common.js";

const T = 64;

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

const programs = new Map<number, { key: string; wgsl: () => string }>();

/** The pipeline key and source for a head size, cached. */
export function attentionProgram(headDim: number): { key: string; wgsl: () => string } {
  let p = programs.get(headDim);
  if (!p) {
    p = { key: `attention:${headDim}`, wgsl: () => attentionWgsl(headDim) };
    programs.set(headDim, p);
  }
  return p;
}
