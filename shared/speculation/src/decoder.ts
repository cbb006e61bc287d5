// The speculative decoding step for a batch of sequences sharing one target pass, in three calls with plain
// data between them (vLLM v1's schedule / execute / update):
// - plan(): what each sequence gets this step. A sequence has tokens computed (in the target's KV cache) and
//   tokens wanted (every committed token, then the drafter's proposal tree rooted at the last one); a step
//   grants the uncomputed committed tokens (a long prompt in chunks, under the step's token budget) and, when
//   the grant reaches the last committed token, the proposal. There is no prefill or decode phase: a prompt's
//   last chunk yields the first output token in the same pass.
// - execute(): the one target pass, and the read-back of what verification needs per sequence (argmaxes for
//   greedy sequences, their own logit rows for sampled ones, top-k rows for traces).
// - update(): verifies, commits, keeps the accepted branch's KV (KvManager.keepBranch), tells the drafters.
// Invariant: every committed token but the last is in the KV cache after a step that samples. Greedy output is
// exactly the target's; sampled output follows the target's distribution exactly, whatever drafters propose.
import {
  type Activation,
  buildLayout,
  type KvManager,
  logSumExp,
  type Model,
  type TopKRows,
  topKIds,
} from "@specloop/engine";
import { defaultBudgetPolicyOptions, updateAcceptance } from "./budget.js";
import type { DraftCapTuner } from "./draft-cap.js";
import type { Drafter, DrafterKind, DraftRequest, Proposal, TargetFeatures } from "./drafter.js";
import { EMPTY_PROPOSAL } from "./drafter.js";
import type { DecodeSequence, StepRecord } from "./sequence.js";
import { checkProposal, truncateProposal, type Verdict, verifyGreedy, verifySampled } from "./verify.js";

const DEFAULT_ACCEPTANCE_ALPHA = defaultBudgetPolicyOptions().ewmaAlpha;

/** What one sequence gets in a step. */
export interface SequencePlan {
  seq: DecodeSequence;
  /** Tokens of seq in the KV cache before the step. */
  computed: number;
  /** Committed tokens this step computes: tokens[computed, computed + compute). */
  compute: number;
  /** Whether the grant reaches the last committed token, so the step samples the sequence's next tokens. */
  samples: boolean;
  /** The drafter's tree rooted at the last committed token (empty unless `samples`). */
  proposal: Proposal;
  drafter: Drafter | undefined;
  /** First row of the sequence in the pass; it has compute + proposal.tokens.length rows. */
  rowStart: number;
}

export interface StepPlan {
  sequences: SequencePlan[];
  /** Sequences that got no KV for even one row: the caller frees room (preempts) and retries them. */
  starved: DecodeSequence[];
  rows: number;
  draftMs: number;
  /** The draft cap in force (DraftCapTuner), Infinity when none. */
  cap: number;
  /** Sequences that verify this step (the DraftCapTuner's batch size). */
  verifying: number;
  /** Proposals refused before the pass (malformed: tokens outside the vocabulary, bad parents, sizes). */
  refusedProposals: number;
}

/** What the target pass gave: plain arrays, indexed by logit row (each sampling sequence has 1 + nodes). */
export interface StepOutput {
  /** Argmax per logit row (when any sequence is greedy). */
  argmax: Int32Array | undefined;
  /** Logits of the sequences that need them ([1 + nodes, vocab] each). */
  logits: Map<DecodeSequence, Float32Array>;
  topRows: TopKRows | undefined;
  /** Hidden features by layer, [rows, hidden]. */
  features: Map<number, Float32Array>;
  passMs: number;
}

/** What one step did for one sequence. */
export interface SequenceStep {
  seq: DecodeSequence;
  /** Output tokens committed by this step (none for a prompt chunk that does not reach its end). */
  tokens: number[];
  /** Committed tokens this step put in the KV cache. */
  computed: number;
}

export interface StepResult {
  ran: SequenceStep[];
  starved: DecodeSequence[];
  rows: number;
  draftMs: number;
  verifyMs: number;
  /** Proposals refused before the pass (malformed: tokens outside the vocabulary, bad parents, sizes). */
  refusedProposals: number;
}

export interface StepOptions {
  /** Prompt (recomputed) tokens, over all sequences, a step may compute beyond one a sequence. */
  prefillTokens: number;
}

