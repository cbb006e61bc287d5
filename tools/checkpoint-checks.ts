// Checks shared by the fixture tests of the committed checkpoints: tools/fixture-model/bundled-model.test.ts
// (models/tiny-code and its draft) and tools/test-checkpoints/checkpoints.test.ts (models/testing/*).
// The weights are read by the engine (its strict safetensors parser, index and shard walking, and the
// tensor names and shapes config.json implies), so there is one reader of these files, not three; what
// the engine tolerates but a committed fixture must not have (a stray shard, an extra tensor, another
// dtype, a wrong total_size) is checked here. Also the structure every reference.json shares.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CheckpointTensors,
  type DType,
  expectedTensors,
  loadCheckpointTensors,
  type ModelConfig,
  parseModelConfig,
} from "@specloop/engine";

/** Every reference.json holds the top 8 logits at each position and 32 greedy tokens per input. */
export const TOP_K = 8;
export const GREEDY = 32;
/** How transformers (and reference.json's weights_dtype) names each storage dtype. */
export const TORCH_DTYPE: Readonly<Record<DType, string>> = {
  bf16: "bfloat16",
  f16: "float16",
  f32: "float32",
};
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

/** The config.json keys the fixture tests look at (the engine reads it with parseModelConfig). */
export interface HfConfig {
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
  pad_token_id?: number;
}

export interface ReferenceInput {
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

/** reference.json, as tools/fixture-model/export.py and tools/test-checkpoints/make_checkpoints.py write it. */
export interface Reference {
  model: string;
  architecture?: string;
  weights_dtype: string;
  compute_dtype: string;
  computed_with: Record<string, string>;
  top_k: number;
  greedy_new_tokens: number;
  seed?: number;
  min_top9_gap?: number;
  min_greedy_margin?: number;
  inputs: ReferenceInput[];
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

/** A config.json as the engine reads it. */
export function engineConfig(configJson: HfConfig): ModelConfig {
  return parseModelConfig(configJson as unknown as Record<string, unknown>);
}

/**
 * Reads a checkpoint folder's weights with the engine (each safetensors file strictly: header, dtypes,
 * offsets tiling the data section exactly; the index and its shards agreeing both ways) and checks
 * them against config.json: exactly the tensors it implies, with their shapes, every one stored as
 * `dtype`. Where the weights are sharded: shard file names, the index's total_size, and no
 * .safetensors file in the folder that was not read. Returns what was read, for further checks.
 */
export async function checkCheckpointWeights(dir: string, dtype: DType): Promise<CheckpointTensors> {
  const read = await loadCheckpointTensors(dir);
  const onDisk = readdirSync(dir).filter((f) => f.endsWith(".safetensors"));
  assert.deepEqual(onDisk.sort(), [...read.files].sort(), `${dir}: safetensors files against those read`);
  const expected = expectedTensors(engineConfig(readJson<HfConfig>(join(dir, "config.json"))));
  assert.deepEqual([...read.tensors.keys()].sort(), [...expected.keys()].sort(), `${dir}: tensor names`);
  let bytes = 0;
  for (const [name, t] of read.tensors) {
    assert.deepEqual(t.shape, expected.get(name), `${dir}: ${name} shape against config.json`);
    assert.equal(t.dtype, dtype, `${dir}: ${name} dtype`);
    bytes += t.data.byteLength;
  }
  if (read.index !== undefined) {
    for (const shard of read.files) assert.match(shard, SHARD_NAME);
    assert.equal(read.index.totalSize, bytes, `${dir}: index total_size`);
  }
  return read;
}

/**
 * What every reference.json must satisfy: the format's header, ids inside the vocabulary, a top-k row
 * (in descending order) at every input position, the greedy continuation and its margins, greedy[0] the
 * top-1 at the last position, and full last-position logits (where recorded) whose maximum and top-k
 * agree with the rows within `logitTolerance`.
 */
export function checkReference(
  ref: Reference,
  opts: { where: string; vocabSize: number; weights: DType; logitTolerance: number },
): void {
  const { vocabSize, logitTolerance } = opts;
  assert.equal(ref.weights_dtype, TORCH_DTYPE[opts.weights], `${opts.where}: weights_dtype`);
  assert.equal(ref.compute_dtype, "float32", `${opts.where}: compute_dtype`);
  assert.equal(ref.top_k, TOP_K, `${opts.where}: top_k`);
  assert.equal(ref.greedy_new_tokens, GREEDY, `${opts.where}: greedy_new_tokens`);
  const inVocab = (id: number) => Number.isInteger(id) && id >= 0 && id < vocabSize;
  for (const input of ref.inputs) {
    const where = `${opts.where}: ${input.name}`;
    for (const id of [...input.input_ids, ...input.greedy]) assert.ok(inVocab(id), `${where}: id ${id}`);
    assert.equal(input.topk.length, input.input_ids.length, `${where}: top-k at every position`);
    for (const row of input.topk) {
      assert.equal(row.length, TOP_K, where);
      assert.ok(
        row.every(([id]) => inVocab(id)),
        `${where}: top-k ids`,
      );
      for (let k = 1; k < row.length; k++) assert.ok(row[k - 1]![1] >= row[k]![1], `${where}: top-k order`);
    }
    assert.equal(input.greedy.length, GREEDY, where);
    assert.equal(input.greedy_margin.length, GREEDY, where);
    const last = input.topk[input.topk.length - 1]!;
    assert.equal(input.greedy[0], last[0]![0], `${where}: first greedy token is the last position's argmax`);
    if (input.last_logits !== undefined) {
      assert.equal(input.last_logits.length, vocabSize, `${where}: last_logits length`);
      // the top-1 of the top-k is a maximum of the full logits (ties after rounding are allowed)
      const max = Math.max(...input.last_logits);
      const top1 = input.last_logits[last[0]![0]]!;
      assert.ok(Math.abs(top1 - max) < logitTolerance, `${where}: last_logits argmax`);
      for (const [id, logit] of last) {
        assert.ok(Math.abs(input.last_logits[id]! - logit) < logitTolerance, `${where}: last_logits[${id}]`);
      }
    }
  }
}
