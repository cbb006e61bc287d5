import assert from "node:assert/strict";
import { test } from "node:test";
import { Rng } from "./rng.js";
import { argmax, logSoftmax, logSumExp, sample, samplingProbs } from "./sample.js";

test("sampling: greedy picks the largest logit, the lowest id on ties, whatever the rng", () => {
  const table: [number[], number][] = [
    [[0.1, 0.5, 0.2], 1],
    [[3, 3, 1], 0],
    [[-5, -1, -1, -2], 1],
    [[7], 0],
  ];
  const rng = new Rng(1);
  for (const [logits, expected] of table) {
    assert.equal(argmax(logits), expected);
    assert.equal(sample(logits, { temperature: 0, topK: 1, topP: 0.1 }, rng), expected);
  }
});

test("sampling: the same seed gives the same draws, another seed other draws", () => {
  const logits = Array.from({ length: 50 }, (_, i) => Math.sin(i) * 2);
  const draw = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from({ length: 200 }, () => sample(logits, { temperature: 1 }, rng));
  };
  assert.deepEqual(draw(42), draw(42));
  assert.notDeepEqual(draw(42), draw(43));
  // The stream itself is pinned (checked against an independent Python xoshiro128** + splitmix32), so a
  // seed means the same draws on every platform and release.
  const rng = new Rng(0);
  assert.deepEqual([rng.nextU32(), rng.nextU32(), rng.nextU32()], [3809008728, 1133695204, 53579671]);
});

test("sampling: uniform draws lie in [0, 1) with mean 1/2", () => {
  const rng = new Rng(7);
  let sum = 0;
  for (let i = 0; i < 20000; i++) {
    const u = rng.next();
    assert.ok(u >= 0 && u < 1);
    sum += u;
  }
  assert.ok(Math.abs(sum / 20000 - 0.5) < 0.01);
});

test("sampling: logSoftmax is normalised and shifts with temperature", () => {
  const lp = logSoftmax([1, 2, 3]);
  assert.ok(Math.abs(lp.reduce((a, b) => a + Math.exp(b), 0) - 1) < 1e-12);
  assert.ok(Math.abs(lp[2]! - lp[1]! - 1) < 1e-12);
  const lp2 = logSoftmax([1, 2, 3], 2);
  assert.ok(Math.abs(lp2[2]! - lp2[1]! - 0.5) < 1e-12);
  // Large logits do not overflow.
  assert.ok(Number.isFinite(logSoftmax([1000, 1001])[0]));
});

test("sampling: logSumExp is log(sum(exp)) without overflow, and says what a non-finite row holds", () => {
  assert.ok(Math.abs(logSumExp([1, 2, 3]) - Math.log(Math.E + Math.E ** 2 + Math.E ** 3)) < 1e-12);
  assert.ok(Math.abs(logSumExp(Float32Array.of(1000, 1000)) - (1000 + Math.LN2)) < 1e-9);
  assert.equal(logSumExp([-1e9, 5]), 5);
  assert.equal(logSumExp([Number.NEGATIVE_INFINITY, 0]), 0);
  assert.equal(logSumExp([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]), Number.NEGATIVE_INFINITY);
  assert.equal(logSumExp([]), Number.NEGATIVE_INFINITY);
  assert.equal(logSumExp([1, Number.POSITIVE_INFINITY]), Number.POSITIVE_INFINITY);
  assert.ok(Number.isNaN(logSumExp([1, Number.NaN, 2])));
  assert.ok(Number.isNaN(logSumExp([Number.NaN])));
});

test("sampling: top-k keeps the k largest, top-p the smallest nucleus reaching p", () => {
  const logits = [Math.log(0.1), Math.log(0.4), Math.log(0.2), Math.log(0.3)];
  const k2 = samplingProbs(logits, { temperature: 1, topK: 2 });
  assert.deepEqual(
    Array.from(k2, (p) => Number(p.toFixed(6))),
    [0, 0.571429, 0, 0.428571],
  );
  // 0.4 + 0.3 = 0.7 reaches 0.65; the 0.2 token is cut.
  const p65 = samplingProbs(logits, { temperature: 1, topP: 0.65 });
  assert.deepEqual(
    Array.from(p65, (p) => Number(p.toFixed(6))),
    [0, 0.571429, 0, 0.428571],
  );
  // At least one token survives any p.
  assert.deepEqual(Array.from(samplingProbs(logits, { temperature: 1, topP: 0.01 })), [0, 1, 0, 0]);
  // Top-p applies to the top-k distribution: of {0.4, 0.3, 0.2} renormalised, 0.4/0.9 < 0.5.
  const both = samplingProbs(logits, { temperature: 1, topK: 3, topP: 0.5 });
  assert.equal(both.filter((p) => p > 0).length, 2);
  const rng = new Rng(3);
  for (let i = 0; i < 500; i++) assert.ok([1, 3].includes(sample(logits, { temperature: 1, topK: 2 }, rng)));
  assert.throws(() => samplingProbs(logits, { temperature: -1 }), /temperature/);
  assert.throws(() => samplingProbs(logits, { temperature: 1, topP: 0 }), /top-p/);
});

test("sampling: empirical frequencies at a temperature match the softmax", () => {
  const logits = [2, 1, 0.5, 0, -1, 1.5];
  const temperature = 0.7;
  const expected = logSoftmax(logits, temperature).map(Math.exp);
  const n = 40000;
  const counts = new Array<number>(logits.length).fill(0);
  const rng = new Rng(2024);
  for (let i = 0; i < n; i++) counts[sample(logits, { temperature }, rng)]!++;
  counts.forEach((c, i) => {
    // 5 standard deviations of a binomial proportion.
    const sd = Math.sqrt((expected[i]! * (1 - expected[i]!)) / n);
    assert.ok(Math.abs(c / n - expected[i]!) < 5 * sd + 1e-9, `token ${i}: ${c / n} vs ${expected[i]}`);
  });
});
