import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { UnsupportedModelError } from "../errors.js";
import { expectedTensors, parseModelConfig } from "./config.js";

const MODELS = new URL("../../../../models/", import.meta.url).pathname;
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;

/** Qwen2.5-0.5B-Instruct's config.json, as published. */
const QWEN2 = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

/** Qwen3-0.6B's config.json: head_dim 128 although hidden_size / heads is 64. */
const QWEN3 = {
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 1024,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: "qwen3",
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

/** Llama-3.2-1B's config.json (rope_scaling in the classic form). */
const LLAMA32 = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  bos_token_id: 128000,
  eos_token_id: 128001,
  head_dim: 64,
  hidden_act: "silu",
  hidden_size: 2048,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: "llama3",
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  vocab_size: 128256,
};

const LLAMA3_SCALING = {
  type: "llama3",
  factor: 32,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositions: 8192,
};

function refuses(cfg: Record<string, unknown>, field: string, pattern: RegExp): void {
  assert.throws(
    () => parseModelConfig(cfg),
    (err: unknown) => {
      assert.ok(err instanceof UnsupportedModelError, `not an UnsupportedModelError: ${String(err)}`);
      assert.equal(err.field, field);
      assert.match(err.message, new RegExp(`^unsupported model: ${field.replace(/\./g, "\\.")}: `));
      assert.match(err.message, pattern);
      return true;
    },
  );
}

