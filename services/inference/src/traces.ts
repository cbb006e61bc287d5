// Traces: what the node tells the trainer about every finished request (proto/specloop/v1/trace.proto),
// built from the decoder's step records and published to JetStream in chunks under the message limit.
// Publishing never blocks or fails a request: traces wait in a bounded buffer drained by one loop, and a
// trace that finds the buffer full (NATS slow or down) is dropped and counted.
import { type Bus, chunkTrace, publishTrace } from "@specloop/bus";
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

/** IEEE half precision bits of an f32 (round to nearest even; overflow to infinity). */
export function f32ToF16Bits(value: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // a carry rounds up the exponent
  return sign | half;
}

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
  published: number;
  dropped: number;
  failed: number;
}

export class TracePublisher {
  private readonly buffer: Trace[] = [];
  private pumping: Promise<void> | undefined;
  readonly stats: TracePublisherStats = { published: 0, dropped: 0, failed: 0 };

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly options: {
      bufferSize: number;
      maxMessageBytes: number;
      onPublished?: () => void;
      onDropped?: (reason: "buffer_full" | "publish_failed" | "too_large") => void;
    },
  ) {}

  get pending(): number {
    return this.buffer.length;
  }

  /** Queues a trace; false (and counted) when the buffer is full. Never throws. */
  offer(trace: Trace): boolean {
    if (this.buffer.length >= this.options.bufferSize) {
      this.stats.dropped++;
      this.options.onDropped?.("buffer_full");
      return false;
    }
    this.buffer.push(trace);
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
    });
    return true;
  }

  /** Waits (at most timeoutMs) for the buffer to drain. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.buffer.length > 0 || this.pumping !== undefined) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private async pump(): Promise<void> {
    for (let trace = this.buffer.shift(); trace !== undefined; trace = this.buffer.shift()) {
      let chunks: Trace[];
      try {
        chunks = chunkTrace(trace, this.options.maxMessageBytes);
      } catch (err) {
        this.stats.dropped++;
        this.options.onDropped?.("too_large");
        this.logger.warn({ err, requestId: trace.requestId }, "trace: cannot be chunked; dropped");
        continue;
      }
      try {
        for (const chunk of chunks) await publishTrace(this.bus.js, chunk, { timeoutMs: 5_000 });
        this.stats.published++;
        this.options.onPublished?.();
      } catch (err) {
        this.stats.failed++;
        this.options.onDropped?.("publish_failed");
        this.logger.warn({ err, requestId: trace.requestId }, "trace: publish failed; dropped");
      }
    }
  }
}
