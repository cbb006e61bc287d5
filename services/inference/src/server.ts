// The Inference gRPC API of a node: Generate (streamed), Complete, Score and GetNodeStatus over the
// InferenceNode. A request is resolved once (requests.ts), runs through the scheduler, and its answer is
// assembled by response.ts; errors become statuses in the runtime kit.
import type { InferenceServer } from "@specloop/proto";
import { serverStream, unary } from "@specloop/runtime";
import type { InferenceNode } from "./node.js";
import { completeResponse, generateResponses } from "./response.js";
import { scoreContinuations } from "./score.js";

export function inferenceServer(node: InferenceNode): InferenceServer {
  const versionOf = node.versionOf.bind(node);
  return {
    generate: serverStream(async function* (request, ctx) {
      const req = node.resolve(request);
      const { seq, events } = node.submit(req, ctx.signal);
      yield* generateResponses(req, seq, events, versionOf);
    }),
    complete: unary(async (request, ctx) => {
      const req = node.resolve(request);
      return completeResponse(req, node.submit(req, ctx.signal).events, versionOf);
    }),
    score: unary(async (request) =>
      node.scheduler.runExclusive(() =>
        scoreContinuations(node.model, node.kv, node.limits, node.tokenizer, request),
      ),
    ),
    getNodeStatus: unary(async () => ({ status: node.status() })),
  };
}
