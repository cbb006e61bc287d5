// The paged KV cache: writes of new tokens at their slots, and slot-to-slot copies (copy-on-write of a
// forked block, compaction of an accepted tree branch).
import type { RefActivation, RefBatch, RefKvStorage } from "./types.js";

export function writeKv(
  kv: RefKvStorage,
  layer: number,
  k: RefActivation,
  v: RefActivation,
  batch: RefBatch,
): void {
  const width = kv.slotWidth;
  const { slots } = batch.layout;
  if (k.cols !== width || v.cols !== width || k.rows !== slots.length || v.rows !== slots.length) {
    throw new RangeError(
      `writeKv: k [${k.rows}, ${k.cols}], v [${v.rows}, ${v.cols}] for ${slots.length} slots of ${width}`,
    );
  }
  const kc = kv.k[layer];
  const vc = kv.v[layer];
  if (kc === undefined || vc === undefined) throw new RangeError(`writeKv: no layer ${layer}`);
  slots.forEach((slot, r) => {
    kc.set(k.data.subarray(r * width, (r + 1) * width), slot * width);
    vc.set(v.data.subarray(r * width, (r + 1) * width), slot * width);
  });
}

/**
 * Copies every layer's K and V from srcSlots[i] to dstSlots[i]. All sources are read before any
 * destination is written, so overlapping moves (a branch sliding down onto its own slots) are exact.
 */
export function copyKv(kv: RefKvStorage, srcSlots: Int32Array, dstSlots: Int32Array): void {
  if (srcSlots.length !== dstSlots.length) {
    throw new RangeError(`copyKv: ${srcSlots.length} sources for ${dstSlots.length} destinations`);
  }
  const width = kv.slotWidth;
  const numSlots = kv.spec.numBlocks * kv.spec.blockSize;
  for (const s of [...srcSlots, ...dstSlots]) {
    if (!(s >= 0 && s < numSlots)) throw new RangeError(`copyKv: slot ${s} outside [0, ${numSlots})`);
  }
  for (const cache of [...kv.k, ...kv.v]) {
    const staged =
      srcSlots.length === 0 ? [] : Array.from(srcSlots, (s) => cache.slice(s * width, (s + 1) * width));
    staged.forEach((values, i) => {
      cache.set(values, (dstSlots[i] as number) * width);
    });
  }
}
