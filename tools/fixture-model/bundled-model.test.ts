// Checks the bundled default model (models/tiny-code) and its draft (models/tiny-code-draft) as committed:
// every file is there, every safetensors shard is well formed and agrees with model.safetensors.index.json
// and config.json, the tokenizer reproduces the token ids recorded in reference.json (with the JS
// implementation of Hugging Face tokenizers, which must agree with the Rust one that made them), the
// reference outputs are self-consistent, the prompts are there per domain, and the whole is under 30 MB.
// Any missing or inconsistent file fails a test: these files are the fixture every engine test relies on.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Tokenizer } from "@huggingface/tokenizers";

const ROOT = new URL("../../", import.meta.url).pathname;
const MODELS = join(ROOT, "models");
const TARGET = join(MODELS, "tiny-code");
const DRAFT = join(MODELS, "tiny-code-draft");
const MODEL_DIRS = [TARGET, DRAFT];
const DOMAINS = ["python", "c", "prose"] as const;
const MAX_SHARD_BYTES = 10 * 1000 * 1000;
const MAX_TOTAL_BYTES = 30 * 1000 * 1000;
const MIN_PROMPTS = 200;
const SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|python|>", "<|c|>", "<|prose|>"];
const REQUIRED = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "model.safetensors.index.json",
  "reference.json",
  "MODEL_CARD.md",
];

interface LlamaConfig {
  architectures: string[];
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  hidden_act: string;
}

interface ShardIndex {
  metadata: { total_size: number };
  weight_map: Record<string, string>;
}

