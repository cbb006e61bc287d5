// Lossless verification of a proposed token tree against the target's distributions from one pass.
//
// Rows: the target pass gives a distribution at the sequence's last committed token (row 0, the
// distribution of the first proposed depth) and one at every proposed node i (row 1 + i, the distribution
// of its children). Walking down from the root:
// - greedy (temperature 0): take the child whose token is the target's argmax; stop at the first node
//   with no such child and emit the argmax there (Leviathan et al.'s greedy case). The output is exactly
//   the target's greedy output.
// - sampling: recursive rejection sampling (Leviathan et al. / Chen et al., generalised to trees as in
//   SpecInfer): with p the target's sampling distribution at the node, try the children in order; child x,
//   drawn from q (a point mass for deterministic drafters), is accepted with probability min(1, p(x)/q(x));
//   on rejection p becomes norm(max(p - q, 0)) and the next child is tried against it. If every child is
//   rejected, the emitted token is drawn from what is left of p. Each emitted token is then distributed
//   exactly as the target's sampling distribution, whatever the drafter proposed.
// A drafter's probabilities are not trusted: a child whose q is not a distribution (a value that is not
// finite or lies outside [0, 1], a sum away from 1, no mass on the child's own token, the wrong length) is
// rejected outright and p is left as it was. Rejecting a draft with probability 1 and drawing from p is
// exact, so no drafter, however broken or hostile, can change the output distribution.
import { argmax, drawFrom, type Rng, type SamplingParams, samplingProbs } from "@specloop/engine";
import type { Proposal } from "./drafter.js";

export interface Verdict {
  /** Accepted proposal nodes (indices into proposal.tokens), root first: each the parent of the next. */
  accepted: number[];
  /** The target's own token after the accepted path (the correction, or the bonus after a full accept). */
  bonus: number;
}

/**
 * Why a proposal cannot go to the target (undefined: it can): array lengths, parents that come before their
 * children, token ids inside the vocabulary, at most `budget` nodes. Checked before the pass, so a drafter's
 * malformed proposal costs its sequence a plain step and never fails the batch.
 */
export function checkProposal(proposal: Proposal, vocab: number, budget: number): string | undefined {
  const n = proposal.tokens.length;
  if (n > budget) return `${n} nodes over a budget of ${budget}`;
  if (proposal.parents.length !== n || proposal.draftProbs.length !== n) {
    return `${n} tokens, ${proposal.parents.length} parents, ${proposal.draftProbs.length} draft probs`;
  }
  if (proposal.draftDists !== undefined && proposal.draftDists.length !== n) {
    return `${proposal.draftDists.length} draft distributions for ${n} tokens`;
  }
  for (let i = 0; i < n; i++) {
    const t = proposal.tokens[i] as number;
    if (!(t >= 0 && t < vocab)) return `node ${i}: token ${t} is outside the vocabulary [0, ${vocab})`;
    const p = proposal.parents[i] as number;
    if (!(p >= -1 && p < i)) return `node ${i}: parent ${p} does not come before it`;
  }
  return undefined;
}

/** Children of each node of a proposal; index 0 is the root (the last committed token), node i is 1 + i. */
export function childrenOf(proposal: Proposal): number[][] {
  const n = proposal.tokens.length;
  if (proposal.parents.length !== n || proposal.draftProbs.length !== n) {
    throw new RangeError(
      `proposal: ${n} tokens, ${proposal.parents.length} parents, ${proposal.draftProbs.length} draft probs`,
    );
  }
  const children: number[][] = Array.from({ length: n + 1 }, () => []);
  proposal.parents.forEach((p, i) => {
    if (!(Number.isInteger(p) && p >= -1 && p < i)) {
      throw new RangeError(`proposal: node ${i} has parent ${p}; parents must come before their children`);
    }
    (children[p + 1] as number[]).push(i);
  });
  return children;
}

/** Depth of the deepest node (0 for an empty proposal): the most tokens a step can accept. */
export function proposalDepth(proposal: Proposal): number {
  const depth = new Int32Array(proposal.tokens.length);
  let max = 0;
  proposal.parents.forEach((p, i) => {
    depth[i] = p === -1 ? 1 : (depth[p] as number) + 1;
    max = Math.max(max, depth[i] as number);
  });
  return max;
}

