// What the attention programs share: a row's sequence from the batch metadata, the Params struct, and the
// subgroup kernel's shape. The programs are attention-program.ts (workgroup memory), attention-sg-program.ts
// (subgroups, and the fused decode form) and qk-prep-program.ts; the encoding is in attention.ts.
import { SEQ_WORDS } from "../batch.js";

/**
 * WGSL: row `row`'s sequence from the batch metadata (see batch.ts): a padding row (seq < 0) writes zeros with
 * its `threads` threads and returns; otherwise i (its index among the sequence's new tokens), newTokens,
 * cached, the block table, the tree mask and the number of keys it may see.
 */
export function rowSequenceWgsl(threads: string): string {
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

/** Params of both attention kernels (the fused fields are unused by the others). */
export const ATTENTION_PARAMS = `struct Params { rows: u32, heads: u32, group: u32, width: u32, blockSize: u32, seqsOffset: u32,
  scale: f32, slotsOffset: u32, eps: f32 }`;
