// Attention over the paged KV cache, one workgroup of 64 threads per (row, query head). The keys a row sees
// are walked in chunks of 64, one key per thread: the thread finds the key's slot through its sequence's
// block table, applies the mask (causal for a chain, ancestor bitset for a tree) and takes q.k; a running
// maximum and sum give an online softmax (flash-attention's rescaling), and each thread accumulates its
// share of the head's output dimensions over the chunk's values. GQA: query head h reads KV head
// h / (numHeads / numKvHeads).
import { type GpuBatch, SEQ_WORDS } from "../batch.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuKvStorage, gpuBuf } from "../resources.js";
import { LINEAR_WORKGROUP } from "../wgsl.js";

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
  let seq = batchMeta[row];
  if (seq < 0) {
    for (var d = lid; d < D; d += T) { out[qBase + d] = 0.0; }
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
  let keys = select(cached + newTokens, cached + i + 1u, maskAt < 0);

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

export function encodeAttention(
  rec: Recorder,
  q: GpuActivation,
  kv: GpuKvStorage,
  layer: number,
  batch: GpuBatch,
  numHeads: number,
  scale: number,
): GpuActivation {
  const { headDim, numKvHeads, blockSize } = kv.spec;
  if (q.cols !== numHeads * headDim || numHeads % numKvHeads !== 0 || q.rows !== batch.layout.rows) {
    throw new RangeError(
      `attention: q [${q.rows}, ${q.cols}] with ${numHeads} heads of ${headDim}, ${numKvHeads} KV heads`,
    );
  }
  if (batch.blockSize !== blockSize) {
    throw new RangeError(
      `attention: batch prepared for blocks of ${batch.blockSize}, cache has ${blockSize}`,
    );
  }
  const kCache = kv.k[layer];
  const vCache = kv.v[layer];
  if (!kCache || !vCache) throw new RangeError(`attention: layer ${layer} of ${kv.spec.numLayers}`);
  const y = rec.activation(q.rows, q.cols);
  rec.dispatch({
    key: `attention:${headDim}`,
    wgsl: () => attentionWgsl(headDim),
    params: new ParamBlock()
      .u32(q.rows)
      .u32(numHeads)
      .u32(numHeads / numKvHeads)
      .u32(kv.slotWidth)
      .u32(blockSize)
      .u32(batch.meta.seqsOffset)
      .f32(scale),
    buffers: [batch.buffer, gpuBuf(q), kCache, vCache, gpuBuf(y)],
    workgroups: q.rows * numHeads,
  });
  return y;
}
