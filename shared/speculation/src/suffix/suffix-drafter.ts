// The day-0 drafter (SuffixDecoding): no model, no training. Two sources of continuations:
//   - the fleet's tree: recent outputs of every node, fed from the trace stream (ingestFleetOutput, for
//     every trace the node consumes, its own included), bounded to fleetMaxTokens with the oldest
//     documents evicted;
//   - the request's own tree: its prompt and output so far, kept in step by observe(), dropped by
//     release().
// Each step matches the longest suffix of the sequence in each tree, grows a speculation tree from each
// match (speculate.ts), and proposes the one with the higher score (expected accepted tokens under its
// history's statistics); on a tie the request's own tree wins, as it does for most repetitive text
// (code edits, quoting the prompt). The two are not blended: their counts come from different
// populations, and a mixed tree's probabilities would mean neither.
import type { Drafter, DraftRequest, Proposal, SequenceView } from "../drafter.js";
import { EMPTY_PROPOSAL } from "../drafter.js";
import { SuffixOptionsError } from "./errors.js";
import { EMPTY_SPECULATION, type Speculation, speculate } from "./speculate.js";
import { SuffixTree } from "./suffix-tree.js";

export interface SuffixDrafterOptions {
  /** Deepest string a tree tells apart: a match plus its speculation fit in it (SuffixDecoding: 64). */
  maxDepth: number;
  /** Longest context suffix matched; at most maxDepth - 1, leaving room to speculate past it. */
  maxMatch: number;
  /** Shortest match worth proposing from. */
  minMatch: number;
  /** Tokens held by the fleet's tree; the oldest documents are evicted past it. */
  fleetMaxTokens: number;
  /** Prompt tokens kept before a fleet output (its context: the output's first tokens can match). */
  fleetPromptContext: number;
  /** Speculation length adapts to the match: at most floor(factor * matchLength + offset) nodes. */
  maxSpecFactor: number;
  maxSpecOffset: number;
  /** Nodes whose path probability falls below this are not proposed. */
  minTokenProb: number;
}

export const DEFAULT_SUFFIX_MAX_DEPTH = 64;
export const DEFAULT_SUFFIX_FLEET_MAX_TOKENS = 1_000_000;

export function defaultSuffixDrafterOptions(): SuffixDrafterOptions {
  return {
    maxDepth: DEFAULT_SUFFIX_MAX_DEPTH,
    maxMatch: 32,
    minMatch: 1,
    fleetMaxTokens: DEFAULT_SUFFIX_FLEET_MAX_TOKENS,
    fleetPromptContext: 0,
    maxSpecFactor: 1,
    maxSpecOffset: 0,
    minTokenProb: 0.1,
  };
}

/** Defaults overlaid with `given`; every key is checked and an error names the first bad one. */
export function parseSuffixDrafterOptions(given: Partial<SuffixDrafterOptions> = {}): SuffixDrafterOptions {
  const o = { ...defaultSuffixDrafterOptions(), ...given };
  const int = (key: keyof SuffixDrafterOptions, min: number, max: number) => {
    const v = o[key];
    if (!(Number.isInteger(v) && v >= min && v <= max)) {
      throw new SuffixOptionsError(key, `expected an integer in [${min}, ${max}], got ${v}`);
    }
  };
  int("maxDepth", 2, 4096);
  int("maxMatch", 1, o.maxDepth - 1);
  int("minMatch", 1, o.maxMatch);
  int("fleetMaxTokens", 1, 2 ** 30);
  int("fleetPromptContext", 0, o.maxDepth);
  for (const key of ["maxSpecFactor", "maxSpecOffset"] as const) {
    if (!(Number.isFinite(o[key]) && o[key] >= 0)) {
      throw new SuffixOptionsError(key, `expected a finite number >= 0, got ${o[key]}`);
    }
  }
  if (!(o.minTokenProb >= 0 && o.minTokenProb <= 1)) {
    throw new SuffixOptionsError("minTokenProb", `expected a number in [0, 1], got ${o.minTokenProb}`);
  }
  return o;
}

export type SuffixSource = "request" | "fleet";

/** What the last proposal for a sequence was built from: the budget policy's confidence input. */
export interface SuffixMatchInfo {
  source: SuffixSource | "none";
  matchLength: number;
  /** Expected accepted tokens under the history (sum of path probabilities). */
  score: number;
  /** Path probability of the first proposed token (0 when nothing was proposed). */
  firstProb: number;
}

interface RequestState {
  tree: SuffixTree;
  /** seq.tokens[0, held) are in the tree. */
  held: number;
  lastToken: number;
}

export class SuffixDrafter implements Drafter {
  readonly kind = "suffix" as const;
  readonly version = "";
  readonly featureLayers: readonly number[] = [];
  readonly options: SuffixDrafterOptions;
  readonly #fleet: SuffixTree;
  readonly #requests = new Map<string, RequestState>();
  readonly #lastMatch = new Map<string, SuffixMatchInfo>();

