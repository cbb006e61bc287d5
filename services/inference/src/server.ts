// The Inference gRPC API of a node: Generate (streamed), Complete, Score and GetNodeStatus over the
// InferenceNode. Validation lives in requests.ts; errors become statuses in the runtime kit.
import {
  type CompleteResponse,
  FinishReason,
  type GenerateResponse,
  type InferenceServer,
  type SpeculationStats,
  type Usage,
} from "@specloop/proto";
import { serverStream, unary } from "@specloop/runtime";
import type { InferenceNode } from "./node.js";
import { DRAFTER_TO_PROTO, FINISH_TO_PROTO, nodeRequest } from "./requests.js";
import type { FinishedRequest, RequestEvent, SpanStats } from "./scheduler.js";
import { scoreContinuations } from "./score.js";

function speculationStats(s: SpanStats, passes: number): SpeculationStats {
  return {
    targetPasses: passes,
    proposedTokens: s.proposedTokens,
    acceptedTokens: s.acceptedTokens,
    acceptedPerPass: 0,
    drafter: DRAFTER_TO_PROTO[s.drafter],
    speculatorVersion: s.speculatorVersion,
  };
}

/** Whole-request speculation stats. */
function requestStats(r: FinishedRequest): SpeculationStats {
  const stats = speculationStats(r.stats, r.seq.targetPasses);
  stats.acceptedPerPass = r.seq.targetPasses > 0 ? r.seq.verifiedTokens / r.seq.targetPasses : 0;
  return stats;
}

function usage(r: FinishedRequest): Usage {
  const decodeStart = r.firstTokenAt ?? r.finishedAt;
  const decodeSeconds = (r.finishedAt - decodeStart) / 1000;
  return {
    promptTokens: r.request.promptTokens.length,
    completionTokens: r.seq.outputLength,
    timeToFirstTokenMs: r.firstTokenAt !== undefined ? r.firstTokenAt - (r.admittedAt ?? r.queuedAt) : 0,
    decodeTokensPerSecond: decodeSeconds > 0 ? Math.max(0, r.seq.outputLength - 1) / decodeSeconds : 0,
  };
}

/** Sequences one request through the scheduler; throws the status-mapped error of a failed request. */
async function* run(
  node: InferenceNode,
  events: AsyncIterable<RequestEvent>,
): AsyncGenerator<Exclude<RequestEvent, { kind: "finished" }>, FinishedRequest> {
  for await (const e of events) {
    if (e.kind === "finished") {
      if (e.result.error !== undefined) throw e.result.error;
      return e.result;
    }
    yield e;
  }
  throw new Error(`request ended without a result on node ${node.identity.nodeId}`);
}

export function inferenceServer(node: InferenceNode): InferenceServer {
  return {
    generate: serverStream(async function* (request, ctx): AsyncGenerator<GenerateResponse> {
      const req = nodeRequest(request, node.limits);
      req.captureLayers = node.sampleFeatures();
      const it = run(node, node.scheduler.submit(req, ctx.signal));
      let passesBefore = 0;
      for (;;) {
        const next = await it.next();
        if (next.done) {
          const r = next.value;
          yield {
            requestId: req.id,
            text: "",
            tokenIds: [],
            stats: requestStats(r),
            finishReason: FINISH_TO_PROTO[r.reason],
            usage: usage(r),
          };
          return;
        }
        const e = next.value;
        const passes = e.stats.targetPasses - passesBefore;
        passesBefore = e.stats.targetPasses;
        const stats = speculationStats(e.stats, passes);
        stats.acceptedPerPass = passes > 0 ? e.tokens.length / passes : 0;
        yield {
          requestId: req.id,
          text: e.text,
          tokenIds: e.tokens,
          stats,
          finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
          usage: undefined,
        };
      }
    }),
    complete: unary(async (request, ctx): Promise<CompleteResponse> => {
      const req = nodeRequest(request, node.limits);
      req.captureLayers = node.sampleFeatures();
      const it = run(node, node.scheduler.submit(req, ctx.signal));
      let next = await it.next();
      while (!next.done) next = await it.next();
      const r = next.value;
      return {
        requestId: req.id,
        text: r.text,
        tokenIds: r.seq.output,
        finishReason: FINISH_TO_PROTO[r.reason],
        usage: usage(r),
        stats: requestStats(r),
      };
    }),
    score: unary(async (request) =>
      node.scheduler.runExclusive(() =>
        scoreContinuations(node.model, node.kv, node.limits, node.tokenizer, request),
      ),
    ),
    getNodeStatus: unary(async () => ({ status: node.status() })),
  };
}
