// Traces: what the node tells the trainer about every finished request (proto/specloop/v1/trace.proto),
// built from the decoder's step records and published to JetStream in chunks under the message limit.
// Publishing never blocks or fails a request: traces go through a spool (SpooledPublisher) that keeps
// them, in order, on disk while NATS is away; only a trace beyond the spool's byte bound is dropped, and
// counted.
import {
  type Bus,
  chunkTrace,
  encodeTrace,
  SpooledPublisher,
  type SpoolMessage,
  traceSubject,
} from "@specloop/bus";
import { f32ToF16Bits } from "@specloop/engine";
import {
  drafterToProto,
  FinishReason,
  HiddenFeatures,
  SpeculatorRole,
  Trace,
  VerificationStep,
} from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import { FINISH_TO_PROTO } from "./response.js";
import type { FinishedRequest } from "./scheduler.js";

export interface TraceContext {
  nodeId: string;
  modelId: string;
  /** Speculator role the request was routed to. */
  role: "live" | "canary";
  /** The drafter the request asked for (auto stays auto; steps say what ran). */
  requestedDrafter: DrafterRequested;
}

type DrafterRequested = FinishedRequest["request"]["requestedDrafter"];

function hiddenOf(result: FinishedRequest, hiddenSize: number): HiddenFeatures | undefined {
  const c = result.seq.captured;
  if (c === undefined || c.rows.length === 0) return undefined;
  const rows = Math.min(c.rows.length, result.seq.outputLength - c.firstPosition);
  const width = c.layers.length * hiddenSize;
  const bytes = new Uint8Array(rows * width * 2);
  const view = new DataView(bytes.buffer);
  for (let r = 0; r < rows; r++) {
    const row = c.rows[r] as Float32Array;
    for (let i = 0; i < width; i++) view.setUint16((r * width + i) * 2, f32ToF16Bits(row[i] as number), true);
  }
  return HiddenFeatures.fromPartial({
    layers: [...c.layers],
    hiddenSize,
    firstPosition: c.firstPosition,
    numPositions: rows,
    data: Buffer.from(bytes.buffer),
  });
}

/** The whole-request trace (chunkTrace splits it for the wire). */
export function buildTrace(result: FinishedRequest, ctx: TraceContext, hiddenSize: number): Trace {
  const { seq, request } = result;
  const steps = seq.steps.map((s) =>
    VerificationStep.fromPartial({
      outputOffset: s.outputOffset,
      speculatorVersion: s.speculatorVersion,
      drafter: drafterToProto(s.drafter),
      proposedTokenIds: Array.from(s.proposal.tokens),
      parents: Array.from(s.proposal.parents),
      draftProbs: Array.from(s.proposal.draftProbs),
      acceptedIndices: s.accepted,
      bonusTokenId: s.bonus,
      topk: s.proposal.tokens.length > 0 ? s.topkIds.length / s.proposal.tokens.length : 0,
      targetTopkIds: Array.from(s.topkIds),
      targetTopkLogprobs: Array.from(s.topkLogprobs),
    }),
  );
  const sampling = {
    temperature: request.sampling.temperature,
    topP: request.sampling.topP ?? 0,
    topK: request.sampling.topK ?? 0,
    seed: String(request.seed),
    stopTokenIds: [...request.stopTokenIds],
    stop: [...request.stopStrings],
  };
  return Trace.fromPartial({
    traceId: `${request.seqId}:0`,
    requestId: request.seqId,
    clientRequestId: request.clientRequestId,
    modelId: ctx.modelId,
    nodeId: ctx.nodeId,
    domain: request.domain,
    sampling,
    seed: request.seed,
    drafter: drafterToProto(ctx.requestedDrafter === "auto" ? seq.drafter : ctx.requestedDrafter),
    speculatorRole:
      ctx.role === "canary" ? SpeculatorRole.SPECULATOR_ROLE_CANARY : SpeculatorRole.SPECULATOR_ROLE_LIVE,
    promptTokenIds: [...request.promptTokens],
    outputTokenIds: seq.output,
    outputOffset: 0,
    steps,
    hidden: hiddenOf(result, hiddenSize),
    timings: {
      queueMs: (result.admittedAt ?? result.finishedAt) - result.queuedAt,
      prefillMs: result.prefillMs,
      draftMs: result.draftMs,
      verifyMs: result.verifyMs,
      totalMs: result.finishedAt - result.queuedAt,
    },
    startedAt: new Date(result.queuedAt),
    finishedAt: new Date(result.finishedAt),
    finishReason: FINISH_TO_PROTO[result.reason] ?? FinishReason.FINISH_REASON_UNSPECIFIED,
  });
}

