// A forward pass's per-batch data in the shared memory, worked out once and used by every layer: each row's
// visible KV slots (the paged block table and the tree mask resolved, for attention) and each row's RoPE
// cos/sin. A pass prepares a new batch, so the uploads live in a small ring of regions reused in turn (two:
// a pass may interleave with one other, such as a drafter's between the target's layers, without either
// uploading again each layer), rather than one block per batch that only garbage collection would free.
import type { BatchLayout, PreparedBatch, RopeSpec } from "../../backend.js";
import { visibleSlots } from "./kv.js";
import { Scratch, type WasmHeap } from "./wasm.js";

export class CpuBatch implements PreparedBatch {
  constructor(
    readonly layout: BatchLayout,
    readonly blockSize: number,
  ) {}
}

/** A batch's visible slots in the memory: slots i32 at `slots`, row r's at offsets[r] .. offsets[r + 1]. */
export interface UploadedSlots {
  slots: number;
  /** offsets i32 [rows + 1] in the memory, and their values. */
  offsetsPtr: number;
  offsets: Int32Array;
  /** Every slot id, for bounds checks. */
  all: Int32Array;
  /** The most slots any row sees. */
  longest: number;
  /** The cache size (slots) every slot id was last checked against. */
  checkedFor?: number;
}

interface Entry {
  batch: CpuBatch | undefined;
  slots: UploadedSlots | undefined;
  spec: RopeSpec | undefined;
  cs: number;
  slotScratch: Scratch;
  ropeScratch: Scratch;
}

const RING = 2;

export class BatchUploads {
  private readonly ring: Entry[];
  private next = 0;

  constructor(private readonly heap: WasmHeap) {
    this.ring = Array.from({ length: RING }, () => ({
      batch: undefined,
      slots: undefined,
      spec: undefined,
      cs: 0,
      slotScratch: new Scratch(heap),
      ropeScratch: new Scratch(heap),
    }));
  }

  private entry(b: CpuBatch): Entry {
    for (const e of this.ring) if (e.batch === b) return e;
    const e = this.ring[this.next] as Entry;
    this.next = (this.next + 1) % RING;
    e.batch = b;
    e.slots = undefined;
    e.spec = undefined;
    return e;
  }

  /** The batch's visible slots, uploaded on first use. */
  slots(b: CpuBatch): UploadedSlots {
    const e = this.entry(b);
    if (e.slots === undefined) {
      const vis = visibleSlots(b.layout, b.blockSize);
      let longest = 0;
      for (let r = 0; r < b.layout.rows; r++)
        longest = Math.max(longest, (vis.offsets[r + 1] as number) - (vis.offsets[r] as number));
      const ptr = e.slotScratch.at((vis.slots.length + vis.offsets.length) * 4);
      const offsetsPtr = ptr + vis.slots.length * 4;
      this.heap.i32(ptr, vis.slots.length).set(vis.slots);
      this.heap.i32(offsetsPtr, vis.offsets.length).set(vis.offsets);
      e.slots = { slots: ptr, offsetsPtr, offsets: vis.offsets, all: vis.slots, longest };
    }
    return e.slots;
  }

  /**
   * The batch's RoPE table for `spec` ([rows, headDim]: each pair's cos, then its sin): as the reference, the
   * angle is rounded to f32 first (transformers forms it in float32) and cos/sin taken in f64, then stored
   * as f32.
   */
  rope(b: CpuBatch, spec: RopeSpec): number {
    const e = this.entry(b);
    if (e.spec !== spec) {
      const { positions, rows } = b.layout;
      const d = spec.headDim;
      const half = d / 2;
      e.cs = e.ropeScratch.at(rows * d * 4);
      const cs = this.heap.f32(e.cs, rows * d);
      for (let r = 0; r < rows; r++) {
        const pos = positions[r] as number;
        for (let i = 0; i < half; i++) {
          const angle = Math.fround(pos * (spec.invFreq[i] as number));
          cs[r * d + i] = Math.cos(angle);
          cs[r * d + half + i] = Math.sin(angle);
        }
      }
      e.spec = spec;
    }
    return e.cs;
  }
}

export function cpuBatch(b: PreparedBatch): CpuBatch {
  if (!(b instanceof CpuBatch)) throw new TypeError("cpu backend: batch prepared by another backend");
  return b;
}
