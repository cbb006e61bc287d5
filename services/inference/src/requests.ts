// From the gRPC messages to validated node requests: one place that knows every rule, each refusal an
// InvalidArgumentError naming the request's field (snake_case, as the client wrote it).
import { randomUUID } from "node:crypto";
import { type ChatMessage as EngineChatMessage, randomSeed, type Tokenizer } from "@specloop/engine";
import {
  type ChatMessage,
  Drafter,
  FinishReason,
  type GenerateRequest,
  type SamplingParams,
  type SpeculationPolicy,
} from "@specloop/proto";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, safeUint64 } from "@specloop/runtime";
import type { DrafterKind } from "@specloop/speculation";
import type { NodeFinishReason, NodeRequest } from "./scheduler.js";

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

const DRAFTER_FROM_PROTO: Partial<Record<Drafter, DrafterKind | "auto">> = {
  [Drafter.DRAFTER_UNSPECIFIED]: "auto",
  [Drafter.DRAFTER_AUTO]: "auto",
  [Drafter.DRAFTER_NONE]: "none",
  [Drafter.DRAFTER_SUFFIX]: "suffix",
  [Drafter.DRAFTER_EAGLE]: "eagle",
  [Drafter.DRAFTER_DRAFT_MODEL]: "draft-model",
};

export const DRAFTER_TO_PROTO: Record<DrafterKind, Drafter> = {
  none: Drafter.DRAFTER_NONE,
  suffix: Drafter.DRAFTER_SUFFIX,
  eagle: Drafter.DRAFTER_EAGLE,
  "draft-model": Drafter.DRAFTER_DRAFT_MODEL,
};

export const FINISH_TO_PROTO: Record<NodeFinishReason, FinishReason> = {
  stop: FinishReason.FINISH_REASON_STOP,
  length: FinishReason.FINISH_REASON_LENGTH,
  context: FinishReason.FINISH_REASON_CONTEXT,
  cancelled: FinishReason.FINISH_REASON_CANCELLED,
};

/** The model a request names must be the node's (empty means the node's). */
export function checkModel(model: string, limits: RequestLimits): void {
  if (model !== "" && model !== limits.modelId) {
    throw new NotFoundError(`model ${model} is not served here (this node serves ${limits.modelId})`);
  }
}

/** Exactly one of prompt, prompt_token_ids, messages, as token ids. */
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
  let tokens: number[];
  if (input.promptTokenIds.length > 0) {
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
    input.messages.forEach((m, i) => {
      if (!["system", "user", "assistant"].includes(m.role)) {
        throw new InvalidArgumentError(
          `messages[${i}].role`,
          `must be system, user or assistant, got "${m.role}"`,
        );
      }
    });
    const text = limits.renderChat(input.messages.map((m) => ({ role: m.role, content: m.content })));
    tokens = limits.tokenizer.encode(text, { addSpecialTokens: false });
  } else {
    tokens = limits.tokenizer.encodePrompt(input.prompt);
  }
  if (tokens.length === 0) throw new InvalidArgumentError("prompt", "encodes to no tokens");
  if (tokens.length >= limits.contextLength) {
    throw new InvalidArgumentError(
      "prompt",
      `${tokens.length} tokens do not fit the model's context of ${limits.contextLength} (with room to generate)`,
    );
  }
  return tokens;
}

export function samplingOf(s: SamplingParams | undefined): NodeRequest["sampling"] {
  const temperature = s?.temperature ?? 0;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new InvalidArgumentError("sampling.temperature", `must be >= 0, got ${temperature}`);
  }
  const topP = s?.topP ?? 0;
  if (!(Number.isFinite(topP) && topP >= 0 && topP <= 1)) {
    throw new InvalidArgumentError("sampling.top_p", `must be in (0, 1] (0 means unset), got ${topP}`);
  }
  const out: NodeRequest["sampling"] = { temperature };
  if (topP > 0 && topP < 1) out.topP = topP;
  if ((s?.topK ?? 0) > 0) out.topK = s?.topK as number;
  return out;
}

function drafterOf(policy: SpeculationPolicy | undefined, limits: RequestLimits): DrafterKind | "auto" {
  const asked = policy?.drafter ?? Drafter.DRAFTER_UNSPECIFIED;
  const kind = DRAFTER_FROM_PROTO[asked];
  if (kind === undefined) {
    throw new InvalidArgumentError("speculation.drafter", `unknown drafter ${String(asked)}`);
  }
  const resolved = asked === Drafter.DRAFTER_UNSPECIFIED ? limits.defaultDrafter : kind;
  if (resolved !== "auto" && resolved !== "none" && !limits.availableDrafters().has(resolved)) {
    throw new FailedPreconditionError(
      `speculation.drafter: ${resolved} is not available on this node` +
        (resolved === "eagle" ? " (no speculator weights are loaded for its model)" : " (not configured)"),
    );
  }
  return resolved;
}

/** A Generate or Complete request (they share every field) as a node request. */
export function nodeRequest(req: GenerateRequest, limits: RequestLimits): NodeRequest {
  checkModel(req.model, limits);
  const promptIds = promptTokens(req, limits);
  const maxTokens = req.maxTokens === 0 ? limits.defaultMaxTokens : req.maxTokens;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 1 && maxTokens <= limits.maxTokensLimit)) {
    throw new InvalidArgumentError(
      "max_tokens",
      `must be in 1..${limits.maxTokensLimit} (0: the node's default), got ${maxTokens}`,
    );
  }
  const sampling = samplingOf(req.sampling);
  const stopIds = req.sampling?.stopTokenIds ?? [];
  stopIds.forEach((id, i) => {
    if (!(id >= 0 && id < limits.vocabSize)) {
      throw new InvalidArgumentError(`sampling.stop_token_ids[${i}]`, `${id} is outside the vocabulary`);
    }
  });
  const stopStrings = req.sampling?.stop ?? [];
  if (stopStrings.some((s) => s === ""))
    throw new InvalidArgumentError("sampling.stop", "contains an empty string");
  const maxDraft = req.speculation?.maxDraftTokens ?? 0;
  return {
    id: req.requestId !== "" ? req.requestId : randomUUID(),
    promptTokens: promptIds,
    maxTokens,
    sampling,
    seed: safeUint64("sampling.seed", req.sampling?.seed) ?? randomSeed(),
    stopTokenIds: [...new Set([...limits.eosTokenIds, ...stopIds])],
    stopStrings,
    drafter: drafterOf(req.speculation, limits),
    maxDraftTokens: Math.min(maxDraft, limits.maxDraftTokens),
    domain: req.domain,
    sharePrefixWith: req.sharePrefixWith,
    captureLayers: [],
    speculatorRole: "live",
  };
}
