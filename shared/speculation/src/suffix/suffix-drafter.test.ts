import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GREEDY, Rng } from "@specloop/engine";
import type { Proposal, SequenceView } from "../drafter.js";
import { SuffixOptionsError } from "./errors.js";
import { speculate } from "./speculate.js";
import { SuffixDrafter } from "./suffix-drafter.js";
import { SuffixTree } from "./suffix-tree.js";

function view(id: string, tokens: number[], promptLength = tokens.length): SequenceView {
  return { id, tokens, promptLength, sampling: GREEDY, remaining: 1000 };
}

/** Parents before children, -1 at the top, distinct tokens among siblings, within the budget. */
function assertValidTree(p: Proposal, budget: number): void {
  const n = p.tokens.length;
  assert.ok(n <= budget, `${n} nodes over a budget of ${budget}`);
  assert.equal(p.parents.length, n);
  assert.equal(p.draftProbs.length, n);
  assert.equal(p.draftDists, undefined, "deterministic proposals are point masses");
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const par = p.parents[i]!;
    assert.ok(par >= -1 && par < i, `node ${i} has parent ${par}`);
    const key = `${par}:${p.tokens[i]}`;
    assert.ok(!seen.has(key), `duplicate sibling ${key}`);
    seen.add(key);
    assert.ok(p.draftProbs[i]! > 0 && p.draftProbs[i]! <= 1);
  }
}

function pathOf(p: { tokens: ArrayLike<number>; parents: ArrayLike<number> }, i: number): number[] {
  const out: number[] = [];
  for (let k = i; k !== -1; k = p.parents[k]!) out.unshift(p.tokens[k]!);
  return out;
}

/** Occurrences of s followed by some token, by brute force. */
function followedCount(docs: readonly (readonly number[])[], s: readonly number[]): number {
  let n = 0;
  for (const d of docs) {
    for (let p = 0; p + s.length < d.length; p++) if (s.every((t, i) => d[p + i] === t)) n++;
  }
  return n;
}

function occurrences(docs: readonly (readonly number[])[], s: readonly number[]): number {
  let n = 0;
  for (const d of docs) {
    for (let p = 0; p + s.length <= d.length; p++) if (s.every((t, i) => d[p + i] === t)) n++;
  }
  return n;
}

