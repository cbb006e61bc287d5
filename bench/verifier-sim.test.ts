// The simulation's judges behave as bench/verifier-sim.ts says, so the recorded comparison means what
// bench/results/verifier-tournament.md claims.
import assert from "node:assert/strict";
import { test } from "node:test";
import { METHODS, makeInstance, pairJudge, pick } from "./verifier-sim.js";

const biased = { name: "t", pairNoise: 0.5, positionBias: 3, pointNoise: 1 };

test("verifier sim - a pairwise call asks both orders, so swapping the pair mirrors the verdict", async () => {
  const inst = makeInstance(8, biased, 1);
  const judge = pairJudge(inst);
  for (const [a, b] of [
    [0, 1],
    [3, 7],
    [5, 2],
  ] as const) {
    assert.ok(Math.abs((await judge(a, b)) + (await judge(b, a)) - 1) < 1e-12);
  }
});

test("verifier sim - a noiseless judge prefers the better candidate despite position bias", async () => {
  const inst = makeInstance(6, { ...biased, pairNoise: 0 }, 2);
  const judge = pairJudge(inst);
  const best = inst.best;
  for (let i = 0; i < 6; i++) if (i !== best) assert.ok((await judge(best, i)) > 0.5);
});

test("verifier sim - instances and picks are reproducible, and every method stays within its calls", async () => {
  assert.deepEqual(makeInstance(8, biased, 9), makeInstance(8, biased, 9));
  const inst = makeInstance(16, biased, 3);
  for (const method of METHODS) {
    const one = await pick(method, inst, 32, 4);
    assert.deepEqual(await pick(method, inst, 32, 4), one);
    const limit = method === "round-robin" ? 120 : method === "pointwise" ? 16 : 32;
    assert.ok(one.calls <= limit, `${method}: ${one.calls} calls`);
  }
});
