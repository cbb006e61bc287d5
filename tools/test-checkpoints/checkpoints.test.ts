// Checks the random test checkpoints in models/testing as committed (made by make_checkpoints.py beside
// this file): every file is there, every safetensors file parses and agrees with config.json (tensor
// names, shapes, the intended storage dtype) and with the shard index, and reference.json is
// self-consistent (format of models/tiny-code/reference.json; greedy[0] is the argmax at the last input
// position; the recorded full logits agree with the top-8). Also the Qwen3-0.6B-shaped benchmark config.
// Self-contained on purpose (no engine import): these files are the fixture the engine's parity tests
// read, so they are checked independently of the engine's own loader.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

const ROOT = new URL("../../", import.meta.url).pathname;
const TESTING = join(ROOT, "models", "testing");
const SHAPE_DIR = join(ROOT, "tools", "test-checkpoints", "qwen3-0.6b-shape");
const MAX_TOTAL_BYTES = 3 * 1000 * 1000;
const TOP_K = 8;
const GREEDY = 32;
const MIN_GAP = 1e-3;
const INPUT_LENGTHS = [1, 7, 33, 100];

type StDtype = "BF16" | "F16" | "F32";
const DTYPE_BYTES: Record<StDtype, number> = { BF16: 2, F16: 2, F32: 4 };
const HF_DTYPE: Record<StDtype, string> = { BF16: "bfloat16", F16: "float16", F32: "float32" };

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

interface HfConfig {
  architectures: string[];
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_parameters?: Record<string, number | string>;
  rope_scaling?: Record<string, number | string> | null;
  tie_word_embeddings: boolean;
  attention_bias?: boolean;
  use_sliding_window?: boolean;
  hidden_act: string;
  torch_dtype: string;
  dtype?: string;
  bos_token_id: number;
  eos_token_id: number;
}

interface TensorInfo {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

interface ReferenceInput {
  name: string;
  kind: string;
  input_ids: number[];
  topk: [number, number][][];
  greedy: number[];
  greedy_margin: number[];
  last_logits?: number[];
}

interface Reference {
  model: string;
  architecture: string;
  weights_dtype: string;
  compute_dtype: string;
  computed_with: Record<string, string>;
  top_k: number;
  greedy_new_tokens: number;
  seed: number;
  min_top9_gap: number;
  min_greedy_margin: number;
  inputs: ReferenceInput[];
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

/** Parses a safetensors file strictly: 8-byte little-endian header length, JSON header, and tensor data
 * that tiles the data section exactly (no gaps, no overlaps, nothing left over). */
function readSafetensors(path: string): Map<string, TensorInfo> {
  const buf = readFileSync(path);
  assert.ok(buf.length >= 8, `${path}: shorter than the 8-byte header length`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  assert.ok(headerLen > 0 && 8 + headerLen <= buf.length, `${path}: header length ${headerLen} out of range`);
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString("utf8")) as Record<string, unknown>;
  const tensors = new Map<string, TensorInfo>();
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    tensors.set(name, info as TensorInfo);
  }
  const spans = [...tensors.entries()].sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  let end = 0;
  for (const [name, t] of spans) {
    const [lo, hi] = t.data_offsets;
    assert.equal(lo, end, `${path}: ${name} starts at ${lo}, expected ${end}`);
    const bytes = DTYPE_BYTES[t.dtype as StDtype];
    assert.ok(bytes !== undefined, `${path}: ${name} has unexpected dtype ${t.dtype}`);
    assert.equal(hi - lo, t.shape.reduce((a, b) => a * b, 1) * bytes, `${path}: ${name} byte length`);
    end = hi;
  }
  assert.equal(end, buf.length - 8 - headerLen, `${path}: data section length`);
  return tensors;
}

/** Tensor names and shapes a checkpoint of this config must hold (HF naming, [out, in] for linears). */
function expectedTensors(cfg: HfConfig): Map<string, number[]> {
  const h = cfg.hidden_size;
  const hd = cfg.head_dim ?? h / cfg.num_attention_heads;
  const q = cfg.num_attention_heads * hd;
  const kv = cfg.num_key_value_heads * hd;
  const qkvBias = cfg.model_type === "qwen2" || cfg.attention_bias === true;
  const oBias = cfg.model_type === "llama" && cfg.attention_bias === true;
  const qkNorm = cfg.model_type === "qwen3";
  const m = new Map<string, number[]>([
    ["model.embed_tokens.weight", [cfg.vocab_size, h]],
    ["model.norm.weight", [h]],
  ]);
  if (!cfg.tie_word_embeddings) m.set("lm_head.weight", [cfg.vocab_size, h]);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    m.set(`${p}.input_layernorm.weight`, [h]);
    m.set(`${p}.post_attention_layernorm.weight`, [h]);
    m.set(`${p}.self_attn.q_proj.weight`, [q, h]);
    m.set(`${p}.self_attn.k_proj.weight`, [kv, h]);
    m.set(`${p}.self_attn.v_proj.weight`, [kv, h]);
    m.set(`${p}.self_attn.o_proj.weight`, [h, q]);
    if (qkvBias) {
      m.set(`${p}.self_attn.q_proj.bias`, [q]);
      m.set(`${p}.self_attn.k_proj.bias`, [kv]);
      m.set(`${p}.self_attn.v_proj.bias`, [kv]);
    }
    if (oBias) m.set(`${p}.self_attn.o_proj.bias`, [h]);
    if (qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [hd]);
      m.set(`${p}.self_attn.k_norm.weight`, [hd]);
    }
    m.set(`${p}.mlp.gate_proj.weight`, [cfg.intermediate_size, h]);
    m.set(`${p}.mlp.up_proj.weight`, [cfg.intermediate_size, h]);
    m.set(`${p}.mlp.down_proj.weight`, [h, cfg.intermediate_size]);
  }
  return m;
}

