// `specloop model generate --model DIR (--prompt TEXT | --tokens 1,2,3)`: plain (non-speculative)
// generation in this process, reporting the output and the decode speed.
import { type BackendChoice, generate } from "@specloop/engine";
import { type BackendFields, backendFields, checkTokenIds, loadOnBackend } from "./model-common.js";

export interface ModelGenerateOptions {
  model: string;
  prompt?: string;
  tokens?: number[];
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  backend: BackendChoice;
}

export interface ModelGenerateResult extends BackendFields {
  model: string;
  prompt_ids: number[];
  output_ids: number[];
  text: string;
  finish_reason: "stop" | "length";
  seed: number;
  prefill_tokens: number;
  prefill_seconds: number;
  decode_tokens: number;
  decode_seconds: number;
  decode_tokens_per_second: number;
}

export async function modelGenerate(opts: ModelGenerateOptions): Promise<ModelGenerateResult> {
  if ((opts.prompt === undefined) === (opts.tokens === undefined)) {
    throw new RangeError("give exactly one of --prompt and --tokens");
  }
  const { loaded, model, selected } = await loadOnBackend(opts.model, opts.backend);
  try {
    let prompt = opts.tokens;
    if (prompt === undefined) {
      // Text prompts start with bos, as the checkpoint was trained (the tokenizer does not add it).
      const ids = loaded.tokenizer.encode(opts.prompt ?? "");
      const bos = loaded.config.bosTokenId;
      prompt = bos !== undefined && ids[0] !== bos ? [bos, ...ids] : ids;
    }
    checkTokenIds(prompt, loaded.config.vocabSize);
    const sampling = { temperature: opts.temperature, topK: opts.topK, topP: opts.topP };
    const { outputs, stats } = await generate(model, [
      { prompt, maxTokens: opts.maxTokens, sampling, seed: opts.seed },
    ]);
    const out = outputs[0]!;
    return {
      model: loaded.modelId,
      ...backendFields(selected),
      prompt_ids: prompt,
      output_ids: out.tokens,
      text: loaded.tokenizer.decode(out.tokens, { skipSpecialTokens: true }),
      finish_reason: out.finishReason,
      seed: out.seed,
      prefill_tokens: stats.prefillTokens,
      prefill_seconds: stats.prefillSeconds,
      decode_tokens: stats.decodeTokens,
      decode_seconds: stats.decodeSeconds,
      decode_tokens_per_second: stats.decodeTokensPerSecond,
    };
  } finally {
    selected.backend.destroy();
  }
}
