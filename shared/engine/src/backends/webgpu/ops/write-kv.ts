// Writes each row's K and V into its slot of one layer's paged cache: K[slots[r]] = k[r], V[slots[r]] = v[r].
import type { GpuBatch } from "../batch.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuKvStorage, gpuBuf } from "../resources.js";
import { elementwiseKernel, elementwiseWorkgroups } from "./elementwise-common.js";

export function writeKvWgsl(): string {
  return elementwiseKernel(
    `@group(0) @binding(1) var<storage, read> batchMeta: array<i32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(5) var<storage, read_write> vCache: array<f32>;`,
    `let r = i / params.width;
  let at = u32(batchMeta[params.slotsOffset + r]) * params.width + i % params.width;
  kCache[at] = k[i];
  vCache[at] = v[i];`,
    ["width", "slotsOffset"],
  );
}

export function encodeWriteKv(
  rec: Recorder,
  kv: GpuKvStorage,
  layer: number,
  k: GpuActivation,
  v: GpuActivation,
  batch: GpuBatch,
): void {
  const width = kv.slotWidth;
  if (k.cols !== width || v.cols !== width || k.rows !== v.rows || k.rows !== batch.layout.rows) {
    throw new RangeError(`writeKv: k [${k.rows}, ${k.cols}], v [${v.rows}, ${v.cols}], slot width ${width}`);
  }
  const kCache = kv.k[layer];
  const vCache = kv.v[layer];
  if (!kCache || !vCache) throw new RangeError(`writeKv: layer ${layer} of ${kv.spec.numLayers}`);
  // A slot outside the cache would be clamped by the GPU's bounds checks into some other token's slot.
  for (const s of batch.layout.slots) {
    if (!(s >= 0 && s < kv.slots)) throw new RangeError(`writeKv: slot ${s} outside [0, ${kv.slots})`);
  }
  rec.dispatch({
    key: "writeKv",
    wgsl: writeKvWgsl,
    params: new ParamBlock().u32(k.elements).u32(width).u32(batch.meta.slotsOffset),
    buffers: [batch.buffer, gpuBuf(k), gpuBuf(v), kCache, vCache],
    workgroups: elementwiseWorkgroups(k.elements),
  });
}