export interface DecoderOptions {
  model: Model;
  kv: KvManager;
  drafters: ReadonlyMap<DrafterKind, Drafter>;
  /** Nodes to draft for a sequence this step (the budget policy, budget.ts); 0 disables drafting. */
  budgetFor: (seq: DecodeSequence, drafter: Drafter) => number;
  /** Caps the step's budgets at the cap that has delivered the most tokens per millisecond (draft-cap.ts). */
  draftCap?: DraftCapTuner;
  /** Weight of the newest pass in each sequence's acceptance EWMA (default: the budget policy's). */
  acceptanceAlpha?: number;
  /** Target top-k recorded per proposed node in traces (0: none). */
  traceTopK?: number;
  /** Keep step records for traces (off for in-process generation that publishes none). */
  recordSteps?: boolean;
  /** Told of each malformed proposal refused before the pass (metrics, logs); the step goes on. */
  onRefusedProposal?: (drafter: DrafterKind, reason: string) => void;
}

export class SpeculativeDecoder {
  readonly model: Model;
  readonly kv: KvManager;
  private readonly drafters: ReadonlyMap<DrafterKind, Drafter>;

  constructor(private readonly options: DecoderOptions) {
    this.model = options.model;
    this.kv = options.kv;
    this.drafters = options.drafters;
  }

  drafter(kind: DrafterKind): Drafter | undefined {
    return this.drafters.get(kind);
  }

  /** The speculator version drafting for `seq` now ("" for drafters without versions). */
  versionOf(seq: DecodeSequence): string {
    const d = this.drafters.get(seq.drafter);
    return d?.versionFor?.(seq.id) ?? d?.version ?? "";
  }

  /**
   * Starts `seq` with the common prefix of `parent`'s cached tokens shared rather than recomputed (the
   * verifier's N samples of one prompt); never seq's last token. Returns the tokens shared.
   */
  sharePrefix(parent: DecodeSequence, seq: DecodeSequence): number {
    if (this.kv.has(seq.id) || !this.kv.has(parent.id)) return 0;
    let common = 0;
    const limit = Math.min(this.kv.numTokens(parent.id), seq.tokens.length - 1);
    while (common < limit && parent.tokens[common] === seq.tokens[common]) common++;
    if (common === 0) return 0;
    this.kv.fork(parent.id, seq.id, common);
    return common;
  }

  /** Frees what the sequence holds (KV blocks, drafter state); its tokens stay, so it can be resumed. */
  evict(seq: DecodeSequence): void {
    this.kv.free(seq.id);
    for (const d of this.drafters.values()) d.release(seq.id);
  }

  /** plan, execute, update. */
  async step(seqs: readonly DecodeSequence[], options: StepOptions): Promise<StepResult> {
    const plan = await this.plan(seqs, options);
    if (plan.sequences.length === 0) {
      const { starved, draftMs, refusedProposals } = plan;
      return { ran: [], starved, rows: 0, draftMs, verifyMs: 0, refusedProposals };
    }
    const output = await this.execute(plan);
    return this.update(plan, output);
  }

  /** Grants each sequence (in order: earlier ones get the token budget and KV first) its rows; drafts. */
  async plan(seqs: readonly DecodeSequence[], options: StepOptions): Promise<StepPlan> {
    const t0 = performance.now();
    const grants: { seq: DecodeSequence; computed: number; compute: number; samples: boolean }[] = [];
    let prefillLeft = options.prefillTokens;
    for (const seq of seqs) {
      if (seq.done) continue;
      const computed = this.kv.numTokens(seq.id);
      const uncomputed = seq.tokens.length - computed;
      // One token (the last committed) always runs; more (a prompt, a recomputation) within the budget.
      const compute = uncomputed <= 1 ? uncomputed : Math.min(uncomputed, prefillLeft);
      if (compute <= 0) continue;
      if (uncomputed > 1) prefillLeft -= compute;
      grants.push({ seq, computed, compute, samples: compute === uncomputed });
    }
    const { proposals, cap, verifying, refused } = await this.draft(
      grants.filter((g) => g.samples && g.computed > 0).map((g) => g.seq),
    );
    const sequences: SequencePlan[] = [];
    const starved: DecodeSequence[] = [];
    let rows = 0;
    for (const g of grants) {
      let proposal = proposals.get(g.seq) ?? EMPTY_PROPOSAL;
      // A proposal that does not fit is dropped before the sequence is starved.
      if (this.kv.allocateSlots(g.seq.id, g.compute, proposal.tokens.length) === null) {
        proposal = EMPTY_PROPOSAL;
        if (this.kv.allocateSlots(g.seq.id, g.compute) === null) {
          starved.push(g.seq);
          continue;
        }
      }
      const drafter = proposal.tokens.length > 0 ? this.drafters.get(g.seq.drafter) : undefined;
      sequences.push({ ...g, proposal, drafter, rowStart: rows });
      rows += g.compute + proposal.tokens.length;
    }
    return {
      sequences,
      starved,
      rows,
      draftMs: performance.now() - t0,
      cap,
      verifying,
      refusedProposals: refused,
    };
  }

