import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { drawFrom, Rng, samplingProbs } from "@specloop/engine";
import type { Proposal } from "./drafter.js";
import { proposalDepth, truncateProposal, verifyGreedy, verifySampled } from "./verify.js";

function proposal(tokens: number[], parents: number[], draftDists?: (Float32Array | undefined)[]): Proposal {
  const p: Proposal = {
    tokens: Int32Array.from(tokens),
    parents: Int32Array.from(parents),
    draftProbs: new Float32Array(tokens.length).fill(1),
  };
  if (draftDists) p.draftDists = draftDists;
  return p;
}

describe("verifyGreedy", () => {
  it("accepts a whole chain that matches and adds the target's next token", () => {
    const v = verifyGreedy(proposal([5, 6, 7], [-1, 0, 1]), [5, 6, 7, 9]);
    assert.deepEqual(v, { accepted: [0, 1, 2], bonus: 9 });
  });

  it("stops at the first mismatch and emits the target's token there", () => {
    const v = verifyGreedy(proposal([5, 6, 7], [-1, 0, 1]), [5, 3, 7, 9]);
    assert.deepEqual(v, { accepted: [0], bonus: 3 });
  });

  it("follows whichever sibling the target agrees with", () => {
    // root -> {4, 5}; 5 -> {8}; 4 -> {1}
    const v = verifyGreedy(proposal([4, 5, 8, 1], [-1, -1, 1, 0]), [5, 2, 8, 6, 7]);
    assert.deepEqual(v, { accepted: [1, 2], bonus: 6 });
  });

  it("emits the target's token when nothing was proposed", () => {
    assert.deepEqual(verifyGreedy(proposal([], []), [3]), { accepted: [], bonus: 3 });
  });

  it("refuses a tree whose parent comes after its child", () => {
    assert.throws(() => verifyGreedy(proposal([1, 2], [1, -1]), [0, 0, 0]), /parents must come before/);
  });
});

describe("truncateProposal", () => {
  it("keeps the nodes down to a depth, re-indexing parents", () => {
    const p = proposal([1, 2, 3, 4], [-1, 0, -1, 1]);
    assert.equal(proposalDepth(p), 3);
    const t = truncateProposal(p, 2);
    assert.deepEqual(Array.from(t.tokens), [1, 2, 3]);
    assert.deepEqual(Array.from(t.parents), [-1, 0, -1]);
    assert.equal(truncateProposal(p, 0).tokens.length, 0);
  });
});

// A target over a 5-token vocabulary whose next-token logits depend on the previous token: the rejection
// sampler must reproduce its sampling distribution exactly, whatever was proposed.
const VOCAB = 5;
function targetLogits(prev: number): Float32Array {
  return Float32Array.from({ length: VOCAB }, (_, t) => Math.sin(prev * 1.7 + t * 2.3) * 2);
}

/** Logit rows for a proposal: row 0 after `last`, row 1 + i after node i. */
function rowsFor(p: Proposal, last: number): Float32Array {
  const rows = new Float32Array((p.tokens.length + 1) * VOCAB);
  rows.set(targetLogits(last), 0);
  for (const [i, t] of p.tokens.entries()) rows.set(targetLogits(t), (i + 1) * VOCAB);
  return rows;
}

/** Emitted tokens of one step: the accepted path then the bonus. */
function emitted(p: Proposal, v: { accepted: number[]; bonus: number }): number[] {
  return [...v.accepted.map((i) => p.tokens[i] as number), v.bonus];
}

function assertClose(observed: number[], expected: ArrayLike<number>, trials: number, what: string) {
  for (let t = 0; t < VOCAB; t++) {
    const freq = (observed[t] as number) / trials;
    // 5 standard deviations of a binomial proportion: fails on a wrong distribution, not by chance.
    const e = expected[t] as number;
    const tol = 5 * Math.sqrt((e * (1 - e)) / trials) + 1e-3;
    assert.ok(
      Math.abs(freq - e) <= tol,
      `${what}: token ${t} seen ${freq.toFixed(4)}, expected ${e.toFixed(4)}`,
    );
  }
}

