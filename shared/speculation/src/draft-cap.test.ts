import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DRAFT_CAPS, DraftCapTuner } from "./draft-cap.js";

const NONE = Number.POSITIVE_INFINITY;

/** A tuner that has seen each cap deliver `rate(cap)` tokens per ms `samples` times at `sequences`. */
function trained(
  rate: (cap: number) => number,
  sequences = 1,
  exploreEvery = 1000,
  samples = 4,
): DraftCapTuner {
  const t = new DraftCapTuner({ exploreEvery, minSamples: samples });
  for (let i = 0; i < samples; i++) for (const cap of DRAFT_CAPS) t.observe(sequences, cap, rate(cap), 1);
  return t;
}

describe("draft cap", () => {
  test("draft cap - every cap is tried its first times, uncapped first", () => {
    const t = new DraftCapTuner({ minSamples: 2 });
    const tried: number[] = [];
    for (let i = 0; i < 2 * DRAFT_CAPS.length; i++) {
      const d = t.choose(1);
      assert.equal(d.reason, "warmup");
      tried.push(d.cap);
      t.observe(1, d.cap, 1, 1);
    }
    assert.equal(tried[0], NONE);
    assert.deepEqual(
      [...new Set(tried)].sort((a, b) => a - b),
      [...DRAFT_CAPS].sort((a, b) => a - b),
    );
    assert.notEqual(t.choose(1).reason, "warmup");
  });

  test("draft cap - where drafted rows are nearly free (a GPU at batch 1) the budgets run uncapped", () => {
    // Tokens per ms grow with the nodes allowed: 1.0 at cap 0 up to 2.1 uncapped (the H100's suffix rows).
    const t = trained((cap) => (cap === NONE ? 2.1 : 1 + 0.25 * cap));
    assert.deepEqual(t.choose(1), { cap: NONE, reason: "best" });
  });

  test("draft cap - where extra rows cost more than they bring (a batch of 16) drafting is switched off", () => {
    const t = trained((cap) => (cap === 0 ? 14.7 : 10), 16);
    assert.deepEqual(t.choose(16), { cap: 0, reason: "best" });
    // Batch sizes keep their own measurements: a single sequence has seen nothing yet.
    assert.equal(t.choose(1).reason, "warmup");
    assert.deepEqual(t.choose(31), { cap: 0, reason: "best" }, "16..31 sequences share one bandit");
  });

  test("draft cap - a middle cap wins where the first nodes pay and the deep ones do not (the CPU)", () => {
    const t = trained((cap) => ({ 0: 0.27, 1: 0.4, 2: 0.45, 4: 0.41 })[cap] ?? 0.38);
    assert.equal(t.choose(1).cap, 2);
  });

  test("draft cap - every exploreEvery-th step tries the other caps in turn, and a changed rate is followed", () => {
    const t = trained((cap) => (cap === 0 ? 2 : 1), 1, 4);
    const decisions = Array.from({ length: 16 }, () => t.choose(1));
    const explored = decisions.filter((d) => d.reason === "explore").map((d) => d.cap);
    assert.equal(explored.length, 4);
    assert.deepEqual(new Set(explored), new Set(DRAFT_CAPS.filter((c) => c !== 0)));
    assert.ok(decisions.filter((d) => d.reason === "best").every((d) => d.cap === 0));
    // Uncapped becomes the best (the drafter learned): its tries move its rate and the choice follows.
    for (let i = 0; i < 30; i++) t.observe(1, NONE, 3, 1);
    assert.equal(t.choose(1).cap, NONE);
  });

  test("draft cap - rates are tokens per ms, and impossible measurements are ignored", () => {
    const t = new DraftCapTuner();
    t.observe(4, 0, 8, 2);
    t.observe(4, 0, 8, 0);
    t.observe(4, 0, Number.NaN, 1);
    t.observe(4, 3, 8, 1); // not a cap it offers
    const rates = t.rates(4);
    assert.equal(rates[DRAFT_CAPS.indexOf(0)], 4);
    assert.ok(rates.filter((_, i) => i !== DRAFT_CAPS.indexOf(0)).every(Number.isNaN));
  });
});