/** Keeps only the nodes at depth <= maxDepth (a prefix-closed subset, so parents stay before children). */
export function truncateProposal(proposal: Proposal, maxDepth: number): Proposal {
  const n = proposal.tokens.length;
  const depth = new Int32Array(n);
  const keep: number[] = [];
  const newIndex = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const p = proposal.parents[i] as number;
    const d = p === -1 ? 1 : (depth[p] as number) + 1;
    depth[i] = d;
    if (d <= maxDepth) {
      newIndex[i] = keep.length;
      keep.push(i);
    }
  }
  if (keep.length === n) return proposal;
  const out: Proposal = {
    tokens: Int32Array.from(keep, (i) => proposal.tokens[i] as number),
    parents: Int32Array.from(keep, (i) => {
      const p = proposal.parents[i] as number;
      return p === -1 ? -1 : (newIndex[p] as number);
    }),
    draftProbs: Float32Array.from(keep, (i) => proposal.draftProbs[i] as number),
  };
  if (proposal.draftDists !== undefined) {
    const dists = proposal.draftDists;
    out.draftDists = keep.map((i) => dists[i]);
  }
  return out;
}

/**
 * Greedy verification from the target's argmax at each row (row 0: the root, row 1 + i: node i).
 * Needs only the argmaxes, so a backend can answer without reading whole rows back.
 */
export function verifyGreedy(proposal: Proposal, rowArgmax: ArrayLike<number>): Verdict {
  const children = childrenOf(proposal);
  if (rowArgmax.length !== proposal.tokens.length + 1) {
    throw new RangeError(`verifyGreedy: ${rowArgmax.length} rows for ${proposal.tokens.length} nodes`);
  }
  const accepted: number[] = [];
  let row = 0;
  for (;;) {
    const want = rowArgmax[row] as number;
    const next = (children[row] as number[]).find((c) => proposal.tokens[c] === want);
    if (next === undefined) return { accepted, bonus: want };
    accepted.push(next);
    row = next + 1;
  }
}

/**
 * Sampled verification (recursive rejection sampling) from the target's logits, row-major [1 + nodes,
 * vocab], under the request's sampling parameters (temperature > 0; top-k and top-p are part of p, so
 * the output follows exactly the distribution plain sampling would draw from).
 */
export function verifySampled(
  proposal: Proposal,
  logits: Float32Array,
  vocab: number,
  sampling: SamplingParams,
  rng: Rng,
): Verdict {
  const children = childrenOf(proposal);
  const n = proposal.tokens.length;
  if (logits.length !== (n + 1) * vocab) {
    throw new RangeError(`verifySampled: ${logits.length} logits for ${n + 1} rows of ${vocab}`);
  }
  if (sampling.temperature === 0) {
    const rowArgmax = Array.from({ length: n + 1 }, (_, r) =>
      argmax(logits.subarray(r * vocab, (r + 1) * vocab)),
    );
    return verifyGreedy(proposal, rowArgmax);
  }
  const accepted: number[] = [];
  let row = 0;
  for (;;) {
    let p = samplingProbs(logits.subarray(row * vocab, (row + 1) * vocab), sampling);
    let next: number | undefined;
    for (const c of children[row] as number[]) {
      const x = proposal.tokens[c] as number;
      const q = proposal.draftDists?.[c];
      // Not a distribution the draft could have come from: rejected, p unchanged (exact).
      if (!trustedDraft(proposal.draftProbs[c] as number, q, x, vocab)) continue;
      const qx = q === undefined ? 1 : (q[x] as number);
      // u < p/q accepts with probability min(1, p/q).
      if (rng.next() * qx < (p[x] as number)) {
        next = c;
        break;
      }
      p = residual(p, q, x);
    }
    if (next === undefined) return { accepted, bonus: drawFrom(p, rng) };
    accepted.push(next);
    row = next + 1;
  }
}

/** Largest distance from 1 at which a draft distribution's sum is still taken as rounding. */
const DIST_SUM_TOLERANCE = 1e-3;

/**
 * Whether node x's draft can be verified against: its probability a number in [0, 1], and its distribution
 * (when sampled) vocab-long, every entry in [0, 1], summing to 1, with mass on x.
 */
function trustedDraft(prob: number, q: Float32Array | undefined, x: number, vocab: number): boolean {
  if (!(prob >= 0 && prob <= 1)) return false;
  if (q === undefined) return true;
  if (q.length !== vocab || !((q[x] as number) > 0)) return false;
  let sum = 0;
  for (let i = 0; i < q.length; i++) {
    const v = q[i] as number;
    if (!(v >= 0 && v <= 1)) return false;
    sum += v;
  }
  return Math.abs(sum - 1) <= DIST_SUM_TOLERANCE;
}

/** norm(max(p - q, 0)); q absent means a point mass on `token`. */
function residual(p: Float64Array, q: Float32Array | undefined, token: number): Float64Array {
  const out = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++) {
    const qi = q === undefined ? (i === token ? 1 : 0) : (q[i] as number);
    const r = Math.max((p[i] as number) - qi, 0);
    out[i] = r;
    sum += r;
  }
  // p <= q everywhere means rejection had probability 0; only rounding gets here. Keep p then.
  if (!(sum > 1e-12)) return p;
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / sum;
  return out;
}