  /** One propose() per drafter (batched inside), each proposal checked and cut to what may be accepted. */
  private async draft(verifying: readonly DecodeSequence[]): Promise<{
    proposals: Map<DecodeSequence, Proposal>;
    cap: number;
    verifying: number;
    refused: number;
  }> {
    const wanted: { seq: DecodeSequence; drafter: Drafter; budget: number }[] = [];
    for (const s of verifying) {
      const d = this.drafters.get(s.drafter);
      // A step can accept at most remaining - 1 drafted tokens (the last token is the target's own).
      const policy = d === undefined || s.remaining <= 1 ? 0 : this.options.budgetFor(s, d);
      const budget = s.maxDraftTokens > 0 ? Math.min(policy, s.maxDraftTokens) : policy;
      if (d !== undefined && budget > 0) wanted.push({ seq: s, drafter: d, budget });
    }
    const tuner = wanted.length > 0 ? this.options.draftCap : undefined;
    const cap = tuner?.choose(verifying.length).cap ?? Number.POSITIVE_INFINITY;
    const byDrafter = new Map<Drafter, DraftRequest[]>();
    for (const w of wanted) {
      const budget = Math.min(w.budget, cap);
      if (budget <= 0) continue;
      const list = byDrafter.get(w.drafter) ?? [];
      list.push({ seq: w.seq, budget, rng: w.seq.rng });
      byDrafter.set(w.drafter, list);
    }
    const proposals = new Map<DecodeSequence, Proposal>();
    const vocab = this.model.config.vocabSize;
    let refused = 0;
    await Promise.all(
      [...byDrafter].map(async ([d, reqs]) => {
        const out = await d.propose(reqs);
        reqs.forEach((r, i) => {
          const p = out[i] ?? EMPTY_PROPOSAL;
          const problem = checkProposal(p, vocab, r.budget);
          if (problem !== undefined) {
            // One drafter's bad proposal costs its sequence a plain step, never the batch.
            refused++;
            this.options.onRefusedProposal?.(d.kind, problem);
            return;
          }
          proposals.set(r.seq as DecodeSequence, truncateProposal(p, r.seq.remaining - 1));
        });
      }),
    );
    return { proposals, cap, verifying: verifying.length, refused };
  }

  /** The target pass over the plan's rows, and the read-back each sequence's verification needs. */
  async execute(plan: StepPlan): Promise<StepOutput> {
    const t0 = performance.now();
    const ids = new Int32Array(plan.rows);
    const logitRows: number[] = [];
    const entries = plan.sequences.map((p) => {
      const n = p.proposal.tokens.length;
      ids.set(p.seq.tokens.slice(p.computed, p.computed + p.compute), p.rowStart);
      ids.set(p.proposal.tokens, p.rowStart + p.compute);
      if (p.samples) for (let i = 0; i <= n; i++) logitRows.push(p.rowStart + p.compute - 1 + i);
      // The committed tokens as a chain, the proposal hanging from the last of them.
      const treeParents = new Int32Array(p.compute + n);
      for (let i = 0; i < p.compute; i++) treeParents[i] = i - 1;
      p.proposal.parents.forEach((q, i) => {
        treeParents[p.compute + i] = q === -1 ? p.compute - 1 : p.compute + q;
      });
      return { seq: p.seq.id, newTokens: p.compute + n, ...(n > 0 ? { treeParents } : {}) };
    });
    const layers = this.featureLayersFor(plan.sequences);
    const out = this.model.forward(this.kv.storage, buildLayout(this.kv, entries), ids, {
      logitRows: Int32Array.from(logitRows),
      hiddenLayers: layers,
    });
    const be = this.model.backend;
    const sampling = plan.sequences.filter((p) => p.samples);
    const topK = this.options.recordSteps
      ? Math.min(this.options.traceTopK ?? 0, this.model.config.vocabSize)
      : 0;
    const result: StepOutput = {
      argmax: undefined,
      logits: new Map(),
      topRows: undefined,
      features: new Map(),
      passMs: 0,
    };
    if (out.logits !== undefined) {
      // Full rows only where verification needs them (sampled sequences), or where top-k has no fast path.
      const needRows = sampling.filter((p) => p.seq.sampling.temperature > 0 || (topK > 0 && !be.topKRows));
      if (needRows.length < sampling.length) result.argmax = await be.argmaxRows(out.logits);
      if (topK > 0 && be.topKRows) result.topRows = await be.topKRows(out.logits, topK);
      await this.readLogits(out.logits, sampling, needRows, result.logits);
      be.release(out.logits);
    }
    result.features = await this.readFeatures(out.hidden, layers, plan.rows);
    result.passMs = performance.now() - t0;
    return result;
  }

