// Continuous batching: which sequences run each step. One loop owns the engine; each turn it runs the work
// that needs the engine to itself (Score, speculator swaps), retires what was cancelled, admits waiting
// requests (first come, first served, while the batch and the KV pool allow), runs one step for every
// running sequence, hands each request the tokens it committed, and retires the finished. The loop sleeps
// when there is nothing to do and wakes on an event (a request, a cancel, exclusive work), never spinning.
//
// What fits: one rule (`blocksToAdmit`) decides admission and refusal. A request whose prompt (+ 1 for the
// token it produces) cannot fit the whole KV pool is refused at submit with RESOURCE_EXHAUSTED; otherwise its
// draft lookahead is cut to what the pool can ever hold, so it is admitted once the pool drains. Growth past
// admission is taken step by step; when the pool runs dry the most recently admitted sequence is preempted
// (its KV freed, its tokens kept) and goes back to the front of the queue to be recomputed: the oldest always
// progress. A full queue refuses new requests instead of growing without bound.
//
// The scheduler knows sequences and KV blocks, not models or text: the engine behind it is an interface
// (StepEngine), driven in scheduler.test.ts by hand-written step results.
import { CancelledError, Channel, ResourceExhaustedError, SpecloopError } from "@specloop/runtime";
import type { DecodeSequence, SpeculationCounters, StepOptions, StepResult } from "@specloop/speculation";
import type { ResolvedRequest } from "./requests.js";

export type NodeFinishReason = "stop" | "length" | "context" | "cancelled";

/** What the scheduler needs of the engine: KV accounting and one step over a batch. */
export interface StepEngine {
  readonly blockSize: number;
  /** Blocks in the whole pool. */
  readonly totalBlocks: number;
  freeBlocks(): number;
  /** Tokens of a sequence in the KV cache. */
  cachedTokens(seqId: string): number;
  step(seqs: readonly DecodeSequence[], options: StepOptions): Promise<StepResult>;
  /** Frees a sequence's KV and drafter state; its tokens stay. */
  evict(seq: DecodeSequence): void;
  /** Shares the common cached prefix of `parent` with `seq` (not yet allocated); returns tokens shared. */
  sharePrefix(parent: DecodeSequence, seq: DecodeSequence): number;
}

/**
 * A request's progress: the tokens a step committed, with what the sequence had when it did (its counters
 * and the length of its settled text), since the sequence moves on before the event is read.
 */
export type RequestEvent =
  | { kind: "tokens"; tokens: number[]; counters: SpeculationCounters; settledChars: number }
  | { kind: "finished"; result: FinishedRequest };

export interface FinishedRequest {
  request: ResolvedRequest;
  seq: DecodeSequence;
  reason: NodeFinishReason;
  /** Why the request ended early: cancelled (CancelledError), or failed (the status to answer with). */
  error: Error | undefined;
  queuedAt: number;
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  finishedAt: number;
  prefillMs: number;
  draftMs: number;
  verifyMs: number;
}

export interface SchedulerOptions {
  engine: StepEngine;
  maxBatch: number;
  maxQueue: number;
  /** Prompt tokens (over all sequences) one step may compute. */
  prefillTokensPerStep: number;
  /** Draft nodes a step may ask for a sequence (the KV lookahead admission reserves). */
  maxDraftTokens: number;
  /** Called once per finished request (traces, metrics, acceptance book); must not throw. */
  onFinished?: (result: FinishedRequest) => void;
  /** Called after each step (metrics). */
  onStep?: (info: { rows: number; sequences: number; seconds: number; refusedProposals: number }) => void;
}

interface Job {
  request: ResolvedRequest;
  seq: DecodeSequence;
  events: Channel<RequestEvent>;
  queuedAt: number;
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  /** Set when the job must end at the next turn (cancelled, failed). */
  abort: { reason: NodeFinishReason; error?: Error } | undefined;
  prefillMs: number;
  draftMs: number;
  verifyMs: number;
}

/**
 * KV blocks a sequence of `tokens` committed tokens needs to be admitted with `lookahead` draft nodes, less
 * what a shared prefix already holds. The one rule for admission and for "can never fit".
 */
