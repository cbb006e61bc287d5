// What a consumer checks of every trace before using it: a trace is data from the network, and one with
// a token id outside the vocabulary reached every node's suffix tree and failed unrelated requests
// (`embed: id 99999 outside [0, 8192)`). Every consumer (a node's fleet consumer, the trainer's intake)
// decodes with these limits; a trace that breaks one is terminated (never redelivered) and counted with
// the reason.
//   vocabulary: a token id (prompt, output, proposed, bonus, top-k) outside [0, vocab_size);
//   shape:      arrays that disagree (parents, probabilities, top-k rows, accepted indices, hidden bytes),
//               a parent that is not an earlier node, a probability outside [0, 1] or not finite;
//   size:       more tokens, steps, draft tokens, top-k or hidden bytes than the limits allow.
import type { Trace, VerificationStep } from "@specloop/proto";
import { TraceRejectedError } from "./errors.js";

export interface TraceLimits {
  /** Token ids must be below this (the target model's vocabulary size). */
  vocabSize: number;
  /** Prompt plus output tokens of a request (the model's context length). */
  maxTokens: number;
  /** Verification steps in one trace message; maxTokens by default (a step commits at least one token). */
  maxSteps?: number;
  /** Proposed tokens in one step. */
  maxDraftTokens?: number;
  /** Target top-k entries per proposed position. */
  maxTopk?: number;
  /** Hidden-feature bytes in one trace message. */
  maxHiddenBytes?: number;
}

export const DEFAULT_TRACE_MAX_DRAFT_TOKENS = 256;
export const DEFAULT_TRACE_MAX_TOPK = 64;
export const DEFAULT_TRACE_MAX_HIDDEN_BYTES = 64 * 1024 ** 2;
const MAX_LAYERS = 1024;
const MAX_HIDDEN_SIZE = 65_536;
const LOGPROB_SLACK = 1e-3;

/** Throws TraceRejectedError naming the first field that breaks `limits` (see the module comment). */
export function validateTraceContent(trace: Trace, limits: TraceLimits): void {
  const { vocabSize, maxTokens } = limits;
  const ids = (field: string, values: readonly number[]) => {
    for (const id of values) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new TraceRejectedError("vocabulary", field, `token id ${id} outside [0, ${vocabSize})`);
      }
    }
  };
  const size = (field: string, value: number, limit: number) => {
    if (value > limit) throw new TraceRejectedError("size", field, `${value} is over the limit of ${limit}`);
  };
  size(
    "prompt_token_ids + output_token_ids",
    trace.promptTokenIds.length + trace.outputOffset + trace.outputTokenIds.length,
    maxTokens,
  );
  ids("prompt_token_ids", trace.promptTokenIds);
  ids("output_token_ids", trace.outputTokenIds);
  size("steps", trace.steps.length, limits.maxSteps ?? maxTokens);
  trace.steps.forEach((step, i) => {
    validateStep(step, `steps[${i}]`, limits, ids, size);
  });
  const h = trace.hidden;
  if (h !== undefined) {
    size("hidden.layers", h.layers.length, MAX_LAYERS);
    size("hidden.hidden_size", h.hiddenSize, MAX_HIDDEN_SIZE);
    size("hidden.first_position + num_positions", h.firstPosition + h.numPositions, maxTokens);
    const bytes = h.numPositions * h.layers.length * h.hiddenSize * 2;
    size("hidden.data", h.data.length, limits.maxHiddenBytes ?? DEFAULT_TRACE_MAX_HIDDEN_BYTES);
    if (h.data.length !== bytes) {
      throw new TraceRejectedError(
        "shape",
        "hidden.data",
        `${h.data.length} bytes, but ${h.numPositions} positions x ${h.layers.length} layers x ${h.hiddenSize} x 2 is ${bytes}`,
      );
    }
  }
}

function validateStep(
  step: VerificationStep,
  at: string,
  limits: TraceLimits,
  ids: (field: string, values: readonly number[]) => void,
  size: (field: string, value: number, limit: number) => void,
): void {
  const n = step.proposedTokenIds.length;
  const shape = (field: string, message: string) =>
    new TraceRejectedError("shape", `${at}.${field}`, message);
  size(`${at}.output_offset`, step.outputOffset, limits.maxTokens);
  size(`${at}.proposed_token_ids`, n, limits.maxDraftTokens ?? DEFAULT_TRACE_MAX_DRAFT_TOKENS);
  size(`${at}.topk`, step.topk, limits.maxTopk ?? DEFAULT_TRACE_MAX_TOPK);
  ids(`${at}.proposed_token_ids`, step.proposedTokenIds);
  ids(`${at}.bonus_token_id`, [step.bonusTokenId]);
  ids(`${at}.target_topk_ids`, step.targetTopkIds);
  if (step.parents.length !== n) throw shape("parents", `${step.parents.length} parents for ${n} tokens`);
  step.parents.forEach((p, i) => {
    if (!Number.isInteger(p) || p < -1 || p >= i) throw shape("parents", `parent ${p} of node ${i}`);
  });
  if (step.draftProbs.length !== 0 && step.draftProbs.length !== n) {
    throw shape("draft_probs", `${step.draftProbs.length} probabilities for ${n} tokens`);
  }
  for (const p of step.draftProbs) {
    if (!(p >= 0 && p <= 1)) throw shape("draft_probs", `probability ${p} is not in [0, 1]`);
  }
  // The accepted path runs root to leaf: each index a child of the one before (the first, of the root).
  let parent = -1;
  for (const a of step.acceptedIndices) {
    if (a >= n || step.parents[a] !== parent) {
      throw shape("accepted_indices", `index ${a} is not a child of ${parent} among ${n} tokens`);
    }
    parent = a;
  }
  const rows = n * step.topk;
  if (step.targetTopkIds.length !== rows || step.targetTopkLogprobs.length !== rows) {
    throw shape(
      "target_topk_ids",
      `${step.targetTopkIds.length} ids and ${step.targetTopkLogprobs.length} logprobs for ${n} positions x top-${step.topk}`,
    );
  }
  for (const lp of step.targetTopkLogprobs) {
    // -Infinity is a masked token; float32 rounding can put a near-certain token a hair above 0.
    if (!(lp <= LOGPROB_SLACK)) throw shape("target_topk_logprobs", `log-probability ${lp} is not <= 0`);
  }
}
