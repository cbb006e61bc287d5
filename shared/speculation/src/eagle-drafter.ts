// The `eagle` drafter: the learned head (engine eagle/) drafting from the target's hidden features.
//
// Per sequence it keeps the head's KV in step with the committed tokens: head row i reads (f_i, token
// i+1), where f_i is the target's feature at position i, and its output predicts token i+2. After a
// verification the target has features up to position L-2 of the L committed tokens (the bonus token has
// not been through the target yet), so row L-2 is the one whose output drafts the next token. observe()
// runs the rows before it through the head at once; propose() runs the rest (usually just row L-2, for
// every sequence of the step in one pass), then drafts on the head's own output hidden, one head pass per
// depth over all the step's sequences:
//   - chain: greedy (point masses), or sampled at the request's sampling parameters with the distribution
//     each token was drawn from (draftDists), so rejection sampling stays exact;
//   - tree: top-k children of each expanded node, the top-k nodes of each depth expanded, then the budget's
//     worth of nodes of highest path probability (EAGLE-2); deterministic, so point masses.
// Draft rows are written to the head's KV past the committed rows and dropped when propose returns.
//
// The drafter owns the heads it is given: a head swapped out is released (its weights freed on the backend).
// Memory per sequence is bounded: the last `featureWindow` committed feature rows (so a swapped-in head can
// re-prime), and the head's KV (one layer). When the head's KV pool is short, a sequence's head context is
// cut to the feature window (RoPE is relative, so the head's positions count from the window's start).
import {
  argmax,
  type BatchLayout,
  buildLayout,
  drawFrom,
  type EagleHead,
  type EagleInput,
  type KvCacheSpec,
  KvManager,
  logSumExp,
  samplingProbs,
  topKIds,
} from "@specloop/engine";
import type { Drafter, DraftRequest, Proposal, SequenceView, TargetFeatures } from "./drafter.js";
import { EMPTY_PROPOSAL } from "./drafter.js";
import { bestFirstProposal, chainProposal, type DraftNode } from "./eagle-tree.js";

/** Committed feature rows kept per sequence for re-priming a swapped-in head. */
export const DEFAULT_EAGLE_FEATURE_WINDOW = 64;
/** Recent rows a swapped-in head is re-primed with per sequence (its context grows again from there). */
export const DEFAULT_EAGLE_REPRIME_ROWS = 16;
/** Re-primed rows per step over all sequences: four sequences' worth. */
export const DEFAULT_EAGLE_REPRIME_ROWS_PER_STEP = 64;

export interface EagleDrafterOptions {
  /** "chain" (default) or a top-k "tree". */
  mode?: "chain" | "tree";
  /** Longest path drafted (default 5). */
  depth?: number;
  /** Children per expanded node and nodes expanded per depth, tree mode (default 4). */
  topK?: number;
  /** Committed feature rows kept per sequence (default DEFAULT_EAGLE_FEATURE_WINDOW). */
  featureWindow?: number;
  /**
   * Rows a sequence's head context restarts with when its head KV is empty at propose time: after a hot
   * swap, or when the pool ran short (default DEFAULT_EAGLE_REPRIME_ROWS). Re-priming every sequence's whole
   * feature window at once made the step after a swap stall a batch of 16 for half a second on the CPU.
   */
  reprimeRows?: number;
  /**
   * Rows re-primed per propose() over all sequences (default DEFAULT_EAGLE_REPRIME_ROWS_PER_STEP): after a
   * swap, sequences past it draft nothing this step and re-prime in the next ones, so no step pays for the
   * whole batch's re-priming at once (bench/results/hot-swap-load.md).
   */
  reprimeRowsPerStep?: number;
  /** The head's KV pool, shared by all sequences (default 256 blocks of 16). */
  numBlocks?: number;
  blockSize?: number;
}

interface SeqState {
  /** Ring of the last featureWindow committed feature rows: position p at row p % featureWindow. */
  feats: Float32Array;
  /** Positions [featStart, featEnd) are in the ring. */
  featStart: number;
  featEnd: number;
  /** The sequence position of the head's KV position 0. */
  headBase: number;
  /**
   * Its head context was dropped (a swap, or rest()): propose() re-primes it within the step's budget,
   * observe() only keeps its features.
   */
  awaitsReprime: boolean;
}

