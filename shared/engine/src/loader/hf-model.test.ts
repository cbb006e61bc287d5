import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelFileError, UnsupportedModelError } from "../errors.js";
import { expectedTensors, type ModelConfig, parseModelConfig } from "../model/config.js";
import { DTYPE_BYTES, type HostTensor, numel } from "../tensor.js";
import { loadCheckpoint, loadCheckpointTensors } from "./checkpoint.js";
import { INDEX_FILE, loadModelDir } from "./hf-model.js";
import { encodeSafetensors } from "./safetensors.js";

const MODELS = new URL("../../../../models/", import.meta.url).pathname;
const TARGET = join(MODELS, "tiny-code");
const DRAFT = join(MODELS, "tiny-code-draft");

/** A small Llama config over the bundled tokenizer's 8192 ids, so tokenizer.json can be copied as is. */
const SMALL_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  vocab_size: 8192,
  hidden_size: 8,
  intermediate_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 4,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: true,
  bos_token_id: 0,
  eos_token_id: 0,
};

function zeros(shape: readonly number[]): HostTensor {
  return { dtype: "bf16", shape, data: new Uint8Array(numel(shape) * DTYPE_BYTES.bf16) };
}

function tensorsFor(config: ModelConfig): Map<string, HostTensor> {
  return new Map([...expectedTensors(config)].map(([name, shape]) => [name, zeros(shape)]));
}

/** Writes a model dir: configs and tokenizer, and the tensors split over `shards` files with an index. */
async function writeModel(
  dir: string,
  tensors: Map<string, HostTensor>,
  opts: { shards?: number; config?: Record<string, unknown> } = {},
): Promise<Map<string, string>> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify(opts.config ?? SMALL_CONFIG));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    await copyFile(join(TARGET, f), join(dir, f));
  }
  const shards = opts.shards ?? 2;
  const names = [...tensors.keys()];
  const weightMap = new Map<string, string>();
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const mine = names.filter((_, i) => i % shards === s);
    await writeFile(join(dir, file), encodeSafetensors(mine.map((n) => [n, tensors.get(n)!] as const)));
    for (const n of mine) weightMap.set(n, file);
  }
  await writeIndex(dir, weightMap);
  return weightMap;
}

async function writeIndex(dir: string, weightMap: Map<string, string>): Promise<void> {
  const index = { metadata: { total_size: 0 }, weight_map: Object.fromEntries(weightMap) };
  await writeFile(join(dir, INDEX_FILE), JSON.stringify(index));
}

async function refuses(dir: string, file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(loadModelDir(dir), (err: unknown) => {
    assert.ok(err instanceof ModelFileError, `not a ModelFileError: ${String(err)}`);
    assert.equal(err.file, file);
    assert.match(err.message, pattern);
    return true;
  });
}

const config = parseModelConfig(SMALL_CONFIG);

