// A test Inference service whose behaviour the request chooses, through its prompt:
//   "sleep:<ms>"     answer after ms, ignoring the signal (a handler that does not cooperate)
//   "wait-signal"    wait until the call's signal aborts, then rethrow its reason
//   "throw:<kind>"   throw a SpecloopError of that ErrorKind
//   "throw:unknown"  throw a plain Error; "throw:string" throws a string
// anything else echoes the prompt. Generate streams max_tokens chunks, one every `prompt` ms.
import { setTimeout as sleep } from "node:timers/promises";
import {
  CompleteResponse,
  GenerateResponse,
  GetNodeStatusResponse,
  type InferenceServer,
  InferenceService,
  SERVICE_NAMES,
} from "@specloop/proto";
import { type ErrorKind, SpecloopError, UnimplementedError } from "../errors.js";
import { serverStream, unary } from "../grpc/handlers.js";
import type { GrpcServiceSpec } from "../grpc/server.js";

export interface TestHooks {
  /** Called with the signal's reason when a "wait-signal" call or a stream sees its signal abort. */
  aborted?: (reason: unknown) => void;
  /** Called when a "sleep:" call starts. */
  started?: () => void;
}

export function testInference(hooks: TestHooks = {}): InferenceServer {
  return {
    getNodeStatus: unary(async () =>
      GetNodeStatusResponse.fromPartial({ status: { nodeId: "test-node", modelId: "test-model" } }),
    ),
    complete: unary(async (request, ctx) => {
      const prompt = request.prompt;
      if (prompt.startsWith("sleep:")) {
        hooks.started?.();
        await sleep(Number(prompt.slice("sleep:".length)));
        return CompleteResponse.fromPartial({ text: "slept" });
      }
      if (prompt === "wait-signal") {
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
        );
        hooks.aborted?.(ctx.signal.reason);
        throw ctx.signal.reason;
      }
      if (prompt === "throw:unknown") throw new Error("secret internal detail");
      if (prompt === "throw:string") throw "a string, not an error";
      if (prompt.startsWith("throw:")) {
        throw new SpecloopError(prompt.slice("throw:".length) as ErrorKind, `failed as ${prompt}`);
      }
      return CompleteResponse.fromPartial({ text: prompt });
    }),
    generate: serverStream(async function* (request, ctx) {
      const delay = Number(request.prompt) || 0;
      try {
        for (let i = 0; i < request.maxTokens; i++) {
          if (delay > 0) await sleep(delay, undefined, { signal: ctx.signal });
          yield GenerateResponse.fromPartial({ text: `t${i}`, tokenIds: [i] });
        }
      } finally {
        if (ctx.signal.aborted) hooks.aborted?.(ctx.signal.reason);
      }
    }),
    score: unary(async () => {
      throw new UnimplementedError("Score is not served by the test node");
    }),
  };
}

export function testInferenceSpec(hooks: TestHooks = {}): GrpcServiceSpec {
  return {
    name: SERVICE_NAMES.inference,
    definition: InferenceService,
    implementation: testInference(hooks),
  };
}