/** Every tensor of a checkpoint folder, from model.safetensors or the shards its index names. */
function loadTensors(dir: string, spec: Spec): Map<string, TensorInfo> {
  const files = readdirSync(dir).filter((f) => f.endsWith(".safetensors"));
  const all = new Map<string, TensorInfo>();
  if (!spec.sharded) {
    assert.deepEqual(files, ["model.safetensors"], `${dir}: expected one model.safetensors`);
    assert.ok(!existsSync(join(dir, "model.safetensors.index.json")), `${dir}: stray index`);
    return readSafetensors(join(dir, "model.safetensors"));
  }
  const index = readJson<{ metadata?: { total_size?: number }; weight_map: Record<string, string> }>(
    join(dir, "model.safetensors.index.json"),
  );
  const shards = new Set(Object.values(index.weight_map));
  assert.ok(shards.size >= 2, `${dir}: expected 2+ shards, the index names ${shards.size}`);
  assert.deepEqual(files.sort(), [...shards].sort(), `${dir}: shard files vs index`);
  let bytes = 0;
  for (const shard of shards) {
    assert.match(shard, /^model-\d{5}-of-\d{5}\.safetensors$/);
    for (const [name, info] of readSafetensors(join(dir, shard))) {
      assert.equal(index.weight_map[name], shard, `${dir}: index puts ${name} elsewhere than ${shard}`);
      assert.ok(!all.has(name), `${dir}: ${name} in two shards`);
      all.set(name, info);
      bytes += info.data_offsets[1] - info.data_offsets[0];
    }
  }
  assert.equal(Object.keys(index.weight_map).length, all.size, `${dir}: index names tensors no shard holds`);
  if (index.metadata?.total_size !== undefined)
    assert.equal(index.metadata.total_size, bytes, `${dir}: total_size`);
  return all;
}

function argmax(xs: number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if ((xs[i] as number) > (xs[best] as number)) best = i;
  return best;
}

