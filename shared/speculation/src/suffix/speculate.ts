// Growing a speculation tree from a match in a suffix tree (SuffixDecoding's scoring): a candidate's
// score is the product of the empirical conditional probabilities along its path, i.e. the probability,
// under the history's statistics, that the target accepts every token down to it. Candidates are taken
// best-first until the node budget is spent or none is left above the minimum probability, so the tree
// is as deep as the history is confident and as bushy as it is uncertain. The sum of the scores is the
// expected number of accepted tokens under the same statistics: the drafter compares sources by it.
import type { SuffixTree, TreePosition } from "./suffix-tree.js";

export interface Speculation {
  tokens: number[];
  /** Index of each node's parent in these arrays, -1 for a child of the match; parents come first. */
  parents: number[];
  /** Empirical probability of each token given its parent. */
  probs: number[];
  /** Sum over nodes of their path probabilities (expected accepted tokens under the history). */
  score: number;
}

export const EMPTY_SPECULATION: Speculation = Object.freeze({
  tokens: [],
  parents: [],
  probs: [],
  score: 0,
}) as Speculation;

/** A max-heap of candidates, ties broken by insertion order so proposals are deterministic. */
class CandidateHeap {
  readonly score: number[] = [];
  readonly seq: number[] = [];
  readonly node: number[] = [];
  readonly depth: number[] = [];
  readonly parent: number[] = [];
  readonly token: number[] = [];
  readonly cond: number[] = [];
  #heap: number[] = [];

  get size(): number {
    return this.#heap.length;
  }

  push(score: number, node: number, depth: number, parent: number, token: number, cond: number): void {
    const i = this.score.length;
    this.score.push(score);
    this.seq.push(i);
    this.node.push(node);
    this.depth.push(depth);
    this.parent.push(parent);
    this.token.push(token);
    this.cond.push(cond);
    const h = this.#heap;
    h.push(i);
    let k = h.length - 1;
    while (k > 0) {
      const up = (k - 1) >> 1;
      if (!this.#better(h[k]!, h[up]!)) break;
      [h[k], h[up]] = [h[up]!, h[k]!];
      k = up;
    }
  }

  pop(): number {
    const h = this.#heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let k = 0;
      for (;;) {
        const l = 2 * k + 1;
        const r = l + 1;
        let best = k;
        if (l < h.length && this.#better(h[l]!, h[best]!)) best = l;
        if (r < h.length && this.#better(h[r]!, h[best]!)) best = r;
        if (best === k) break;
        [h[k], h[best]] = [h[best]!, h[k]!];
        k = best;
      }
    }
    return top;
  }

  #better(a: number, b: number): boolean {
    const sa = this.score[a]!;
    const sb = this.score[b]!;
    return sa > sb || (sa === sb && a < b);
  }
}

/**
 * Best-first growth from `from` (a position with a continuation, see SuffixTree.longestMatch): at most
 * maxNodes nodes, each with path probability >= minProb. Siblings come out in order of preference.
 */
export function speculate(
  tree: SuffixTree,
  from: TreePosition,
  maxNodes: number,
  minProb: number,
): Speculation {
  if (maxNodes <= 0) return EMPTY_SPECULATION;
  const out: Speculation = { tokens: [], parents: [], probs: [], score: 0 };
  const heap = new CandidateHeap();
  const kids: number[] = [];
  const expand = (pos: TreePosition, pathScore: number, parentIdx: number): void => {
    const room = maxNodes - out.tokens.length;
    if (room <= 0) return;
    if (pos.depth < tree.depth(pos.node)) {
      // Inside an edge: every occurrence continues with the same token.
      if (pathScore >= minProb) {
        heap.push(pathScore, pos.node, pos.depth + 1, parentIdx, tree.tokenAt(pos.node, pos.depth + 1), 1);
      }
      return;
    }
    const total = tree.childSum(pos.node);
    if (total === 0) return;
    // Only children that can clear minProb; the most frequent first, lower token id on ties.
    const minCount = (minProb / pathScore) * total;
    kids.length = 0;
    for (let c = tree.firstChild(pos.node); c !== -1; c = tree.nextSibling(c)) {
      if (tree.count(c) >= minCount) kids.push(c);
    }
    kids.sort((a, b) => tree.count(b) - tree.count(a) || tree.firstToken(a) - tree.firstToken(b));
    const n = Math.min(kids.length, room);
    for (let i = 0; i < n; i++) {
      const c = kids[i]!;
      const cond = tree.count(c) / total;
      heap.push(pathScore * cond, c, pos.depth + 1, parentIdx, tree.firstToken(c), cond);
    }
  };
  expand(from, 1, -1);
  while (heap.size > 0 && out.tokens.length < maxNodes) {
    const i = heap.pop();
    const idx = out.tokens.length;
    out.tokens.push(heap.token[i]!);
    out.parents.push(heap.parent[i]!);
    out.probs.push(heap.cond[i]!);
    out.score += heap.score[i]!;
    expand({ node: heap.node[i]!, depth: heap.depth[i]! }, heap.score[i]!, idx);
  }
  return out;
}
