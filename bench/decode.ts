// One timed greedy decode through the engine's own generation loop (generate.ts), the path every command
// takes: prefill of every prompt in one pass, then one pass per step for the whole batch, greedy ids read
// back each step. Stop tokens are switched off so every sequence makes exactly `newTokens` tokens, as
// transformers' min_new_tokens = max_new_tokens does on the other side.
import { type GenerateStats, GREEDY, generate, type Model } from "@specloop/engine";
import { benchPrompt } from "./common.js";

export interface DecodeRun {
  stats: GenerateStats;
  /** Sequence 0's tokens (first from the prefill), to compare with transformers' greedy output. */
  firstSequence: number[];
  wallSeconds: number;
}

export function benchPrompts(batch: number, promptLen: number, vocab: number): number[][] {
  return Array.from({ length: batch }, (_, s) => benchPrompt(s, promptLen, vocab));
}

export async function decodeRun(
  model: Model,
  batch: number,
  promptLen: number,
  newTokens: number,
): Promise<DecodeRun> {
  const prompts = benchPrompts(batch, promptLen, model.config.vocabSize);
  const t0 = performance.now();
  const { outputs, stats } = await generate(
    model,
    prompts.map((prompt) => ({ prompt, maxTokens: newTokens, sampling: GREEDY, seed: 0, stopTokenIds: [] })),
  );
  const wallSeconds = (performance.now() - t0) / 1000;
  return { stats, firstSequence: outputs[0]?.tokens ?? [], wallSeconds };
}