describe("loader hf-model", () => {
  let tmp: string;
  let n = 0;
  const fresh = () => join(tmp, `m${n++}`);
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "specloop-hf-model-"));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test("loader hf-model - loads the bundled tiny-code and its draft, as config.json says", async () => {
    for (const dir of [TARGET, DRAFT]) {
      const model = await loadModelDir(dir);
      const expected = expectedTensors(model.config);
      assert.deepEqual([...model.tensors.keys()].sort(), [...expected.keys()].sort(), dir);
      for (const [name, shape] of expected) {
        const t = model.tensors.get(name)!;
        assert.deepEqual(t.shape, shape, name);
        assert.equal(t.dtype, "bf16", name);
      }
      const index = JSON.parse(await readFile(join(dir, INDEX_FILE), "utf8")) as {
        metadata: { total_size: number };
      };
      assert.equal(model.weightBytes, index.metadata.total_size, `${dir}: weightBytes`);
      assert.equal(model.config.family, "llama");
      assert.equal(model.config.tieWordEmbeddings, true);
      assert.equal(model.tokenizer.vocabSize, model.config.vocabSize);
      assert.deepEqual(model.generation, { maxNewTokens: 128, doSample: false });
      assert.equal(model.chatTemplate, undefined, "a base model has no chat template");
    }
    const target = await loadModelDir(TARGET);
    assert.equal(target.modelId, "tiny-code");
    assert.equal(target.dir, TARGET.replace(/\/$/, ""));
    assert.equal(target.config.hiddenSize, 384);
    assert.equal((await loadModelDir(DRAFT)).modelId, "tiny-code-draft");
    assert.equal((await loadModelDir(DRAFT, { modelId: "draft" })).modelId, "draft");
  });

  test("loader hf-model - a single model.safetensors and a sharded checkpoint load the same", async () => {
    const single = fresh();
    await writeModel(single, tensorsFor(config), { shards: 1 });
    await unlink(join(single, INDEX_FILE));
    await rename(join(single, "model-00001-of-00001.safetensors"), join(single, "model.safetensors"));
    const sharded = fresh();
    await writeModel(sharded, tensorsFor(config), { shards: 3 });
    const [a, b] = [await loadModelDir(single), await loadModelDir(sharded)];
    assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    const bytes = 2 * (8192 * 8 + 8 + 2 * (8 + 8 + 8 * 8 + 2 * 4 * 8 + 8 * 8 + 3 * 16 * 8));
    assert.equal(a.weightBytes, bytes);
    assert.equal(b.weightBytes, bytes);
  });

  test("loader hf-model - a checkpoint without a tokenizer loads its config and weights (loadCheckpoint)", async () => {
    const dir = fresh();
    const weightMap = await writeModel(dir, tensorsFor(config), { shards: 3 });
    await unlink(join(dir, "tokenizer.json"));
    const read = await loadCheckpointTensors(dir);
    assert.deepEqual(read.index?.weightMap, Object.fromEntries(weightMap));
    assert.equal(read.index?.path, join(dir, INDEX_FILE));
    assert.equal(read.index?.totalSize, 0, "total_size as the index gives it (writeIndex writes 0)");
    assert.deepEqual(read.files, [...new Set(weightMap.values())]);
    for (const [name, shard] of weightMap) assert.equal(read.sources.get(name), join(dir, shard));
    const ckpt = await loadCheckpoint(dir);
    assert.deepEqual(ckpt.config, config);
    assert.deepEqual([...ckpt.tensors.keys()].sort(), [...expectedTensors(config).keys()].sort());
    const bytes = [...expectedTensors(config).values()].reduce((n, s) => n + numel(s) * DTYPE_BYTES.bf16, 0);
    assert.equal(ckpt.weightBytes, bytes);
  });

  test("loader hf-model - refuses a missing shard, naming it", async () => {
    const dir = fresh();
    await writeModel(dir, tensorsFor(config), { shards: 2 });
    await unlink(join(dir, "model-00002-of-00002.safetensors"));
    await refuses(
      dir,
      join(dir, "model-00002-of-00002.safetensors"),
      /missing: model\.safetensors\.index\.json names it for "/,
    );
  });

  test("loader hf-model - refuses a tensor in a shard that the index does not list", async () => {
    const dir = fresh();
    const map = await writeModel(dir, tensorsFor(config), { shards: 2 });
    const shard = map.get("model.norm.weight")!;
    map.delete("model.norm.weight");
    await writeIndex(dir, map);
    await refuses(
      dir,
      join(dir, shard),
      /tensor "model\.norm\.weight" is not in model\.safetensors\.index\.json/,
    );
  });

  test("loader hf-model - refuses a tensor the index puts in another shard", async () => {
    const dir = fresh();
    const map = await writeModel(dir, tensorsFor(config), { shards: 2 });
    const actual = map.get("model.norm.weight")!;
    const other = [...new Set(map.values())].find((s) => s !== actual)!;
    map.set("model.norm.weight", other);
    await writeIndex(dir, map);
    // Whichever shard is read first reports it; both name the tensor and the other shard.
    await assert.rejects(loadModelDir(dir), (err: unknown) => {
      assert.ok(err instanceof ModelFileError);
      assert.ok([join(dir, actual), join(dir, other)].includes(err.file), err.file);
      assert.match(
        err.message,
        /tensor "model\.norm\.weight" is (here but|not)|puts tensor "model\.norm\.weight" here/,
      );
      return true;
    });
  });

  test("loader hf-model - refuses a tensor config.json needs but the checkpoint lacks", async () => {
    const dir = fresh();
    const tensors = tensorsFor(config);
    tensors.delete("model.layers.1.mlp.up_proj.weight");
    await writeModel(dir, tensors, { shards: 2 });
    await refuses(
      dir,
      join(dir, INDEX_FILE),
      /tensor "model\.layers\.1\.mlp\.up_proj\.weight" \[16, 8\] is missing/,
    );

    const untied = fresh();
    const untiedConfig = { ...SMALL_CONFIG, tie_word_embeddings: false };
    await writeModel(untied, tensorsFor(config), { config: untiedConfig });
    await refuses(
      untied,
      join(untied, INDEX_FILE),
      /"lm_head\.weight" \[8192, 8\] is missing \(tie_word_embeddings is false/,
    );
  });

  test("loader hf-model - refuses a shape that disagrees with config.json, naming the shard", async () => {
    const dir = fresh();
    const tensors = tensorsFor(config);
    tensors.set("model.layers.0.self_attn.k_proj.weight", zeros([8, 8]));
    const map = await writeModel(dir, tensors, { shards: 2 });
    const shard = map.get("model.layers.0.self_attn.k_proj.weight")!;
    await refuses(
      dir,
      join(dir, shard),
      /tensor "model\.layers\.0\.self_attn\.k_proj\.weight" has shape \[8, 8\], config\.json implies \[4, 8\]/,
    );
  });

  test("loader hf-model - refuses an extra tensor; tolerates a tied lm_head copy and rotary buffers", async () => {
    const dir = fresh();
    const tensors = tensorsFor(config);
    tensors.set("model.layers.0.self_attn.q_proj.bias", zeros([8]));
    const map = await writeModel(dir, tensors, { shards: 1 });
    await refuses(
      dir,
      join(dir, map.get("model.norm.weight")!),
      /unexpected tensor "model\.layers\.0\.self_attn\.q_proj\.bias": not part of a llama model/,
    );

    const ok = fresh();
    const tolerated = tensorsFor(config);
    tolerated.set("lm_head.weight", zeros([8192, 8]));
    tolerated.set("model.layers.0.self_attn.rotary_emb.inv_freq", {
      dtype: "f32",
      shape: [2],
      data: new Uint8Array(8),
    });
    await writeModel(ok, tolerated, { shards: 2 });
    const model = await loadModelDir(ok);
    assert.ok(model.tensors.has("lm_head.weight"));
    assert.ok(!model.tensors.has("model.layers.0.self_attn.rotary_emb.inv_freq"));
  });

  test("loader hf-model - refuses a missing config.json, tokenizer.json or weights, naming the path", async () => {
    const noTokenizer = fresh();
    await writeModel(noTokenizer, tensorsFor(config));
    await unlink(join(noTokenizer, "tokenizer.json"));
    await refuses(noTokenizer, join(noTokenizer, "tokenizer.json"), /tokenizer\.json: missing$/);

    const noConfig = fresh();
    await writeModel(noConfig, tensorsFor(config));
    await unlink(join(noConfig, "config.json"));
    await refuses(noConfig, join(noConfig, "config.json"), /config\.json: missing$/);

    const badConfig = fresh();
    await writeModel(badConfig, tensorsFor(config));
    await writeFile(join(badConfig, "config.json"), "{ not json");
    await refuses(badConfig, join(badConfig, "config.json"), /not valid JSON/);

    const noWeights = fresh();
    await writeModel(noWeights, tensorsFor(config));
    await unlink(join(noWeights, INDEX_FILE));
    await refuses(
      noWeights,
      noWeights,
      /no weights: neither model\.safetensors nor model\.safetensors\.index\.json/,
    );
  });

  test("loader hf-model - refuses a tokenizer with more ids than vocab_size", async () => {
    const dir = fresh();
    const small = { ...SMALL_CONFIG, vocab_size: 4096 };
    const tensors = tensorsFor(parseModelConfig(small));
    await writeModel(dir, tensors, { config: small });
    await refuses(
      dir,
      join(dir, "tokenizer.json"),
      /holds 8192 token ids but config\.json vocab_size is 4096/,
    );
  });

  test("loader hf-model - refuses an index entry that points outside the directory", async () => {
    const dir = fresh();
    const map = await writeModel(dir, tensorsFor(config));
    map.set("model.norm.weight", "../elsewhere.safetensors");
    await writeIndex(dir, map);
    await refuses(
      dir,
      join(dir, INDEX_FILE),
      /"model\.norm\.weight" maps to "\.\.\/elsewhere\.safetensors", not a shard file/,
    );
  });

  test("loader hf-model - a config.json the engine cannot run is refused by field and path", async () => {
    const dir = fresh();
    await writeModel(dir, tensorsFor(config), { config: { ...SMALL_CONFIG, hidden_act: "gelu" } });
    await assert.rejects(loadModelDir(dir), (err: unknown) => {
      assert.ok(err instanceof UnsupportedModelError);
      assert.equal(err.field, "hidden_act");
      assert.equal(
        err.message,
        `unsupported model: hidden_act: "gelu" (supported: silu) (${join(dir, "config.json")})`,
      );
      return true;
    });
  });
});