export interface TracePublisherStats {
  /** Traces whose every chunk the stream acknowledged. */
  published: number;
  /** Traces dropped: over the spool's bound, too large to chunk, or refused by the server. */
  dropped: number;
  /** Of those, refused by the server (no permission, over the stream's message limit). */
  failed: number;
}

export type TraceDropReason = "buffer_full" | "publish_failed" | "too_large";

export interface TracePublisherOptions {
  /** Directory of the spool (traces wait there while the bus is away); empty: memory only. */
  spoolDir: string;
  /** Bytes of traces waiting, memory and disk together; a trace beyond is dropped and counted. */
  maxBytes: number;
  /** Largest message: a longer request's trace is chunked under it. */
  maxMessageBytes: number;
  onPublished?: () => void;
  onDropped?: (reason: TraceDropReason) => void;
}

/**
 * Chunks each trace and hands the chunks to a SpooledPublisher (shared/bus/src/spool.ts): published in
 * the order requests finished, kept on disk while the bus is away, never waiting in offer().
 */
export class TracePublisher {
  private readonly spool: SpooledPublisher;
  /** The last chunk's msgId of each trace offered and not yet published or dropped, by trace. */
  private readonly waiting = new Map<string, string>();
  readonly stats: TracePublisherStats = { published: 0, dropped: 0, failed: 0 };

  constructor(
    bus: Bus,
    private readonly logger: Logger,
    private readonly options: TracePublisherOptions,
  ) {
    this.spool = SpooledPublisher.open(bus, {
      dir: options.spoolDir,
      maxBytes: options.maxBytes,
      logger,
      onPublished: (m) => {
        const key = traceOf(m.msgId);
        if (this.waiting.get(key) !== m.msgId) return;
        this.waiting.delete(key);
        this.stats.published++;
        this.options.onPublished?.();
      },
      onDropped: (m, reason) => {
        if (reason === "rejected") {
          this.stats.failed++;
          this.logger.warn({ msgId: m.msgId }, "trace: the server refused a chunk; its trace is dropped");
        }
        // Counted once per trace, at the first of its chunks dropped (all of them, when the spool is full).
        if (this.waiting.delete(traceOf(m.msgId))) {
          this.drop(reason === "full" ? "buffer_full" : "publish_failed");
        }
      },
    });
  }

  /** Bytes of traces waiting to be published. */
  get pendingBytes(): number {
    return this.spool.stats().pendingBytes;
  }

  /** Queues a trace (all its chunks); false (and counted) when it is dropped. Never throws or waits. */
  offer(trace: Trace): boolean {
    let chunks: Trace[];
    let messages: SpoolMessage[];
    try {
      chunks = chunkTrace(trace, this.options.maxMessageBytes);
      messages = chunks.map((chunk) => ({
        subject: traceSubject(chunk.modelId),
        data: encodeTrace(chunk, this.options.maxMessageBytes),
        msgId: chunk.traceId,
      }));
    } catch (err) {
      this.drop("too_large");
      this.logger.warn({ err, requestId: trace.requestId }, "trace: cannot be chunked; dropped");
      return false;
    }
    const last = messages.at(-1);
    if (last === undefined) return false;
    this.waiting.set(traceOf(last.msgId), last.msgId);
    return this.spool.offer(messages);
  }

  /** Waits (at most timeoutMs) for every queued trace to be published; true when none is left. */
  flush(timeoutMs: number): Promise<boolean> {
    return this.spool.flush(timeoutMs);
  }

  /** Stops publishing; with a spool directory, what still waits is published by the next node process. */
  close(): Promise<void> {
    return this.spool.close();
  }

  private drop(reason: TraceDropReason): void {
    this.stats.dropped++;
    this.options.onDropped?.(reason);
  }
}

/** The trace a chunk's id belongs to (chunk ids are `<request id>:<chunk index>`: chunkTraceId). */
function traceOf(msgId: string): string {
  return msgId.slice(0, msgId.lastIndexOf(":"));
}