  /** Reads back the logit rows of `need` (a subset of `sampling`, whose rows are laid out in order). */
  private async readLogits(
    logits: Activation,
    sampling: readonly SequencePlan[],
    need: readonly SequencePlan[],
    into: Map<DecodeSequence, Float32Array>,
  ): Promise<void> {
    if (need.length === 0) return;
    const be = this.model.backend;
    const vocab = this.model.config.vocabSize;
    const wanted = new Set(need);
    const rows: number[] = [];
    let row = 0;
    for (const p of sampling) {
      const n = 1 + p.proposal.tokens.length;
      if (wanted.has(p)) for (let i = 0; i < n; i++) rows.push(row + i);
      row += n;
    }
    const all = rows.length === row;
    const gathered = all ? logits : be.gatherRows(logits, Int32Array.from(rows));
    const data = await be.readRows(gathered);
    if (!all) be.release(gathered);
    let at = 0;
    for (const p of need) {
      const n = 1 + p.proposal.tokens.length;
      into.set(p.seq, data.subarray(at * vocab, (at + n) * vocab));
      at += n;
    }
  }

  /** Verifies, commits, keeps the accepted branch's KV and tells the drafters. */
  update(plan: StepPlan, output: StepOutput): StepResult {
    const t0 = performance.now();
    const ran: SequenceStep[] = [];
    let logitRow = 0;
    for (const p of plan.sequences) {
      const s = p.seq;
      if (!p.samples) {
        this.kv.commit(s.id, p.compute);
        this.observe(p, output.features, []);
        ran.push({ seq: s, tokens: [], computed: p.compute });
        continue;
      }
      const n = p.proposal.tokens.length;
      const logits = output.logits.get(s);
      const verdict: Verdict =
        logits !== undefined
          ? verifySampled(p.proposal, logits, this.model.config.vocabSize, s.sampling, s.rng)
          : verifyGreedy(p.proposal, (output.argmax as Int32Array).subarray(logitRow, logitRow + 1 + n));
      const outputOffset = s.outputLength;
      const committed = s.commit([
        ...verdict.accepted.map((i) => p.proposal.tokens[i] as number),
        verdict.bonus,
      ]);
      // The computed tokens and the accepted nodes stay in the cache, in path order.
      const keptNodes = verdict.accepted.slice(0, Math.max(0, committed.length - 1));
      this.kv.keepBranch(s.id, [
        ...Array.from({ length: p.compute }, (_, i) => i),
        ...keptNodes.map((i) => p.compute + i),
      ]);
      const c = s.counters;
      c.targetPasses++;
      c.verifiedTokens += committed.length;
      c.proposedTokens += n;
      c.acceptedTokens += keptNodes.length;
      s.acceptance = updateAcceptance(s.acceptance, verdict.accepted.length, n, {
        ewmaAlpha: this.options.acceptanceAlpha ?? DEFAULT_ACCEPTANCE_ALPHA,
      });
      if (this.options.recordSteps && n > 0)
        s.steps.push(this.record(p, verdict, outputOffset, logitRow, output));
      this.capture(p, output.features, keptNodes);
      if (!s.done) this.observe(p, output.features, keptNodes);
      ran.push({ seq: s, tokens: committed, computed: p.compute });
      logitRow += 1 + n;
    }
    const verifyMs = output.passMs + performance.now() - t0;
    const tuner = plan.verifying > 0 ? this.options.draftCap : undefined;
    tuner?.observe(
      plan.verifying,
      plan.cap,
      ran.reduce((t, x) => t + x.tokens.length, 0),
      plan.draftMs + verifyMs,
    );
    const { starved, rows, draftMs, refusedProposals } = plan;
    return { ran, starved, rows, draftMs, verifyMs, refusedProposals };
  }

  /** Layers whose hidden states the drafters of this step's sequences (and traces) want. */
  private featureLayersFor(plans: readonly SequencePlan[]): number[] {
    const layers = new Set<number>();
    for (const p of plans) {
      for (const l of this.drafters.get(p.seq.drafter)?.featureLayers ?? []) layers.add(l);
      if (p.samples) for (const l of p.seq.captured?.layers ?? []) layers.add(l);
    }
    return [...layers].sort((a, b) => a - b);
  }

