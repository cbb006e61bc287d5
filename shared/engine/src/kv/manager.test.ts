import assert from "node:assert/strict";
import { test } from "node:test";
import { ReferenceBackend } from "../backends/reference/backend.js";
import { buildLayout, treeDepths } from "./layout.js";
import { blockBytes, blocksForBudget, KvManager } from "./manager.js";

const be = new ReferenceBackend();
const spec = (numBlocks: number, blockSize = 4) => ({
  numLayers: 2,
  numBlocks,
  blockSize,
  numKvHeads: 1,
  headDim: 2,
});

test("kv manager: allocateSlots answers null when the pool is short and takes nothing then", () => {
  const kv = new KvManager(be, spec(3));
  assert.deepEqual(Array.from(kv.allocateSlots("a", 5) ?? []), [0, 1]);
  kv.commit("a", 5);
  assert.equal(kv.allocateSlots("b", 9), null);
  assert.equal(kv.numFreeBlocks, 1);
  assert.equal(kv.has("b"), false);
  // Lookahead counts: 5 cached + 2 new + 2 proposals = 9 tokens = 3 blocks.
  assert.equal(kv.allocateSlots("a", 2, 2)?.length, 3);
  assert.equal(kv.allocateSlots("a", 2, 6), null, "13 tokens need a fourth block");
});

test("kv manager: free and truncate return blocks to the pool", () => {
  const kv = new KvManager(be, spec(4));
  kv.allocateSlots("a", 10);
  kv.commit("a", 10);
  assert.equal(kv.numFreeBlocks, 1);
  kv.truncate("a", 4);
  assert.equal(kv.numTokens("a"), 4);
  assert.equal(kv.blockTable("a").length, 1);
  assert.equal(kv.numFreeBlocks, 3);
  assert.throws(() => kv.truncate("a", 5), /has 4 tokens/);
  kv.free("a");
  assert.equal(kv.numFreeBlocks, 4);
  assert.throws(() => kv.blockTable("a"), /unknown sequence/);
});

test("kv manager: fork shares by refcount; blocks return when the last holder frees", () => {
  const kv = new KvManager(be, spec(6));
  kv.allocateSlots("p", 8, 4); // 2 full blocks plus a lookahead block
  kv.commit("p", 8);
  kv.fork("p", "c");
  assert.deepEqual(Array.from(kv.blockTable("c")), [0, 1], "the lookahead block is not shared");
  assert.equal(kv.refCount(0), 2);
  assert.equal(kv.numFreeBlocks, 3);
  // The child appends past full blocks: a fresh block, no copy.
  assert.deepEqual(Array.from(kv.allocateSlots("c", 1) ?? []), [0, 1, 3]);
  kv.free("p");
  assert.equal(kv.refCount(0), 1);
  assert.equal(kv.numFreeBlocks, 3);
  kv.free("c");
  assert.equal(kv.numFreeBlocks, 6);
  assert.throws(() => kv.fork("missing", "x"), /unknown sequence/);
});

test("kv manager: writing into a shared partial block copies it (and needs a free block for it)", () => {
  const kv = new KvManager(be, spec(2));
  kv.allocateSlots("p", 2);
  kv.commit("p", 2);
  kv.fork("p", "c");
  const c = kv.allocateSlots("c", 1);
  assert.deepEqual(Array.from(c ?? []), [1]);
  assert.equal(kv.refCount(0), 1);
  assert.equal(kv.allocateSlots("p", 1)?.[0], 0, "the parent is the only holder again: no copy");
  kv.fork("p", "d");
  assert.equal(kv.allocateSlots("d", 1), null, "the copy needs a block and there is none");
});

test("kv manager: fork of a prefix shares only the blocks that hold it; the child copies the partial one", () => {
  const kv = new KvManager(be, spec(6));
  kv.allocateSlots("p", 10);
  kv.commit("p", 10); // blocks 0, 1, 2 (2 holds tokens 8, 9)
  kv.fork("p", "c", 6); // tokens 0..5: block 0 and half of block 1
  assert.equal(kv.numTokens("c"), 6);
  assert.deepEqual(Array.from(kv.blockTable("c")), [0, 1]);
  assert.equal(kv.refCount(1), 2);
  // The child's next token lands in shared block 1: it gets its own copy, the parent keeps block 1.
  assert.deepEqual(Array.from(kv.allocateSlots("c", 1) ?? []), [0, 3]);
  assert.equal(kv.refCount(1), 1);
  assert.throws(() => kv.fork("p", "d", 11), /cannot share 11/);
});

