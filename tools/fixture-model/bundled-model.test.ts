// Checks the bundled default model (models/tiny-code) and its draft (models/tiny-code-draft) as committed:
// every file is there, every safetensors shard is well formed and agrees with model.safetensors.index.json
// and config.json (read by the engine: tools/checkpoint-checks.ts), the tokenizer reproduces the token ids recorded in reference.json (with the JS
// implementation of Hugging Face tokenizers, which must agree with the Rust one that made them), the
// reference outputs are self-consistent, the prompts are there per domain, and the whole is under 30 MB.
// Any missing or inconsistent file fails a test: these files are the fixture every engine test relies on.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Tokenizer } from "@huggingface/tokenizers";
import { INDEX_FILE } from "@specloop/engine";
import {
  checkCheckpointWeights,
  checkReference,
  engineConfig,
  type HfConfig,
  type Reference,
  readJson,
} from "../checkpoint-checks.ts";

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
  INDEX_FILE,
  "reference.json",
  "MODEL_CARD.md",
];

interface ShardIndex {
  metadata: { total_size: number };
  weight_map: Record<string, string>;
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
      const index = readJson<ShardIndex>(join(dir, INDEX_FILE));
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
    const configs = MODEL_DIRS.map((d) => readJson<HfConfig>(join(d, "config.json")));
    for (const where of MODEL_DIRS) {
      const cfg = readJson<HfConfig>(join(where, "config.json"));
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
        const v = cfg[key];
        assert.ok(typeof v === "number" && Number.isInteger(v) && v > 0, `${where}: ${key} = ${v}`);
      }
      assert.equal(cfg.num_attention_heads % cfg.num_key_value_heads, 0, `${where}: GQA groups`);
      assert.ok(cfg.rms_norm_eps > 0 && cfg.rms_norm_eps < 1e-3, `${where}: rms_norm_eps`);
      assert.ok(cfg.rope_theta > 0, `${where}: rope_theta`);
      assert.equal(cfg.tie_word_embeddings, true, where);
      assert.equal(cfg.bos_token_id, 0, where);
      assert.equal(cfg.eos_token_id, 0, where);
      assert.equal(cfg.pad_token_id, 1, where);
      assert.equal(cfg.max_position_embeddings, 1024, where);
      assert.equal(engineConfig(cfg).family, "llama", `${where}: the engine reads config.json`);
      const gen = readJson<Record<string, unknown>>(join(where, "generation_config.json"));
      assert.equal(gen.bos_token_id, cfg.bos_token_id, `${where}: generation_config bos`);
      assert.equal(gen.eos_token_id, cfg.eos_token_id, `${where}: generation_config eos`);
      assert.equal(gen.pad_token_id, cfg.pad_token_id, `${where}: generation_config pad`);
    }
    const [target, draft] = configs as [HfConfig, HfConfig];
    assert.equal(draft.vocab_size, target.vocab_size, "target and draft share the vocabulary");
    assert.ok(draft.hidden_size < target.hidden_size, "the draft is the smaller model");
  });

  test("bundled model - safetensors shards are well formed and match the index and config", async () => {
    for (const dir of MODEL_DIRS) {
      const { files, index } = await checkCheckpointWeights(dir, "bf16");
      assert.ok(index !== undefined, `${dir}: the weights are not sharded`);
      for (const shard of files) {
        assert.ok(statSync(join(dir, shard)).size <= MAX_SHARD_BYTES, `${dir}/${shard}: over 10 MB`);
      }
    }
  });

  test("bundled model - tokenizer encodes the reference prompts to the recorded ids and decodes back", () => {
    assert.equal(
      readFileSync(join(TARGET, "tokenizer.json"), "utf8"),
      readFileSync(join(DRAFT, "tokenizer.json"), "utf8"),
      "target and draft share one tokenizer",
    );
    for (const dir of MODEL_DIRS) {
      const cfg = readJson<HfConfig>(join(dir, "config.json"));
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
      const cfg = readJson<HfConfig>(join(dir, "config.json"));
      const ref = readJson<Reference>(join(dir, "reference.json"));
      checkReference(ref, { where: dir, vocabSize: cfg.vocab_size, weights: "bf16", logitTolerance: 1e-4 });
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
    // What the repository ships: files git ignores (a benchmark's GGUF conversion, say) are not part of it.
    const shipped = execFileSync(
      "git",
      ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "."],
      {
        cwd: MODELS,
        encoding: "utf8",
      },
    )
      .split("\0")
      .filter((f) => f !== "" && existsSync(join(MODELS, f)));
    const total = shipped.reduce((sum, f) => sum + statSync(join(MODELS, f)).size, 0);
    assert.ok(total < MAX_TOTAL_BYTES, `models/ ships ${total} bytes`);
  });
});
