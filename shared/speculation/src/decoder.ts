// The speculative decoding step, for a batch of sequences sharing one target pass (continuous batching:
// prefill chunks of some sequences ride in the same pass as verification trees of others).
//
// A sequence's invariant: every committed token but the last is in the target's KV cache. So a step for a
// sequence is either
// - a prefill chunk: more of tokens[0 .. len - 1) into the cache (no logits wanted), or
// - a verification: row 0 is the last committed token, rows 1.. are the drafter's proposal tree; the
//   target's distributions at those rows decide (verify.ts) which nodes are accepted and which token
//   follows them; the accepted branch's KV is kept (KvManager.keepBranch), the rest dropped.
// A prompt's first output token comes from its first verification step (row 0 = the prompt's last token),
// so drafters already propose for it. Greedy output is exactly the target's; sampled output follows the
// target's distribution exactly, whatever the drafters propose.
import {
  type Activation,
  argmax,
  buildLayout,
  type KvManager,
  type Model,
  Rng,
  type SamplingParams,
  type TopKRows,
} from "@specloop/engine";
import {
  type AcceptanceStats,
  defaultBudgetPolicyOptions,
  NO_ACCEPTANCE,
  updateAcceptance,
} from "./budget.js";

const DEFAULT_ACCEPTANCE_ALPHA = defaultBudgetPolicyOptions().ewmaAlpha;

import type { DraftCapTuner } from "./draft-cap.js";
import type {
  Drafter,
  DrafterKind,
  DraftRequest,
  Proposal,
  SequenceView,
  TargetFeatures,
} from "./drafter.js";
import { EMPTY_PROPOSAL } from "./drafter.js";
import { truncateProposal, type Verdict, verifyGreedy, verifySampled } from "./verify.js";

export type FinishReason = "stop" | "length";

/** One verification step as traces record it (the VerificationStep message of proto/.../trace.proto). */
export interface StepRecord {
  /** Output tokens committed before the step. */
  outputOffset: number;
  drafter: DrafterKind;
  speculatorVersion: string;
  proposal: Proposal;
  accepted: number[];
  bonus: number;
  /** The target's top-k at each proposed node's position (the distribution at its parent), [nodes, k]. */
  topkIds: Int32Array;
  topkLogprobs: Float32Array;
}

export interface SequenceOptions {
  id: string;
  prompt: readonly number[];
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  stopTokenIds: readonly number[];
  drafter: DrafterKind;
  /** The request's own cap on drafted nodes per step (0 or absent: the budget policy decides). */
  maxDraftTokens?: number;
  /** Target layers whose hidden states are kept at every committed output position (traces' features). */
  captureLayers?: readonly number[];
  /** At most this many positions are captured (memory bound); later ones are not. */
  captureLimit?: number;
}

/** Hidden states captured at committed output positions: [count, layers.length * hidden], f32. */
export interface CapturedFeatures {
  layers: readonly number[];
  /** Output index of the first row. */
  firstPosition: number;
  rows: Float32Array[];
}

/** A request being decoded: its committed tokens, its generator, what it drafted and accepted. */
export class DecodeSequence implements SequenceView {
  readonly id: string;
  readonly tokens: number[];
  readonly promptLength: number;
  readonly sampling: SamplingParams;
  readonly maxTokens: number;
  readonly seed: number;
  readonly rng: Rng;
  readonly stop: ReadonlySet<number>;
  drafter: DrafterKind;
  readonly maxDraftTokens: number;
  finishReason: FinishReason | undefined;
  readonly captured: CapturedFeatures | undefined;
  private readonly captureLimit: number;
  /** Verification steps not yet handed to a trace (the node drains them chunk by chunk). */
  steps: StepRecord[] = [];
  targetPasses = 0;
  /** Output tokens produced by verification passes (each pass gives accepted + 1). */
  verifiedTokens = 0;
  /** Accepted drafts per drafting pass, recent-weighted (the budget policy's input). */
  acceptance: AcceptanceStats = NO_ACCEPTANCE;

