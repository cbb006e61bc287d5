// The response side of a request: turns the scheduler's events into what the client reads. Text comes from
// the sequence's StopCondition (decoded incrementally, cut before a stop string, held back while it may still
// become one), so streamed text is never taken back; speculation stats per chunk come from the sequence's
// counters. The scheduler stays pure scheduling.
import {
  type CompleteResponse,
  drafterToProto,
  FinishReason,
  type GenerateResponse,
  type SpeculationStats,
  type Usage,
} from "@specloop/proto";
import type { DecodeSequence, DrafterKind, SpeculationCounters } from "@specloop/speculation";
import type { ResolvedRequest } from "./requests.js";
import type { FinishedRequest, NodeFinishReason, RequestEvent } from "./scheduler.js";

export const FINISH_TO_PROTO: Record<NodeFinishReason, FinishReason> = {
  stop: FinishReason.FINISH_REASON_STOP,
  length: FinishReason.FINISH_REASON_LENGTH,
  context: FinishReason.FINISH_REASON_CONTEXT,
  cancelled: FinishReason.FINISH_REASON_CANCELLED,
};

const NO_COUNTERS: SpeculationCounters = {
  targetPasses: 0,
  verifiedTokens: 0,
  proposedTokens: 0,
  acceptedTokens: 0,
};

/**
 * Speculation over a span of a request: `from` and `to` are the sequence's counters at its ends (the whole
 * request when `from` is zero). The one stats type of the API (SpeculationStats in common.proto).
 */
export function spanStats(
  from: SpeculationCounters,
  to: SpeculationCounters,
  drafter: DrafterKind,
  speculatorVersion: string,
): SpeculationStats {
  const passes = to.targetPasses - from.targetPasses;
  return {
    targetPasses: passes,
    proposedTokens: to.proposedTokens - from.proposedTokens,
    acceptedTokens: to.acceptedTokens - from.acceptedTokens,
    acceptedPerPass: passes > 0 ? (to.verifiedTokens - from.verifiedTokens) / passes : 0,
    drafter: drafterToProto(drafter),
    speculatorVersion,
  };
}

export function usage(r: FinishedRequest): Usage {
  const decodeStart = r.firstTokenAt ?? r.finishedAt;
  const decodeSeconds = (r.finishedAt - decodeStart) / 1000;
  return {
    promptTokens: r.request.promptTokens.length,
    completionTokens: r.seq.outputLength,
    timeToFirstTokenMs: r.firstTokenAt !== undefined ? r.firstTokenAt - (r.admittedAt ?? r.queuedAt) : 0,
    decodeTokensPerSecond: decodeSeconds > 0 ? Math.max(0, r.seq.outputLength - 1) / decodeSeconds : 0,
  };
}

/** Streams one request's chunks: each chunk's tokens, its settled text and its speculation stats. */
export async function* generateResponses(
  request: ResolvedRequest,
  seq: DecodeSequence,
  events: AsyncIterable<RequestEvent>,
  versionOf: (r: ResolvedRequest) => string,
): AsyncGenerator<GenerateResponse> {
  let sent = 0;
  let counted = NO_COUNTERS;
  for await (const e of events) {
    if (e.kind === "finished") {
      const r = e.result;
      if (r.error !== undefined) throw r.error;
      const text = r.seq.stop.text;
      yield {
        requestId: request.clientRequestId,
        text: text.slice(sent),
        tokenIds: [],
        // The last chunk (finish_reason set) speaks for the whole request.
        stats: spanStats(NO_COUNTERS, r.seq.counters, request.drafter, versionOf(request)),
        finishReason: FINISH_TO_PROTO[r.reason],
        usage: usage(r),
      };
      return;
    }
    const end = Math.max(sent, e.settledChars);
    yield {
      requestId: request.clientRequestId,
      text: seq.stop.text.slice(sent, end),
      tokenIds: e.tokens,
      stats: spanStats(counted, e.counters, request.drafter, versionOf(request)),
      finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
      usage: undefined,
    };
    sent = end;
    counted = e.counters;
  }
  throw new Error(`request ${request.seqId} ended without a result`);
}

/** The whole answer of a unary Complete. */
export async function completeResponse(
  request: ResolvedRequest,
  events: AsyncIterable<RequestEvent>,
  versionOf: (r: ResolvedRequest) => string,
): Promise<CompleteResponse> {
  for await (const e of events) {
    if (e.kind !== "finished") continue;
    const r = e.result;
    if (r.error !== undefined) throw r.error;
    return {
      requestId: request.clientRequestId,
      text: r.seq.stop.text,
      tokenIds: r.seq.output,
      finishReason: FINISH_TO_PROTO[r.reason],
      usage: usage(r),
      stats: spanStats(NO_COUNTERS, r.seq.counters, request.drafter, versionOf(request)),
    };
  }
  throw new Error(`request ${request.seqId} ended without a result`);
}
