// A forward pass's layout packed into one i32 buffer, uploaded once in prepareBatch and read by rope,
// writeKv and attention. Sections (offsets in words, passed to kernels in their uniforms):
//   rowSeq[rows]        sequence index of each row
//   positions[rows]     RoPE position of each row
//   slots[rows]         KV slot each row's K and V are written to
//   seqs[n * 5]         per sequence: rowStart, newTokens, cachedTokens, block table offset, mask offset
//                       (-1: a chain, causal attention)
//   blockTables[...]    every sequence's block table, concatenated
//   masks[...]          per tree sequence, newTokens rows of ceil(newTokens / 32) words: bit j of row i is
//                       set when new token j is token i itself or one of its ancestors
import type { BatchLayout, PreparedBatch } from "../../backend.js";
import type { Recorder } from "./recorder.js";

export const SEQ_WORDS = 5;

export interface BatchMeta {
  words: Int32Array;
  positionsOffset: number;
  slotsOffset: number;
  seqsOffset: number;
  /** The most keys any row attends to (cached + new tokens of its sequence). */
  maxKeys: number;
  /**
   * Every row is the one new token of its sequence, no tree: a decode step. Attention can then take each
   * row's own key from its inputs instead of the cache (ops/attention.ts, the fused kernel).
   */
  decodeOnly: boolean;
}

/** Ancestor-or-self bitsets of a tree given by parent indices (parents precede their children). */
export function ancestorMask(parents: Int32Array): Uint32Array {
  const n = parents.length;
  const w = Math.ceil(n / 32);
  const mask = new Uint32Array(n * w);
  for (let i = 0; i < n; i++) {
    const p = parents[i] as number;
    if (!(p >= -1 && p < i))
      throw new RangeError(`treeParents[${i}] = ${p}: a parent must come before its child`);
    // A node's set is its parent's set plus itself: rows are filled in order, so the parent's is ready.
    if (p >= 0) mask.copyWithin(i * w, p * w, (p + 1) * w);
    mask[i * w + (i >>> 5)] = (mask[i * w + (i >>> 5)] as number) | (1 << (i & 31));
  }
  return mask;
}

export function packBatch(layout: BatchLayout, blockSize: number): BatchMeta {
  const { rows, sequences } = layout;
  if (layout.positions.length !== rows || layout.slots.length !== rows) {
    throw new RangeError(
      `batch of ${rows} rows with ${layout.positions.length} positions, ${layout.slots.length} slots`,
    );
  }
  const rowSeq = new Int32Array(rows).fill(-1);
  const tables: Int32Array[] = [];
  const masks: Uint32Array[] = [];
  const seqs = new Int32Array(sequences.length * SEQ_WORDS);
  let tableWords = 0;
  let maskWords = 0;
  let maxKeys = 0;
  sequences.forEach((s, i) => {
    const keys = s.cachedTokens + s.newTokens;
    if (s.rowStart < 0 || s.rowStart + s.newTokens > rows) {
      throw new RangeError(
        `sequence ${i}: rows [${s.rowStart}, ${s.rowStart + s.newTokens}) outside ${rows}`,
      );
    }
    if (s.blockTable.length * blockSize < keys) {
      throw new RangeError(
        `sequence ${i}: ${s.blockTable.length} blocks of ${blockSize} hold fewer than ${keys} tokens`,
      );
    }
    if (s.treeParents && s.treeParents.length !== s.newTokens) {
      throw new RangeError(
        `sequence ${i}: ${s.treeParents.length} tree parents for ${s.newTokens} new tokens`,
      );
    }
    for (let r = s.rowStart; r < s.rowStart + s.newTokens; r++) rowSeq[r] = i;
    maxKeys = Math.max(maxKeys, keys);
    seqs.set(
      [s.rowStart, s.newTokens, s.cachedTokens, tableWords, s.treeParents ? maskWords : -1],
      i * SEQ_WORDS,
    );
    tables.push(s.blockTable);
    tableWords += s.blockTable.length;
    if (s.treeParents) {
      const m = ancestorMask(s.treeParents);
      masks.push(m);
      maskWords += m.length;
    }
  });
  const positionsOffset = rows;
  const slotsOffset = 2 * rows;
  const seqsOffset = 3 * rows;
  const tablesOffset = seqsOffset + seqs.length;
  const masksOffset = tablesOffset + tableWords;
  const words = new Int32Array(Math.max(4, masksOffset + maskWords));
  words.set(rowSeq, 0);
  words.set(layout.positions, positionsOffset);
  words.set(layout.slots, slotsOffset);
  // Offsets inside seqs are made absolute so that kernels index `words` directly.
  for (let i = 0; i < sequences.length; i++) {
    const b = seqsOffset + i * SEQ_WORDS;
    words.set(seqs.subarray(i * SEQ_WORDS, (i + 1) * SEQ_WORDS), b);
    words[b + 3] = (words[b + 3] as number) + tablesOffset;
    if ((words[b + 4] as number) >= 0) words[b + 4] = (words[b + 4] as number) + masksOffset;
  }
  let at = tablesOffset;
  for (const t of tables) {
    words.set(t, at);
    at += t.length;
  }
  for (const m of masks) {
    words.set(new Int32Array(m.buffer, m.byteOffset, m.length), at);
    at += m.length;
  }
  const decodeOnly =
    rows > 0 && rowSeq.every((q) => q >= 0) && sequences.every((s) => s.newTokens === 1 && !s.treeParents);
  return { words, positionsOffset, slotsOffset, seqsOffset, maxKeys, decodeOnly };
}

