// In-process speculative generation over a fixed set of requests (the CLI's `model generate --drafter`,
// tests and benchmarks): the decoder's steps run until every sequence finishes. The inference node does
// the same with a scheduler in front (admission, cancellation, preemption, traces).
import {
  DEFAULT_BLOCK_SIZE,
  type GenerateRequest,
  GREEDY,
  KvCacheFullError,
  KvManager,
  type Model,
  randomSeed,
} from "@specloop/engine";
import { SpeculativeDecoder } from "./decoder.js";
import type { DraftCapTuner } from "./draft-cap.js";
import type { Drafter, DrafterKind } from "./drafter.js";
import { DecodeSequence, type FinishReason } from "./sequence.js";

export interface SpeculativeGenerateOptions {
  drafter: DrafterKind;
  drafters: ReadonlyMap<DrafterKind, Drafter>;
  /** Nodes drafted per step. */
  budget: number;
  blockSize?: number;
  /** Prompt tokens prefilled per pass. */
  prefillTokens?: number;
  /** Caps the budget where it is measured not to pay (draft-cap.ts); absent: always `budget`. */
  draftCap?: DraftCapTuner;
}

export interface SpeculativeOutput {
  tokens: number[];
  finishReason: FinishReason;
  seed: number;
  targetPasses: number;
}

export interface SpeculativeStats {
  prefillSeconds: number;
  decodeSeconds: number;
  /** Output tokens over all sequences. */
  decodeTokens: number;
  decodeTokensPerSecond: number;
  /** Target passes that verified (each yields accepted + 1 tokens per sequence in it). */
  targetPasses: number;
  /** Output tokens per verification of one sequence, averaged over all of them. */
  acceptedPerPass: number;
}

export async function speculativeGenerate(
  model: Model,
  requests: readonly GenerateRequest[],
  options: SpeculativeGenerateOptions,
): Promise<{ outputs: SpeculativeOutput[]; stats: SpeculativeStats }> {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const lookahead = options.budget + 1;
  const numBlocks = requests.reduce(
    (n, r) => n + Math.ceil((r.prompt.length + r.maxTokens + lookahead) / blockSize) + 1,
    0,
  );
  const kv = new KvManager(model.backend, model.kvSpec(numBlocks, blockSize));
  const decoder = new SpeculativeDecoder({
    model,
    kv,
    drafters: options.drafters,
    budgetFor: () => options.budget,
    draftCap: options.draftCap,
  });
  const seqs = requests.map(
    (r, i) =>
      new DecodeSequence({
        id: String(i),
        prompt: r.prompt,
        maxTokens: r.maxTokens,
        sampling: r.sampling ?? GREEDY,
        seed: r.seed ?? randomSeed(),
        stopTokenIds: r.stopTokenIds ?? model.config.eosTokenIds,
        drafter: options.drafter,
      }),
  );
  const prefillTokens = options.prefillTokens ?? 512;
  const t0 = performance.now();
  // Decode time runs from the start of the first pass that verifies (it gives each sequence's first token).
  let decodeStart: number | undefined;
  let passes = 0;
  for (let active = seqs; active.length > 0; active = active.filter((s) => !s.done)) {
    const tStep = performance.now();
    const step = await decoder.step(active, { prefillTokens });
    if (step.starved.length > 0) {
      throw new KvCacheFullError(
        `speculativeGenerate: no KV blocks left (${numBlocks} blocks of ${blockSize})`,
      );
    }
    if (step.ran.some((r) => r.tokens.length > 0)) {
      passes++;
      decodeStart ??= tStep;
    }
    for (const s of active) if (s.done) decoder.evict(s);
  }
  const t1 = performance.now();
  const start = decodeStart ?? t1;
  const decodeTokens = seqs.reduce((n, s) => n + s.outputLength, 0);
  const verifications = seqs.reduce((n, s) => n + s.targetPasses, 0);
  return {
    outputs: seqs.map((s) => ({
      tokens: s.output,
      finishReason: s.finishReason ?? "length",
      seed: s.seed,
      targetPasses: s.targetPasses,
    })),
    stats: {
      prefillSeconds: (start - t0) / 1000,
      decodeSeconds: (t1 - start) / 1000,
      decodeTokens,
      decodeTokensPerSecond: t1 > start ? decodeTokens / ((t1 - start) / 1000) : 0,
      targetPasses: passes,
      acceptedPerPass: verifications > 0 ? decodeTokens / verifications : 0,
    },
  };
}
