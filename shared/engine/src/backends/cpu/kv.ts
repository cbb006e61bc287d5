// The cpu backend's paged KV cache, in the shared wasm memory so that the attention kernel reads it in
// place: per layer, K and V are f32 [numBlocks * blockSize slots, numKvHeads * headDim], the reference
// backend's layout, all in one block of the heap (given back by release(), which the backend calls once the
// storage is garbage-collected: KvStorage has no destroy, and a generate() makes one per call). writeKv and
// copyKv are plain copies within the memory (no arithmetic); the attention runs on the main thread in wasm
// (assembly/attention.ts), over the slots each row may see.
import type { BatchLayout, KvCacheSpec, KvStorage } from "../../backend.js";
import { visiblePositions } from "../reference/attention.js";
import { slotOf } from "../reference/types.js";
import type { WasmHeap } from "./wasm.js";

export class CpuKvStorage implements KvStorage {
  /** Byte offsets of each layer's K and V. */
  readonly k: number[] = [];
  readonly v: number[] = [];
  readonly bytes: number;

  /** The one heap block holding every layer's K and V. */
  readonly block: number;

  constructor(
    readonly spec: KvCacheSpec,
    private readonly heap: WasmHeap,
  ) {
    const perLayer = spec.numBlocks * spec.blockSize * spec.numKvHeads * spec.headDim * 4;
    this.bytes = 2 * spec.numLayers * perLayer;
    this.block = heap.alloc(this.bytes);
    for (let l = 0; l < spec.numLayers; l++) {
      this.k.push(this.block + 2 * l * perLayer);
      this.v.push(this.block + (2 * l + 1) * perLayer);
    }
    // A fresh block may reuse memory something else held: zero it, as the reference's cache starts.
    heap.bytes(this.block, this.bytes).fill(0);
  }

  get slotWidth(): number {
    return this.spec.numKvHeads * this.spec.headDim;
  }

  get numSlots(): number {
    return this.spec.numBlocks * this.spec.blockSize;
  }

  /** Layer `layer`'s K (or V) as a view of the memory as it is now. */
  view(layer: number, which: "k" | "v"): Float32Array {
    const ptr = (which === "k" ? this.k : this.v)[layer];
    if (ptr === undefined) throw new RangeError(`KV cache: no layer ${layer}`);
    return this.heap.f32(ptr, this.numSlots * this.slotWidth);
  }
}

/**
 * Every row's visible KV slots, end to end, and where each row's list starts (rows + 1 offsets): the
 * same for every layer and head of a pass, so computed once per batch.
 */
export interface VisibleSlots {
  slots: Int32Array;
  offsets: Int32Array;
}

export function visibleSlots(layout: BatchLayout, blockSize: number): VisibleSlots {
  const lists: number[][] = new Array(layout.rows);
  for (const seq of layout.sequences) {
    for (let i = 0; i < seq.newTokens; i++) {
      lists[seq.rowStart + i] = visiblePositions(seq, i).map((p) => slotOf(seq.blockTable, blockSize, p));
    }
  }
  const offsets = new Int32Array(layout.rows + 1);
  for (let r = 0; r < layout.rows; r++) offsets[r + 1] = (offsets[r] as number) + (lists[r]?.length ?? 0);
  const slots = new Int32Array(offsets[layout.rows] as number);
  for (let r = 0; r < layout.rows; r++) slots.set(lists[r] ?? [], offsets[r] as number);
  return { slots, offsets };
}
