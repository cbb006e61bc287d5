// Builds a forward pass's BatchLayout from the KV manager's state: for each sequence, its new tokens'
// rows, RoPE positions (cached + index for a chain, cached + depth for a tree) and the physical slots
// they are written to (cached + index: a tree's nodes sit side by side until keepBranch compacts them).
import type { BatchLayout, SequenceLayout } from "../backend.js";
import type { KvManager } from "./manager.js";

export interface BatchEntry {
  seq: string;
  newTokens: number;
  /** Tree over the new tokens: parent index, -1 for a child of the last cached token; parents come first. */
  treeParents?: Int32Array;
}

/** Depth of each node (0 for a child of the cached tokens); requires parents[i] < i. */
export function treeDepths(parents: Int32Array): Int32Array {
  const depth = new Int32Array(parents.length);
  parents.forEach((p, i) => {
    if (!(p >= -1 && p < i))
      throw new RangeError(`tree parent ${p} of node ${i}: parents must come before children`);
    depth[i] = p === -1 ? 0 : (depth[p] as number) + 1;
  });
  return depth;
}

export function buildLayout(kv: KvManager, entries: readonly BatchEntry[]): BatchLayout {
  const bs = kv.blockSize;
  const rows = entries.reduce((n, e) => n + e.newTokens, 0);
  const positions = new Int32Array(rows);
  const slots = new Int32Array(rows);
  const sequences: SequenceLayout[] = [];
  let rowStart = 0;
  for (const e of entries) {
    const cachedTokens = kv.numTokens(e.seq);
    const blockTable = kv.blockTable(e.seq);
    if (cachedTokens + e.newTokens > blockTable.length * bs) {
      throw new RangeError(
        `buildLayout: ${e.seq} needs slots for ${cachedTokens + e.newTokens} tokens; allocate first`,
      );
    }
    if (e.treeParents !== undefined && e.treeParents.length !== e.newTokens) {
      throw new RangeError(`buildLayout: ${e.treeParents.length} tree parents for ${e.newTokens} tokens`);
    }
    const depth = e.treeParents === undefined ? undefined : treeDepths(e.treeParents);
    for (let i = 0; i < e.newTokens; i++) {
      const pos = cachedTokens + i;
      positions[rowStart + i] = cachedTokens + (depth === undefined ? i : (depth[i] as number));
      slots[rowStart + i] = (blockTable[Math.floor(pos / bs)] as number) * bs + (pos % bs);
    }
    const layout: SequenceLayout = { rowStart, newTokens: e.newTokens, cachedTokens, blockTable };
    if (e.treeParents !== undefined) layout.treeParents = e.treeParents;
    sequences.push(layout);
    rowStart += e.newTokens;
  }
  return { sequences, rows, positions, slots };
}