describe("test checkpoints", () => {
  for (const spec of SPECS) {
    const dir = join(TESTING, spec.name);

    test(`${spec.name} - files, config and safetensors agree (${spec.dtype})`, () => {
      for (const f of ["config.json", "generation_config.json", "reference.json"]) {
        assert.ok(existsSync(join(dir, f)), `missing ${spec.name}/${f}`);
      }
      const cfg = readJson<HfConfig>(join(dir, "config.json"));
      assert.deepEqual(cfg.architectures, [spec.architecture]);
      assert.equal(cfg.model_type, spec.modelType);
      assert.equal(cfg.tie_word_embeddings, spec.tied);
      assert.equal(cfg.torch_dtype, HF_DTYPE[spec.dtype]);
      assert.equal(cfg.hidden_act, "silu");
      assert.notEqual(cfg.use_sliding_window, true);
      assert.equal(cfg.num_attention_heads % cfg.num_key_value_heads, 0);
      assert.ok(cfg.num_key_value_heads < cfg.num_attention_heads, "GQA");
      assert.ok(cfg.rope_theta > 0);
      const gen = readJson<Record<string, unknown>>(join(dir, "generation_config.json"));
      assert.equal(gen.bos_token_id, cfg.bos_token_id);
      assert.equal(gen.eos_token_id, cfg.eos_token_id);

      const tensors = loadTensors(dir, spec);
      const want = expectedTensors(cfg);
      assert.deepEqual([...tensors.keys()].sort(), [...want.keys()].sort(), `${spec.name}: tensor names`);
      for (const [name, info] of tensors) {
        assert.deepEqual(info.shape, want.get(name), `${spec.name}: ${name} shape`);
        assert.equal(info.dtype, spec.dtype, `${spec.name}: ${name} dtype`);
      }
    });

    test(`${spec.name} - reference.json is self-consistent`, () => {
      const cfg = readJson<HfConfig>(join(dir, "config.json"));
      const ref = readJson<Reference>(join(dir, "reference.json"));
      assert.equal(ref.model, spec.name);
      assert.equal(ref.architecture, spec.architecture);
      assert.equal(ref.weights_dtype, HF_DTYPE[spec.dtype]);
      assert.equal(ref.compute_dtype, "float32");
      assert.equal(ref.top_k, TOP_K);
      assert.equal(ref.greedy_new_tokens, GREEDY);
      assert.ok(ref.min_top9_gap > MIN_GAP, `${spec.name}: min_top9_gap ${ref.min_top9_gap}`);
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
        for (const id of [...r.input_ids, ...r.greedy]) {
          assert.ok(Number.isInteger(id) && id >= 0 && id < cfg.vocab_size, `${where}: id ${id}`);
        }
        assert.equal(r.topk.length, r.input_ids.length, `${where}: one top-k row per position`);
        for (const row of r.topk) {
          assert.equal(row.length, TOP_K);
          assert.equal(new Set(row.map(([id]) => id)).size, TOP_K, `${where}: distinct top-k ids`);
          for (let k = 1; k < TOP_K; k++) {
            const gap = (row[k - 1] as [number, number])[1] - (row[k] as [number, number])[1];
            assert.ok(gap > MIN_GAP - 1e-5, `${where}: top-k gap ${gap} at rank ${k}`);
          }
        }
        const lastRow = r.topk[r.topk.length - 1] as [number, number][];
        const [top1, top2] = lastRow as [[number, number], [number, number]];
        assert.equal(r.greedy.length, GREEDY);
        assert.equal(r.greedy_margin.length, GREEDY);
        assert.equal(r.greedy[0], top1[0], `${where}: greedy[0] is the argmax at the last position`);
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
          assert.equal(r.last_logits.length, cfg.vocab_size, `${where}: last_logits length`);
          assert.equal(argmax(r.last_logits), r.greedy[0], `${where}: last_logits argmax`);
          for (const [id, v] of lastRow) {
            assert.ok(Math.abs((r.last_logits[id] as number) - v) < 1e-5, `${where}: last_logits[${id}]`);
          }
        }
      }
      assert.equal(withLast, 1, `${spec.name}: one input carries the full last-position logits`);
      assert.ok(Math.abs(minMargin - ref.min_greedy_margin) < 1e-5, `${spec.name}: min_greedy_margin`);
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
    for (const shape of expectedTensors(c).values()) params += shape.reduce((a, b) => a * b, 1);
    assert.equal(params, 596_049_920);
    assert.ok(existsSync(join(SHAPE_DIR, "make_random_weights.py")));
  });
});