test("kv manager: blocksForBudget divides a byte budget by a block's K and V over all layers", () => {
  const s = { numLayers: 6, blockSize: 16, numKvHeads: 2, headDim: 64 };
  assert.equal(blockBytes(s), 2 * 6 * 16 * 2 * 64 * 4);
  assert.equal(blocksForBudget(1 << 20, s), Math.floor((1 << 20) / 98304));
  assert.equal(blocksForBudget(1 << 20, s, 2), Math.floor((1 << 20) / 49152));
  const kv = new KvManager(be, { ...s, numBlocks: 3 });
  assert.equal(kv.storage.bytes, 3 * blockBytes(s));
});

test("kv manager: layouts give chain and tree positions, slots through the block table", () => {
  const kv = new KvManager(be, spec(8));
  kv.allocateSlots("x", 1);
  kv.allocateSlots("a", 3);
  kv.commit("a", 3);
  kv.allocateSlots("a", 4); // block 2 (after x's 0 and a's 1)
  kv.allocateSlots("b", 2);
  const layout = buildLayout(kv, [
    { seq: "a", newTokens: 4, treeParents: Int32Array.from([-1, 0, -1, 1]) },
    { seq: "b", newTokens: 2 },
  ]);
  assert.equal(layout.rows, 6);
  assert.deepEqual(Array.from(layout.positions), [3, 4, 3, 5, 0, 1]);
  assert.deepEqual(Array.from(layout.slots), [7, 8, 9, 10, 12, 13]);
  assert.deepEqual(
    layout.sequences.map((s) => [s.rowStart, s.cachedTokens, s.newTokens]),
    [
      [0, 3, 4],
      [4, 0, 2],
    ],
  );
  assert.throws(() => buildLayout(kv, [{ seq: "b", newTokens: 5 }]), /allocate first/);
  assert.throws(() => treeDepths(Int32Array.from([-1, 2, 0])), /parents must come before children/);
});

test("kv manager: keepBranch moves the accepted nodes next to the prefix and drops the rest", async () => {
  const kv = new KvManager(be, { numLayers: 1, numBlocks: 4, blockSize: 2, numKvHeads: 1, headDim: 1 });
  kv.allocateSlots("s", 2);
  kv.commit("s", 2);
  kv.allocateSlots("s", 5); // tree nodes 0..4 at positions 2..6
  const layout = buildLayout(kv, [
    { seq: "s", newTokens: 5, treeParents: Int32Array.from([-1, -1, 1, 2, 0]) },
  ]);
  const batch = be.prepareBatch(layout, 2);
  const values = be.fromHost(5, 1, [10, 11, 12, 13, 14]);
  be.writeKv(kv.storage, 0, values, values, batch);
  kv.keepBranch("s", [1, 2, 3]);
  assert.equal(kv.numTokens("s"), 5);
  assert.equal(kv.blockTable("s").length, 3);
  assert.equal(kv.numFreeBlocks, 1);
  // Attend with a zero query: equal weights, so the output is the mean of positions 2..4's values.
  const q = be.fromHost(1, 1, [0]);
  const seq = { rowStart: 0, newTokens: 1, cachedTokens: 4, blockTable: kv.blockTable("s") };
  const read = be.prepareBatch(
    { sequences: [seq], rows: 1, positions: Int32Array.from([4]), slots: layout.slots.slice(2, 3) },
    2,
  );
  const [mean] = await be.readRows(be.attention(q, kv.storage, 0, read, 1, 1));
  // Positions 0, 1 were never written (zeros); 2, 3, 4 now hold nodes 1, 2, 3 = 11, 12, 13.
  assert.ok(Math.abs(mean! - (0 + 0 + 11 + 12 + 13) / 5) < 1e-6, `got ${mean}`);
});
