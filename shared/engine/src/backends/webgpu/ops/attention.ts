// Attention over the paged KV cache: shape checks and encoding. The kernels are attention-sg-program.ts
// (subgroups: the keys of a row split over a workgroup's subgroups; its fused form also does Qwen3's q/k norm,
// RoPE and the KV write of a decode step), attention-program.ts (no subgroups) and qk-prep-program.ts (the
// inputs of attention for prefill and verification batches).
import type { RopeSpec } from "../../../backend.js";
import type { GpuBatch } from "../batch.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuKvStorage, type GpuWeight, gpuBuf } from "../resources.js";
import { attentionSubgroups } from "./attention-common.js";
import { attentionProgram } from "./attention-program.js";
import { type AttentionSgSpec, attentionSgProgram } from "./attention-sg-program.js";
import { qkPrepProgram } from "./qk-prep-program.js";
import { ropeTable } from "./rope.js";

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
  const program = sg > 0 ? attentionSgProgram(spec) : attentionProgram(headDim);
  rec.dispatch({
    key: program.key,
    wgsl: program.wgsl,
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
      ...attentionSgProgram(spec),
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
    ...qkPrepProgram(normDtype),
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
