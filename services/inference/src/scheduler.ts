// Continuous batching over the speculative decoder. One loop owns the engine: each turn it admits waiting
// requests (first come, first served, while the KV budget and the batch size allow), runs one target pass
// for every running sequence (prefill chunks and verification trees together), hands each request the
// tokens it committed, and retires the finished, cancelled and failed. Work that needs the engine outside
// decoding (Score) runs between turns.
//
// Admission reserves KV for a request's prompt and a step's lookahead; growth past that is taken step by
// step, and when the pool runs dry the most recently admitted sequence is preempted (its KV freed, its
// tokens kept) and goes back to the front of the queue to be recomputed: the oldest requests always make
// progress, so none starves. A full queue refuses new requests instead of growing without bound.
import { setImmediate as yieldToIo } from "node:timers/promises";
import type { KvManager, Model, SamplingParams, StreamDecoder, Tokenizer } from "@specloop/engine";
import { CancelledError, Channel, ResourceExhaustedError, SpecloopError } from "@specloop/runtime";
import {
  DecodeSequence,
  type Drafter,
  type DrafterKind,
  type SpeculativeDecoder,
  type StepRecord,
} from "@specloop/speculation";

export type NodeFinishReason = "stop" | "length" | "context" | "cancelled";

/** A validated request (requests.ts builds it from the gRPC message). */
export interface NodeRequest {
  id: string;
  promptTokens: number[];
  /** What the client asked for (the context may cut it shorter). */
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  stopTokenIds: number[];
  stopStrings: string[];
  drafter: DrafterKind | "auto";
  /** 0: the budget policy decides. */
  maxDraftTokens: number;
  domain: string;
  sharePrefixWith: string;
  /** Target layers whose features this request's trace carries (empty: none). */
  captureLayers: number[];
  /** The speculator slot an eagle request was routed to at admission (traces say it). */
  speculatorRole: "live" | "canary";
}

/** Speculation counters over a span (a streamed chunk or the whole request). */
export interface SpanStats {
  targetPasses: number;
  proposedTokens: number;
  acceptedTokens: number;
  drafter: DrafterKind;
  speculatorVersion: string;
}

export type RequestEvent =
  | { kind: "tokens"; tokens: number[]; text: string; stats: SpanStats }
  | { kind: "finished"; result: FinishedRequest };

export interface FinishedRequest {
  request: NodeRequest;
  seq: DecodeSequence;
  reason: NodeFinishReason;
  /** Output text (cut before a stop string when one ended it). */
  text: string;
  /** Why the request ended early: cancelled (CancelledError), or failed (the status to answer with). */
  error: Error | undefined;
  stats: SpanStats;
  queuedAt: number;
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  finishedAt: number;
  prefillMs: number;
  draftMs: number;
  verifyMs: number;
}

export interface SchedulerOptions {
  model: Model;
  tokenizer: Tokenizer;
  kv: KvManager;
  decoder: SpeculativeDecoder;
  maxBatch: number;
  maxQueue: number;
  prefillTokensPerStep: number;
  /** Draft nodes the decoder may ask for in one step (the KV lookahead admission reserves). */
  maxDraftTokens: number;
  /** Resolves a request's drafter (auto) when it is admitted. */
  resolveDrafter: (request: NodeRequest) => DrafterKind;
  /** Called once per finished request (traces, metrics, acceptance book); must not throw. */
  onFinished?: (result: FinishedRequest) => void;
  /** Called after each target pass (metrics). */
  onStep?: (info: { rows: number; sequences: number; seconds: number }) => void;
}

interface Job {
  request: NodeRequest;
  seq: DecodeSequence;
  events: Channel<RequestEvent>;
  signal: AbortSignal | undefined;
  queuedAt: number;
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  /** Output tokens already streamed, and the text streamed from them. */
  streamed: number;
  text: string;
  /** Incremental detokenizer over the output, and all it has given (text + what is held back). */
  detok: StreamDecoder;
  decoded: string;
  /** Set when the job must end at the next turn (cancelled, failed). */
  abort: { reason: NodeFinishReason; error?: Error } | undefined;
  prefillMs: number;
  draftMs: number;
  verifyMs: number;
  contextCut: boolean;
  /** Steps already counted in a streamed chunk. */
  countedSteps: number;
}

