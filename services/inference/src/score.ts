// Score: log-probabilities of given continuations after a prompt, by teacher forcing (no sampling). The
// prompt is prefilled once and forked (its KV shared) for every continuation; one more pass reads every
// continuation position. It runs between decoding turns, on the node's own KV pool.
import { randomUUID } from "node:crypto";
import {
  buildLayout,
  type KvManager,
  logSumExp,
  type Model,
  type Tokenizer,
  topKIds,
} from "@specloop/engine";
import type { ContinuationScore, ScoreRequest, ScoreResponse } from "@specloop/proto";
import { InvalidArgumentError, ResourceExhaustedError } from "@specloop/runtime";
import { checkModel, promptTokens, type RequestLimits } from "./requests.js";

export const MAX_TOP_LOGPROBS = 20;

/** Token ids of each continuation (text is tokenized without special tokens). */
export function continuationTokens(
  req: ScoreRequest,
  limits: RequestLimits,
  tokenizer: Tokenizer,
): number[][] {
  if (req.continuations.length === 0) throw new InvalidArgumentError("continuations", "give at least one");
  return req.continuations.map((c, i) => {
    if ((c.text !== "") === c.tokenIds.length > 0) {
      throw new InvalidArgumentError(`continuations[${i}]`, "give exactly one of text and token_ids");
    }
    const ids =
      c.tokenIds.length > 0 ? [...c.tokenIds] : tokenizer.encode(c.text, { addSpecialTokens: false });
    if (ids.length === 0) throw new InvalidArgumentError(`continuations[${i}]`, "encodes to no tokens");
    ids.forEach((id, j) => {
      if (!(id >= 0 && id < limits.vocabSize)) {
        throw new InvalidArgumentError(
          `continuations[${i}].token_ids[${j}]`,
          `${id} is outside the vocabulary`,
        );
      }
    });
    return ids;
  });
}

export async function scoreContinuations(
  model: Model,
  kv: KvManager,
  limits: RequestLimits,
  tokenizer: Tokenizer,
  req: ScoreRequest,
): Promise<ScoreResponse> {
  checkModel(req.model, limits);
  const prompt = promptTokens(
    { prompt: req.prompt, promptTokenIds: req.promptTokenIds, messages: req.messages },
    limits,
  );
  const conts = continuationTokens(req, limits, tokenizer);
  if (req.topLogprobs > MAX_TOP_LOGPROBS) {
    throw new InvalidArgumentError(
      "top_logprobs",
      `must be in 0..${MAX_TOP_LOGPROBS}, got ${req.topLogprobs}`,
    );
  }
  conts.forEach((c, i) => {
    if (prompt.length + c.length > limits.contextLength) {
      throw new InvalidArgumentError(
        `continuations[${i}]`,
        `prompt and continuation take ${prompt.length + c.length} tokens, over the context of ${limits.contextLength}`,
      );
    }
  });
  const base = `score:${randomUUID()}`;
  const forks = conts.map((_, i) => `${base}:${i}`);
  const noRoom = () =>
    new ResourceExhaustedError(
      "no KV blocks free to score these continuations now; retry later or send fewer",
    );
  try {
    // The prompt but its last token, once.
    if (prompt.length > 1) {
      if (kv.allocateSlots(base, prompt.length - 1) === null) throw noRoom();
      const layout = buildLayout(kv, [{ seq: base, newTokens: prompt.length - 1 }]);
      const out = model.forward(kv.storage, layout, Int32Array.from(prompt.slice(0, -1)), {
        logitRows: new Int32Array(0),
      });
      if (out.logits !== undefined) model.backend.release(out.logits);
      kv.commit(base, prompt.length - 1);
    } else if (kv.allocateSlots(base, 0) === null) throw noRoom();
    // Each continuation reads from the prompt's last token on: row j predicts continuation token j.
    for (const f of forks) {
      kv.fork(base, f);
      const c = conts[forks.indexOf(f)] as number[];
      if (kv.allocateSlots(f, c.length) === null) throw noRoom();
    }
    const layout = buildLayout(
      kv,
      forks.map((f, i) => ({ seq: f, newTokens: (conts[i] as number[]).length })),
    );
    const ids = Int32Array.from(conts.flatMap((c) => [prompt.at(-1) as number, ...c.slice(0, -1)]));
    const out = model.forward(kv.storage, layout, ids, {
      logitRows: Int32Array.from({ length: ids.length }, (_, i) => i),
    });
    const logits = out.logits;
    if (logits === undefined) throw new Error("score: the pass gave no logits");
    const rows = await model.backend.readRows(logits);
    model.backend.release(logits);
    const vocab = model.config.vocabSize;
    let row = 0;
    const scores: ContinuationScore[] = conts.map((c) => {
      const tokenLogprobs: number[] = [];
      const top: ContinuationScore["top"] = [];
      for (const id of c) {
        const r = rows.subarray(row * vocab, (row + 1) * vocab);
        const lse = logSumExp(r);
        tokenLogprobs.push((r[id] as number) - lse);
        if (req.topLogprobs > 0) {
          top.push({
            tokens: topKIds(r, req.topLogprobs).map((t) => ({ tokenId: t, logprob: (r[t] as number) - lse })),
          });
        }
        row++;
      }
      return {
        tokenIds: c,
        tokenLogprobs,
        totalLogprob: tokenLogprobs.reduce((a, b) => a + b, 0),
        top,
      };
    });
    return { scores };
  } finally {
    for (const f of forks) kv.free(f);
    kv.free(base);
  }
}
