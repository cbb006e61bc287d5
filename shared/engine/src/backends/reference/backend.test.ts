import assert from "node:assert/strict";
import { test } from "node:test";
import type { Activation, BatchLayout, SequenceLayout } from "../../backend.js";
import { f32Tensor } from "../../tensor.js";
import { ReferenceBackend } from "./backend.js";

const be = new ReferenceBackend();

async function rows(x: Activation): Promise<number[]> {
  return Array.from(await be.readRows(x));
}

function close(actual: number[], expected: number[], tol = 1e-5): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) => {
    assert.ok(Math.abs(a - (expected[i] as number)) <= tol, `index ${i}: ${a} vs ${expected[i]}`);
  });
}

test("reference backend: matmul is x W^T + b in HF [out, in] layout", async () => {
  const x = be.fromHost(2, 3, [1, 2, 3, -1, 0, 1]);
  const w = be.loadWeight("w", f32Tensor([2, 3], [1, 0, 0, 1, 1, 1]));
  const b = be.loadWeight("b", f32Tensor([2], [0.5, -0.5]));
  close(await rows(be.matmul(x, w, b)), [1.5, 5.5, -0.5, -0.5]);
});

test("reference backend: bf16 weights are widened exactly", async () => {
  // 1.0 = 0x3f80, -2.0 = 0xc000 in bf16, little-endian.
  const w = be.loadWeight("w", {
    dtype: "bf16",
    shape: [1, 2],
    data: new Uint8Array([0x80, 0x3f, 0x00, 0xc0]),
  });
  close(await rows(be.matmul(be.fromHost(1, 2, [3, 1]), w)), [1]);
});

test("reference backend: rmsNorm over the row and per group", async () => {
  const x = be.fromHost(1, 4, [1, 1, 3, 3]);
  const w2 = be.loadWeight("w2", f32Tensor([2], [1, 2]));
  close(await rows(be.rmsNorm(x, w2, 0, 2)), [1, 2, 1, 2]);
  const w4 = be.loadWeight("w4", f32Tensor([4], [1, 1, 1, 1]));
  const r = Math.sqrt(5);
  close(await rows(be.rmsNorm(x, w4, 0)), [1 / r, 1 / r, 3 / r, 3 / r]);
});

test("reference backend: rope rotates pairs (i, i + d/2) by position * invFreq", async () => {
  const layout: BatchLayout = {
    sequences: [],
    rows: 2,
    positions: new Int32Array([0, 2]),
    slots: new Int32Array([0, 1]),
  };
  const b = be.prepareBatch(layout, 4);
  const spec = { headDim: 4, theta: 10000, invFreq: new Float32Array([0.5, 0.25]) };
  const x = be.fromHost(2, 4, [1, 2, 3, 4, 1, 0, 0, 1]);
  const [c1, s1, c2, s2] = [Math.cos(1), Math.sin(1), Math.cos(0.5), Math.sin(0.5)];
  close(await rows(be.rope(x, b, spec)), [1, 2, 3, 4, c1, -s2, s1, c2]);
});

test("reference backend: siluMul, add, gatherRows, embed", async () => {
  const g = be.fromHost(1, 2, [0, 2]);
  const u = be.fromHost(1, 2, [5, 3]);
  close(await rows(be.siluMul(g, u)), [0, (2 / (1 + Math.exp(-2))) * 3]);
  close(await rows(be.add(g, u)), [5, 5]);
  const x = be.fromHost(3, 1, [10, 20, 30]);
  close(await rows(be.gatherRows(x, new Int32Array([2, 0]))), [30, 10]);
  const table = be.loadWeight("e", f32Tensor([3, 2], [0, 1, 2, 3, 4, 5]));
  close(await rows(be.embed(table, new Int32Array([1, 1, 2]))), [2, 3, 2, 3, 4, 5]);
  assert.throws(() => be.embed(table, new Int32Array([3])), /outside/);
});

test("reference backend: argmax takes the lowest index on ties", async () => {
  const x = be.fromHost(2, 4, [1, 3, 3, 0, -1, -1, -1, -1]);
  assert.deepEqual(Array.from(await be.argmaxRows(x)), [1, 0]);
});