export class Scheduler {
  private readonly waiting: Job[] = [];
  private readonly running: Job[] = [];
  private readonly exclusive: (() => Promise<void>)[] = [];
  private loop: Promise<void> | undefined;
  private closing = false;

  constructor(private readonly options: SchedulerOptions) {}

  get queueDepth(): number {
    return this.waiting.length;
  }

  get runningCount(): number {
    return this.running.length;
  }

  /**
   * Queues a request; its events (token chunks, then one `finished`) arrive on the returned iterable.
   * Throws ResourceExhaustedError when the queue is full. Aborting `signal` ends it at the next turn and
   * frees its KV then.
   */
  submit(request: NodeRequest, signal?: AbortSignal): AsyncIterable<RequestEvent> {
    if (this.closing) throw new ResourceExhaustedError("the node is shutting down");
    // Requests already queued get a batch slot first, if one is free; only then is the queue full or not.
    this.admit();
    if (this.waiting.length >= this.options.maxQueue) {
      throw new ResourceExhaustedError(
        `the node's queue is full (${this.options.maxQueue} requests waiting); retry later`,
      );
    }
    const ctx = this.options.model.config.maxPositions;
    const allowed = Math.min(request.maxTokens, ctx - request.promptTokens.length);
    const seq = new DecodeSequence({
      id: request.id,
      prompt: request.promptTokens,
      maxTokens: allowed,
      sampling: request.sampling,
      seed: request.seed,
      stopTokenIds: request.stopTokenIds,
      drafter: "none",
      maxDraftTokens: request.maxDraftTokens,
      captureLayers: request.captureLayers,
    });
    const job: Job = {
      request,
      seq,
      events: new Channel(),
      signal,
      queuedAt: Date.now(),
      admittedAt: undefined,
      firstTokenAt: undefined,
      streamed: 0,
      text: "",
      detok: this.options.tokenizer.createStreamDecoder({ skipSpecialTokens: true }),
      decoded: "",
      abort: undefined,
      prefillMs: 0,
      draftMs: 0,
      verifyMs: 0,
      contextCut: allowed < request.maxTokens,
      countedSteps: 0,
    };
    signal?.addEventListener("abort", () => this.cancel(job), { once: true });
    this.waiting.push(job);
    this.admit();
    this.kick();
    return job.events;
  }