describe("suffix drafter", () => {
  test("suffix drafter - speculation probabilities are the brute-force conditional frequencies", () => {
    const rng = new Rng(31);
    const docs = Array.from({ length: 12 }, () => Array.from({ length: 40 }, () => rng.nextU32() % 4));
    const tree = new SuffixTree({ maxDepth: 12, maxTokens: 10_000 });
    for (const d of docs) tree.appendDocument(d);
    let checked = 0;
    for (let trial = 0; trial < 50; trial++) {
      const ctx = Array.from({ length: 6 }, () => rng.nextU32() % 4);
      const match = tree.longestMatch(ctx, ctx.length, 4);
      if (match.length === 0) continue;
      const s = ctx.slice(ctx.length - match.length);
      const spec = speculate(tree, match.pos, 10, 0.05);
      let score = 0;
      let pathProbs: number[] = [];
      for (let i = 0; i < spec.tokens.length; i++) {
        const path = pathOf(spec, i);
        const prefix = [...s, ...path.slice(0, -1)];
        const want = occurrences(docs, [...prefix, path.at(-1)!]) / followedCount(docs, prefix);
        assert.ok(
          Math.abs(spec.probs[i]! - want) < 1e-12,
          `P(${path.at(-1)} | ${prefix}) ${spec.probs[i]} vs ${want}`,
        );
        const par = spec.parents[i]!;
        const pp = (par === -1 ? 1 : pathProbs[par]!) * spec.probs[i]!;
        pathProbs = [...pathProbs, pp];
        assert.ok(pp >= 0.05 - 1e-12, "nodes below minTokenProb are pruned");
        score += pp;
        checked++;
      }
      assert.ok(Math.abs(spec.score - score) < 1e-9);
      // Best-first: path probabilities come out in non-increasing order.
      for (let i = 1; i < pathProbs.length; i++) assert.ok(pathProbs[i]! <= pathProbs[i - 1]! + 1e-12);
    }
    assert.ok(checked > 50, `only ${checked} nodes checked`);
  });

  test("suffix drafter - a repetitive prompt gets the repetition proposed as a chain", async () => {
    const drafter = new SuffixDrafter();
    const unit = [10, 11, 12, 13, 14, 15, 16];
    const tokens = [...Array.from({ length: 5 }, () => unit).flat(), 10, 11];
    const [p] = await drafter.propose([{ seq: view("a", tokens), budget: 6, rng: new Rng(0) }]);
    assert.deepEqual([...p!.tokens], [12, 13, 14, 15, 16, 10]);
    assert.deepEqual([...p!.parents], [-1, 0, 1, 2, 3, 4]);
    assert.deepEqual([...p!.draftProbs], [1, 1, 1, 1, 1, 1]);
    assert.equal(drafter.lastMatch("a")?.source, "request");
  });

  test("suffix drafter - the fleet's outputs feed other requests (every node learns from every node)", () => {
    // maxSpecOffset: room for both branches past a 3-token match.
    const drafter = new SuffixDrafter({ maxSpecOffset: 8 });
    const answer = [100, 101, 102, 103, 104, 105, 106, 107];
    // Three outputs agree after [100, 101, 102]; one goes elsewhere.
    for (let i = 0; i < 3; i++) drafter.ingestFleetOutput([7, 8, ...answer]);
    drafter.ingestFleetOutput([100, 101, 102, 200, 201]);
    const p = drafter.proposeOne(view("b", [1, 2, 3, 100, 101, 102]), 8);
    assertValidTree(p, 8);
    assert.equal(drafter.lastMatch("b")?.source, "fleet");
    assert.equal(p.tokens[0], 103, "the most frequent continuation is first");
    assert.ok(Math.abs(p.draftProbs[0]! - 0.75) < 1e-6);
    assert.ok([...p.tokens].includes(200), "the minority continuation is a sibling branch");
    const sibling = [...p.tokens].indexOf(200);
    assert.equal(p.parents[sibling], -1);
    assert.ok(sibling > 0, "siblings in order of preference");
  });

  test("suffix drafter - proposals are valid trees within every budget, and deterministic", () => {
    const rng = new Rng(3);
    // Short matches over a uniform history have many continuations: a bushy tree.
    const drafter = new SuffixDrafter({ minTokenProb: 0, maxMatch: 2, maxSpecFactor: 20 });
    for (let i = 0; i < 50; i++) {
      drafter.ingestFleetOutput(Array.from({ length: 60 }, () => rng.nextU32() % 6));
    }
    const seq = view(
      "c",
      Array.from({ length: 80 }, () => rng.nextU32() % 6),
    );
    let sawBranching = false;
    for (let budget = 0; budget <= 40; budget += 3) {
      const p = drafter.proposeOne(seq, budget);
      assertValidTree(p, budget);
      if (budget === 0) assert.equal(p.tokens.length, 0);
      if (new Set(p.parents).size < p.parents.length) sawBranching = true;
      const again = drafter.proposeOne(seq, budget);
      assert.deepEqual([...again.tokens], [...p.tokens]);
      assert.deepEqual([...again.parents], [...p.parents]);
    }
    assert.ok(sawBranching, "uncertain history gives a branching tree");
  });

  test("suffix drafter - the speculation length adapts to the match length", () => {
    const drafter = new SuffixDrafter();
    const doc = Array.from({ length: 40 }, (_, i) => 1000 + i);
    drafter.ingestFleetOutput(doc);
    // A 2-token match allows 2 nodes; a 10-token match allows 10.
    assert.equal(drafter.proposeOne(view("s", [5, 1000, 1001]), 30).tokens.length, 2);
    assert.equal(drafter.proposeOne(view("l", [5, ...doc.slice(0, 10)]), 30).tokens.length, 10);
    assert.equal(drafter.lastMatch("l")?.matchLength, 10);
    assert.ok(drafter.confidence("l") > drafter.confidence("s"), "a longer match is more confident");
    assert.equal(drafter.confidence("unseen"), 1);
    drafter.proposeOne(view("none", [77777]), 4);
    assert.equal(drafter.confidence("none"), 0);
  });

  test("suffix drafter - observe keeps the request's tree in step; release frees it", () => {
    const drafter = new SuffixDrafter();
    const tokens = [1, 2, 3, 4, 5, 9, 1, 2];
    drafter.observe(view("r", tokens));
    // A 2-token match ([1, 2]) allows 2 nodes.
    assert.deepEqual([...drafter.proposeOne(view("r", tokens), 5).tokens], [3, 4]);
    // New committed tokens extend the tree: the match grows to 8 tokens and the proposal with it.
    tokens.push(3, 4, 5, 9, 1, 2);
    drafter.observe(view("r", tokens));
    assert.deepEqual([...drafter.proposeOne(view("r", tokens), 5).tokens], [3, 4, 5, 9, 1]);
    assert.equal(drafter.lastMatch("r")?.matchLength, 8);
    // A sequence that changed under the same id is rebuilt rather than trusted.
    drafter.observe(view("r", [7, 8, 7, 8, 7]));
    assert.deepEqual([...drafter.proposeOne(view("r", [7, 8, 7, 8, 7]), 2).tokens], [8, 7]);
    assert.equal(drafter.heldRequests, 1);
    drafter.release("r");
    assert.equal(drafter.heldRequests, 0);
    assert.equal(drafter.lastMatch("r"), undefined);
  });

  test("suffix drafter - the fleet's tree stays within fleetMaxTokens", () => {
    const rng = new Rng(8);
    const drafter = new SuffixDrafter({ fleetMaxTokens: 5000 });
    for (let i = 0; i < 300; i++) {
      drafter.ingestFleetOutput(Array.from({ length: 50 }, () => rng.nextU32() % 1000));
    }
    const s = drafter.fleetStats();
    assert.ok(s.tokens <= 5000 && s.tokens > 4900, `${s.tokens} tokens held`);
    assert.ok(s.documents === 100);
  });

  test("suffix drafter - bad options and budgets are refused by name", () => {
    assert.throws(() => new SuffixDrafter({ maxMatch: 64 }), SuffixOptionsError);
    assert.throws(() => new SuffixDrafter({ minTokenProb: 2 }), /minTokenProb/);
    assert.throws(() => new SuffixDrafter().proposeOne(view("x", [1]), -1), /budget/);
  });
});