  constructor(options: SequenceOptions) {
    if (options.prompt.length === 0) throw new RangeError("an empty prompt (give at least one token)");
    this.id = options.id;
    this.tokens = [...options.prompt];
    this.promptLength = options.prompt.length;
    this.sampling = options.sampling;
    this.maxTokens = options.maxTokens;
    this.seed = options.seed;
    this.rng = new Rng(options.seed);
    this.stop = new Set(options.stopTokenIds);
    this.drafter = options.drafter;
    this.maxDraftTokens = options.maxDraftTokens ?? 0;
    const layers = options.captureLayers ?? [];
    this.captured = layers.length > 0 ? { layers, firstPosition: 0, rows: [] } : undefined;
    this.captureLimit = options.captureLimit ?? 4096;
  }

  /** Ends the sequence early (a stop string, a cancelled call): nothing more is generated. */
  end(reason: FinishReason): void {
    this.finishReason ??= reason;
  }

  /** Keeps the features of the token at `position` (an index into tokens) if it is an output token. */
  capture(position: number, row: Float32Array): void {
    const c = this.captured;
    const out = position - this.promptLength;
    if (c === undefined || out < 0 || c.rows.length >= this.captureLimit) return;
    if (c.rows.length === 0) c.firstPosition = out;
    if (out === c.firstPosition + c.rows.length) c.rows.push(row);
  }

  get output(): number[] {
    return this.tokens.slice(this.promptLength);
  }

  get outputLength(): number {
    return this.tokens.length - this.promptLength;
  }

  get remaining(): number {
    return this.finishReason === undefined ? this.maxTokens - this.outputLength : 0;
  }

  get done(): boolean {
    return this.finishReason !== undefined;
  }

  /** Commits emitted tokens up to a stop token or the token limit; returns the ones kept. */
  commit(emitted: readonly number[]): number[] {
    const kept: number[] = [];
    for (const t of emitted) {
      if (this.done) break;
      this.tokens.push(t);
      kept.push(t);
      if (this.stop.has(t)) this.finishReason = "stop";
      else if (this.outputLength >= this.maxTokens) this.finishReason = "length";
    }
    return kept;
  }
}

/** What one step did for one sequence. */
export interface SequenceStep {
  seq: DecodeSequence;
  kind: "prefill" | "verify";
  /** Output tokens committed by this step (none for a prefill chunk). */
  tokens: number[];
  /** Prompt tokens cached by this step (0 for a verification). */
  prefilled: number;
}

export interface StepResult {
  ran: SequenceStep[];
  /** Sequences that got no KV for even one row: the caller frees room (preempts) and retries them. */
  starved: DecodeSequence[];
  /** Rows in the target pass. */
  rows: number;
  draftMs: number;
  verifyMs: number;
}

export interface StepOptions {
  /** Prompt tokens (over all sequences) a step may prefill. */
  prefillTokens: number;
}

export interface DecoderOptions {
  model: Model;
  kv: KvManager;
  drafters: ReadonlyMap<DrafterKind, Drafter>;
  /** Nodes to draft for a sequence this step (the budget policy, budget.ts); 0 disables drafting. */
  budgetFor: (seq: DecodeSequence, drafter: Drafter) => number;
  /**
   * Caps the step's budgets at whichever cap has delivered the most tokens per millisecond lately
   * (draft-cap.ts). Absent: the budgets run as the policy set them.
   */
  draftCap?: DraftCapTuner;
  /** Weight of the newest pass in each sequence's acceptance EWMA (default: the budget policy's). */
  acceptanceAlpha?: number;
  /** Target top-k recorded per proposed node in traces (0: none). */
  traceTopK?: number;
  /** Keep step records for traces (off for in-process generation that publishes none). */
  recordSteps?: boolean;
}

interface Planned {
  seq: DecodeSequence;
  rowStart: number;
  prefill: number;
  proposal: Proposal;
  drafter: Drafter | undefined;
}

export class SpeculativeDecoder {
  readonly model: Model;
  readonly kv: KvManager;
  private readonly drafters: ReadonlyMap<DrafterKind, Drafter>;
  private readonly options: DecoderOptions;

  constructor(options: DecoderOptions) {
    this.model = options.model;
    this.kv = options.kv;
    this.drafters = options.drafters;
    this.options = options;
  }

  drafter(kind: DrafterKind): Drafter | undefined {
    return this.drafters.get(kind);
  }