interface Draft {
  index: number;
  req: DraftRequest;
  id: string;
  maxDepth: number;
  /** Head rows committed for this sequence (the committed positions), restored when drafting ends. */
  committed: number;
  rootHidden: Float32Array;
  nodes: DraftNode[];
  /** The deepest draft node whose K/V stay in the head's cache (-1: none, the committed row is the tip). */
  cachedTip: number;
  /** Expanded nodes rerun with each pass (a tree's branches cannot share the cache: siblings would see each other). */
  uncached: number[];
}

const sameLayers = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((l, i) => l === b[i]);

export class EagleDrafter implements Drafter {
  readonly kind = "eagle" as const;
  private head: EagleHead;
  private next: EagleHead | undefined;
  private kv: KvManager;
  private readonly seqs = new Map<string, SeqState>();
  private readonly mode: "chain" | "tree";
  private readonly depth: number;
  private readonly topK: number;
  private readonly window: number;
  private readonly reprimeRows: number;
  private readonly reprimeRowsPerStep: number;
  private readonly numBlocks: number;
  private readonly blockSize: number;

  constructor(head: EagleHead, options: EagleDrafterOptions = {}) {
    this.head = head;
    this.mode = options.mode ?? "chain";
    this.depth = options.depth ?? 5;
    this.topK = options.topK ?? 4;
    this.window = options.featureWindow ?? DEFAULT_EAGLE_FEATURE_WINDOW;
    this.reprimeRows = options.reprimeRows ?? DEFAULT_EAGLE_REPRIME_ROWS;
    this.reprimeRowsPerStep = options.reprimeRowsPerStep ?? DEFAULT_EAGLE_REPRIME_ROWS_PER_STEP;
    this.numBlocks = options.numBlocks ?? 256;
    this.blockSize = options.blockSize ?? 16;
    for (const [key, v] of Object.entries({
      depth: this.depth,
      topK: this.topK,
      featureWindow: this.window,
      reprimeRows: this.reprimeRows,
      reprimeRowsPerStep: this.reprimeRowsPerStep,
    })) {
      if (!(Number.isInteger(v) && v >= 1))
        throw new RangeError(`eagle drafter: ${key} must be a positive integer, got ${v}`);
    }
    if (this.window < 2) throw new RangeError("eagle drafter: featureWindow must be at least 2");
    this.kv = new KvManager(head.backend, head.kvSpec(this.numBlocks, this.blockSize));
  }

  get version(): string {
    return this.head.version;
  }

  get featureLayers(): readonly number[] {
    return this.head.config.featureLayers;
  }

  /**
   * Takes `head` in place of the current one at the next propose() (call it at a step boundary). Sequences
   * in flight re-prime the new head from the features they kept (the last featureWindow positions).
   */
  swap(head: EagleHead): void {
    if (head.backend !== this.head.backend)
      throw new RangeError("eagle drafter: swap to a head on another backend");
    // A head swapped in and out again before any step drafted with it is freed at once.
    if (this.next !== undefined && this.next !== head && this.next !== this.head) this.next.release();
    this.next = head;
  }

  observe(seq: SequenceView, features?: TargetFeatures): void {
    let s = this.seqs.get(seq.id);
    if (s === undefined) {
      s = {
        feats: new Float32Array(this.window * this.head.featureWidth),
        featStart: 0,
        featEnd: 0,
        headBase: 0,
        awaitsReprime: false,
      };
      this.seqs.set(seq.id, s);
    }
    const L = seq.tokens.length;
    // Nothing is kept past the committed tokens: row i needs token i+1.
    s.featEnd = Math.min(s.featEnd, L);
    s.featStart = Math.min(s.featStart, s.featEnd);
    this.dropHeadRowsFrom(seq.id, s, L - 1);
    if (features === undefined || !sameLayers(features.layers, this.featureLayers)) return;
    const first = features.firstPosition;
    const count = Math.min(features.count, L - first);
    const width = this.head.featureWidth;
    if (count <= 0 || features.data.length < count * width) return;
    // Rows from `first` on are (re)placed: the head rows that read the old ones go.
    this.dropHeadRowsFrom(seq.id, s, first);
    if (first > s.featEnd || first < s.featStart) s.featStart = first;
    s.featEnd = first;
    this.prime(seq, s, features.data, first, first + count);
    for (let r = Math.max(0, count - this.window); r < count; r++) {
      const p = first + r;
      s.feats.set(features.data.subarray(r * width, (r + 1) * width), (p % this.window) * width);
    }
    s.featEnd = first + count;
    s.featStart = Math.max(s.featStart, s.featEnd - this.window);
  }