describe("model config", () => {
  test("model config - parses the bundled tiny-code config and generation_config", () => {
    const c = parseModelConfig(
      readJson(`${MODELS}tiny-code/config.json`),
      readJson(`${MODELS}tiny-code/generation_config.json`),
    );
    assert.deepEqual(c, {
      family: "llama",
      architecture: "LlamaForCausalLM",
      vocabSize: 8192,
      hiddenSize: 384,
      intermediateSize: 768,
      numLayers: 6,
      numHeads: 6,
      numKvHeads: 2,
      headDim: 64,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: undefined,
      maxPositions: 1024,
      tieWordEmbeddings: true,
      qkvBias: false,
      oBias: false,
      qkNorm: false,
      bosTokenId: 0,
      eosTokenIds: [0],
    });
    assert.equal(expectedTensors(c).size, 2 + 6 * 9, "embed, norm and 9 per layer; lm_head tied");
  });

  test("model config - Qwen2 has q/k/v biases but no o_proj bias", () => {
    const c = parseModelConfig(QWEN2);
    assert.equal(c.family, "qwen2");
    assert.equal(c.qkvBias, true);
    assert.equal(c.oBias, false);
    assert.equal(c.qkNorm, false);
    assert.equal(c.headDim, 64);
    assert.equal(c.ropeTheta, 1_000_000);
    const t = expectedTensors(c);
    assert.deepEqual(t.get("model.layers.0.self_attn.q_proj.bias"), [896]);
    assert.deepEqual(t.get("model.layers.0.self_attn.k_proj.bias"), [128]);
    assert.deepEqual(t.get("model.layers.23.self_attn.v_proj.bias"), [128]);
    assert.equal(t.has("model.layers.0.self_attn.o_proj.bias"), false);
  });

  test("model config - Qwen3 has q/k norms and a head_dim that is not hidden / heads", () => {
    const c = parseModelConfig(QWEN3);
    assert.equal(c.family, "qwen3");
    assert.equal(c.headDim, 128);
    assert.equal(c.qkNorm, true);
    assert.equal(c.qkvBias, false);
    assert.equal(c.ropeScaling, undefined);
    assert.deepEqual(c.eosTokenIds, [151645]);
    const t = expectedTensors(c);
    assert.deepEqual(t.get("model.layers.0.self_attn.q_proj.weight"), [16 * 128, 1024]);
    assert.deepEqual(t.get("model.layers.0.self_attn.k_proj.weight"), [8 * 128, 1024]);
    assert.deepEqual(t.get("model.layers.0.self_attn.o_proj.weight"), [1024, 16 * 128]);
    assert.deepEqual(t.get("model.layers.27.self_attn.q_norm.weight"), [128]);
    assert.deepEqual(t.get("model.layers.27.self_attn.k_norm.weight"), [128]);
  });

  test("model config - Llama 3 rope_scaling, classic and transformers-5 rope_parameters forms", () => {
    const classic = parseModelConfig(LLAMA32);
    assert.equal(classic.ropeTheta, 500_000);
    assert.deepEqual(classic.ropeScaling, LLAMA3_SCALING);

    const { rope_scaling, rope_theta: _theta, ...rest } = LLAMA32;
    const v5 = parseModelConfig({ ...rest, rope_parameters: { ...rope_scaling, rope_theta: 500000.0 } });
    assert.equal(v5.ropeTheta, 500_000);
    assert.deepEqual(v5.ropeScaling, LLAMA3_SCALING);
    assert.deepEqual(v5, classic);

    // The older "type" key instead of "rope_type".
    const { rope_type: _t, ...noType } = rope_scaling;
    assert.deepEqual(
      parseModelConfig({ ...LLAMA32, rope_scaling: { ...noType, type: "llama3" } }).ropeScaling,
      LLAMA3_SCALING,
    );
  });

  test("model config - generation_config's eos list wins over config.json's; attention_bias adds o bias", () => {
    const c = parseModelConfig(LLAMA32, { eos_token_id: [128001, 128008, 128009], bos_token_id: 128000 });
    assert.deepEqual(c.eosTokenIds, [128001, 128008, 128009]);
    assert.equal(c.bosTokenId, 128000);
    const biased = parseModelConfig({ ...LLAMA32, attention_bias: true });
    assert.equal(biased.qkvBias, true);
    assert.equal(biased.oBias, true);
    assert.deepEqual(expectedTensors(biased).get("model.layers.0.self_attn.o_proj.bias"), [2048]);
  });

  test("model config - refuses what the engine does not implement, naming the field", () => {
    refuses(
      { ...LLAMA32, architectures: ["MistralForCausalLM"] },
      "architectures",
      /"MistralForCausalLM" \(supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM\)/,
    );
    refuses({ ...LLAMA32, architectures: undefined }, "architectures", /missing/);
    refuses({ ...LLAMA32, hidden_act: "gelu" }, "hidden_act", /"gelu" \(supported: silu\)/);
    refuses(
      { ...QWEN2, use_sliding_window: true },
      "use_sliding_window",
      /sliding-window attention is not supported/,
    );
    refuses(
      { ...QWEN3, quantization_config: { quant_method: "awq", bits: 4 } },
      "quantization_config",
      /quantized checkpoints are not supported/,
    );
    refuses(
      { ...LLAMA32, num_key_value_heads: 5 },
      "num_key_value_heads",
      /5 does not divide num_attention_heads 32/,
    );
    refuses({ ...LLAMA32, mlp_bias: true }, "mlp_bias", /not supported/);
    refuses({ ...LLAMA32, pretraining_tp: 2 }, "pretraining_tp", /only 1/);
    refuses(
      { ...LLAMA32, rope_scaling: { rope_type: "yarn", factor: 4 } },
      "rope_scaling.rope_type",
      /"yarn" \(supported: default, llama3\)/,
    );
    const { low_freq_factor: _l, ...noLow } = LLAMA32.rope_scaling;
    refuses({ ...LLAMA32, rope_scaling: noLow }, "rope_scaling.low_freq_factor", /positive number/);
    refuses({ ...LLAMA32, hidden_size: undefined }, "hidden_size", /missing/);
    refuses({ ...LLAMA32, num_hidden_layers: 1.5 }, "num_hidden_layers", /positive integer/);
    refuses({ ...LLAMA32, head_dim: 63 }, "head_dim", /63 must be an even integer/);
    refuses({ ...LLAMA32, eos_token_id: -1 }, "eos_token_id", /bad token id -1/);
  });
});