  private async readFeatures(
    hidden: Map<number, Activation>,
    layers: readonly number[],
    rows: number,
  ): Promise<Map<number, Float32Array>> {
    const out = new Map<number, Float32Array>();
    for (const l of layers) {
      const act = hidden.get(l);
      if (act === undefined) continue;
      const data = await this.model.backend.readRows(act);
      this.model.backend.release(act);
      if (data.length !== rows * this.model.config.hiddenSize) {
        throw new Error("decoder: hidden features have an unexpected size");
      }
      out.set(l, data);
    }
    return out;
  }

  /** The rows now cached for `p`: its computed tokens, then the kept proposal nodes. */
  private keptRows(p: SequencePlan, keptNodes: readonly number[]): number[] {
    return [
      ...Array.from({ length: p.compute }, (_, i) => p.rowStart + i),
      ...keptNodes.map((i) => p.rowStart + p.compute + i),
    ];
  }

  private capture(p: SequencePlan, features: Map<number, Float32Array>, keptNodes: readonly number[]): void {
    const c = p.seq.captured;
    if (c === undefined) return;
    const hiddenSize = this.model.config.hiddenSize;
    this.keptRows(p, keptNodes).forEach((r, i) => {
      p.seq.capture(p.computed + i, featureRow(features, c.layers, r, hiddenSize));
    });
  }

  /** Tells the sequence's drafter what is committed, with the features of the rows now cached. */
  private observe(p: SequencePlan, features: Map<number, Float32Array>, keptNodes: readonly number[]): void {
    const d = this.drafters.get(p.seq.drafter);
    if (d === undefined) return;
    let f: TargetFeatures | undefined;
    const want = d.featureLayers;
    if (want.length > 0 && want.every((l) => features.has(l))) {
      const hiddenSize = this.model.config.hiddenSize;
      const rows = this.keptRows(p, keptNodes);
      const data = new Float32Array(rows.length * want.length * hiddenSize);
      rows.forEach((r, i) => {
        data.set(featureRow(features, want, r, hiddenSize), i * want.length * hiddenSize);
      });
      f = { layers: want, firstPosition: p.computed, count: rows.length, data };
    }
    d.observe(p.seq, f);
  }

  private record(
    p: SequencePlan,
    verdict: Verdict,
    outputOffset: number,
    logitRow: number,
    out: StepOutput,
  ): StepRecord {
    const n = p.proposal.tokens.length;
    const k = Math.min(this.options.traceTopK ?? 0, this.model.config.vocabSize);
    const vocab = this.model.config.vocabSize;
    const topkIds = new Int32Array(n * k);
    const topkLogprobs = new Float32Array(n * k);
    const logits = out.logits.get(p.seq);
    for (let i = 0; i < n && k > 0; i++) {
      // Node i's token was drawn at its parent's row: row 0 for the root's children.
      const local = (p.proposal.parents[i] as number) + 1;
      const t = out.topRows;
      if (t !== undefined) {
        const row = logitRow + local;
        for (let j = 0; j < k; j++) {
          topkIds[i * k + j] = t.ids[row * t.k + j] as number;
          topkLogprobs[i * k + j] = (t.values[row * t.k + j] as number) - (t.logSumExp[row] as number);
        }
      } else if (logits !== undefined) {
        const r = logits.subarray(local * vocab, (local + 1) * vocab);
        const lse = logSumExp(r);
        topKIds(r, k).forEach((id, j) => {
          topkIds[i * k + j] = id;
          topkLogprobs[i * k + j] = (r[id] as number) - lse;
        });
      }
    }
    return {
      outputOffset,
      // A composite drafter (hybrid) names the drafter that made this step's proposal, and its version.
      drafter: p.proposal.source ?? p.seq.drafter,
      speculatorVersion:
        p.proposal.sourceVersion ?? p.drafter?.versionFor?.(p.seq.id) ?? p.drafter?.version ?? "",
      proposal: p.proposal,
      accepted: verdict.accepted,
      bonus: verdict.bonus,
      topkIds,
      topkLogprobs,
    };
  }
}

/** Row r of each layer's features, concatenated in `layers` order. */
function featureRow(
  features: Map<number, Float32Array>,
  layers: readonly number[],
  r: number,
  hiddenSize: number,
): Float32Array {
  const out = new Float32Array(layers.length * hiddenSize);
  layers.forEach((l, j) => {
    const src = features.get(l) as Float32Array;
    out.set(src.subarray(r * hiddenSize, (r + 1) * hiddenSize), j * hiddenSize);
  });
  return out;
}