  release(seqId: string): void {
    this.kv.free(seqId);
    this.seqs.delete(seqId);
  }

  /** Stops priming the sequence's head context on observe(); propose() re-primes it when asked again. */
  rest(seqId: string): void {
    const s = this.seqs.get(seqId);
    if (s === undefined || s.awaitsReprime) return;
    this.kv.free(seqId);
    s.awaitsReprime = true;
  }

  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    this.takeSwap();
    const out: Proposal[] = requests.map(() => EMPTY_PROPOSAL);
    const drafts: Draft[] = [];
    try {
      const roots: { draft: Draft; from: number; rows: number }[] = [];
      const reprime = { left: this.reprimeRowsPerStep };
      requests.forEach((req, index) => {
        const started = this.start(req, index, reprime);
        if (started !== undefined) roots.push(started);
      });
      if (roots.length === 0) return out;
      drafts.push(...roots.map((r) => r.draft));
      await this.rootPass(roots);
      for (let depth = 1; depth < this.depth; depth++) await this.expandPass(drafts, depth);
      for (const d of drafts) {
        out[d.index] =
          this.mode === "chain" ? chainProposal(d.nodes) : bestFirstProposal(d.nodes, d.req.budget);
      }
      return out;
    } finally {
      // Draft rows are speculative: only the committed rows stay in the head's cache.
      for (const d of drafts) {
        if (this.kv.has(d.id)) this.kv.truncate(d.id, Math.min(d.committed, this.kv.numTokens(d.id)));
      }
    }
  }

  /** Switches to the swapped-in head: every sequence's head KV is dropped and re-primed from its features. */
  private takeSwap(): void {
    const head = this.next;
    if (head === undefined) return;
    const oldLayers = this.featureLayers;
    const oldSpec = this.kv.spec;
    this.next = undefined;
    // Every sequence re-primes on the new head below: nothing drafts with the old one again. Its weights go,
    // so a node swapping a version every minute holds two heads, not one per version it ever served.
    if (this.head !== head) this.head.release();
    this.head = head;
    const spec: KvCacheSpec = head.kvSpec(this.numBlocks, this.blockSize);
    if (spec.numKvHeads !== oldSpec.numKvHeads || spec.headDim !== oldSpec.headDim) {
      this.kv = new KvManager(head.backend, spec);
    }
    const keep = sameLayers(oldLayers, head.config.featureLayers);
    for (const [id, s] of this.seqs) {
      this.kv.free(id);
      s.headBase = s.featStart;
      s.awaitsReprime = true;
      if (!keep) {
        s.feats = new Float32Array(this.window * head.featureWidth);
        s.featStart = s.featEnd;
      }
    }
  }

  /** Drops the head rows i >= position (they read a feature or token that is gone or replaced). */
  private dropHeadRowsFrom(id: string, s: SeqState, position: number): void {
    const keep = Math.max(0, position - s.headBase);
    if (this.kv.numTokens(id) <= keep) return;
    if (keep === 0) this.kv.free(id);
    else this.kv.truncate(id, keep);
  }

  /**
   * Runs the rows whose features are known, up to but not including the last one before L-1 (propose runs
   * that one for its logits), writing their K/V; `data` holds the features of positions [first, end).
   */
  private prime(seq: SequenceView, s: SeqState, data: Float32Array, first: number, end: number): void {
    if (s.awaitsReprime) return;
    const id = seq.id;
    const width = this.head.featureWidth;
    if (this.kv.numTokens(id) === 0) s.headBase = s.featStart < s.featEnd ? s.featStart : first;
    let from = s.headBase + this.kv.numTokens(id);
    if (from < s.featStart || from > first) {
      // A gap in the features: start the head's context afresh where they start.
      this.kv.free(id);
      s.headBase = from < s.featStart ? s.featStart : first;
      from = s.headBase;
    }
    const to = Math.min(end, seq.tokens.length - 1) - 1;
    const n = to - from;
    if (n <= 0) return;
    if (this.kv.allocateSlots(id, n) === null) {
      this.kv.free(id); // propose re-primes from the feature window
      return;
    }
    const rows = new Float32Array(n * width);
    for (let i = 0; i < n; i++) {
      const p = from + i;
      const src =
        p >= first ? data.subarray((p - first) * width, (p - first + 1) * width) : this.ringRow(s, p);
      rows.set(src, i * width);
    }
    const tokens = Int32Array.from({ length: n }, (_, i) => seq.tokens[from + i + 1] as number);
    const layout = buildLayout(this.kv, [{ seq: id, newTokens: n }]);
    this.head.prime(this.kv.storage, layout, tokens, { kind: "features", data: rows });
    this.kv.commit(id, n);
  }

  private ringRow(s: SeqState, p: number): Float32Array {
    const width = this.head.featureWidth;
    const at = (p % this.window) * width;
    return s.feats.subarray(at, at + width);
  }

  /** The request's draft and the committed rows its root pass runs, or undefined for an empty proposal. */
  private start(
    req: DraftRequest,
    index: number,
    reprime: { left: number },
  ): { draft: Draft; from: number; rows: number } | undefined {
    const id = req.seq.id;
    const s = this.seqs.get(id);
    const last = req.seq.tokens.length - 2;
    const maxDepth = Math.min(this.depth, req.seq.remaining, this.mode === "chain" ? req.budget : this.depth);
    if (s === undefined || req.budget <= 0 || maxDepth <= 0 || last < 0) return undefined;
    if (!(s.featStart <= last && last < s.featEnd)) return undefined; // no feature for the row to draft from
    const lookahead = this.mode === "chain" ? maxDepth : maxDepth * this.topK;
    // A context restarted (after a swap, or a short pool) begins with the newest reprimeRows rows only.
    const restart = Math.max(s.featStart, last + 1 - this.reprimeRows);
    let from = s.headBase + this.kv.numTokens(id);
    if (this.kv.numTokens(id) === 0 || from < s.featStart || from > last) {
      // This step's re-priming is spent: the sequence drafts nothing now and re-primes at a later step.
      if (last + 1 - restart > reprime.left) return undefined;
      reprime.left -= last + 1 - restart;
      s.awaitsReprime = false;
      this.kv.free(id);
      s.headBase = restart;
      from = restart;
    }
    if (this.kv.allocateSlots(id, last + 1 - from, lookahead) === null) {
      // The pool is short: restart this sequence's head context at its newest rows, or give up.
      this.kv.free(id);
      s.headBase = restart;
      from = restart;
      if (this.kv.allocateSlots(id, last + 1 - from, lookahead) === null) return undefined;
    }
    const committed = last + 1 - s.headBase;
    const draft: Draft = {
      index,
      req,
      id,
      maxDepth,
      committed,
      rootHidden: new Float32Array(0),
      nodes: [],
      cachedTip: -1,
      uncached: [],
    };
    return { draft, from, rows: last + 1 - from };
  }

  /** One head pass over every draft's pending committed rows; the last row of each drafts depth 1. */
  private async rootPass(roots: readonly { draft: Draft; from: number; rows: number }[]): Promise<void> {
    const head = this.head;
    const width = head.featureWidth;
    const total = roots.reduce((n, r) => n + r.rows, 0);
    const features = new Float32Array(total * width);
    const tokens = new Int32Array(total);
    const logitRows: number[] = [];
    let row = 0;
    for (const { draft, from, rows } of roots) {
      const s = this.seqs.get(draft.id) as SeqState;
      for (let i = 0; i < rows; i++, row++) {
        features.set(this.ringRow(s, from + i), row * width);
        tokens[row] = draft.req.seq.tokens[from + i + 1] as number;
      }
      logitRows.push(row - 1);
    }
    const layout = buildLayout(
      this.kv,
      roots.map((r) => ({ seq: r.draft.id, newTokens: r.rows })),
    );
    const { logits, hidden } = await this.runHead(
      head,
      layout,
      tokens,
      { kind: "features", data: features },
      logitRows,
    );
    const vocab = head.config.vocabSize;
    const h = head.config.hiddenSize;
    roots.forEach(({ draft, rows }, i) => {
      this.kv.commit(draft.id, rows);
      draft.rootHidden = hidden.slice(i * h, (i + 1) * h);
      this.grow(draft, -1, logits.subarray(i * vocab, (i + 1) * vocab));
    });
  }

  /** Children of node `parent` (-1: the committed tip) from its row's logits. */
  private grow(d: Draft, parent: number, logits: Float32Array): void {
    const base = parent === -1 ? 0 : (d.nodes[parent] as DraftNode).pathLogProb;
    const depth = parent === -1 ? 1 : (d.nodes[parent] as DraftNode).depth + 1;
    const lse = logSumExp(logits);
    const sampling = d.req.seq.sampling;
    if (this.mode === "tree" || sampling.temperature === 0) {
      const k = this.mode === "tree" ? this.topK : 1;
      const ids = k === 1 ? [argmax(logits)] : topKIds(logits, k);
      for (const token of ids) {
        d.nodes.push({ token, parent, depth, pathLogProb: base + (logits[token] as number) - lse, prob: 1 });
      }
      return;
    }
    const probs = samplingProbs(logits, sampling);
    const token = drawFrom(probs, d.req.rng);
    const prob = probs[token] as number;
    d.nodes.push({
      token,
      parent,
      depth,
      pathLogProb: base + Math.log(prob),
      prob,
      dist: Float32Array.from(probs),
    });
  }

  /** The nodes of `depth` to expand: the chain's one, or a tree depth's top-k by path probability. */
  private frontier(d: Draft, depth: number): number[] {
    if (depth >= d.maxDepth) return [];
    const at = d.nodes.flatMap((n, i) => (n.depth === depth ? [i] : []));
    if (this.mode === "chain") return at;
    return at
      .sort((a, b) => (d.nodes[b] as DraftNode).pathLogProb - (d.nodes[a] as DraftNode).pathLogProb || a - b)
      .slice(0, this.topK);
  }

  /** One head pass expanding every draft's frontier at `depth`. */
  private async expandPass(drafts: readonly Draft[], depth: number): Promise<void> {
    const head = this.head;
    const h = head.config.hiddenSize;
    const plans: { d: Draft; rows: number[]; parents: Int32Array; frontier: number[] }[] = [];
    for (const d of drafts) {
      const frontier = this.frontier(d, depth);
      if (frontier.length === 0) continue;
      const rows = [...d.uncached, ...frontier];
      const parents = Int32Array.from(rows, (node) => {
        const p = (d.nodes[node] as DraftNode).parent;
        if (p === d.cachedTip) return -1;
        const at = rows.indexOf(p);
        if (at < 0)
          throw new Error(`eagle drafter: node ${node}'s parent ${p} is neither cached nor in the pass`);
        return at;
      });
      plans.push({ d, rows, parents, frontier });
    }
    if (plans.length === 0) return;
    const total = plans.reduce((n, p) => n + p.rows.length, 0);
    const input = new Float32Array(total * h);
    const tokens = new Int32Array(total);
    const logitRows: number[] = [];
    let row = 0;
    for (const { d, rows, frontier } of plans) {
      for (const node of rows) {
        const n = d.nodes[node] as DraftNode;
        input.set(
          n.parent === -1 ? d.rootHidden : ((d.nodes[n.parent] as DraftNode).hidden as Float32Array),
          row * h,
        );
        tokens[row] = n.token;
        row++;
      }
      for (let j = 0; j < frontier.length; j++) logitRows.push(row - frontier.length + j);
    }
    const layout = buildLayout(
      this.kv,
      plans.map((p) => ({ seq: p.d.id, newTokens: p.rows.length, treeParents: p.parents })),
    );
    const { logits, hidden } = await this.runHead(
      head,
      layout,
      tokens,
      { kind: "hidden", data: input },
      logitRows,
    );
    const vocab = head.config.vocabSize;
    let at = 0;
    for (const { d, rows, parents, frontier } of plans) {
      for (const node of frontier) {
        (d.nodes[node] as DraftNode).hidden = hidden.slice(at * h, (at + 1) * h);
        this.grow(d, node, logits.subarray(at * vocab, (at + 1) * vocab));
        at++;
      }
      // A pass of one row on the cached tip extends the cached chain; anything else is rerun next pass.
      if (rows.length === 1 && parents[0] === -1) {
        this.kv.commit(d.id, 1);
        d.cachedTip = rows[0] as number;
        d.uncached = [];
      } else {
        d.uncached = rows;
      }
    }
  }

  /** One pass of `head` over its KV; the logits of `logitRows` and every row's output hidden, on the host. */
  private async runHead(
    head: EagleHead,
    layout: BatchLayout,
    tokens: Int32Array,
    input: EagleInput,
    logitRows: readonly number[],
  ): Promise<{ logits: Float32Array; hidden: Float32Array }> {
    const be = head.backend;
    const out = head.forward(this.kv.storage, layout, tokens, input, Int32Array.from(logitRows));
    const logits = await be.readRows(out.logits);
    const hidden = await be.readRows(out.hidden);
    be.release(out.logits);
    be.release(out.hidden);
    return { logits, hidden };
  }
}
