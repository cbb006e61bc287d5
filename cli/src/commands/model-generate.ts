// `specloop model generate --model DIR (--prompt TEXT | --tokens 1,2,3) [--drafter KIND]`: generation in
// this process, plain or speculative (the drafter proposes, the target verifies: the output is the same),
// reporting the output, the decode speed and, with a drafter, the accepted tokens per target pass.
import { readFile } from "node:fs/promises";
import { type BackendChoice, EagleHead, generate, loadModelDir, Model } from "@specloop/engine";
import {
  type Drafter,
  type DrafterKind,
  DraftModelDrafter,
  EagleDrafter,
  HybridDrafter,
  SuffixDrafter,
  speculativeGenerate,
} from "@specloop/speculation";
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
  drafter: DrafterKind;
  /** draft-model: the draft model's directory. */
  draftModel?: string;
  /** eagle: an eagle-v1 safetensors file. */
  speculator?: string;
  /** Nodes drafted per target pass. */
  draftBudget: number;
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
  drafter: DrafterKind;
  /** Target passes that produced output (each verified a proposal, or decoded one token with none). */
  target_passes: number;
  /** Output tokens per target pass: 1 without speculation. */
  accepted_per_pass: number;
}

/** The drafter a run asked for, built on the target's backend. */
async function makeDrafter(opts: ModelGenerateOptions, target: Model): Promise<Drafter | undefined> {
  switch (opts.drafter) {
    case "none":
      return undefined;
    case "suffix":
      return new SuffixDrafter();
    case "draft-model": {
      if (opts.draftModel === undefined)
        throw new RangeError("--drafter draft-model needs --draft-model DIR");
      const draft = Model.load(target.backend, await loadModelDir(opts.draftModel));
      return new DraftModelDrafter(draft, target.config.vocabSize, {
        numBlocks: Math.ceil((opts.maxTokens + 4096) / 16) + 8,
        blockSize: 16,
        maxDepth: opts.draftBudget,
      });
    }
    case "eagle":
    case "hybrid": {
      if (opts.speculator === undefined) {
        throw new RangeError(
          `--drafter ${opts.drafter} needs --speculator FILE (an eagle-v1 safetensors file)`,
        );
      }
      const blob = new Uint8Array(await readFile(opts.speculator));
      const eagle = new EagleDrafter(EagleHead.load(target.backend, blob, target), {
        depth: opts.draftBudget,
      });
      return opts.drafter === "eagle" ? eagle : new HybridDrafter(new SuffixDrafter(), eagle);
    }
  }
}

export async function modelGenerate(opts: ModelGenerateOptions): Promise<ModelGenerateResult> {
  if ((opts.prompt === undefined) === (opts.tokens === undefined)) {
    throw new RangeError("give exactly one of --prompt and --tokens");
  }
  const { loaded, model, selected } = await loadOnBackend(opts.model, opts.backend);
  try {
    let prompt = opts.tokens;
    if (prompt === undefined) {
      prompt = loaded.tokenizer.encodePrompt(opts.prompt ?? "");
    }
    checkTokenIds(prompt, loaded.config.vocabSize);
    const sampling = { temperature: opts.temperature, topK: opts.topK, topP: opts.topP };
    const request = { prompt, maxTokens: opts.maxTokens, sampling, seed: opts.seed };
    const base = {
      model: loaded.modelId,
      ...backendFields(selected),
      prompt_ids: prompt,
      drafter: opts.drafter,
    };
    const result = (
      out: { tokens: number[]; finishReason: "stop" | "length"; seed: number },
      stats: {
        prefillSeconds: number;
        decodeTokens: number;
        decodeSeconds: number;
        decodeTokensPerSecond: number;
      },
      passes: { target_passes: number; accepted_per_pass: number },
    ): ModelGenerateResult => ({
      ...base,
      output_ids: out.tokens,
      text: loaded.tokenizer.decode(out.tokens, { skipSpecialTokens: true }),
      finish_reason: out.finishReason,
      seed: out.seed,
      prefill_tokens: prompt.length,
      prefill_seconds: stats.prefillSeconds,
      decode_tokens: stats.decodeTokens,
      decode_seconds: stats.decodeSeconds,
      decode_tokens_per_second: stats.decodeTokensPerSecond,
      ...passes,
    });
    if (opts.drafter === "none") {
      const { outputs, stats } = await generate(model, [request]);
      return result(outputs[0]!, stats, { target_passes: stats.decodeSteps + 1, accepted_per_pass: 1 });
    }
    const drafter = (await makeDrafter(opts, model)) as Drafter;
    const { outputs, stats } = await speculativeGenerate(model, [request], {
      drafter: opts.drafter,
      drafters: new Map([[opts.drafter, drafter]]),
      budget: opts.draftBudget,
    });
    return result(outputs[0]!, stats, {
      target_passes: stats.targetPasses,
      accepted_per_pass: stats.acceptedPerPass,
    });
  } finally {
    selected.backend.destroy();
  }
}
