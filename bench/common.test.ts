// The benchmarks' arithmetic: the roofline recorded in bench/results/ and the prompts that
// bench/transformers_decode.py must reproduce exactly (its bench_prompt is a transcription).
import assert from "node:assert/strict";
import { test } from "node:test";
import { type HostTensor, parseModelConfig } from "@specloop/engine";
import { benchPrompt, median, roofline, weightBytesPerStep } from "./common.js";

const qwen06 = parseModelConfig(
  {
    architectures: ["Qwen3ForCausalLM"],
    head_dim: 128,
    hidden_size: 1024,
    intermediate_size: 3072,
    max_position_embeddings: 40960,
    num_attention_heads: 16,
    num_hidden_layers: 28,
    num_key_value_heads: 8,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: true,
    vocab_size: 151936,
    eos_token_id: 151645,
  },
  {},
);

test("roofline: Qwen3-0.6B shape, batch 1, prompt 32, 128 new tokens (the recorded H100 row)", () => {
  // 1,192,099,840 bytes of bf16 weights; f32 KV: 28 layers x 2 x 8 heads x 128 x 4 = 229,376 bytes a token;
  // decode steps attend over 33 .. 159 tokens, 96 on average.
  const r = roofline(qwen06, 1_192_099_840, 4, 1, 32, 128);
  assert.equal(r.meanKvBytesPerStep, 96 * 229_376);
  assert.equal(Math.round(r.ceilingTokensPerSecond * 10) / 10, 2470.9);
  const r16 = roofline(qwen06, 1_192_099_840, 4, 16, 32, 128);
  assert.equal(r16.meanKvBytesPerStep, 16 * 96 * 229_376);
});

test("weight bytes: the tied embedding table counts once (as the LM head), a stored lm_head copy not at all", () => {
  const t = (n: number): HostTensor => ({ dtype: "bf16", shape: [n / 2], data: new Uint8Array(n) });
  const tensors = new Map([
    ["model.embed_tokens.weight", t(100)],
    ["lm_head.weight", t(100)],
    ["model.norm.weight", t(8)],
  ]);
  assert.equal(weightBytesPerStep(qwen06, tensors), 108);
  assert.equal(weightBytesPerStep({ ...qwen06, tieWordEmbeddings: false }, tensors), 108);
});

test("benchPrompt is xorshift32 as transformers_decode.py computes it", () => {
  // Values printed by bench_prompt(0, 8, 8192) and bench_prompt(3, 5, 151936) in Python.
  assert.deepEqual(benchPrompt(0, 8, 8192), [153, 1182, 2826, 2805, 143, 5543, 2832, 2847]);
  assert.deepEqual(benchPrompt(3, 5, 151936), [6741, 3825, 1373, 1211, 2779]);
});

test("median of odd and even counts", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
});
