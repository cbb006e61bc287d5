// Copies the K and V of every layer from srcSlots[i] to dstSlots[i], as if every source were read before
// any destination is written: keeping an accepted tree branch moves tokens down onto slots that are
// themselves sources of later pairs, and a one-pass parallel copy would race there. So per layer, a gather
// of the sources into a scratch buffer, then a scatter to the destinations.
import { ParamBlock, type Recorder } from "../recorder.js";
import type { GpuKvStorage } from "../resources.js";
import { elementwiseKernel, elementwiseWorkgroups } from "./elementwise-common.js";

export function copyKvWgsl(scatter: boolean): string {
  // gather: scratch[i] = cache[src[i]]; scatter: cache[dst[i]] = scratch[i] (rows of `width` values).
  const [from, to] = scatter
    ? ["i", "u32(slots[r]) * params.width + c"]
    : ["u32(slots[r]) * params.width + c", "i"];
  const [src, dst] = scatter ? ["scratch", "cache"] : ["cache", "scratch"];
  return elementwiseKernel(
    `@group(0) @binding(1) var<storage, read> slots: array<i32>;
@group(0) @binding(2) var<storage, ${scatter ? "read" : "read_write"}> scratchK: array<f32>;
@group(0) @binding(3) var<storage, ${scatter ? "read" : "read_write"}> scratchV: array<f32>;
@group(0) @binding(4) var<storage, ${scatter ? "read_write" : "read"}> cacheK: array<f32>;
@group(0) @binding(5) var<storage, ${scatter ? "read_write" : "read"}> cacheV: array<f32>;`,
    `let r = i / params.width;
  let c = i % params.width;
  ${dst}K[${to}] = ${src}K[${from}];
  ${dst}V[${to}] = ${src}V[${from}];`,
    ["width"],
  );
}

export function encodeCopyKv(
  rec: Recorder,
  kv: GpuKvStorage,
  srcSlots: Int32Array,
  dstSlots: Int32Array,
): void {
  if (srcSlots.length !== dstSlots.length) {
    throw new RangeError(`copyKv: ${srcSlots.length} sources, ${dstSlots.length} destinations`);
  }
  for (const s of [...srcSlots, ...dstSlots]) {
    if (!(s >= 0 && s < kv.slots)) throw new RangeError(`copyKv: slot ${s} outside [0, ${kv.slots})`);
  }
  const n = srcSlots.length * kv.slotWidth;
  if (n === 0) return;
  const src = rec.upload(srcSlots);
  const dst = rec.upload(dstSlots);
  const scratchK = rec.activation(srcSlots.length, kv.slotWidth);
  const scratchV = rec.activation(srcSlots.length, kv.slotWidth);
  const sk = scratchK.buffer as GPUBuffer;
  const sv = scratchV.buffer as GPUBuffer;
  for (let l = 0; l < kv.spec.numLayers; l++) {
    const caches = [kv.k[l] as GPUBuffer, kv.v[l] as GPUBuffer];
    const params = () => new ParamBlock().u32(n).u32(kv.slotWidth);
    const workgroups = elementwiseWorkgroups(n);
    rec.dispatch({
      key: "copyKv:gather",
      wgsl: () => copyKvWgsl(false),
      params: params(),
      buffers: [src, sk, sv, ...caches],
      workgroups,
    });
    rec.dispatch({
      key: "copyKv:scatter",
      wgsl: () => copyKvWgsl(true),
      params: params(),
      buffers: [dst, sk, sv, ...caches],
      workgroups,
    });
  }
  // Released now, reused only by commands recorded later: the pool's ordering argument (buffer-pool.ts).
  rec.pool.release(sk);
  rec.pool.release(sv);
}
