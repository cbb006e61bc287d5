// The `draft-model` drafter: a separate small model on the target's tokenizer (models/tiny-code-draft for
// the bundled model) drafts a chain, one batched pass per depth over every sequence of the step. It keeps
// its own paged KV per sequence, in step with the committed tokens: after verification it keeps the
// longest prefix of what it cached that was committed (its accepted drafts) and recomputes only the rest.
// Greedy requests get its argmax chain (point masses); sampled requests get tokens drawn from its sampling
// distribution, handed over with that distribution so rejection sampling stays exact.
import { argmax, buildLayout, drawFrom, KvManager, type Model, samplingProbs } from "@specloop/engine";
import type { Drafter, DraftRequest, Proposal, SequenceView } from "./drafter.js";
import { EMPTY_PROPOSAL } from "./drafter.js";

export interface DraftModelOptions {
  /** KV blocks for the draft model (shared by all sequences). */
  numBlocks: number;
  blockSize: number;
  /** Longest chain drafted in one step. */
  maxDepth: number;
}

interface Chain {
  req: DraftRequest;
  depth: number;
  tokens: number[];
  probs: number[];
  dists: (Float32Array | undefined)[];
}

export class DraftModelDrafter implements Drafter {
  readonly kind = "draft-model" as const;
  readonly version = "";
  readonly featureLayers: readonly number[] = [];
  private readonly kv: KvManager;
  /** Tokens whose K and V are in the draft model's cache, per sequence. */
  private readonly cached = new Map<string, number[]>();

  constructor(
    readonly model: Model,
    targetVocab: number,
    private readonly options: DraftModelOptions,
  ) {
    if (model.config.vocabSize !== targetVocab) {
      throw new RangeError(
        `draft model: its vocabulary has ${model.config.vocabSize} tokens, the target's ${targetVocab}; ` +
          "a draft model must share the target's tokenizer",
      );
    }
    this.kv = new KvManager(model.backend, model.kvSpec(options.numBlocks, options.blockSize));
  }

  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    const chains: Chain[] = requests.map((req) => ({
      req,
      depth: Math.min(
        req.budget,
        this.options.maxDepth,
        this.model.config.maxPositions - req.seq.tokens.length,
      ),
      tokens: [],
      probs: [],
      dists: [],
    }));
    // Depth 0 feeds everything the draft cache lacks (the whole prompt the first time); later depths feed
    // the previous draft token.
    for (let depth = 0; ; depth++) {
      const live = chains.filter((c) => c.tokens.length === depth && depth < c.depth);
      const fed: { chain: Chain; ids: number[] }[] = [];
      for (const c of live) {
        const id = c.req.seq.id;
        const have = this.cached.get(id) ?? [];
        const ids = depth === 0 ? c.req.seq.tokens.slice(have.length) : [c.tokens.at(-1) as number];
        if (ids.length === 0 || this.kv.allocateSlots(id, ids.length) === null) {
          c.depth = c.tokens.length; // no room (or nothing to feed): this chain stops here
          continue;
        }
        fed.push({ chain: c, ids });
      }
      if (fed.length === 0) break;
      const layout = buildLayout(
        this.kv,
        fed.map((f) => ({ seq: f.chain.req.seq.id, newTokens: f.ids.length })),
      );
      const out = this.model.forward(this.kv.storage, layout, Int32Array.from(fed.flatMap((f) => f.ids)));
      const logits = out.logits;
      if (logits === undefined) throw new Error("draft model: no logits");
      const be = this.model.backend;
      const greedy = fed.every((f) => f.chain.req.seq.sampling.temperature === 0);
      const argmaxes = greedy ? await be.argmaxRows(logits) : undefined;
      const rows = greedy ? undefined : await be.readRows(logits);
      be.release(logits);
      const vocab = this.model.config.vocabSize;
      fed.forEach((f, i) => {
        const id = f.chain.req.seq.id;
        this.kv.commit(id, f.ids.length);
        const have = this.cached.get(id) ?? [];
        have.push(...f.ids);
        this.cached.set(id, have);
        const c = f.chain;
        if (argmaxes !== undefined) {
          c.tokens.push(argmaxes[i] as number);
          c.probs.push(1);
          c.dists.push(undefined);
        } else {
          const q = samplingProbs(
            (rows as Float32Array).subarray(i * vocab, (i + 1) * vocab),
            c.req.seq.sampling,
          );
          const t = c.req.seq.sampling.temperature === 0 ? argmax(q) : drawFrom(q, c.req.rng);
          c.tokens.push(t);
          c.probs.push(q[t] as number);
          // A greedy sequence in a sampled batch still proposes a point mass.
          c.dists.push(c.req.seq.sampling.temperature === 0 ? undefined : Float32Array.from(q));
        }
      });
    }
    return chains.map((c) => {
      if (c.tokens.length === 0) return EMPTY_PROPOSAL;
      const p: Proposal = {
        tokens: Int32Array.from(c.tokens),
        parents: Int32Array.from(c.tokens, (_, i) => i - 1),
        draftProbs: Float32Array.from(c.probs),
      };
      if (c.dists.some((d) => d !== undefined)) p.draftDists = c.dists;
      return p;
    });
  }

  /** Keeps the longest prefix of the draft cache that was committed; the rest is recomputed next time. */
  observe(seq: SequenceView): void {
    const have = this.cached.get(seq.id);
    if (have === undefined) return;
    let keep = 0;
    const limit = Math.min(have.length, seq.tokens.length);
    while (keep < limit && have[keep] === seq.tokens[keep]) keep++;
    if (keep < have.length) {
      this.kv.truncate(seq.id, keep);
      have.length = keep;
    }
  }

  release(seqId: string): void {
    this.kv.free(seqId);
    this.cached.delete(seqId);
  }
}
