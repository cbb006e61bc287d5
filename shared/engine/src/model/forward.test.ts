// The forward pass's batching, paging and tree contracts on the bundled model (short inputs: the
// reference backend is slow): a batch equals its sequences run alone, scattered small blocks equal
// contiguous ones, a tree pass equals the chains it stands for, and the KV manager's fork and
// keepBranch continue exactly as plain decoding would.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { BatchLayout } from "../backend.js";
import { ReferenceBackend } from "../backends/reference/backend.js";
import { buildLayout } from "../kv/layout.js";
import { KvManager } from "../kv/manager.js";
import { loadModelDir } from "../loader/hf-model.js";
import { argmax } from "../sampling/sample.js";
import { Model } from "./model.js";

const DIR = fileURLToPath(new URL("../../../../models/tiny-code", import.meta.url));
const TOL = 1e-4;
const be = new ReferenceBackend();
let model: Model;
let vocab = 0;

before(async () => {
  model = Model.load(be, await loadModelDir(DIR));
  vocab = model.config.vocabSize;
});

function assertClose(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, what);
  let max = 0;
  for (let i = 0; i < actual.length; i++) max = Math.max(max, Math.abs(actual[i]! - expected[i]!));
  assert.ok(max <= TOL, `${what}: max |diff| ${max}`);
}

/** Logits of every position of `tokens` run as one sequence from an empty cache. */
async function chain(tokens: readonly number[]): Promise<Float32Array[]> {
  const kv = new KvManager(be, model.kvSpec(8, 16));
  kv.allocateSlots("s", tokens.length);
  const layout = buildLayout(kv, [{ seq: "s", newTokens: tokens.length }]);
  const out = model.forward(kv.storage, layout, Int32Array.from(tokens), {
    logitRows: Int32Array.from(tokens, (_, i) => i),
  });
  return rowsOf(await be.readRows(out.logits!));
}

function rowsOf(flat: Float32Array): Float32Array[] {
  return Array.from({ length: flat.length / vocab }, (_, r) => flat.subarray(r * vocab, (r + 1) * vocab));
}

/** Runs `tokens` as new tokens of `seq` (allocating), all rows' logits, and commits them. */
async function extend(kv: KvManager, seq: string, tokens: readonly number[]): Promise<Float32Array[]> {
  assert.ok(kv.allocateSlots(seq, tokens.length));
  const layout = buildLayout(kv, [{ seq, newTokens: tokens.length }]);
  const out = model.forward(kv.storage, layout, Int32Array.from(tokens), {
    logitRows: Int32Array.from(tokens, (_, i) => i),
  });
  kv.commit(seq, tokens.length);
  return rowsOf(await be.readRows(out.logits!));
}

const A = [0, 7536, 366, 4658, 1943];
const B = [0, 203];
const C = [0, 322, 1244, 367, 18, 7101, 18, 3167, 6185];

test("model forward: a batch of sequences of different lengths equals each run alone (prefill and decode)", async () => {
  const kv = new KvManager(be, model.kvSpec(16, 4));
  const seqs = [A, B, C];
  seqs.forEach((s, i) => {
    kv.allocateSlots(String(i), s.length + 1);
  });
  const prefill = buildLayout(
    kv,
    seqs.map((s, i) => ({ seq: String(i), newTokens: s.length })),
  );
  const all = Int32Array.from(seqs.flat(), (_, r) => r);
  const out = model.forward(kv.storage, prefill, Int32Array.from(seqs.flat()), { logitRows: all });
  const batched = rowsOf(await be.readRows(out.logits!));
  const next = [18, 7, 203];
  seqs.forEach((_, i) => {
    kv.commit(String(i), seqs[i]!.length);
  });
  const step = buildLayout(
    kv,
    seqs.map((_, i) => ({ seq: String(i), newTokens: 1 })),
  );
  const decoded = rowsOf(await be.readRows(model.forward(kv.storage, step, Int32Array.from(next)).logits!));
  for (const [i, s] of seqs.entries()) {
    const alone = await chain([...s, next[i]!]);
    const start = prefill.sequences[i]!.rowStart;
    s.forEach((_, p) => {
      assertClose(batched[start + p]!, alone[p]!, `sequence ${i} position ${p}`);
    });
    assertClose(decoded[i]!, alone[s.length]!, `sequence ${i} decode step`);
  }
});

/** A one-sequence layout over a hand-made block table. */
function manualLayout(blockTable: number[], bs: number, cached: number, n: number): BatchLayout {
  const slot = (p: number) => blockTable[Math.floor(p / bs)]! * bs + (p % bs);
  return {
    sequences: [{ rowStart: 0, newTokens: n, cachedTokens: cached, blockTable: Int32Array.from(blockTable) }],
    rows: n,
    positions: Int32Array.from({ length: n }, (_, i) => cached + i),
    slots: Int32Array.from({ length: n }, (_, i) => slot(cached + i)),
  };
}