export function blocksToAdmit(
  tokens: number,
  lookahead: number,
  blockSize: number,
  sharedTokens = 0,
): number {
  return Math.ceil((tokens + 1 + lookahead) / blockSize) - Math.floor(sharedTokens / blockSize);
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

  /** The draft lookahead admission reserves for a sequence of `tokens`: cut to what the pool can hold. */
  lookaheadFor(tokens: number): number {
    const { engine, maxDraftTokens } = this.options;
    return Math.max(0, Math.min(maxDraftTokens, engine.totalBlocks * engine.blockSize - tokens - 1));
  }

  /** Whether a sequence of `tokens` committed tokens can ever be admitted (with the smallest lookahead). */
  canEverFit(tokens: number): boolean {
    const { engine } = this.options;
    return blocksToAdmit(tokens, 0, engine.blockSize) <= engine.totalBlocks;
  }

  /**
   * Queues a request's sequence; its events (committed tokens, then one `finished`) arrive on the returned
   * iterable. Throws ResourceExhaustedError when the queue is full, the node is closing, or the prompt can
   * never fit the KV pool. Aborting `signal` ends it at the next turn and frees its KV then.
   */
  submit(request: ResolvedRequest, seq: DecodeSequence, signal?: AbortSignal): AsyncIterable<RequestEvent> {
    if (this.closing) throw new ResourceExhaustedError("the node is shutting down");
    if (!this.canEverFit(seq.tokens.length)) {
      const { engine } = this.options;
      throw new ResourceExhaustedError(
        `the prompt needs ${blocksToAdmit(seq.tokens.length, 0, engine.blockSize)} KV blocks of ` +
          `${engine.blockSize} tokens and the node has ${engine.totalBlocks} in all`,
      );
    }
    // Requests already queued get a batch slot first, if one is free; only then is the queue full or not.
    this.admit();
    if (this.waiting.length >= this.options.maxQueue) {
      throw new ResourceExhaustedError(
        `the node's queue is full (${this.options.maxQueue} requests waiting); retry later`,
      );
    }
    const job: Job = {
      request,
      seq,
      events: new Channel(),
      queuedAt: Date.now(),
      admittedAt: undefined,
      firstTokenAt: undefined,
      abort: undefined,
      prefillMs: 0,
      draftMs: 0,
      verifyMs: 0,
    };
    signal?.addEventListener("abort", () => this.cancel(job), { once: true });
    this.waiting.push(job);
    this.kick();
    return job.events;
  }

  /** Runs `fn` with the engine to itself, between two steps. */
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
    this.kick();
  }

  /** Starts the loop if it is not running; it runs while there is work and ends when there is none. */
  private kick(): void {
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
      if (this.hasWork()) this.kick();
    });
  }

  private hasWork(): boolean {
    return (
      this.exclusive.length > 0 ||
      this.running.length > 0 ||
      this.waiting.some((j) => j.abort !== undefined) ||
      (this.waiting.length > 0 && this.admittable())
    );
  }

  private async run(): Promise<void> {
    // Each turn yields to I/O first, so gRPC reads and cancels get in between steps.
    for (;;) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      for (const fn of this.exclusive.splice(0)) await fn();
      this.retireAborted();
      this.admit();
      if (this.running.length === 0) {
        // Nothing can run: the loop ends and the next event (submit, cancel, exclusive work) restarts it.
        if (!this.hasWork()) return;
        continue;
      }
      try {
        await this.turn();
      } catch (err) {
        // A failed step fails the requests in it, not the node.
        for (const j of this.running) j.abort ??= { reason: "cancelled", error: asError(err) };
        this.retireAborted();
      }
    }
  }

  /** Whether the head of the queue fits now. */
  private admittable(): boolean {
    const job = this.waiting[0];
    return job !== undefined && this.running.length < this.options.maxBatch && this.blocksFor(job).fits;
  }

  private blocksFor(job: Job): { fits: boolean; parent: Job | undefined } {
    const { engine } = this.options;
    const parent =
      job.request.sharePrefixWith === ""
        ? undefined
        : this.running.find((j) => j.request.clientRequestId === job.request.sharePrefixWith);
    const shared =
      parent !== undefined ? Math.min(engine.cachedTokens(parent.seq.id), job.seq.tokens.length - 1) : 0;
    const tokens = job.seq.tokens.length;
    const need = blocksToAdmit(tokens, this.lookaheadFor(tokens), engine.blockSize, shared);
    // One block per running sequence stays in reserve for its next step.
    return { fits: need + this.running.length <= engine.freeBlocks(), parent };
  }

  /** Admits queued requests in order while the batch and the KV pool have room for them. */
  private admit(): void {
    while (this.waiting.length > 0 && this.running.length < this.options.maxBatch) {
      const job = this.waiting[0] as Job;
      if (job.abort !== undefined) break;
      if (!this.canEverFit(job.seq.tokens.length)) {
        // A preempted sequence that grew past the pool: it cannot run again.
        this.waiting.shift();
        this.fail(job, this.kvFullError());
        continue;
      }
      const { fits, parent } = this.blocksFor(job);
      if (!fits) break;
      this.waiting.shift();
      if (parent !== undefined) this.options.engine.sharePrefix(parent.seq, job.seq);
      job.admittedAt ??= Date.now();
      this.running.push(job);
    }
  }

  private async turn(): Promise<void> {
    const t0 = performance.now();
    const seqs = this.running.map((j) => j.seq);
    const step = await this.options.engine.step(seqs, { prefillTokens: this.options.prefillTokensPerStep });
    const seconds = (performance.now() - t0) / 1000;
    this.options.onStep?.({
      rows: step.rows,
      sequences: step.ran.length,
      seconds,
      refusedProposals: step.refusedProposals,
    });
    const bySeq = new Map(this.running.map((j) => [j.seq, j]));
    for (const r of step.ran) {
      const job = bySeq.get(r.seq) as Job;
      if (r.tokens.length === 0) {
        job.prefillMs += seconds * 1000;
        continue;
      }
      job.draftMs += step.draftMs;
      job.verifyMs += step.verifyMs;
      job.firstTokenAt ??= Date.now();
      job.events.push({
        kind: "tokens",
        tokens: r.tokens,
        counters: { ...r.seq.counters },
        settledChars: r.seq.stop.settledLength(r.seq.done),
      });
    }
    if (step.starved.length > 0) this.preempt();
    for (const j of [...this.running]) {
      if (j.seq.done) {
        this.remove(this.running, j);
        this.options.engine.evict(j.seq);
        this.finish(j, this.reasonOf(j));
      }
    }
  }

  /** Frees the most recently admitted sequence so the older (starved) ones can run; it goes back in front. */
  private preempt(): void {
    if (this.running.length <= 1) {
      const only = this.running[0] as Job;
      only.abort ??= { reason: "cancelled", error: this.kvFullError() };
      this.retireAborted();
      return;
    }
    const victim = this.running.at(-1) as Job;
    this.remove(this.running, victim);
    this.options.engine.evict(victim.seq);
    this.waiting.unshift(victim);
  }

  private kvFullError(): ResourceExhaustedError {
    return new ResourceExhaustedError(
      `the node's KV cache (${this.options.engine.totalBlocks} blocks) cannot hold this request`,
    );
  }

  private retireAborted(): void {
    for (const j of [...this.running]) {
      if (j.abort === undefined) continue;
      this.remove(this.running, j);
      this.options.engine.evict(j.seq);
      this.finish(j, j.abort.reason);
    }
    for (const j of [...this.waiting]) {
      if (j.abort === undefined) continue;
      this.remove(this.waiting, j);
      // A preempted job may still hold nothing; evicting is idempotent.
      this.options.engine.evict(j.seq);
      this.finish(j, j.abort.reason);
    }
  }

  private fail(job: Job, error: Error): void {
    job.abort = { reason: "cancelled", error };
    this.finish(job, "cancelled");
  }

  private remove(list: Job[], job: Job): void {
    list.splice(list.indexOf(job), 1);
  }

  private reasonOf(job: Job): NodeFinishReason {
    if (job.seq.finishReason === "stop") return "stop";
    return job.request.contextCut ? "context" : "length";
  }

  private finish(job: Job, reason: NodeFinishReason): void {
    if (!job.seq.done) job.seq.end("length");
    const result: FinishedRequest = {
      request: job.request,
      seq: job.seq,
      reason,
      error: job.abort?.error,
      queuedAt: job.queuedAt,
      admittedAt: job.admittedAt,
      firstTokenAt: job.firstTokenAt,
      finishedAt: Date.now(),
      prefillMs: job.prefillMs,
      draftMs: job.draftMs,
      verifyMs: job.verifyMs,
    };
    job.events.push({ kind: "finished", result });
    job.events.close();
    try {
      this.options.onFinished?.(result);
    } catch {
      // Observers (traces, metrics) never fail a request.
    }
  }
}

function asError(err: unknown): Error {
  if (err instanceof SpecloopError || err instanceof Error) return err;
  return new Error(String(err));
}
