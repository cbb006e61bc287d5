// Checks the random test checkpoints in models/testing as committed (made by make_checkpoints.py beside
// this file): every file is there, every safetensors file parses and agrees with config.json (tensor
// names, shapes, the intended storage dtype) and with the shard index, and reference.json is
// self-consistent (format of models/tiny-code/reference.json; greedy[0] is the argmax at the last input
// position; the recorded full logits agree with the top-8). Also the Qwen3-0.6B-shaped benchmark config.
// The safetensors files are read, and the tensors a config implies are listed, by the engine (through
// tools/checkpoint-checks.ts): its parser and loader have their own unit tests on hand-made files, and
// what the engine would tolerate but a committed fixture must not have is checked on top.
import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { argmax, type DType, expectedTensors, numel } from "@specloop/engine";
import {
  checkCheckpointWeights,
  checkReference,
  engineConfig,
  GREEDY,
  type HfConfig,
  type Reference,
  readJson,
  TOP_K,
  TORCH_DTYPE,
} from "../checkpoint-checks.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const TESTING = join(ROOT, "models", "testing");
const SHAPE_DIR = join(ROOT, "tools", "test-checkpoints", "qwen3-0.6b-shape");
const MAX_TOTAL_BYTES = 3 * 1000 * 1000;
const MIN_GAP = 1e-3;
const INPUT_LENGTHS = [1, 7, 33, 100];

type StDtype = "BF16" | "F16" | "F32";
/** The engine's name for a safetensors dtype. */
const dtypeOf = (spec: Spec) => spec.dtype.toLowerCase() as DType;

interface Spec {
  name: string;
  architecture: string;
  modelType: string;
  dtype: StDtype;
  sharded: boolean;
  tied: boolean;
}

const SPECS: Spec[] = [
  {
    name: "llama-tiny",
    architecture: "LlamaForCausalLM",
    modelType: "llama",
    dtype: "BF16",
    sharded: false,
    tied: false,
  },
  {
    name: "llama-bias-f16",
    architecture: "LlamaForCausalLM",
    modelType: "llama",
    dtype: "F16",
    sharded: true,
    tied: true,
  },
  {
    name: "qwen2-tiny",
    architecture: "Qwen2ForCausalLM",
    modelType: "qwen2",
    dtype: "F32",
    sharded: false,
    tied: false,
  },
  {
    name: "qwen3-tiny",
    architecture: "Qwen3ForCausalLM",
    modelType: "qwen3",
    dtype: "BF16",
    sharded: false,
    tied: true,
  },
];