test("model forward: scattered blocks of 4 (prefill then token-by-token decode) equal one contiguous pass", async () => {
  const tokens = C;
  const expected = await chain(tokens);
  const storage = be.createKvStorage(model.kvSpec(12, 4));
  const table = [11, 3, 7];
  const first = model.forward(storage, manualLayout(table, 4, 0, 5), Int32Array.from(tokens.slice(0, 5)), {
    logitRows: Int32Array.from([0, 1, 2, 3, 4]),
  });
  rowsOf(await be.readRows(first.logits!)).forEach((row, p) => {
    assertClose(row, expected[p]!, `prefill position ${p}`);
  });
  for (let p = 5; p < tokens.length; p++) {
    const out = model.forward(storage, manualLayout(table, 4, p, 1), Int32Array.from([tokens[p]!]));
    assertClose(await be.readRows(out.logits!), expected[p]!, `decode position ${p}`);
  }
});

// A tree of 5 proposals after a 4-token prefix: 0 -> {1, 2}, 1 -> 3, and 4 a second root.
const PREFIX = [0, 7536, 366, 4658];
const TREE = [1943, 7289, 544, 18, 203];
const PARENTS = [-1, 0, 0, 1, -1];

async function treePass(kv: KvManager): Promise<Float32Array[]> {
  await extend(kv, "s", PREFIX);
  assert.ok(kv.allocateSlots("s", TREE.length));
  const layout = buildLayout(kv, [
    { seq: "s", newTokens: TREE.length, treeParents: Int32Array.from(PARENTS) },
  ]);
  assert.deepEqual(Array.from(layout.positions), [4, 5, 5, 6, 4]);
  const out = model.forward(kv.storage, layout, Int32Array.from(TREE), {
    logitRows: Int32Array.from([0, 1, 2, 3, 4]),
  });
  return rowsOf(await be.readRows(out.logits!));
}

function pathTo(node: number): number[] {
  const path: number[] = [];
  for (let n = node; n !== -1; n = PARENTS[n]!) path.unshift(n);
  return path;
}

test("model forward: a tree-masked pass gives each node the logits of its root-to-node chain", async () => {
  const nodes = await treePass(new KvManager(be, model.kvSpec(8, 4)));
  for (let n = 0; n < TREE.length; n++) {
    const tokens = [...PREFIX, ...pathTo(n).map((i) => TREE[i]!)];
    assertClose(nodes[n]!, (await chain(tokens)).at(-1)!, `tree node ${n}`);
  }
});

test("model forward: keeping the accepted branch then decoding equals plain decoding of that branch", async () => {
  const kv = new KvManager(be, model.kvSpec(8, 4));
  const nodes = await treePass(kv);
  const path = pathTo(3); // nodes 0, 1, 3: node 3 moves from position 7 to 6
  kv.keepBranch("s", path);
  assert.equal(kv.numTokens("s"), PREFIX.length + path.length);
  const accepted = [...PREFIX, ...path.map((i) => TREE[i]!)];
  let token = argmax(nodes[3]!);
  const plain = [...accepted];
  for (let step = 0; step < 3; step++) {
    const [logits] = await extend(kv, "s", [token]);
    plain.push(token);
    assertClose(logits!, (await chain(plain)).at(-1)!, `decode step ${step} after keepBranch`);
    token = argmax(logits!);
  }
});

test("model forward: a fork shares the prefix blocks and both continuations equal independent runs", async () => {
  const kv = new KvManager(be, model.kvSpec(8, 4));
  const prefix = A.concat([7]); // 6 tokens: one full block and one half-full block
  await extend(kv, "parent", prefix);
  const used = 8 - kv.numFreeBlocks;
  kv.fork("parent", "child");
  assert.equal(8 - kv.numFreeBlocks, used, "fork takes no blocks");
  const shared = kv.blockTable("parent");
  assert.deepEqual(Array.from(kv.blockTable("child")), Array.from(shared));
  for (const b of shared) assert.equal(kv.refCount(b), 2);

  // The parent writes into the shared half-full block first (and gets its own copy), then the child.
  const p = await extend(kv, "parent", [18, 7101]);
  const c = await extend(kv, "child", [203]);
  assert.equal(kv.blockTable("parent")[0], kv.blockTable("child")[0], "the full block stays shared");
  assert.notEqual(kv.blockTable("parent")[1], kv.blockTable("child")[1], "the half-full block was copied");
  assertClose(p[1]!, (await chain([...prefix, 18, 7101])).at(-1)!, "parent continuation");
  assertClose(c[0]!, (await chain([...prefix, 203])).at(-1)!, "child continuation");
  kv.free("parent");
  kv.free("child");
  assert.equal(kv.numFreeBlocks, 8);
});