/**
 * The backend's reusable home for a batch's metadata and RoPE tables. A decode loop prepares a new batch every
 * step; giving each its own pooled buffers made every bind group that names them new each step (and which
 * buffers came back depended on when the garbage collector freed old batches). The slot's buffers are
 * rewritten in place by the next batch, so the same buffers appear step after step.
 */
export class BatchSlot {
  meta: GPUBuffer | null = null;
  readonly rope = new Map<Float32Array, GPUBuffer>();
  holder: GpuBatch | null = null;
  /** Recorder.submits when a command last read the holder's buffers (-1: none yet). */
  lastUse = -1;

  /** Whether a new batch may take the slot: every command recorded against the holder has been submitted. */
  free(submits: number): boolean {
    return this.holder === null || this.lastUse < submits;
  }

  /** Drops the slot's buffers (they came from the recorder's pool, which destroys them). */
  destroy(): void {
    this.meta = null;
    this.rope.clear();
    this.holder = null;
  }
}

/**
 * `data` written at the start of `buffer` when it is large enough, otherwise into a new upload buffer (the old
 * one goes back to the pool after the next submit). Queue writes are ordered after earlier submits, so
 * commands already submitted still read the old contents.
 */
function rewrite(rec: Recorder, buffer: GPUBuffer | null, data: ArrayBufferView): GPUBuffer {
  if (buffer !== null && buffer.size >= data.byteLength) {
    rec.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }
  if (buffer !== null) rec.releaseAfterSubmit(buffer);
  return rec.persistentUpload(data);
}

/** A BatchLayout uploaded for one forward: its metadata buffer and the RoPE tables built for it. */
export class GpuBatch implements PreparedBatch {
  /** Buffers the batch holds itself (when it has no slot), freed together when the batch is garbage. */
  readonly owned: GPUBuffer[] = [];
  private metaBuffer: GPUBuffer | null = null;
  /** cos/sin tables per RopeSpec.invFreq, built on first use and kept for every layer's rope. */
  private readonly ropeTables = new Map<Float32Array, GPUBuffer>();

  constructor(
    readonly layout: BatchLayout,
    readonly blockSize: number,
    readonly meta: BatchMeta,
    private readonly rec: Recorder,
    /** The slot this batch lives in, or null (none was free, or a later batch took it). */
    private slot: BatchSlot | null,
  ) {
    if (slot) {
      slot.holder?.evict();
      slot.holder = this;
      slot.meta = rewrite(rec, slot.meta, meta.words);
      this.metaBuffer = slot.meta;
    }
  }

  /** A later batch took the slot: buffers are re-uploaded into owned ones if this batch is used again. */
  private evict(): void {
    this.slot = null;
    this.metaBuffer = null;
    this.ropeTables.clear();
  }

  /** Marks the batch's buffers as read by a command recorded now. */
  private use(): void {
    if (this.slot) this.slot.lastUse = this.rec.submits;
  }

  /** The metadata buffer, for a command recorded now. */
  get buffer(): GPUBuffer {
    this.use();
    if (this.metaBuffer === null) {
      this.metaBuffer = this.rec.persistentUpload(this.meta.words);
      this.owned.push(this.metaBuffer);
    }
    return this.metaBuffer;
  }

  /** The RoPE table for `invFreq` (built by `build` on first use), for a command recorded now. */
  ropeTable(invFreq: Float32Array, build: () => Float32Array): GPUBuffer {
    this.use();
    let table = this.ropeTables.get(invFreq);
    if (table) return table;
    if (this.slot) {
      table = rewrite(this.rec, this.slot.rope.get(invFreq) ?? null, build());
      this.slot.rope.set(invFreq, table);
    } else {
      table = this.rec.persistentUpload(build());
      this.owned.push(table);
    }
    this.ropeTables.set(invFreq, table);
    return table;
  }
}

export function gpuBatch(b: PreparedBatch): GpuBatch {
  if (!(b instanceof GpuBatch)) throw new TypeError("webgpu backend: batch prepared by another backend");
  return b;
}
