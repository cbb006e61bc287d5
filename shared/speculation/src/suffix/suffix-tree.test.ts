import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Rng } from "@specloop/engine";
import { ChildIndex } from "./child-index.js";
import { SuffixTreeError } from "./errors.js";
import { SuffixTree } from "./suffix-tree.js";

function randomTokens(rng: Rng, n: number, alphabet: number): number[] {
  return Array.from({ length: n }, () => rng.nextU32() % alphabet);
}

/** Occurrences of s in the documents, counted by brute force. */
function bruteCount(docs: readonly (readonly number[])[], s: readonly number[]): number {
  let n = 0;
  for (const d of docs) {
    for (let p = 0; p + s.length <= d.length; p++) {
      let ok = true;
      for (let i = 0; i < s.length && ok; i++) ok = d[p + i] === s[i];
      if (ok) n++;
    }
  }
  return n;
}

/** Every string over the alphabet of length 1..maxLen. */
function allStrings(alphabet: number, maxLen: number): number[][] {
  const out: number[][] = [];
  let level: number[][] = [[]];
  for (let len = 1; len <= maxLen; len++) {
    level = level.flatMap((s) => Array.from({ length: alphabet }, (_, t) => [...s, t]));
    out.push(...level);
  }
  return out;
}

function assertCountsMatch(
  tree: SuffixTree,
  docs: readonly (readonly number[])[],
  strings: number[][],
): void {
  for (const s of strings) {
    const want = bruteCount(docs, s);
    const got = tree.occurrences(s);
    if (got !== want) assert.fail(`occurrences(${s.join(",")}) = ${got}, brute force ${want}`);
  }
}

function heldDocs(tree: SuffixTree): number[][] {
  return tree.documentIds().map((id) => [...tree.documentTokens(id)!]);
}

