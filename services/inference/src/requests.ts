// From a gRPC request to a ResolvedRequest: the one function (resolveRequest) that validates every field and
// settles everything the node decides about a request (its own sequence id, the drafter `auto` picks, the
// speculator slot, the domain label, trace features), so the request is an immutable value from admission to
// its trace. Refusals are InvalidArgumentErrors naming the request's field (snake_case, as the client wrote
// it). Cheap checks come before expensive work: sizes in bytes and counts before tokenization.
import { randomUUID } from "node:crypto";
import {
  type ChatMessage as EngineChatMessage,
  randomSeed,
  type SamplingParams,
  type Tokenizer,
} from "@specloop/engine";
import { type ChatMessage, Drafter, drafterFromProto, type GenerateRequest } from "@specloop/proto";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, safeUint64 } from "@specloop/runtime";
import type { DrafterKind } from "@specloop/speculation";

/** Bounds on what a client sends (each refused past its bound, naming the field). */
export const REQUEST_BOUNDS = {
  /** request_id and share_prefix_with: labels, echoed and carried in traces. */
  idChars: 128,
  /** Stop strings per request, and characters per stop string. */
  stopStrings: 16,
  stopChars: 256,
  stopTokenIds: 256,
  /** Prompt bytes per token of context: a prompt longer than this cannot fit, whatever it encodes to. */
  promptBytesPerToken: 32,
  messages: 1024,
} as const;

/** What validation needs to know about the node. */
export interface RequestLimits {
  modelId: string;
  vocabSize: number;
  contextLength: number;
  eosTokenIds: readonly number[];
  defaultMaxTokens: number;
  maxTokensLimit: number;
  maxDraftTokens: number;
  defaultDrafter: DrafterKind | "auto";
  /** Drafters this node can run now (eagle only with weights loaded, draft-model only when configured). */
  availableDrafters: () => ReadonlySet<DrafterKind>;
  tokenizer: Tokenizer;
  renderChat: ((messages: EngineChatMessage[]) => string) | undefined;
}

/** What the node decides for a request as it resolves it. */
export interface RequestPolicy {
  /** The domain label the request is tracked under (bounded: see labels.ts). */
  domainLabel(domain: string): string;
  /** The drafter `auto` takes for a domain. */
  chooseDrafter(candidates: readonly DrafterKind[], domain: string): DrafterKind;
  /** The speculator slot an eagle sequence drafts with. */
  routeSpeculator(seqId: string): "live" | "canary";
  /** Target layers whose features this request's trace carries (empty: none). */
  captureLayers(): readonly number[];
}

/** A validated request with everything the node decided about it. Never mutated after resolveRequest. */
export interface ResolvedRequest {
  /** The node's own name for the request: keys its KV, drafter state, routing and trace id. */
  readonly seqId: string;
  /** The client's request_id, or the node's seqId when it sent none: a label, echoed in responses and traces, never a key. */
  readonly clientRequestId: string;
  readonly promptTokens: readonly number[];
  /** Output tokens allowed: the client's max_tokens, cut to what the context leaves. */
  readonly maxTokens: number;
  /** Whether the context cut max_tokens (the finish reason is then "context"). */
  readonly contextCut: boolean;
  readonly sampling: Readonly<SamplingParams>;
  readonly seed: number;
  readonly stopTokenIds: readonly number[];
  readonly stopStrings: readonly string[];
  /** What the client asked for ("auto" stays "auto" here; `drafter` is what runs). */
  readonly requestedDrafter: DrafterKind | "auto";
  readonly drafter: DrafterKind;
  readonly speculatorRole: "live" | "canary";
  /** 0: the budget policy decides. */
  readonly maxDraftTokens: number;
  readonly domain: string;
  /** Another request's client request_id whose cached prompt this one may share. */
  readonly sharePrefixWith: string;
  readonly captureLayers: readonly number[];
}

/** The model a request names must be the node's (empty means the node's). */
export function checkModel(model: string, limits: RequestLimits): void {
  if (model !== "" && model !== limits.modelId) {
    throw new NotFoundError(
      `model ${model.slice(0, 128)} is not served here (this node serves ${limits.modelId})`,
    );
  }
}