/** One KV head, headDim 2, block size 2; keys written through writeKv, then attention read back. */
async function attend(
  seq: SequenceLayout,
  q: number[],
  k: number[],
  v: number[],
  slots: number[],
): Promise<number[]> {
  const kv = be.createKvStorage({ numLayers: 1, numBlocks: 4, blockSize: 2, numKvHeads: 1, headDim: 2 });
  const n = slots.length;
  const layout: BatchLayout = {
    sequences: [seq],
    rows: seq.newTokens,
    positions: new Int32Array(seq.newTokens),
    slots: new Int32Array(slots.slice(n - seq.newTokens)),
  };
  // Everything (cached and new) written in one go through a full-length batch.
  const all = be.prepareBatch(
    { sequences: [], rows: n, positions: new Int32Array(n), slots: new Int32Array(slots) },
    2,
  );
  be.writeKv(kv, 0, be.fromHost(n, 2, k), be.fromHost(n, 2, v), all);
  const b = be.prepareBatch(layout, 2);
  return rows(
    be.attention(
      be.fromHost(seq.newTokens, q.length / seq.newTokens, q),
      kv,
      0,
      b,
      q.length / seq.newTokens / 2,
      1,
    ),
  );
}

function softmaxMix(scores: number[], values: number[][]): number[] {
  const e = scores.map((s) => Math.exp(s));
  const z = e.reduce((a, b) => a + b, 0);
  return [0, 1].map((d) => values.reduce((acc, v, i) => acc + ((e[i] as number) / z) * (v[d] as number), 0));
}

/** The attention tests' sequence: one cached token then two new ones, keys and values of all three. */
const K = [1, 0, 0, 1, 1, 1];
const V = [1, 2, 3, 4, 5, 6];
function oneCachedTwoNew(blockTable: number[], treeParents?: number[]): SequenceLayout {
  return {
    rowStart: 0,
    newTokens: 2,
    cachedTokens: 1,
    blockTable: new Int32Array(blockTable),
    ...(treeParents === undefined ? {} : { treeParents: new Int32Array(treeParents) }),
  };
}

test("reference backend: attention is causal over paged blocks, GQA shares the KV head", async () => {
  // Tokens at logical positions 0..2 live in blocks [3, 1]: slots 6, 7, 2.
  const seq = oneCachedTwoNew([3, 1]);
  // Two query heads, one KV head.
  const q = [1, 0, 0, 1, 2, 2, 0, 0];
  const out = await attend(seq, q, K, V, [6, 7, 2]);
  const vals = [
    [1, 2],
    [3, 4],
    [5, 6],
  ];
  close(out.slice(0, 2), softmaxMix([1, 0], vals.slice(0, 2)));
  close(out.slice(2, 4), softmaxMix([0, 1], vals.slice(0, 2)));
  close(out.slice(4, 6), softmaxMix([2, 2, 4], vals));
  close(out.slice(6, 8), softmaxMix([0, 0, 0], vals));
});

test("reference backend: tree attention sees ancestors only", async () => {
  // Cached token 0; new nodes 0 and 1 are both children of the cached token (siblings).
  const seq = oneCachedTwoNew([0, 1], [-1, -1]);
  const out = await attend(seq, [1, 1, 1, 1], K, V, [0, 1, 2]);
  close(
    out.slice(0, 2),
    softmaxMix(
      [1, 1],
      [
        [1, 2],
        [3, 4],
      ],
    ),
  );
  close(
    out.slice(2, 4),
    softmaxMix(
      [1, 2],
      [
        [1, 2],
        [5, 6],
      ],
    ),
  );
});

test("reference backend: copyKv moves every layer's K and V, overlapping moves exact", async () => {
  const kv = be.createKvStorage({ numLayers: 2, numBlocks: 1, blockSize: 4, numKvHeads: 1, headDim: 1 });
  const b = be.prepareBatch(
    { sequences: [], rows: 4, positions: new Int32Array(4), slots: new Int32Array([0, 1, 2, 3]) },
    4,
  );
  for (const layer of [0, 1])
    be.writeKv(kv, layer, be.fromHost(4, 1, [0, 1, 2, 3]), be.fromHost(4, 1, [4, 5, 6, 7]), b);
  // Slide slots 2 and 3 down to 1 and 2: slot 2 is both read and written.
  be.copyKv(kv, new Int32Array([2, 3]), new Int32Array([1, 2]));
  const seq: SequenceLayout = { rowStart: 0, newTokens: 1, cachedTokens: 2, blockTable: new Int32Array([0]) };
  const q = be.fromHost(1, 1, [0]);
  const one = be.prepareBatch(
    { sequences: [seq], rows: 1, positions: new Int32Array(1), slots: new Int32Array([2]) },
    4,
  );
  // Equal scores: the mean of values at slots 0, 1, 2 = (4 + 6 + 7) / 3.
  close(await rows(be.attention(q, kv, 1, one, 1, 1)), [17 / 3]);
  assert.equal(kv.bytes, 2 * 2 * 4 * 4);
});