  /**
   * Starts `seq` with the first `numTokens` of `parent`'s cache shared rather than recomputed (the verifier's
   * N samples of one prompt). Shares at most the common prefix of their tokens, and never seq's last token.
   */
  sharePrefix(parent: DecodeSequence, seq: DecodeSequence): number {
    if (this.kv.has(seq.id)) return 0;
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

  /** One target pass over `seqs` (in order: earlier ones get prefill budget and KV first). */
  async step(seqs: readonly DecodeSequence[], options: StepOptions): Promise<StepResult> {
    const t0 = performance.now();
    const active = seqs.filter((s) => !s.done);
    const needsPrefill = (s: DecodeSequence) => this.kv.numTokens(s.id) < s.tokens.length - 1;

    // Drafts for every sequence that verifies this step, one propose() per drafter (batched inside).
    const verifying = active.filter((s) => !needsPrefill(s));
    const proposals = new Map<DecodeSequence, Proposal>();
    const byDrafter = new Map<Drafter, DraftRequest[]>();
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
    for (const w of wanted) {
      const budget = Math.min(w.budget, cap);
      if (budget <= 0) continue;
      const list = byDrafter.get(w.drafter) ?? [];
      list.push({ seq: w.seq, budget, rng: w.seq.rng });
      byDrafter.set(w.drafter, list);
    }
    await Promise.all(
      [...byDrafter].map(async ([d, reqs]) => {
        const out = await d.propose(reqs);
        reqs.forEach((r, i) => {
          const p = out[i] ?? EMPTY_PROPOSAL;
          if (p.tokens.length > r.budget) {
            throw new RangeError(
              `drafter ${d.kind} proposed ${p.tokens.length} nodes over a budget of ${r.budget}`,
            );
          }
          proposals.set(r.seq as DecodeSequence, truncateProposal(p, r.seq.remaining - 1));
        });
      }),
    );
    const t1 = performance.now();

    // Plan rows and take KV; a proposal that does not fit is dropped before the sequence is starved.
    const planned: Planned[] = [];
    const starved: DecodeSequence[] = [];
    let prefillLeft = options.prefillTokens;
    let rows = 0;
    for (const s of active) {
      if (needsPrefill(s)) {
        const n = Math.min(s.tokens.length - 1 - this.kv.numTokens(s.id), prefillLeft);
        if (n <= 0) continue;
        if (this.kv.allocateSlots(s.id, n) === null) {
          starved.push(s);
          continue;
        }
        prefillLeft -= n;
        planned.push({ seq: s, rowStart: rows, prefill: n, proposal: EMPTY_PROPOSAL, drafter: undefined });
        rows += n;
        continue;
      }
      let proposal = proposals.get(s) ?? EMPTY_PROPOSAL;
      if (this.kv.allocateSlots(s.id, 1, proposal.tokens.length) === null) {
        proposal = EMPTY_PROPOSAL;
        if (this.kv.allocateSlots(s.id, 1) === null) {
          starved.push(s);
          continue;
        }
      }
      const drafter = proposal.tokens.length > 0 ? this.drafters.get(s.drafter) : undefined;
      planned.push({ seq: s, rowStart: rows, prefill: 0, proposal, drafter });
      rows += 1 + proposal.tokens.length;
    }
    if (planned.length === 0) return { ran: [], starved, rows: 0, draftMs: t1 - t0, verifyMs: 0 };

    // The target pass.
    const entries = planned.map((p) =>
      p.prefill > 0
        ? { seq: p.seq.id, newTokens: p.prefill }
        : {
            seq: p.seq.id,
            newTokens: 1 + p.proposal.tokens.length,
            treeParents: Int32Array.from([-1, ...Array.from(p.proposal.parents, (q) => q + 1)]),
          },
    );
    const ids = new Int32Array(rows);
    for (const p of planned) {
      const cached = this.kv.numTokens(p.seq.id);
      if (p.prefill > 0) ids.set(p.seq.tokens.slice(cached, cached + p.prefill), p.rowStart);
      else {
        ids[p.rowStart] = p.seq.tokens.at(-1) as number;
        ids.set(p.proposal.tokens, p.rowStart + 1);
      }
    }
    const layout = buildLayout(this.kv, entries);
    const verifyRows = planned.filter((p) => p.prefill === 0);
    const logitRows = Int32Array.from(
      verifyRows.flatMap((p) =>
        Array.from({ length: 1 + p.proposal.tokens.length }, (_, i) => p.rowStart + i),
      ),
    );
    const featureLayers = this.featureLayersFor(planned);
    const out = this.model.forward(this.kv.storage, layout, ids, {
      logitRows,
      hiddenLayers: featureLayers,
    });
    const be = this.model.backend;
    const vocab = this.model.config.vocabSize;
    const topK = this.options.recordSteps ? (this.options.traceTopK ?? 0) : 0;
    const allGreedy = verifyRows.every((p) => p.seq.sampling.temperature === 0);
    let argmaxes: Int32Array | undefined;
    let logits: Float32Array | undefined;
    if (out.logits !== undefined) {
      if (allGreedy && (topK === 0 || be.topKRows !== undefined)) argmaxes = await be.argmaxRows(out.logits);
      else logits = await be.readRows(out.logits);
    }
    const topRows =
      out.logits !== undefined && topK > 0 && logits === undefined && be.topKRows
        ? await be.topKRows(out.logits, Math.min(topK, vocab))
        : undefined;
    if (out.logits !== undefined) be.release(out.logits);
    const features = await this.readFeatures(out.hidden, featureLayers, rows);

    // Verify, commit, keep the accepted branch's KV, tell the drafters.
    const ran: SequenceStep[] = [];
    let logitRow = 0;
    for (const p of planned) {
      const s = p.seq;
      const cached = this.kv.numTokens(s.id);
      if (p.prefill > 0) {
        this.kv.commit(s.id, p.prefill);
        this.observe(s, features, p.rowStart, cached, p.prefill);
        ran.push({ seq: s, kind: "prefill", tokens: [], prefilled: p.prefill });
        continue;
      }
      const n = p.proposal.tokens.length;
      let verdict: Verdict;
      if (logits !== undefined) {
        verdict = verifySampled(
          p.proposal,
          logits.subarray(logitRow * vocab, (logitRow + 1 + n) * vocab),
          vocab,
          s.sampling,
          s.rng,
        );
      } else {
        verdict = verifyGreedy(p.proposal, (argmaxes as Int32Array).subarray(logitRow, logitRow + 1 + n));
      }
      const outputOffset = s.outputLength;
      const committed = s.commit([
        ...verdict.accepted.map((i) => p.proposal.tokens[i] as number),
        verdict.bonus,
      ]);
      // Row 0 (the previous last token) and the accepted nodes stay in the cache, in path order.
      const keptNodes = verdict.accepted.slice(0, Math.max(0, committed.length - 1));
      this.kv.keepBranch(s.id, [0, ...keptNodes.map((i) => i + 1)]);
      s.targetPasses++;
      s.verifiedTokens += committed.length;
      s.acceptance = updateAcceptance(s.acceptance, verdict.accepted.length, n, {
        ewmaAlpha: this.options.acceptanceAlpha ?? DEFAULT_ACCEPTANCE_ALPHA,
      });
      if (this.options.recordSteps && n > 0) {
        s.steps.push(this.record(s, p, verdict, outputOffset, logitRow, { logits, topRows, topK, vocab }));
      }
      if (s.captured !== undefined) {
        [p.rowStart, ...keptNodes.map((i) => p.rowStart + 1 + i)].forEach((r, i) => {
          s.capture(
            cached + i,
            featureRow(features, s.captured?.layers ?? [], r, this.model.config.hiddenSize),
          );
        });
      }
      if (!s.done) {
        this.observe(s, features, p.rowStart, cached, 1, keptNodes);
      }
      ran.push({ seq: s, kind: "verify", tokens: committed, prefilled: 0 });
      logitRow += 1 + n;
    }
    const verifyMs = performance.now() - t1;
    if (tuner !== undefined) {
      const tokens = ran.reduce((t, x) => t + x.tokens.length, 0);
      tuner.observe(verifying.length, cap, tokens, t1 - t0 + verifyMs);
    }
    return { ran, starved, rows, draftMs: t1 - t0, verifyMs };
  }

  /** Layers whose hidden states the drafters of this step's sequences learn from. */
  private featureLayersFor(planned: readonly Planned[]): number[] {
    const layers = new Set<number>();
    for (const p of planned) {
      for (const l of this.drafters.get(p.seq.drafter)?.featureLayers ?? []) layers.add(l);
      if (p.prefill === 0) for (const l of p.seq.captured?.layers ?? []) layers.add(l);
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
      out.set(l, await this.model.backend.readRows(act));
      this.model.backend.release(act);
    }
    if (
      out.size > 0 &&
      (out.values().next().value as Float32Array).length !== rows * this.model.config.hiddenSize
    ) {
      throw new Error("decoder: hidden features have an unexpected size");
    }
    return out;
  }

  /**
   * Tells the sequence's drafter what is committed, with the features of the rows now cached: `count`
   * rows from rowStart (a prefill chunk), or row 0 plus the kept nodes (a verification).
   */
  private observe(
    s: DecodeSequence,
    features: Map<number, Float32Array>,
    rowStart: number,
    firstPosition: number,
    count: number,
    keptNodes: readonly number[] = [],
  ): void {
    const d = this.drafters.get(s.drafter);
    if (d === undefined) return;
    let f: TargetFeatures | undefined;
    const want = d.featureLayers;
    if (want.length > 0 && want.every((l) => features.has(l))) {
      const hiddenSize = this.model.config.hiddenSize;
      const rowsIdx = [
        ...Array.from({ length: count }, (_, i) => rowStart + i),
        ...keptNodes.map((i) => rowStart + 1 + i),
      ];
      const data = new Float32Array(rowsIdx.length * want.length * hiddenSize);
      rowsIdx.forEach((r, i) => {
        data.set(featureRow(features, want, r, hiddenSize), i * want.length * hiddenSize);
      });
      f = { layers: want, firstPosition, count: rowsIdx.length, data };
    }
    d.observe(s, f);
  }

  private record(
    s: DecodeSequence,
    p: Planned,
    verdict: Verdict,
    outputOffset: number,
    logitRow: number,
    src: {
      logits: Float32Array | undefined;
      topRows: TopKRows | undefined;
      topK: number;
      vocab: number;
    },
  ): StepRecord {
    const n = p.proposal.tokens.length;
    const k = Math.min(src.topK, src.vocab);
    const topkIds = new Int32Array(n * k);
    const topkLogprobs = new Float32Array(n * k);
    for (let i = 0; i < n && k > 0; i++) {
      // Node i's token was drawn at its parent's row: row 0 for the root's children.
      const row = logitRow + (p.proposal.parents[i] as number) + 1;
      if (src.topRows !== undefined) {
        const t = src.topRows;
        for (let j = 0; j < k; j++) {
          topkIds[i * k + j] = t.ids[row * t.k + j] as number;
          topkLogprobs[i * k + j] = (t.values[row * t.k + j] as number) - (t.logSumExp[row] as number);
        }
      } else if (src.logits !== undefined) {
        const r = src.logits.subarray(row * src.vocab, (row + 1) * src.vocab);
        const top = topKOf(r, k);
        const lse = logSumExp(r);
        top.forEach((id, j) => {
          topkIds[i * k + j] = id;
          topkLogprobs[i * k + j] = (r[id] as number) - lse;
        });
      }
    }
    return {
      outputOffset,
      drafter: s.drafter,
      speculatorVersion: p.drafter?.versionFor?.(s.id) ?? p.drafter?.version ?? "",
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

/** Ids of the k largest values, largest first, lowest id on ties. */
export function topKOf(row: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (best.length === k && v <= (row[best[k - 1] as number] as number)) continue;
    let j = best.length < k ? best.length : k - 1;
    best[j] = i;
    while (j > 0 && (row[best[j - 1] as number] as number) < v) {
      best[j] = best[j - 1] as number;
      best[j - 1] = i;
      j--;
    }
  }
  return best;
}

export function logSumExp(row: ArrayLike<number>): number {
  const m = row[argmax(row)] as number;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp((row[i] as number) - m);
  return m + Math.log(sum);
}
