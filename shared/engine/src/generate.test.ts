import assert from "node:assert/strict";
import { before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ReferenceBackend } from "./backends/reference/backend.js";
import { KvCacheFullError } from "./errors.js";
import { generate } from "./generate.js";
import { loadModelDir } from "./loader/hf-model.js";
import { Model } from "./model/model.js";

// The draft model is the fastest real checkpoint; the loop does not depend on the model's size.
const DIR = fileURLToPath(new URL("../../../models/tiny-code-draft", import.meta.url));
let model: Model;

before(async () => {
  model = Model.load(new ReferenceBackend(), await loadModelDir(DIR));
});

const PROMPTS = [[0, 333, 288, 1986], [0], [0, 7536, 366, 4658, 1943, 7289, 544]];

test("generate: a batch gives each sequence what it gets alone (greedy and seeded sampling)", async () => {
  const requests = PROMPTS.map((prompt, i) => ({
    prompt,
    maxTokens: 6 + i,
    stopTokenIds: [],
    sampling: i === 1 ? { temperature: 0.8, topK: 20 } : { temperature: 0 },
    seed: 5,
  }));
  const { outputs, stats } = await generate(model, requests, { blockSize: 4 });
  for (const [i, r] of requests.entries()) {
    const alone = await generate(model, [r]);
    assert.deepEqual(outputs[i]!.tokens, alone.outputs[0]!.tokens, `sequence ${i}`);
    assert.equal(outputs[i]!.tokens.length, r.maxTokens);
    assert.equal(outputs[i]!.finishReason, "length");
  }
  assert.equal(stats.prefillTokens, 12);
  assert.equal(stats.decodeTokens, 5 + 6 + 7);
  assert.equal(stats.decodeSteps, 7);
  assert.ok(stats.decodeTokensPerSecond > 0);
});

test("generate: stops at a stop token and keeps it", async () => {
  const free = await generate(model, [{ prompt: PROMPTS[0]!, maxTokens: 5, stopTokenIds: [] }]);
  const third = free.outputs[0]!.tokens[2]!;
  const { outputs } = await generate(model, [{ prompt: PROMPTS[0]!, maxTokens: 5, stopTokenIds: [third] }]);
  const firstStop = free.outputs[0]!.tokens.indexOf(third);
  assert.deepEqual(outputs[0]!.tokens, free.outputs[0]!.tokens.slice(0, firstStop + 1));
  assert.equal(outputs[0]!.finishReason, "stop");
});

test("generate: a KV cache too small fails with KvCacheFullError; bad requests are refused", async () => {
  await assert.rejects(
    generate(model, [{ prompt: PROMPTS[2]!, maxTokens: 8 }], { blockSize: 4, numBlocks: 2 }),
    KvCacheFullError,
  );
  await assert.rejects(generate(model, [{ prompt: [], maxTokens: 1 }]), /empty prompt/);
  await assert.rejects(
    generate(model, [{ prompt: [0], maxTokens: 1, sampling: { temperature: -1 } }]),
    /temperature/,
  );
});