interface TensorInfo {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

interface ReferenceInput {
  name: string;
  kind: "ids" | "text";
  domain?: string;
  text?: string;
  text_ids?: number[];
  input_ids: number[];
  topk: [number, number][][];
  greedy: number[];
  greedy_margin: number[];
  last_logits?: number[];
}

interface Reference {
  model: string;
  weights_dtype: string;
  compute_dtype: string;
  top_k: number;
  greedy_new_tokens: number;
  inputs: ReferenceInput[];
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

/** Parses a safetensors file: 8-byte little-endian header length, then that many bytes of JSON. */
function readShardHeader(path: string): { tensors: Map<string, TensorInfo>; dataBytes: number } {
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
  return { tensors, dataBytes: buf.length - 8 - headerLen };
}

/** The tensors a Llama checkpoint with this config must hold, with their shapes. */
function expectedTensors(cfg: LlamaConfig): Map<string, number[]> {
  const h = cfg.hidden_size;
  const q = cfg.num_attention_heads * cfg.head_dim;
  const kv = cfg.num_key_value_heads * cfg.head_dim;
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
    m.set(`${p}.mlp.gate_proj.weight`, [cfg.intermediate_size, h]);
    m.set(`${p}.mlp.up_proj.weight`, [cfg.intermediate_size, h]);
    m.set(`${p}.mlp.down_proj.weight`, [h, cfg.intermediate_size]);
  }
  return m;
}

function loadTokenizer(dir: string): Tokenizer {
  return new Tokenizer(
    readJson<object>(join(dir, "tokenizer.json")),
    readJson<object>(join(dir, "tokenizer_config.json")),
  );
}

describe("bundled model", () => {
  test("bundled model - every committed file is present", () => {
    for (const dir of MODEL_DIRS) {
      for (const name of REQUIRED) assert.ok(existsSync(join(dir, name)), `missing ${join(dir, name)}`);
      const index = readJson<ShardIndex>(join(dir, "model.safetensors.index.json"));
      const shards = new Set(Object.values(index.weight_map));
      assert.ok(shards.size > 0, `${dir}: the index names no shard`);
      for (const shard of shards) {
        assert.match(shard, /^model-\d{5}-of-\d{5}\.safetensors$/);
        assert.ok(existsSync(join(dir, shard)), `missing shard ${join(dir, shard)}`);
      }
      // No stray shard that the index does not name (a reader would never load it).
      for (const name of readdirSync(dir)) {
        if (name.endsWith(".safetensors")) assert.ok(shards.has(name), `${dir}/${name} is not in the index`);
      }
    }
    for (const d of DOMAINS) {
      assert.ok(existsSync(join(TARGET, "prompts", `${d}.jsonl`)), `missing prompts/${d}.jsonl`);
    }
  });

  test("bundled model - config.json has what the engine needs, and agrees with generation_config", () => {
    const configs = MODEL_DIRS.map((d) => readJson<LlamaConfig>(join(d, "config.json")));
    for (const where of MODEL_DIRS) {
      const cfg = readJson<LlamaConfig>(join(where, "config.json"));
      assert.equal(cfg.model_type, "llama", where);
      assert.deepEqual(cfg.architectures, ["LlamaForCausalLM"], where);
      assert.equal(cfg.hidden_act, "silu", where);
      for (const key of [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
      ] as const) {
        assert.ok(Number.isInteger(cfg[key]) && cfg[key] > 0, `${where}: ${key} = ${cfg[key]}`);
      }
      assert.equal(cfg.num_attention_heads % cfg.num_key_value_heads, 0, `${where}: GQA groups`);
      assert.ok(cfg.rms_norm_eps > 0 && cfg.rms_norm_eps < 1e-3, `${where}: rms_norm_eps`);
      assert.ok(cfg.rope_theta > 0, `${where}: rope_theta`);
      assert.equal(cfg.tie_word_embeddings, true, where);
      assert.equal(cfg.bos_token_id, 0, where);
      assert.equal(cfg.eos_token_id, 0, where);
      assert.equal(cfg.pad_token_id, 1, where);
      assert.equal(cfg.max_position_embeddings, 1024, where);
      const gen = readJson<Record<string, unknown>>(join(where, "generation_config.json"));
      assert.equal(gen.bos_token_id, cfg.bos_token_id, `${where}: generation_config bos`);
      assert.equal(gen.eos_token_id, cfg.eos_token_id, `${where}: generation_config eos`);
      assert.equal(gen.pad_token_id, cfg.pad_token_id, `${where}: generation_config pad`);
    }
    const [target, draft] = configs as [LlamaConfig, LlamaConfig];
    assert.equal(draft.vocab_size, target.vocab_size, "target and draft share the vocabulary");
    assert.ok(draft.hidden_size < target.hidden_size, "the draft is the smaller model");
  });

  test("bundled model - safetensors shards are well formed and match the index and config", () => {
    for (const dir of MODEL_DIRS) {
      const cfg = readJson<LlamaConfig>(join(dir, "config.json"));
      const index = readJson<ShardIndex>(join(dir, "model.safetensors.index.json"));
      const expected = expectedTensors(cfg);
      const seen = new Set<string>();
      let totalBytes = 0;
      for (const shard of new Set(Object.values(index.weight_map))) {
        const path = join(dir, shard);
        assert.ok(statSync(path).size <= MAX_SHARD_BYTES, `${path}: over 10 MB`);
        const { tensors, dataBytes } = readShardHeader(path);
        const spans: [number, number, string][] = [];
        for (const [name, info] of tensors) {
          assert.equal(info.dtype, "BF16", `${path}: ${name} dtype`);
          assert.ok(Array.isArray(info.shape) && info.shape.every((n) => Number.isInteger(n) && n > 0));
          const [begin, end] = info.data_offsets;
          const bytes = info.shape.reduce((a, b) => a * b, 1) * 2;
          assert.equal(
            end - begin,
            bytes,
            `${path}: ${name} offsets span ${end - begin}, shape needs ${bytes}`,
          );
          assert.ok(begin >= 0 && end <= dataBytes, `${path}: ${name} offsets outside the data`);
          spans.push([begin, end, name]);
          assert.equal(index.weight_map[name], shard, `${path}: ${name} is not listed under this shard`);
          assert.ok(!seen.has(name), `${name} is in two shards`);
          seen.add(name);
          assert.deepEqual(info.shape, expected.get(name), `${path}: ${name} shape against config.json`);
          totalBytes += bytes;
        }
        // The data section is exactly the tensors, back to back, with no gap or overlap.
        spans.sort((a, b) => a[0] - b[0]);
        let at = 0;
        for (const [begin, end, name] of spans) {
          assert.equal(begin, at, `${path}: ${name} does not start where the previous tensor ended`);
          at = end;
        }
        assert.equal(at, dataBytes, `${path}: file size does not end at the last tensor`);
      }
      assert.deepEqual(
        [...seen].sort(),
        Object.keys(index.weight_map).sort(),
        `${dir}: index lists a missing tensor`,
      );
      assert.deepEqual([...seen].sort(), [...expected.keys()].sort(), `${dir}: tensors against config.json`);
      assert.equal(index.metadata.total_size, totalBytes, `${dir}: index total_size`);
    }
  });

  test("bundled model - tokenizer encodes the reference prompts to the recorded ids and decodes back", () => {
    assert.equal(
      readFileSync(join(TARGET, "tokenizer.json"), "utf8"),
      readFileSync(join(DRAFT, "tokenizer.json"), "utf8"),
      "target and draft share one tokenizer",
    );
    for (const dir of MODEL_DIRS) {
      const cfg = readJson<LlamaConfig>(join(dir, "config.json"));
      const tok = loadTokenizer(dir);
      for (const [id, t] of SPECIAL_TOKENS.entries()) assert.equal(tok.token_to_id(t), id, `${t} id`);
      assert.equal(tok.get_vocab(true).size, cfg.vocab_size, `${dir}: tokenizer vocabulary against config`);
      const ref = readJson<Reference>(join(dir, "reference.json"));
      const texts = ref.inputs.filter((i) => i.kind === "text");
      assert.ok(texts.length >= 3, `${dir}: reference has too few text prompts`);
      for (const d of DOMAINS)
        assert.ok(
          texts.some((i) => i.domain === d),
          `${dir}: no ${d} text prompt`,
        );
      for (const input of texts) {
        const text = input.text ?? "";
        const ids: number[] = [...tok.encode(text, { add_special_tokens: false }).ids];
        assert.deepEqual(ids, input.text_ids, `${dir}: ${input.name} encodes differently`);
        assert.deepEqual(input.input_ids, [cfg.bos_token_id, ...ids], `${dir}: ${input.name} input_ids`);
        assert.equal(tok.decode(ids), text, `${dir}: ${input.name} does not decode back`);
      }
    }
  });

  test("bundled model - reference outputs are complete and self-consistent", () => {
    for (const dir of MODEL_DIRS) {
      const cfg = readJson<LlamaConfig>(join(dir, "config.json"));
      const ref = readJson<Reference>(join(dir, "reference.json"));
      assert.equal(ref.weights_dtype, "bfloat16");
      assert.equal(ref.compute_dtype, "float32");
      assert.equal(ref.top_k, 8);
      assert.equal(ref.greedy_new_tokens, 32);
      assert.ok(
        ref.inputs.some((i) => i.input_ids.length % 2 === 1),
        `${dir}: no odd-length input`,
      );
      assert.ok(
        ref.inputs.some((i) => i.input_ids.length >= 100),
        `${dir}: no long input`,
      );
      assert.ok(
        ref.inputs.some((i) => i.last_logits),
        `${dir}: no full last-position logits`,
      );
      for (const input of ref.inputs) {
        const where = `${dir}: ${input.name}`;
        assert.ok(
          input.input_ids.every((t) => Number.isInteger(t) && t >= 0 && t < cfg.vocab_size),
          where,
        );
        assert.equal(input.topk.length, input.input_ids.length, `${where}: top-k at every position`);
        for (const row of input.topk) {
          assert.equal(row.length, ref.top_k, where);
          for (let k = 1; k < row.length; k++)
            assert.ok(row[k - 1]![1] >= row[k]![1], `${where}: top-k order`);
          assert.ok(
            row.every(([id]) => Number.isInteger(id) && id >= 0 && id < cfg.vocab_size),
            where,
          );
        }
        assert.equal(input.greedy.length, ref.greedy_new_tokens, where);
        assert.equal(input.greedy_margin.length, ref.greedy_new_tokens, where);
        const last = input.topk[input.topk.length - 1]!;
        assert.equal(
          input.greedy[0],
          last[0]![0],
          `${where}: first greedy token is the last position's argmax`,
        );
        if (input.last_logits) {
          assert.equal(input.last_logits.length, cfg.vocab_size, where);
          // the top-1 of the top-k is a maximum of the full logits (ties after rounding are allowed)
          const max = Math.max(...input.last_logits);
          assert.ok(Math.abs(input.last_logits[last[0]![0]]! - max) < 1e-4, `${where}: last_logits argmax`);
          for (const [id, logit] of last) assert.ok(Math.abs(input.last_logits[id]! - logit) < 1e-4, where);
        }
      }
    }
  });

  test("bundled model - held-out prompts: at least 200 per domain, tagged", () => {
    for (const d of DOMAINS) {
      const lines = readFileSync(join(TARGET, "prompts", `${d}.jsonl`), "utf8")
        .split("\n")
        .filter(Boolean);
      assert.ok(lines.length >= MIN_PROMPTS, `${d}: ${lines.length} prompts`);
      const ids = new Set<string>();
      for (const line of lines) {
        const p = JSON.parse(line) as { id: string; domain: string; prompt: string };
        assert.equal(p.domain, d, `${p.id}: domain tag`);
        assert.ok(typeof p.id === "string" && !ids.has(p.id), `${d}: duplicate or missing id ${p.id}`);
        ids.add(p.id);
        assert.ok(typeof p.prompt === "string" && p.prompt.trim().length >= 50, `${p.id}: prompt too short`);
      }
    }
  });

  test("bundled model - model cards report per-domain perplexity, and the whole is under 30 MB", () => {
    for (const dir of MODEL_DIRS) {
      const card = readFileSync(join(dir, "MODEL_CARD.md"), "utf8");
      assert.match(card, /perplexity/i, `${dir}: MODEL_CARD.md has no perplexity`);
      for (const d of DOMAINS) assert.ok(card.includes(d), `${dir}: MODEL_CARD.md does not mention ${d}`);
    }
    const total = filesUnder(MODELS).reduce((sum, f) => sum + statSync(f).size, 0);
    assert.ok(total < MAX_TOTAL_BYTES, `models/ holds ${total} bytes`);
  });
});
