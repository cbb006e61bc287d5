// Speculation never changes what is generated: at temperature 0 every drafter's output equals plain
// decoding's, token for token, on the bundled model and its bundled prompts; sampled output is seeded and
// the decoder's batch equals each sequence alone.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  bundledPromptTokens,
  type CpuBackend,
  createCpuBackend,
  EagleHead,
  type GenerateRequest,
  generate,
  loadModelDir,
  Model,
  Rng,
  randomEagleWeights,
} from "@specloop/engine";
import { DRAFT_CAPS, DraftCapTuner } from "./draft-cap.js";
import { DraftModelDrafter } from "./draft-model.js";
import type { Drafter, DraftRequest, Proposal } from "./drafter.js";
import { EagleDrafter } from "./eagle-drafter.js";
import { speculativeGenerate } from "./generate.js";
import { SuffixDrafter } from "./suffix/suffix-drafter.js";

const MODELS = fileURLToPath(new URL("../../../models/", import.meta.url));

/**
 * An adversarial drafter: random trees of random tokens, half of them the target's own likely tokens
 * (copied from the sequence's recent output), so verification sees accepts, rejects and siblings.
 */
class RandomTreeDrafter implements Drafter {
  readonly kind = "suffix" as const;
  readonly version = "";
  readonly featureLayers: readonly number[] = [];
  constructor(private readonly vocab: number) {}
  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    return requests.map(({ seq, budget }) => {
      const rng = new Rng(seq.tokens.length * 7919 + budget);
      const n = Math.min(budget, 1 + (rng.nextU32() % 6));
      const tokens = new Int32Array(n);
      const parents = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        parents[i] = i === 0 ? -1 : (rng.nextU32() % (i + 1)) - 1;
        const recent = seq.tokens[seq.tokens.length - 1 - (rng.nextU32() % 8)];
        tokens[i] = rng.next() < 0.5 && recent !== undefined ? recent : rng.nextU32() % this.vocab;
      }
      return { tokens, parents, draftProbs: new Float32Array(n).fill(1) };
    });
  }
  observe(): void {}
  release(): void {}
}

/**
 * A hostile drafter whose proposals are malformed in turn: token ids outside the vocabulary (a forged fleet
 * trace's 99999), a parent after its child, more nodes than the budget, arrays of different lengths, and now
 * and then a valid chain. The decoder refuses each before the pass: the sequence runs a plain step.
 */
class MalformedDrafter implements Drafter {
  readonly kind = "suffix" as const;
  readonly version = "";
  readonly featureLayers: readonly number[] = [];
  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    return requests.map(({ seq, budget }) => {
      const last = seq.tokens.at(-1) as number;
      const chain = (tokens: number[]): Proposal => ({
        tokens: Int32Array.from(tokens),
        parents: Int32Array.from(tokens, (_, i) => i - 1),
        draftProbs: new Float32Array(tokens.length).fill(1),
      });
      switch (seq.tokens.length % 5) {
        case 0:
          return chain([99999, last]);
        case 1:
          return { ...chain([last, last]), parents: Int32Array.from([1, -1]) };
        case 2:
          return chain(Array.from({ length: budget + 3 }, () => last));
        case 3:
          return { ...chain([last, last]), draftProbs: new Float32Array(1) };
        default:
          return chain([last]);
      }
    });
  }
  observe(): void {}
  release(): void {}
}

let backend: CpuBackend;
let target: Model;
let draft: Model;
let requests: GenerateRequest[];

before(async () => {
  // One kernel thread: test files run two at a time on CI's 2 cores.
  backend = await createCpuBackend({ threads: 1 });
  const loaded = await loadModelDir(`${MODELS}tiny-code`);
  target = Model.load(backend, loaded);
  draft = Model.load(backend, await loadModelDir(`${MODELS}tiny-code-draft`));
  const prompts = await bundledPromptTokens(`${MODELS}tiny-code`, loaded.tokenizer, {
    perDomain: 17,
    maxTokens: 48,
  });
  requests = prompts.map((prompt) => ({ prompt, maxTokens: 24, stopTokenIds: [] }));
});