describe("verifySampled", () => {
  const last = 2;
  const Q1 = Float32Array.from([0.5, 0.1, 0.1, 0.2, 0.1]);
  const Q2 = Float32Array.from([0.05, 0.05, 0.8, 0.05, 0.05]);
  const NAN_Q = new Float32Array(VOCAB).fill(Number.NaN);
  const NO_MASS_ON_1 = Float32Array.from([0.5, 0, 0.2, 0.2, 0.1]);
  const DOUBLED_Q1 = Q1.map((q) => q * 2);
  const cases: {
    name: string;
    sampling: { temperature: number; topK?: number; topP?: number };
    draw: (rng: Rng) => Proposal;
    /** A drafter whose claims are refused: its drafts may never be accepted, so only the output is checked. */
    adversarial?: boolean;
  }[] = [
    { name: "a point-mass chain", sampling: { temperature: 1 }, draw: () => proposal([2, 4, 0], [-1, 0, 1]) },
    {
      name: "a point-mass tree with siblings (one a duplicate)",
      sampling: { temperature: 0.8 },
      draw: () => proposal([4, 1, 4, 3, 0], [-1, -1, -1, 0, 1]),
    },
    {
      // Sampled drafts are exact only when the tokens really are draws from the distributions given.
      name: "a chain sampled from its draft distributions, under top-k and top-p",
      sampling: { temperature: 1.3, topK: 4, topP: 0.9 },
      draw: (rng) => proposal([drawFrom(Q1, rng), drawFrom(Q2, rng)], [-1, 0], [Q1, Q2]),
    },
    // An adversarial drafter: whatever probabilities it claims, the output must stay the target's.
    {
      name: "draft distributions full of NaN",
      adversarial: true,
      sampling: { temperature: 1 },
      draw: () => proposal([4, 1], [-1, 0], [NAN_Q, NAN_Q]),
    },
    {
      name: "a draft distribution with no mass on the drafted token",
      adversarial: true,
      sampling: { temperature: 1 },
      draw: () => proposal([1, 4], [-1, 0], [NO_MASS_ON_1, Q2]),
    },
    {
      name: "draft distributions that sum to 2 and to 0",
      adversarial: true,
      sampling: { temperature: 0.9 },
      draw: (rng) => proposal([drawFrom(Q1, rng), 3], [-1, 0], [DOUBLED_Q1, new Float32Array(VOCAB)]),
    },
    {
      name: "point masses whose draft probabilities are NaN, above 1 and below 0",
      adversarial: true,
      sampling: { temperature: 1 },
      draw: () => {
        const p = proposal([4, 0, 3], [-1, 0, -1]);
        p.draftProbs = Float32Array.from([Number.NaN, 1.5, -0.25]);
        return p;
      },
    },
  ];
  for (const c of cases) {
    it(`follows the target's distribution exactly for ${c.name}`, () => {
      const trials = 40_000;
      const rng = new Rng(7);
      const first = new Array(VOCAB).fill(0);
      // The second token, per first token, over the steps that accepted a first proposal.
      const second = Array.from({ length: VOCAB }, () => new Array(VOCAB).fill(0));
      for (let i = 0; i < trials; i++) {
        const p = c.draw(rng);
        const v = verifySampled(p, rowsFor(p, last), VOCAB, c.sampling, rng);
        const out = emitted(p, v);
        const [a, b] = out as [number, number];
        first[a] = (first[a] as number) + 1;
        const row = second[a] as number[];
        if (v.accepted.length > 0) row[b] = (row[b] as number) + 1;
      }
      assertClose(first, samplingProbs(targetLogits(last), c.sampling), trials, "first token");
      if (c.adversarial) return;
      const counts = second.map((row) => row.reduce((a, b) => a + b, 0));
      const given = counts.indexOf(Math.max(...counts));
      assert.ok((counts[given] as number) > 2000, `only ${counts[given]} steps accepted a first proposal`);
      assertClose(
        second[given] as number[],
        samplingProbs(targetLogits(given), c.sampling),
        counts[given] as number,
        `second token after ${given}`,
      );
    });
  }

  it("at temperature 0 gives the greedy verdict without drawing", () => {
    const p = proposal([1, 3], [-1, 0]);
    const rows = rowsFor(p, last);
    const a = new Rng(1);
    const v = verifySampled(p, rows, VOCAB, { temperature: 0 }, a);
    const argmaxes = [0, 1, 2].map((r) => {
      const row = Array.from(rows.subarray(r * VOCAB, (r + 1) * VOCAB));
      return row.indexOf(Math.max(...row));
    });
    assert.deepEqual(v, verifyGreedy(p, argmaxes));
    assert.equal(a.nextU32(), new Rng(1).nextU32(), "greedy verification must not consume the generator");
  });
});