describe("suffix tree", () => {
  test("suffix tree - child index survives random inserts and deletes (backward shift)", () => {
    const rng = new Rng(7);
    const index = new ChildIndex();
    const ref = new Map<string, number>();
    for (let i = 0; i < 20000; i++) {
      const p = rng.nextU32() % 50;
      const t = rng.nextU32() % 40;
      const key = `${p}:${t}`;
      if (rng.next() < 0.4) {
        assert.equal(index.delete(p, t), ref.delete(key));
      } else {
        index.set(p, t, i);
        ref.set(key, i);
      }
    }
    assert.equal(index.size, ref.size);
    for (let p = 0; p < 50; p++) {
      for (let t = 0; t < 40; t++) assert.equal(index.get(p, t), ref.get(`${p}:${t}`) ?? -1);
    }
  });

  test("suffix tree - counts equal brute force after appends and evictions (random streams)", () => {
    const rng = new Rng(1234);
    const alphabet = 3;
    const maxDepth = 5;
    const strings = allStrings(alphabet, maxDepth);
    const tree = new SuffixTree({ maxDepth, maxTokens: 120 });
    for (let round = 0; round < 40; round++) {
      tree.appendDocument(randomTokens(rng, 1 + (rng.nextU32() % 40), alphabet));
      assert.ok(tree.stats().tokens <= 120, "held tokens stay within maxTokens");
      assertCountsMatch(tree, heldDocs(tree), strings);
    }
    assert.ok(tree.stats().documents < 40, "old documents were evicted");
  });

  test("suffix tree - repetitive documents (splits, merges) keep exact counts", () => {
    const rng = new Rng(99);
    const strings = allStrings(2, 6);
    const tree = new SuffixTree({ maxDepth: 6, maxTokens: 80 });
    for (let round = 0; round < 30; round++) {
      const period = 1 + (rng.nextU32() % 4);
      const unit = randomTokens(rng, period, 2);
      const doc = Array.from({ length: 5 + (rng.nextU32() % 30) }, (_, i) => unit[i % period]!);
      if (rng.next() < 0.3) doc[rng.nextU32() % doc.length] = 1 - doc[0]!;
      tree.appendDocument(doc);
      assertCountsMatch(tree, heldDocs(tree), strings);
    }
  });

  test("suffix tree - a live document grown token by token matches brute force at every step", () => {
    const rng = new Rng(5);
    const strings = allStrings(3, 4);
    const tree = new SuffixTree({ maxDepth: 4, maxTokens: Number.POSITIVE_INFINITY });
    tree.openLiveDocument();
    const doc: number[] = [];
    for (let i = 0; i < 150; i++) {
      // Stretches of repetition, so in-place leaf growth and splits both happen.
      const t = i % 20 < 10 ? (doc[doc.length - 3] ?? 0) : rng.nextU32() % 3;
      doc.push(t);
      tree.extendLive([t]);
      if (i % 5 === 0 || i < 20) assertCountsMatch(tree, [doc], strings);
    }
    assertCountsMatch(tree, [doc], strings);
  });

  test("suffix tree - evicting everything frees every node and index entry; memory stays bounded", () => {
    const rng = new Rng(42);
    const tree = new SuffixTree({ maxDepth: 16, maxTokens: 2000 });
    let peakCapacity = 0;
    for (let round = 0; round < 400; round++) {
      tree.appendDocument(randomTokens(rng, 20 + (rng.nextU32() % 60), 50));
      const s = tree.stats();
      assert.ok(s.tokens <= 2000);
      // A compressed tree holds at most about two nodes per held suffix.
      assert.ok(s.nodes <= 2 * s.tokens + 1, `${s.nodes} nodes for ${s.tokens} tokens`);
      if (round === 100) peakCapacity = s.nodeCapacity;
    }
    // After the tree filled up, evicted nodes are reused rather than the arrays growing.
    assert.ok(tree.stats().nodeCapacity <= peakCapacity * 2, "node arrays stop growing once full");
    while (tree.evictOldest()) {}
    assert.deepEqual(tree.stats(), {
      documents: 0,
      tokens: 0,
      nodes: 1,
      nodeCapacity: tree.stats().nodeCapacity,
      indexEntries: 0,
    });
    assert.equal(tree.occurrences([1]), 0);
  });

  test("suffix tree - longest match with a continuation equals brute force", () => {
    const rng = new Rng(77);
    const tree = new SuffixTree({ maxDepth: 8, maxTokens: 400 });
    const docs: number[][] = [];
    for (let i = 0; i < 10; i++) {
      const d = randomTokens(rng, 30, 3);
      docs.push(d);
      tree.appendDocument(d);
    }
    const held = heldDocs(tree);
    for (let trial = 0; trial < 300; trial++) {
      const ctx = randomTokens(rng, 12, 3);
      const maxLen = 1 + (trial % 9);
      // Brute force: the longest L whose suffix occurs somewhere followed by another token.
      let want = 0;
      for (let L = Math.min(maxLen, 7, ctx.length); L >= 1 && want === 0; L--) {
        const s = ctx.slice(ctx.length - L);
        const followed = held.some((d) => {
          for (let p = 0; p + L < d.length; p++) if (s.every((t, i) => d[p + i] === t)) return true;
          return false;
        });
        if (followed) want = L;
      }
      assert.equal(tree.longestMatch(ctx, ctx.length, maxLen).length, want, `ctx ${ctx} max ${maxLen}`);
    }
  });

  test("suffix tree - bad input is refused with a clear error", () => {
    assert.throws(() => new SuffixTree({ maxDepth: 0, maxTokens: 10 }), SuffixTreeError);
    const tree = new SuffixTree({ maxDepth: 4, maxTokens: 10 });
    assert.throws(() => tree.appendDocument([1, -2]), /token ids must be integers/);
    assert.throws(() => tree.appendDocument([1.5]), /token ids must be integers/);
    tree.openLiveDocument();
    assert.throws(() => tree.appendDocument([1]), /live document is open/);
    assert.throws(() => tree.evictOldest(), /cannot evict/);
  });
});