after(() => backend.destroy());

describe("speculative decoding is lossless at temperature 0", () => {
  let plain: number[][];
  before(async () => {
    plain = (await generate(target, requests)).outputs.map((o) => o.tokens);
  });

  it("uses at least 50 bundled prompts", () => {
    assert.ok(requests.length >= 50, `${requests.length} prompts`);
  });

  const drafters: [string, () => Drafter | undefined, number][] = [
    ["none", () => undefined, 0],
    [
      "draft-model",
      () => new DraftModelDrafter(draft, 8192, { numBlocks: 2048, blockSize: 16, maxDepth: 8 }),
      6,
    ],
    ["random trees", () => new RandomTreeDrafter(8192), 8],
    [
      "malformed proposals (ids outside the vocabulary, bad parents, over budget)",
      () => new MalformedDrafter(),
      4,
    ],
    ["suffix", () => new SuffixDrafter(), 8],
    [
      "eagle (random head, top-k trees)",
      () =>
        new EagleDrafter(EagleHead.load(backend, randomEagleWeights(target.config, { seed: 3 }), target), {
          mode: "tree",
          depth: 3,
          topK: 2,
        }),
      6,
    ],
  ];
  for (const [name, make, budget] of drafters) {
    it(`with ${name}`, async () => {
      const d = make();
      const kind = d?.kind ?? "none";
      const { outputs, stats } = await speculativeGenerate(target, requests, {
        drafter: kind,
        drafters: new Map(d ? [[kind, d]] : []),
        budget,
      });
      for (const [i, o] of outputs.entries()) assert.deepEqual(o.tokens, plain[i], `prompt ${i}`);
      if (name === "draft-model") {
        assert.ok(
          stats.acceptedPerPass > 1.2,
          `draft model accepted ${stats.acceptedPerPass} tokens per pass`,
        );
      }
      if (name === "none") assert.equal(stats.acceptedPerPass, 1);
    });
  }
});

describe("draft cap", () => {
  it("switches off a drafter measured to deliver less than none, and the output is unchanged", async () => {
    const rs = requests.slice(0, 4);
    const plain = (await generate(target, rs)).outputs.map((o) => o.tokens);
    // Measured: every cap but 0 delivered nothing, at every batch size on the way (the steps run here then
    // move cap 0's rate, but it stays the only one above 0).
    const draftCap = new DraftCapTuner({ exploreEvery: 1_000_000, minSamples: 1 });
    for (const n of [1, 2, 4]) for (const cap of DRAFT_CAPS) draftCap.observe(n, cap, cap === 0 ? 10 : 0, 1);
    const { outputs, stats } = await speculativeGenerate(target, rs, {
      drafter: "draft-model",
      drafters: new Map([
        ["draft-model", new DraftModelDrafter(draft, 8192, { numBlocks: 512, blockSize: 16, maxDepth: 4 })],
      ]),
      budget: 4,
      draftCap,
    });
    for (const [i, o] of outputs.entries()) assert.deepEqual(o.tokens, plain[i], `prompt ${i}`);
    assert.equal(stats.acceptedPerPass, 1, "nothing was drafted");
  });
});

describe("sampled speculative decoding", () => {
  it("is reproducible from a seed and a batch equals each sequence alone", async () => {
    const sampled = requests.slice(0, 6).map((r, i) => ({
      ...r,
      sampling: { temperature: 0.9, topP: 0.95 },
      seed: 100 + i,
    }));
    const run = (rs: GenerateRequest[]) =>
      speculativeGenerate(target, rs, {
        drafter: "draft-model",
        drafters: new Map([
          ["draft-model", new DraftModelDrafter(draft, 8192, { numBlocks: 512, blockSize: 16, maxDepth: 4 })],
        ]),
        budget: 4,
      });
    const batch = await run(sampled);
    for (const [i, r] of sampled.entries()) {
      const alone = await run([r]);
      assert.deepEqual(batch.outputs[i]?.tokens, alone.outputs[0]?.tokens, `sequence ${i}`);
    }
  });
});
