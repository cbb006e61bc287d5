// The host side of eagle drafting: a draft's nodes, the top-k of a logits row, and the final choice of a
// best-first tree within the node budget (EAGLE-2's rule: grow top-k per expanded node, then keep the
// nodes of highest path probability).
import type { Proposal } from "./drafter.js";

export interface DraftNode {
  token: number;
  /** Index of the parent node in the draft, -1 for a child of the last committed token. */
  parent: number;
  /** 1 for a child of the committed token. */
  depth: number;
  /** log q(path to and including this node) under the head (temperature 1). */
  pathLogProb: number;
  /** q(token | ancestors) as handed to verification: 1 for a point mass, the sampling prob otherwise. */
  prob: number;
  /** The distribution it was drawn from (sampled chains only). */
  dist?: Float32Array;
  /** The head's output hidden of this node's row, once the node was expanded. */
  hidden?: Float32Array;
}

/**
 * The `budget` nodes of highest path probability, as a Proposal: parents before children (by depth),
 * siblings most likely first. A child's path probability never exceeds its parent's, and ties go to the
 * shallower node, so the chosen set is closed under ancestors.
 */
export function bestFirstProposal(nodes: readonly DraftNode[], budget: number): Proposal {
  const chosen = nodes
    .map((_, i) => i)
    .sort(
      (a, b) =>
        (nodes[b] as DraftNode).pathLogProb - (nodes[a] as DraftNode).pathLogProb ||
        (nodes[a] as DraftNode).depth - (nodes[b] as DraftNode).depth ||
        a - b,
    )
    .slice(0, Math.max(0, budget));
  const index = new Map<number, number>();
  const order: number[] = [];
  // By depth, then by the parent's place in the output, then most likely first.
  const byDepth = [...chosen].sort((a, b) => (nodes[a] as DraftNode).depth - (nodes[b] as DraftNode).depth);
  const groups = new Map<number, number[]>();
  for (const i of byDepth) {
    const p = (nodes[i] as DraftNode).parent;
    if (p !== -1 && !chosen.includes(p)) continue; // cannot happen (ancestor-closed); kept safe
    const list = groups.get(p) ?? [];
    list.push(i);
    groups.set(p, list);
  }
  const visit = (parent: number) => {
    const kids = (groups.get(parent) ?? []).sort(
      (a, b) => (nodes[b] as DraftNode).pathLogProb - (nodes[a] as DraftNode).pathLogProb || a - b,
    );
    for (const k of kids) {
      index.set(k, order.length);
      order.push(k);
    }
  };
  // Breadth-first so that every parent is placed before its children.
  visit(-1);
  for (let at = 0; at < order.length; at++) visit(order[at] as number);
  return toProposal(nodes, order, index);
}

/** A chain (each node the parent of the next) as a Proposal. */
export function chainProposal(nodes: readonly DraftNode[]): Proposal {
  const order = nodes.map((_, i) => i);
  return toProposal(nodes, order, new Map(order.map((i) => [i, i])));
}

function toProposal(
  nodes: readonly DraftNode[],
  order: readonly number[],
  index: ReadonlyMap<number, number>,
): Proposal {
  const pick = order.map((i) => nodes[i] as DraftNode);
  const proposal: Proposal = {
    tokens: Int32Array.from(pick, (n) => n.token),
    parents: Int32Array.from(pick, (n) => (n.parent === -1 ? -1 : (index.get(n.parent) as number))),
    draftProbs: Float32Array.from(pick, (n) => n.prob),
  };
  if (pick.some((n) => n.dist !== undefined)) proposal.draftDists = pick.map((n) => n.dist);
  return proposal;
}
