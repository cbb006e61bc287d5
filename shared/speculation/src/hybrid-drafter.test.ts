// The hybrid drafter on the bundled model: it takes the suffix tree's proposal where the context repeats and
// the learned drafter's elsewhere (the bundled draft model stands in the learned drafter's place here; on a
// node it is the eagle head), its proposals name their maker, and greedy output stays plain decoding's.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  bundledPromptTokens,
  type CpuBackend,
  createCpuBackend,
  EagleHead,
  type GenerateRequest,
  GREEDY,
  generate,
  loadModelDir,
  Model,
  Rng,
  randomEagleWeights,
} from "@specloop/engine";
import { DraftModelDrafter } from "./draft-model.js";
import type { SequenceView } from "./drafter.js";
import { EagleDrafter } from "./eagle-drafter.js";
import { speculativeGenerate } from "./generate.js";
import { HybridDrafter } from "./hybrid-drafter.js";
import { SuffixDrafter } from "./suffix/suffix-drafter.js";

const MODELS = fileURLToPath(new URL("../../../models/", import.meta.url));
let backend: CpuBackend;
let target: Model;
let draft: Model;
let requests: GenerateRequest[];

before(async () => {
  backend = await createCpuBackend({ threads: 1 });
  const loaded = await loadModelDir(`${MODELS}tiny-code`);
  target = Model.load(backend, loaded);
  draft = Model.load(backend, await loadModelDir(`${MODELS}tiny-code-draft`));
  const prompts = await bundledPromptTokens(`${MODELS}tiny-code`, loaded.tokenizer, {
    perDomain: 4,
    maxTokens: 48,
  });
  requests = prompts.map((prompt) => ({ prompt, maxTokens: 32, stopTokenIds: [] }));
});

after(() => backend.destroy());

function hybrid() {
  const learned = new DraftModelDrafter(draft, target.config.vocabSize, {
    numBlocks: 1024,
    blockSize: 16,
    maxDepth: 6,
  });
  return new HybridDrafter(new SuffixDrafter(), learned);
}

function view(id: string, tokens: number[]): SequenceView {
  return { id, tokens, promptLength: tokens.length, sampling: GREEDY, remaining: 64 };
}

describe("hybrid drafter", () => {
  it("drafts from the suffix tree where the context repeats, from the learned drafter where it does not", async () => {
    const h = hybrid();
    const rng = new Rng(11);
    const motif = Array.from({ length: 12 }, () => 100 + (rng.nextU32() % 4000));
    const repeating = view("repeats", [...motif, ...motif, ...motif, ...motif.slice(0, 4)]);
    const fresh = view(
      "fresh",
      Array.from({ length: 40 }, () => 100 + (rng.nextU32() % 4000)),
    );
    for (const s of [repeating, fresh]) h.observe(s);
    const [fromRepeat, fromFresh] = await h.propose([
      { seq: repeating, budget: 6, rng: new Rng(1) },
      { seq: fresh, budget: 6, rng: new Rng(2) },
    ]);
    assert.equal(fromRepeat?.source, "suffix");
    assert.equal(fromRepeat?.sourceVersion, "");
    assert.deepEqual(
      [...(fromRepeat?.tokens.subarray(0, 4) ?? [])],
      motif.slice(4, 8),
      "the repeat's continuation",
    );
    assert.equal(fromFresh?.source, "draft-model");
    assert.ok((fromFresh?.tokens.length ?? 0) > 0, "the learned drafter proposed");
    assert.deepEqual(h.counts, { suffix: 1, learned: 1 });
    h.release("repeats");
    h.release("fresh");
  });

  it("keeps greedy output equal to plain decoding, drafting with both sides on the bundled prompts", async () => {
    const plain = (await generate(target, requests)).outputs.map((o) => o.tokens);
    const h = hybrid();
    const { outputs, stats } = await speculativeGenerate(target, requests, {
      drafter: "hybrid",
      drafters: new Map([["hybrid", h]]),
      budget: 6,
    });
    for (const [i, o] of outputs.entries()) assert.deepEqual(o.tokens, plain[i], `prompt ${i}`);
    assert.ok(h.counts.suffix > 0 && h.counts.learned > 0, `steps drafted: ${JSON.stringify(h.counts)}`);
    assert.ok(stats.acceptedPerPass > 1.2, `${stats.acceptedPerPass} tokens per pass`);
  });

  it("stops asking a learned drafter whose drafts are rejected, but for a probe every 8 steps", async () => {
    // A random head: its drafts are almost never accepted. Random prompts: the suffix tree has no match.
    const eagle = new EagleDrafter(
      EagleHead.load(backend, randomEagleWeights(target.config, { seed: 9 }), target),
      {
        depth: 3,
      },
    );
    const h = new HybridDrafter(new SuffixDrafter(), eagle);
    const rng = new Rng(5);
    const fresh = Array.from({ length: 2 }, () => ({
      prompt: Array.from({ length: 24 }, () => 100 + (rng.nextU32() % 4000)),
      maxTokens: 40,
      stopTokenIds: [],
    }));
    const plain = (await generate(target, fresh)).outputs.map((o) => o.tokens);
    const { outputs, stats } = await speculativeGenerate(target, fresh, {
      drafter: "hybrid",
      drafters: new Map([["hybrid", h]]),
      budget: 3,
    });
    for (const [i, o] of outputs.entries()) assert.deepEqual(o.tokens, plain[i], `prompt ${i}`);
    const steps = stats.targetPasses;
    // Per sequence: a few drafts until its running mean falls under 0.5, then one probe in 8 steps.
    assert.ok(
      h.counts.learned <= 2 * (3 + steps / 2 / 8 + 1),
      `${h.counts.learned} learned drafts in ${steps} passes`,
    );
    assert.ok(h.counts.learned >= 2 * 2, "each sequence tried the learned drafter and probed it again");
  });

  it("refuses options that cannot mean anything, naming them", () => {
    const learned = new DraftModelDrafter(draft, target.config.vocabSize, {
      numBlocks: 8,
      blockSize: 16,
      maxDepth: 2,
    });
    for (const [key, value] of [
      ["minSuffixScore", -1],
      ["learnedPrior", Number.NaN],
      ["alpha", 0],
      ["minLearnedAccepted", Number.POSITIVE_INFINITY],
      ["probeEvery", 0.5],
    ] as const) {
      assert.throws(() => new HybridDrafter(new SuffixDrafter(), learned, { [key]: value }), new RegExp(key));
    }
  });
});
