// The trace codec on the bus: validate, encode (protobuf binary) and publish a Trace to its model's
// subject with Nats-Msg-Id = trace_id, so a re-published trace is dropped by the stream's duplicate
// window; and the decoder consumers use, which refuses what is not a usable trace. Pairwise verdicts the
// same way, under a hashed id (verdictId).
import { createHash } from "node:crypto";
import { PairwiseVerdict, Trace } from "@specloop/proto";
import type { JetStreamClient } from "nats";
import { DEFAULT_TRACE_MAX_MESSAGE_BYTES } from "./config.js";
import { InvalidMessageError, MessageTooLargeError } from "./errors.js";
import { traceSubject, verdictSubject } from "./names.js";

export interface PublishOptions {
  /** Largest encoded message accepted (bus.traceStream.maxMessageBytes). */
  maxMessageBytes?: number;
  /** How long to wait for the stream's acknowledgement, milliseconds. */
  timeoutMs?: number;
}

export interface PublishResult {
  /** Stream sequence of the message (of the first copy when duplicate). */
  seq: number;
  /** The stream already held a message with this id: nothing new was stored. */
  duplicate: boolean;
}

/** Throws InvalidMessageError when a required trace field is missing. */
export function validateTrace(trace: Trace): void {
  if (trace.traceId === "") throw new InvalidMessageError("trace_id", "is required");
  if (trace.requestId === "") throw new InvalidMessageError("request_id", "is required");
  if (trace.modelId === "") throw new InvalidMessageError("model_id", "is required");
}

/** The protobuf bytes of a trace, validated and checked against the size limit. */
export function encodeTrace(trace: Trace, maxMessageBytes = DEFAULT_TRACE_MAX_MESSAGE_BYTES): Uint8Array {
  validateTrace(trace);
  const data = Trace.encode(trace).finish();
  if (data.length > maxMessageBytes) {
    throw new MessageTooLargeError(
      `trace ${trace.traceId} (split long requests with chunkTrace)`,
      data.length,
      maxMessageBytes,
    );
  }
  return data;
}

/** Decodes a trace from the bus; throws on malformed bytes or a missing required field. */
export function decodeTrace(data: Uint8Array): Trace {
  const trace = Trace.decode(data);
  validateTrace(trace);
  return trace;
}

export async function publishTrace(
  js: JetStreamClient,
  trace: Trace,
  options: PublishOptions = {},
): Promise<PublishResult> {
  const data = encodeTrace(trace, options.maxMessageBytes);
  const ack = await js.publish(traceSubject(trace.modelId), data, {
    msgID: trace.traceId,
    ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
  });
  return { seq: ack.seq, duplicate: ack.duplicate };
}

export function validateVerdict(verdict: PairwiseVerdict): void {
  if (verdict.tournamentId === "") throw new InvalidMessageError("tournament_id", "is required");
  if (verdict.modelId === "") throw new InvalidMessageError("model_id", "is required");
  if (verdict.candidateA === "" || verdict.candidateB === "") {
    throw new InvalidMessageError("candidate_a", "both candidates are required");
  }
}

/** Decodes a verdict from the bus; throws on malformed bytes or a missing required field. */
export function decodeVerdict(data: Uint8Array): PairwiseVerdict {
  const verdict = PairwiseVerdict.decode(data);
  validateVerdict(verdict);
  return verdict;
}

export interface VerdictPublishOptions extends PublishOptions {
  /**
   * The comparison's index in its tournament. Part of the id when given, so two comparisons of equal
   * texts (N samples often repeat an answer) stay two verdicts; without it the id is one per
   * (tournament, ordered pair of texts).
   */
  index?: number;
}

/**
 * The verdict's de-duplication id (its Nats-Msg-Id): the sha256 hex of the tournament id, the comparison
 * index (empty when not given) and both candidate texts. A hash, not the texts themselves: NATS refuses a
 * header holding a newline, and answers are multi-line; a hash is also short whatever the answers' length.
 * Each field is length-prefixed so that no two different field lists hash the same bytes.
 */
export function verdictId(verdict: PairwiseVerdict, index?: number): string {
  const hash = createHash("sha256");
  const fields = [verdict.tournamentId, index === undefined ? "" : String(index), verdict.candidateA];
  for (const field of [...fields, verdict.candidateB]) {
    const bytes = Buffer.from(field, "utf8");
    hash.update(`${bytes.length}:`).update(bytes);
  }
  return hash.digest("hex");
}

export async function publishVerdict(
  js: JetStreamClient,
  verdict: PairwiseVerdict,
  options: VerdictPublishOptions = {},
): Promise<PublishResult> {
  validateVerdict(verdict);
  const data = PairwiseVerdict.encode(verdict).finish();
  const limit = options.maxMessageBytes ?? DEFAULT_TRACE_MAX_MESSAGE_BYTES;
  if (data.length > limit) throw new MessageTooLargeError("verdict", data.length, limit);
  const ack = await js.publish(verdictSubject(verdict.modelId), data, {
    msgID: verdictId(verdict, options.index),
    ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
  });
  return { seq: ack.seq, duplicate: ack.duplicate };
}