function checkLabel(field: string, value: string): string {
  if (value.length > REQUEST_BOUNDS.idChars) {
    throw new InvalidArgumentError(field, `is ${value.length} characters; at most ${REQUEST_BOUNDS.idChars}`);
  }
  return value;
}

/** Exactly one of prompt, prompt_token_ids, messages, as token ids (sizes checked before tokenizing). */
export function promptTokens(
  input: { prompt: string; promptTokenIds: readonly number[]; messages: readonly ChatMessage[] },
  limits: RequestLimits,
): number[] {
  const given = [input.prompt !== "", input.promptTokenIds.length > 0, input.messages.length > 0].filter(
    Boolean,
  );
  if (given.length === 0) {
    throw new InvalidArgumentError("prompt", "is empty: give prompt, prompt_token_ids or messages");
  }
  if (given.length > 1) {
    throw new InvalidArgumentError("prompt", "give exactly one of prompt, prompt_token_ids and messages");
  }
  const tooLong = (n: number, what: string) =>
    new InvalidArgumentError(
      "prompt",
      `${n} ${what} do not fit the model's context of ${limits.contextLength} tokens (with room to generate)`,
    );
  const maxBytes = limits.contextLength * REQUEST_BOUNDS.promptBytesPerToken;
  let tokens: number[];
  if (input.promptTokenIds.length > 0) {
    if (input.promptTokenIds.length >= limits.contextLength)
      throw tooLong(input.promptTokenIds.length, "tokens");
    input.promptTokenIds.forEach((id, i) => {
      if (!(Number.isInteger(id) && id >= 0 && id < limits.vocabSize)) {
        throw new InvalidArgumentError(
          `prompt_token_ids[${i}]`,
          `${id} is outside the vocabulary (0..${limits.vocabSize - 1})`,
        );
      }
    });
    tokens = [...input.promptTokenIds];
  } else if (input.messages.length > 0) {
    if (limits.renderChat === undefined) {
      throw new InvalidArgumentError(
        "messages",
        `model ${limits.modelId} has no chat template (a base model): send a plain prompt instead`,
      );
    }
    if (input.messages.length > REQUEST_BOUNDS.messages) {
      throw new InvalidArgumentError("messages", `at most ${REQUEST_BOUNDS.messages} messages`);
    }
    let bytes = 0;
    input.messages.forEach((m, i) => {
      if (!["system", "user", "assistant"].includes(m.role)) {
        throw new InvalidArgumentError(
          `messages[${i}].role`,
          `must be system, user or assistant, got "${m.role.slice(0, 32)}"`,
        );
      }
      bytes += Buffer.byteLength(m.content);
    });
    if (bytes > maxBytes) throw tooLong(bytes, "bytes of messages");
    const text = limits.renderChat(input.messages.map((m) => ({ role: m.role, content: m.content })));
    tokens = limits.tokenizer.encode(text, { addSpecialTokens: false });
  } else {
    const bytes = Buffer.byteLength(input.prompt);
    if (bytes > maxBytes) throw tooLong(bytes, "bytes of prompt");
    tokens = limits.tokenizer.encodePrompt(input.prompt);
  }
  if (tokens.length === 0) throw new InvalidArgumentError("prompt", "encodes to no tokens");
  if (tokens.length >= limits.contextLength) throw tooLong(tokens.length, "tokens");
  return tokens;
}

export function samplingOf(s: GenerateRequest["sampling"]): SamplingParams {
  const temperature = s?.temperature ?? 0;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new InvalidArgumentError("sampling.temperature", `must be >= 0, got ${temperature}`);
  }
  const topP = s?.topP ?? 0;
  if (!(Number.isFinite(topP) && topP >= 0 && topP <= 1)) {
    throw new InvalidArgumentError("sampling.top_p", `must be in (0, 1] (0 means unset), got ${topP}`);
  }
  const out: SamplingParams = { temperature };
  if (topP > 0 && topP < 1) out.topP = topP;
  if ((s?.topK ?? 0) > 0) out.topK = s?.topK as number;
  return out;
}

