// The verifier's view of an inference node: Score, Generate and GetNodeStatus as promises and async
// iterables that honour an AbortSignal and a deadline, so no judge or sample can hang a call.
import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  GenerateRequest,
  type GenerateResponse,
  InferenceClient,
  ScoreRequest,
  type ScoreResponse,
} from "@specloop/proto";
import { CancelledError, DeadlineExceededError, ErrorKind, type SpecloopError } from "@specloop/runtime";
import { InferenceFailedError, InferenceRejectedError } from "../errors.js";

export interface InferenceNode {
  score(request: Partial<ScoreRequest>, signal: AbortSignal, timeoutMs: number): Promise<ScoreResponse>;
  generate(
    request: Partial<GenerateRequest>,
    signal: AbortSignal,
    timeoutMs: number,
  ): AsyncIterable<GenerateResponse>;
  modelId(signal: AbortSignal, timeoutMs: number): Promise<string>;
  close(): void;
}

/** The node's statuses that say "not this request", passed on to the caller as they are. */
const REJECTIONS: ReadonlyMap<number, ErrorKind> = new Map([
  [status.INVALID_ARGUMENT, ErrorKind.InvalidArgument],
  [status.OUT_OF_RANGE, ErrorKind.InvalidArgument],
  [status.NOT_FOUND, ErrorKind.NotFound],
  [status.FAILED_PRECONDITION, ErrorKind.FailedPrecondition],
  [status.RESOURCE_EXHAUSTED, ErrorKind.ResourceExhausted],
]);

/**
 * A gRPC failure of the node as the verifier's own error: DEADLINE_EXCEEDED and CANCELLED kept, a refusal
 * kept as an InferenceRejectedError of the same kind, anything else (the node down, crashed, INTERNAL) is
 * UNAVAILABLE.
 */
export function nodeError(what: string, err: unknown): SpecloopError {
  const e = err as Partial<ServiceError>;
  const why = e.details ?? (err instanceof Error ? err.message : String(err));
  if (e.code === status.DEADLINE_EXCEEDED)
    return new DeadlineExceededError(`${what}: ${why}`, { cause: err });
  if (e.code === status.CANCELLED) return new CancelledError(`${what}: ${why}`, { cause: err });
  const rejected = e.code !== undefined ? REJECTIONS.get(e.code) : undefined;
  if (rejected !== undefined) return new InferenceRejectedError(rejected, `${what}: ${why}`, { cause: err });
  return new InferenceFailedError(`${what}: ${why}`, { cause: err });
}

export function connectInference(address: string): InferenceNode {
  const client = new InferenceClient(address, credentials.createInsecure());
  let model: string | undefined;
  return {
    score(request, signal, timeoutMs) {
      return new Promise((resolve, reject) => {
        // fromPartial fills the fields left out: the encoder reads every repeated field's length.
        const call = client.score(
          ScoreRequest.fromPartial(request),
          new Metadata(),
          { deadline: new Date(Date.now() + timeoutMs) },
          (err, res) => {
            signal.removeEventListener("abort", cancel);
            if (err) reject(nodeError("inference Score", err));
            else resolve(res);
          },
        );
        const cancel = (): void => call.cancel();
        if (signal.aborted) call.cancel();
        else signal.addEventListener("abort", cancel, { once: true });
      });
    },
    async *generate(request, signal, timeoutMs) {
      const stream = client.generate(GenerateRequest.fromPartial(request), {
        deadline: new Date(Date.now() + timeoutMs),
      });
      const cancel = (): void => stream.cancel();
      signal.addEventListener("abort", cancel, { once: true });
      try {
        for await (const chunk of stream) yield chunk as GenerateResponse;
      } catch (err) {
        throw nodeError("inference Generate", err);
      } finally {
        signal.removeEventListener("abort", cancel);
        stream.cancel();
      }
    },
    async modelId(signal, timeoutMs) {
      if (model !== undefined) return model;
      const res = await new Promise<string>((resolve, reject) => {
        const call = client.getNodeStatus(
          {},
          new Metadata(),
          { deadline: new Date(Date.now() + timeoutMs) },
          (err, r) =>
            err ? reject(nodeError("inference GetNodeStatus", err)) : resolve(r.status?.modelId ?? ""),
        );
        signal.addEventListener("abort", () => call.cancel(), { once: true });
      });
      if (res === "")
        throw new InferenceFailedError("inference GetNodeStatus: the node reported no model id");
      model = res;
      return res;
    },
    close: () => client.close(),
  };
}
