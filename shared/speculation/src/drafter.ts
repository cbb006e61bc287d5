// The contract between the speculative decoding loop (decoder.ts) and the drafters that feed it: suffix
// (day 0, no training), eagle (the learned head), draft-model (a small model on the same tokenizer),
// hybrid (suffix where its match is strong, eagle elsewhere) and none. A drafter proposes a token tree per sequence; the target verifies it in one pass; the drafter is
// then told what was committed. Drafters never decide what is generated: verification keeps the output
// exactly the target's (greedy) or exactly distributed as the target's (sampling), whatever they propose.
import type { Rng, SamplingParams } from "@specloop/engine";

export const DRAFTER_KINDS = ["none", "suffix", "eagle", "draft-model", "hybrid"] as const;
export type DrafterKind = (typeof DRAFTER_KINDS)[number];

export function isDrafterKind(s: string): s is DrafterKind {
  return (DRAFTER_KINDS as readonly string[]).includes(s);
}

/**
 * A proposed token tree in flat arrays, parents before children: node i's parent is parents[i], or -1
 * for a child of the sequence's last committed token. A chain is parents[i] = i - 1. Siblings are in the
 * drafter's order of preference (verification tries them in that order).
 */
export interface Proposal {
  tokens: Int32Array;
  parents: Int32Array;
  /** q(token i | its ancestors) under the drafter; 1 for a deterministic drafter. Traces carry it. */
  draftProbs: Float32Array;
  /**
   * For drafts that were sampled: the full distribution (vocab-long, sums to 1) node i was drawn from,
   * so rejection sampling can form the residual max(p - q, 0). An absent array or entry means a point
   * mass on tokens[i] (a deterministic proposal: a suffix match, a top-k branch, a greedy draft).
   */
  draftDists?: readonly (Float32Array | undefined)[];
  /** The drafter that made it, where a composite drafter chose one (hybrid); traces record it per step. */
  source?: DrafterKind;
  /** That drafter's speculator version ("" for one without versions), with `source`. */
  sourceVersion?: string;
}

export const EMPTY_PROPOSAL: Proposal = Object.freeze({
  tokens: new Int32Array(0),
  parents: new Int32Array(0),
  draftProbs: new Float32Array(0),
});

/** What a drafter may read of a sequence. */
export interface SequenceView {
  readonly id: string;
  /** Every committed token: the prompt, then the output so far. */
  readonly tokens: readonly number[];
  readonly promptLength: number;
  readonly sampling: SamplingParams;
  /** Output tokens the request may still produce. */
  readonly remaining: number;
}

export interface DraftRequest {
  seq: SequenceView;
  /** At most this many nodes (0: propose nothing). */
  budget: number;
  /** The sequence's own generator, for drafters that sample. */
  rng: Rng;
}

/**
 * The target's hidden features at committed positions, handed to drafters that learn from them (eagle).
 * Rows are the committed tokens at positions [firstPosition, firstPosition + count) of seq.tokens.
 */
export interface TargetFeatures {
  /** Target layers whose outputs are concatenated per row, in this order. */
  layers: readonly number[];
  firstPosition: number;
  count: number;
  /** [count, layers.length * hidden], f32. */
  data: Float32Array;
}

export interface Drafter {
  readonly kind: DrafterKind;
  /** Learned drafters: the speculator version drafting now (traces record it per step); "" otherwise. */
  readonly version: string;
  /** The version drafting for one sequence, where it differs by sequence (canary routing); default version. */
  versionFor?(seqId: string): string;
  /** Target layers whose features this drafter wants in observe() (empty for most). */
  readonly featureLayers: readonly number[];
  /** One proposal per request, in order. Model drafters batch the requests into shared passes. */
  propose(requests: readonly DraftRequest[]): Promise<Proposal[]>;
  /**
   * After a verification step (or the prefill): seq.tokens is now the committed sequence. The drafter
   * drops whatever it held past it and may learn from the new tokens (and features, when it asked).
   */
  observe(seq: SequenceView, features?: TargetFeatures): void;
  /** The sequence finished or was cancelled: free what the drafter holds for it. */
  release(seqId: string): void;
  /**
   * Optional: the caller will not ask this drafter to propose for the sequence for a while (a composite
   * drafter chose another). It may stop the work observe() does ahead of a proposal (the eagle head's
   * priming) and catch up when asked again; observe() must still be called with every commit.
   */
  rest?(seqId: string): void;
}