describe("test checkpoints", () => {
  for (const spec of SPECS) {
    const dir = join(TESTING, spec.name);

    test(`${spec.name} - files, config and safetensors agree (${spec.dtype})`, async () => {
      for (const f of ["config.json", "generation_config.json", "reference.json"]) {
        assert.ok(existsSync(join(dir, f)), `missing ${spec.name}/${f}`);
      }
      const cfg = readJson<HfConfig>(join(dir, "config.json"));
      assert.deepEqual(cfg.architectures, [spec.architecture]);
      assert.equal(cfg.model_type, spec.modelType);
      assert.equal(cfg.tie_word_embeddings, spec.tied);
      assert.equal(cfg.torch_dtype, TORCH_DTYPE[dtypeOf(spec)]);
      assert.equal(cfg.hidden_act, "silu");
      assert.notEqual(cfg.use_sliding_window, true);
      assert.equal(cfg.num_attention_heads % cfg.num_key_value_heads, 0);
      assert.ok(cfg.num_key_value_heads < cfg.num_attention_heads, "GQA");
      assert.ok(cfg.rope_theta > 0);
      const gen = readJson<Record<string, unknown>>(join(dir, "generation_config.json"));
      assert.equal(gen.bos_token_id, cfg.bos_token_id);
      assert.equal(gen.eos_token_id, cfg.eos_token_id);

      const { files, index } = await checkCheckpointWeights(dir, dtypeOf(spec));
      assert.equal(
        index !== undefined,
        spec.sharded,
        `${spec.name}: sharded (an index) or one model.safetensors`,
      );
      if (spec.sharded)
        assert.ok(files.length >= 2, `${spec.name}: expected 2+ shards, the index names ${files.length}`);
    });

    test(`${spec.name} - reference.json is self-consistent`, () => {
      const cfg = readJson<HfConfig>(join(dir, "config.json"));
      const ref = readJson<Reference>(join(dir, "reference.json"));
      assert.equal(ref.model, spec.name);
      assert.equal(ref.architecture, spec.architecture);
      checkReference(ref, {
        where: spec.name,
        vocabSize: cfg.vocab_size,
        weights: dtypeOf(spec),
        logitTolerance: 1e-5,
      });
      assert.ok(ref.min_top9_gap! > MIN_GAP, `${spec.name}: min_top9_gap ${ref.min_top9_gap}`);
      assert.deepEqual(
        ref.inputs.map((r) => r.input_ids.length),
        INPUT_LENGTHS,
      );
      let withLast = 0;
      let minMargin = Number.POSITIVE_INFINITY;
      for (const r of ref.inputs) {
        const where = `${spec.name}/${r.name}`;
        assert.equal(r.kind, "ids");
        assert.equal(r.input_ids[0], cfg.bos_token_id, `${where}: starts with bos`);
        for (const row of r.topk) {
          assert.equal(new Set(row.map(([id]) => id)).size, TOP_K, `${where}: distinct top-k ids`);
          for (let k = 1; k < TOP_K; k++) {
            const gap = (row[k - 1] as [number, number])[1] - (row[k] as [number, number])[1];
            assert.ok(gap > MIN_GAP - 1e-5, `${where}: top-k gap ${gap} at rank ${k}`);
          }
        }
        const lastRow = r.topk[r.topk.length - 1] as [number, number][];
        const [top1, top2] = lastRow as [[number, number], [number, number]];
        assert.ok(
          Math.abs((r.greedy_margin[0] as number) - (top1[1] - top2[1])) < 3e-5,
          `${where}: first margin`,
        );
        for (const m of r.greedy_margin) {
          assert.ok(m >= 0, `${where}: negative margin`);
          minMargin = Math.min(minMargin, m);
        }
        if (r.last_logits !== undefined) {
          withLast++;
          assert.equal(argmax(r.last_logits), r.greedy[0], `${where}: last_logits argmax`);
        }
      }
      assert.equal(withLast, 1, `${spec.name}: one input carries the full last-position logits`);
      assert.ok(Math.abs(minMargin - ref.min_greedy_margin!) < 1e-5, `${spec.name}: min_greedy_margin`);
      assert.ok(minMargin > MIN_GAP, `${spec.name}: a greedy step is a near tie (${minMargin})`);
    });
  }

  test("family features are where intended", () => {
    const cfg = (n: string) => readJson<HfConfig>(join(TESTING, n, "config.json"));
    const llama = cfg("llama-tiny");
    assert.equal(llama.rope_parameters?.rope_type, "llama3");
    assert.equal(llama.rope_scaling?.rope_type, "llama3");
    for (const k of ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"]) {
      assert.equal(llama.rope_scaling?.[k], llama.rope_parameters?.[k], `llama-tiny: ${k} in both spellings`);
    }
    assert.equal(llama.rope_parameters?.factor, 8);
    assert.equal(llama.rope_parameters?.original_max_position_embeddings, 64);
    assert.equal(llama.max_position_embeddings, 512);
    assert.equal(cfg("llama-bias-f16").attention_bias, true);
    const qwen3 = cfg("qwen3-tiny");
    assert.notEqual(qwen3.head_dim, qwen3.hidden_size / qwen3.num_attention_heads, "qwen3: head_dim differs");
    // The longest input plus its greedy continuation stays inside every context window, and runs past
    // llama3's original context so the scaled frequencies matter.
    const longest = Math.max(...INPUT_LENGTHS) + GREEDY;
    for (const s of SPECS) assert.ok(longest <= cfg(s.name).max_position_embeddings, s.name);
    assert.ok(longest > Number(llama.rope_parameters?.original_max_position_embeddings));
  });

  test("all test checkpoints together stay small", () => {
    let total = 0;
    for (const s of SPECS) {
      for (const f of readdirSync(join(TESTING, s.name))) total += statSync(join(TESTING, s.name, f)).size;
    }
    assert.ok(total < MAX_TOTAL_BYTES, `${total} bytes`);
  });

  test("qwen3-0.6b-shape config has Qwen3-0.6B's shape (about 596 M parameters)", () => {
    const c = readJson<HfConfig>(join(SHAPE_DIR, "config.json"));
    assert.deepEqual(c.architectures, ["Qwen3ForCausalLM"]);
    assert.equal(c.tie_word_embeddings, true);
    let params = 0;
    for (const shape of expectedTensors(engineConfig(c)).values()) params += numel(shape);
    assert.equal(params, 596_049_920);
    assert.ok(existsSync(join(SHAPE_DIR, "make_random_weights.py")));
  });
});
