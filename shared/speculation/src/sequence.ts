// A request being decoded: its committed tokens, its generator, its stop condition, and what it drafted and
// accepted. The decoder (decoder.ts) advances it; drafters read it through SequenceView.
import { Rng, type SamplingParams } from "@specloop/engine";
import { type AcceptanceStats, NO_ACCEPTANCE } from "./budget.js";
import type { DrafterKind, Proposal, SequenceView } from "./drafter.js";

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

/** Speculation counters of a sequence, kept whatever the trace setting. */
export interface SpeculationCounters {
  /** Target passes that committed tokens for this sequence. */
  targetPasses: number;
  /** Output tokens those passes committed (accepted + 1 each). */
  verifiedTokens: number;
  proposedTokens: number;
  acceptedTokens: number;
}

/**
 * The one place where a sequence's end is decided, token by token: stop token ids, and stop strings matched
 * on the incrementally decoded text (a stop string ends the sequence after the token that completes it, and
 * the text is cut before it). Text that could still grow into a stop string is not yet settled, so what is
 * streamed is never taken back.
 */
/** Incremental token-to-text decoding (the engine's StreamDecoder is one): text that is settled so far. */
export interface Detokenizer {
  push(ids: readonly number[]): string;
  /** Whatever was held back (a partial character), at the end. */
  flush(): string;
}

export class StopCondition {
  private readonly stopIds: ReadonlySet<number>;
  private decoded = "";
  private cut = false;

  constructor(
    stopTokenIds: readonly number[],
    private readonly stopStrings: readonly string[] = [],
    /** Absent: no text (in-process generation); stop strings need it. */
    private readonly detokenizer?: Detokenizer,
  ) {
    if (stopStrings.length > 0 && detokenizer === undefined) {
      throw new RangeError("stop strings need a detokenizer");
    }
    this.stopIds = new Set(stopTokenIds);
  }

  /** The output text so far (cut before the stop string that ended it). */
  get text(): string {
    return this.decoded;
  }

  /** Feeds the next committed output token; true when generation ends after it. */
  push(token: number): boolean {
    if (this.detokenizer !== undefined && !this.cut) {
      const before = this.decoded.length;
      this.decoded += this.detokenizer.push([token]);
      for (const stop of this.stopStrings) {
        // A stop string can only end in what this token added.
        const at = this.decoded.indexOf(stop, Math.max(0, before - stop.length + 1));
        if (at >= 0) {
          this.decoded = this.decoded.slice(0, at);
          this.cut = true;
        }
      }
      if (this.cut) return true;
    }
    return this.stopIds.has(token);
  }

  /** The sequence ended: whatever the detokenizer held back (a partial character) is final. */
  finish(): void {
    if (this.detokenizer !== undefined && !this.cut) this.decoded += this.detokenizer.flush();
  }

  /** Length of the text that is final: all of it once done, else all but a tail that may begin a stop string. */
  settledLength(done: boolean): number {
    if (done || this.cut) return this.decoded.length;
    let hold = 0;
    for (const stop of this.stopStrings) {
      for (let k = Math.min(stop.length - 1, this.decoded.length); k > hold; k--) {
        if (this.decoded.endsWith(stop.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return this.decoded.length - hold;
  }
}

export interface SequenceOptions {
  /** The node's own name for the sequence (unique while it lives): keys its KV and drafter state. */
  id: string;
  prompt: readonly number[];
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  /** Stop token ids; or a whole StopCondition (stop strings, text) in `stop`. */
  stopTokenIds?: readonly number[];
  stop?: StopCondition;
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

export class DecodeSequence implements SequenceView {
  readonly id: string;
  readonly tokens: number[];
  readonly promptLength: number;
  readonly sampling: SamplingParams;
  readonly maxTokens: number;
  readonly seed: number;
  readonly rng: Rng;
  readonly stop: StopCondition;
  readonly drafter: DrafterKind;
  readonly maxDraftTokens: number;
  finishReason: FinishReason | undefined;
  readonly captured: CapturedFeatures | undefined;
  private readonly captureLimit: number;
  /** Verification steps not yet handed to a trace (kept only when the decoder records steps). */
  steps: StepRecord[] = [];
  readonly counters: SpeculationCounters = {
    targetPasses: 0,
    verifiedTokens: 0,
    proposedTokens: 0,
    acceptedTokens: 0,
  };
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
    this.stop = options.stop ?? new StopCondition(options.stopTokenIds ?? []);
    this.drafter = options.drafter;
    this.maxDraftTokens = options.maxDraftTokens ?? 0;
    const layers = options.captureLayers ?? [];
    this.captured = layers.length > 0 ? { layers, firstPosition: 0, rows: [] } : undefined;
    this.captureLimit = options.captureLimit ?? 4096;
  }

  get targetPasses(): number {
    return this.counters.targetPasses;
  }

  get verifiedTokens(): number {
    return this.counters.verifiedTokens;
  }

  /** Ends the sequence early (a cancelled call): nothing more is generated. */
  end(reason: FinishReason): void {
    if (this.finishReason !== undefined) return;
    this.finishReason = reason;
    this.stop.finish();
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

  /** Commits emitted tokens up to the stop condition or the token limit; returns the ones kept. */
  commit(emitted: readonly number[]): number[] {
    const kept: number[] = [];
    for (const t of emitted) {
      if (this.done) break;
      this.tokens.push(t);
      kept.push(t);
      if (this.stop.push(t)) this.end("stop");
      else if (this.outputLength >= this.maxTokens) this.end("length");
    }
    return kept;
  }
}