function requestedDrafterOf(req: GenerateRequest, limits: RequestLimits): DrafterKind | "auto" {
  const asked = drafterFromProto(req.speculation?.drafter ?? Drafter.DRAFTER_UNSPECIFIED);
  if (asked === undefined) {
    throw new InvalidArgumentError("speculation.drafter", "is not a drafter this node knows");
  }
  const resolved = asked === "unspecified" ? limits.defaultDrafter : asked;
  if (resolved !== "auto" && resolved !== "none" && !limits.availableDrafters().has(resolved)) {
    throw new FailedPreconditionError(
      `speculation.drafter: ${resolved} is not available on this node` +
        (resolved === "eagle" || resolved === "hybrid"
          ? " (no speculator weights are loaded for its model)"
          : " (not configured)"),
    );
  }
  return resolved;
}

function stopsOf(req: GenerateRequest, limits: RequestLimits): { ids: number[]; strings: string[] } {
  const ids = req.sampling?.stopTokenIds ?? [];
  if (ids.length > REQUEST_BOUNDS.stopTokenIds) {
    throw new InvalidArgumentError("sampling.stop_token_ids", `at most ${REQUEST_BOUNDS.stopTokenIds} ids`);
  }
  ids.forEach((id, i) => {
    if (!(id >= 0 && id < limits.vocabSize)) {
      throw new InvalidArgumentError(`sampling.stop_token_ids[${i}]`, `${id} is outside the vocabulary`);
    }
  });
  const strings = req.sampling?.stop ?? [];
  if (strings.length > REQUEST_BOUNDS.stopStrings) {
    throw new InvalidArgumentError("sampling.stop", `at most ${REQUEST_BOUNDS.stopStrings} stop strings`);
  }
  strings.forEach((s, i) => {
    if (s === "") throw new InvalidArgumentError(`sampling.stop[${i}]`, "is empty");
    if (s.length > REQUEST_BOUNDS.stopChars) {
      throw new InvalidArgumentError(`sampling.stop[${i}]`, `at most ${REQUEST_BOUNDS.stopChars} characters`);
    }
  });
  return { ids: [...new Set([...limits.eosTokenIds, ...ids])], strings: [...strings] };
}

/** A Generate or Complete request (they share every field), resolved once, for good. */
export function resolveRequest(
  req: GenerateRequest,
  limits: RequestLimits,
  policy: RequestPolicy,
): ResolvedRequest {
  checkModel(req.model, limits);
  const clientRequestId = checkLabel("request_id", req.requestId);
  const sharePrefixWith = checkLabel("share_prefix_with", req.sharePrefixWith);
  const domain = policy.domainLabel(req.domain);
  const sampling = samplingOf(req.sampling);
  const seed = safeUint64("sampling.seed", req.sampling?.seed) ?? randomSeed();
  const stops = stopsOf(req, limits);
  const requestedDrafter = requestedDrafterOf(req, limits);
  const requested = req.maxTokens === 0 ? limits.defaultMaxTokens : req.maxTokens;
  if (!(Number.isInteger(requested) && requested >= 1 && requested <= limits.maxTokensLimit)) {
    throw new InvalidArgumentError(
      "max_tokens",
      `must be in 1..${limits.maxTokensLimit} (0: the node's default), got ${requested}`,
    );
  }
  const prompt = promptTokens(req, limits);
  const maxTokens = Math.min(requested, limits.contextLength - prompt.length);
  const seqId = randomUUID();
  const drafter =
    requestedDrafter === "auto"
      ? policy.chooseDrafter([...limits.availableDrafters()], domain)
      : requestedDrafter;
  return Object.freeze({
    seqId,
    clientRequestId: clientRequestId !== "" ? clientRequestId : seqId,
    promptTokens: Object.freeze(prompt),
    maxTokens,
    contextCut: maxTokens < requested,
    sampling: Object.freeze(sampling),
    seed,
    stopTokenIds: Object.freeze(stops.ids),
    stopStrings: Object.freeze(stops.strings),
    requestedDrafter,
    drafter,
    speculatorRole: drafter === "eagle" || drafter === "hybrid" ? policy.routeSpeculator(seqId) : "live",
    maxDraftTokens: Math.min(req.speculation?.maxDraftTokens ?? 0, limits.maxDraftTokens),
    domain,
    sharePrefixWith,
    captureLayers: Object.freeze([...policy.captureLayers()]),
  });
}