  /** Runs `fn` with the engine to itself, between two decoding turns. */
  runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.exclusive.push(() => fn().then(resolve, reject));
      this.kick();
    });
  }

  /** Stops admitting; requests still queued or running are cancelled; resolves when the loop is idle. */
  async close(): Promise<void> {
    this.closing = true;
    for (const j of [...this.waiting, ...this.running]) {
      j.abort ??= { reason: "cancelled", error: new CancelledError("the node is shutting down") };
    }
    this.kick();
    await this.loop;
  }

  private cancel(job: Job): void {
    job.abort ??= { reason: "cancelled", error: new CancelledError("the call was cancelled") };
    const i = this.waiting.indexOf(job);
    if (i >= 0) {
      // Never admitted: nothing to free, it ends now.
      this.waiting.splice(i, 1);
      this.finish(job, "cancelled");
    }
    this.kick();
  }

  private kick(): void {
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
      if (this.waiting.length > 0 || this.running.length > 0 || this.exclusive.length > 0) this.kick();
    });
  }

  private async run(): Promise<void> {
    while (this.waiting.length > 0 || this.running.length > 0 || this.exclusive.length > 0) {
      for (const fn of this.exclusive.splice(0)) await fn();
      this.retireAborted();
      this.admit();
      if (this.running.length === 0) {
        if (this.waiting.length > 0) this.failUnfit();
        await yieldToIo();
        continue;
      }
      try {
        await this.turn();
      } catch (err) {
        // A failed pass fails the requests in it, not the node.
        for (const j of this.running) j.abort ??= { reason: "cancelled", error: asError(err) };
        this.retireAborted();
      }
      await yieldToIo();
    }
  }

  /** Admits queued requests in order while the batch and the KV pool have room for their prompts. */
  private admit(): void {
    const { kv, maxBatch } = this.options;
    const bs = kv.blockSize;
    while (this.waiting.length > 0 && this.running.length < maxBatch) {
      const job = this.waiting[0] as Job;
      const parent = this.running.find((j) => j.request.id === job.request.sharePrefixWith);
      const shared =
        parent !== undefined ? Math.min(kv.numTokens(parent.request.id), job.seq.tokens.length - 1) : 0;
      const need =
        Math.ceil((job.seq.tokens.length + 1 + this.options.maxDraftTokens) / bs) - Math.floor(shared / bs);
      // Keep one block per running sequence in reserve for its next step.
      if (need + this.running.length > kv.numFreeBlocks) break;
      this.waiting.shift();
      if (parent !== undefined) this.options.decoder.sharePrefix(parent.seq, job.seq);
      job.seq.drafter = this.options.resolveDrafter(job.request);
      job.admittedAt ??= Date.now();
      this.running.push(job);
    }
  }

  /** The head of the queue can never fit (its prompt needs more KV than the node has): fail it. */
  private failUnfit(): void {
    const job = this.waiting[0] as Job;
    const { kv } = this.options;
    const need = Math.ceil((job.seq.tokens.length + 1) / kv.blockSize);
    if (need > kv.spec.numBlocks) {
      this.waiting.shift();
      job.abort = {
        reason: "cancelled",
        error: new ResourceExhaustedError(
          `the prompt needs ${need} KV blocks and the node has ${kv.spec.numBlocks} in all`,
        ),
      };
      this.finish(job, "cancelled");
    }
  }

  private async turn(): Promise<void> {
    const t0 = performance.now();
    const seqs = this.running.map((j) => j.seq);
    const step = await this.options.decoder.step(seqs, { prefillTokens: this.options.prefillTokensPerStep });
    const seconds = (performance.now() - t0) / 1000;
    this.options.onStep?.({ rows: step.rows, sequences: step.ran.length, seconds });
    const byId = new Map(this.running.map((j) => [j.seq, j]));
    for (const r of step.ran) {
      const job = byId.get(r.seq) as Job;
      if (r.kind === "prefill") {
        job.prefillMs += seconds * 1000;
        continue;
      }
      job.draftMs += step.draftMs;
      job.verifyMs += step.verifyMs;
      this.emit(job);
    }
    if (step.starved.length > 0) this.preempt(step.starved);
    for (const j of [...this.running]) {
      if (j.seq.done) {
        this.running.splice(this.running.indexOf(j), 1);
        this.options.decoder.evict(j.seq);
        this.finish(j, this.reasonOf(j));
      }
    }
  }

  /**
   * Streams a job's newly committed tokens, and the text they add (decoded incrementally: StreamDecoder
   * holds back a partial character). A stop string ends the job and the text is cut before it; text that
   * could still become a stop string is held back until it is settled, so streamed text is never taken back.
   */
  private emit(job: Job): void {
    const { tokens: all, promptLength } = job.seq;
    const tokens = all.slice(promptLength + job.streamed);
    if (tokens.length === 0) return;
    job.firstTokenAt ??= Date.now();
    job.decoded += job.detok.push(tokens);
    if (job.seq.done) job.decoded += job.detok.flush();
    const stops = job.request.stopStrings;
    // A stop string can only start in text not yet streamed (what could begin one is held back below).
    let cut = -1;
    for (const stop of stops) {
      const at = job.decoded.indexOf(stop, job.text.length);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      job.decoded = job.decoded.slice(0, cut);
      job.seq.end("stop");
    }
    let hold = 0;
    if (!job.seq.done) {
      for (const stop of stops) {
        for (let k = Math.min(stop.length - 1, job.decoded.length - job.text.length); k > hold; k--) {
          if (job.decoded.endsWith(stop.slice(0, k))) {
            hold = k;
            break;
          }
        }
      }
    }
    const delta = job.decoded.slice(job.text.length, job.decoded.length - hold);
    job.text += delta;
    job.streamed += tokens.length;
    job.events.push({ kind: "tokens", tokens, text: delta, stats: this.spanStats(job, job.countedSteps) });
    job.countedSteps = job.seq.steps.length;
  }

  /** Frees the most recently admitted sequences until the starved ones can run; they go back in front. */
  private preempt(starved: DecodeSequence[]): void {
    const victims = this.running.length > starved.length ? [this.running.at(-1) as Job] : [];
    if (victims.length === 0) {
      // Everything running is starved: give up the newest so the oldest can go on.
      if (this.running.length > 1) victims.push(this.running.at(-1) as Job);
      else {
        const only = this.running[0] as Job;
        only.abort = {
          reason: "cancelled",
          error: new ResourceExhaustedError(
            `the node's KV cache (${this.options.kv.spec.numBlocks} blocks) cannot hold this request`,
          ),
        };
        this.retireAborted();
        return;
      }
    }
    for (const v of victims) {
      this.running.splice(this.running.indexOf(v), 1);
      this.options.decoder.evict(v.seq);
      this.waiting.unshift(v);
    }
  }

  private retireAborted(): void {
    for (const j of [...this.running]) {
      if (j.abort === undefined) continue;
      this.running.splice(this.running.indexOf(j), 1);
      this.options.decoder.evict(j.seq);
      this.finish(j, j.abort.reason);
    }
    for (const j of [...this.waiting]) {
      if (j.abort === undefined) continue;
      this.waiting.splice(this.waiting.indexOf(j), 1);
      this.finish(j, j.abort.reason);
    }
  }

  private reasonOf(job: Job): NodeFinishReason {
    if (job.seq.finishReason === "stop") return "stop";
    return job.contextCut ? "context" : "length";
  }

  private spanStats(job: Job, fromStep: number): SpanStats {
    const steps: StepRecord[] = job.seq.steps.slice(fromStep);
    const d: Drafter | undefined = this.options.decoder.drafter(job.seq.drafter);
    return {
      targetPasses: job.seq.targetPasses,
      proposedTokens: steps.reduce((n, s) => n + s.proposal.tokens.length, 0),
      acceptedTokens: steps.reduce((n, s) => n + s.accepted.length, 0),
      drafter: job.seq.drafter,
      speculatorVersion: d?.versionFor?.(job.seq.id) ?? d?.version ?? "",
    };
  }

  private finish(job: Job, reason: NodeFinishReason): void {
    const result = this.result(job, reason);
    job.events.push({ kind: "finished", result });
    job.events.close();
    try {
      this.options.onFinished?.(result);
    } catch {
      // Observers (traces, metrics) never fail a request.
    }
  }

  private result(job: Job, reason: NodeFinishReason): FinishedRequest {
    return {
      request: job.request,
      seq: job.seq,
      reason,
      text: job.text,
      error: job.abort?.error,
      stats: this.spanStats(job, 0),
      queuedAt: job.queuedAt,
      admittedAt: job.admittedAt,
      firstTokenAt: job.firstTokenAt,
      finishedAt: Date.now(),
      prefillMs: job.prefillMs,
      draftMs: job.draftMs,
      verifyMs: job.verifyMs,
    };
  }
}

function asError(err: unknown): Error {
  if (err instanceof SpecloopError || err instanceof Error) return err;
  return new Error(String(err));
}
