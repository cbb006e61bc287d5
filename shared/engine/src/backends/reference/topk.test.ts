import assert from "node:assert/strict";
import { test } from "node:test";
import { Rng } from "../../sampling/rng.js";
import { topKIds, topKRows } from "./topk.js";
import { RefActivation } from "./types.js";

test("reference topk - topKIds: the k largest, largest first, the lower id first among equal values", () => {
  const table: [number[], number, number[]][] = [
    [[0.1, 0.5, 0.2], 2, [1, 2]],
    [[3, 3, 1, 3], 2, [0, 1]],
    [[3, 3, 1, 3], 4, [0, 1, 3, 2]],
    [[-5, -1, -1, -2], 3, [1, 2, 3]],
    [[7], 1, [0]],
    [[7, 8], 5, [1, 0]],
    [[1, 2], 0, []],
    [[Number.NEGATIVE_INFINITY, 0, Number.POSITIVE_INFINITY], 2, [2, 1]],
  ];
  for (const [row, k, expected] of table) assert.deepEqual(topKIds(row, k), expected, `${row} k ${k}`);
});

test("reference topk - topKIds agrees with sorting every id, on rows with many ties", () => {
  const rng = new Rng(5);
  for (let trial = 0; trial < 50; trial++) {
    const n = 1 + Math.floor(rng.next() * 300);
    // Few distinct values, so ties are everywhere.
    const row = Float32Array.from({ length: n }, () => Math.floor(rng.next() * 7) - 3);
    const sorted = Array.from(row.keys()).sort((a, b) => (row[b] as number) - (row[a] as number) || a - b);
    for (const k of [1, 3, 16, n]) assert.deepEqual(topKIds(row, k), sorted.slice(0, k), `n ${n} k ${k}`);
  }
});

test("reference topk - topKRows gives each row's ids, values and log-sum-exp", () => {
  const x = new RefActivation(2, 4, Float32Array.of(0, 2, 1, 2, -1, -3, -2, 5));
  const t = topKRows(x, 2);
  assert.deepEqual([...t.ids], [1, 3, 3, 0]);
  assert.deepEqual([...t.values], [2, 2, 5, -1]);
  assert.ok(Math.abs((t.logSumExp[0] as number) - Math.log(1 + 2 * Math.E ** 2 + Math.E)) < 1e-6);
  assert.throws(() => topKRows(x, 5), /k 5 for rows of 4 values/);
});