  constructor(options: Partial<SuffixDrafterOptions> = {}) {
    this.options = parseSuffixDrafterOptions(options);
    this.#fleet = new SuffixTree({ maxDepth: this.options.maxDepth, maxTokens: this.options.fleetMaxTokens });
  }

  /**
   * One finished request's output, from any node (the trace stream). `prompt`, when given, contributes
   * its last fleetPromptContext tokens as the output's context.
   */
  ingestFleetOutput(output: ArrayLike<number>, prompt?: ArrayLike<number>): void {
    const k = prompt === undefined ? 0 : Math.min(this.options.fleetPromptContext, prompt.length);
    if (output.length === 0) return;
    if (k === 0) {
      this.#fleet.appendDocument(output);
      return;
    }
    const doc = new Int32Array(k + output.length);
    for (let i = 0; i < k; i++) doc[i] = prompt![prompt!.length - k + i]!;
    for (let i = 0; i < output.length; i++) doc[k + i] = output[i]!;
    this.#fleet.appendDocument(doc);
  }

  fleetStats() {
    return this.#fleet.stats();
  }

  /** Sequences with a tree held (for leak checks). */
  get heldRequests(): number {
    return this.#requests.size;
  }

  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    return requests.map((r) => this.proposeOne(r.seq, r.budget));
  }

  /** propose() for one sequence, synchronously (the work is CPU-only and short). */
  proposeOne(seq: SequenceView, budget: number): Proposal {
    if (!(Number.isInteger(budget) && budget >= 0)) {
      throw new RangeError(`draft budget must be a non-negative integer, got ${budget}`);
    }
    const own = this.#sync(seq);
    const ctx = seq.tokens;
    const a = this.#speculateIn(own, ctx, budget);
    const b = this.#speculateIn(this.#fleet, ctx, budget);
    const pick =
      b.spec.score > a.spec.score ? { ...b, source: "fleet" as const } : { ...a, source: "request" as const };
    const spec = pick.spec;
    this.#lastMatch.set(seq.id, {
      source: spec.tokens.length === 0 ? "none" : pick.source,
      matchLength: spec.tokens.length === 0 ? 0 : pick.matchLength,
      score: spec.score,
      firstProb: spec.tokens.length === 0 ? 0 : spec.probs[0]!,
    });
    if (spec.tokens.length === 0) return EMPTY_PROPOSAL;
    return {
      tokens: Int32Array.from(spec.tokens),
      parents: Int32Array.from(spec.parents),
      draftProbs: Float32Array.from(spec.probs),
    };
  }

  /** The last proposal's match for a sequence (undefined before its first proposal). */
  lastMatch(seqId: string): SuffixMatchInfo | undefined {
    return this.#lastMatch.get(seqId);
  }

  /**
   * The budget policy's confidence input for a sequence, in [0, 1]: the last proposal's first-token
   * probability, scaled down for short matches (a match under 8 tokens is weak evidence). 1 before the
   * first proposal (nothing known: do not throttle), 0 after one that found nothing.
   */
  confidence(seqId: string): number {
    const m = this.#lastMatch.get(seqId);
    if (m === undefined) return 1;
    return m.firstProb * Math.min(1, m.matchLength / 8);
  }

  observe(seq: SequenceView): void {
    this.#sync(seq);
  }

  release(seqId: string): void {
    this.#requests.delete(seqId);
    this.#lastMatch.delete(seqId);
  }

  #speculateIn(
    tree: SuffixTree,
    ctx: readonly number[],
    budget: number,
  ): { spec: Speculation; matchLength: number } {
    const o = this.options;
    if (budget === 0) return { spec: EMPTY_SPECULATION, matchLength: 0 };
    const match = tree.longestMatch(ctx, ctx.length, o.maxMatch);
    if (match.length < o.minMatch) return { spec: EMPTY_SPECULATION, matchLength: match.length };
    const cap = Math.min(budget, Math.floor(o.maxSpecFactor * match.length + o.maxSpecOffset));
    return { spec: speculate(tree, match.pos, cap, o.minTokenProb), matchLength: match.length };
  }

  /** Brings the request's tree up to seq.tokens; a sequence that went back or changed is rebuilt. */
  #sync(seq: SequenceView): SuffixTree {
    const toks = seq.tokens;
    let st = this.#requests.get(seq.id);
    if (st !== undefined && (toks.length < st.held || (st.held > 0 && toks[st.held - 1] !== st.lastToken))) {
      st = undefined;
    }
    if (st === undefined) {
      const tree = new SuffixTree({ maxDepth: this.options.maxDepth, maxTokens: Number.POSITIVE_INFINITY });
      tree.openLiveDocument();
      st = { tree, held: 0, lastToken: -1 };
      this.#requests.set(seq.id, st);
    }
    if (toks.length > st.held) {
      st.tree.extendLive(toks.slice(st.held));
      st.held = toks.length;
      st.lastToken = toks[toks.length - 1]!;
    }
    return st.tree;
  }
}
