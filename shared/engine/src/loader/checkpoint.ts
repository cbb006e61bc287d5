// The weights and config of a Hugging Face checkpoint directory, without its tokenizer: config.json (+
// generation_config.json), and tensors in one model.safetensors or in the shards listed by
// model.safetensors.index.json. loadModelDir builds on this; a checkpoint with no tokenizer (the random
// test checkpoints) loads with loadCheckpoint alone.
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ModelFileError, UnsupportedModelError } from "../errors.js";
import { expectedTensors, type ModelConfig, parseModelConfig } from "../model/config.js";
import type { HostTensor } from "../tensor.js";
import { type Json, readJsonFile } from "./json-file.js";
import { readSafetensors } from "./safetensors.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

/** The shard index, as read (before the shards are). */
export interface ShardIndex {
  path: string;
  /** Tensor name -> shard file name, as model.safetensors.index.json lists it. */
  weightMap: Record<string, string>;
  /** metadata.total_size, where the index gives one (not checked: exporters differ on it). */
  totalSize: number | undefined;
}

/** Every tensor of a checkpoint directory, as stored: not yet checked against config.json. */
export interface CheckpointTensors {
  /** Views into the files' bytes, in the dtype stored. */
  tensors: Map<string, HostTensor>;
  /** Tensor name -> the path of the file it came from. */
  sources: Map<string, string>;
  /** The safetensors files read (names inside the directory): the index's shards, or model.safetensors. */
  files: string[];
  /** The shard index, when the weights are sharded. */
  index: ShardIndex | undefined;
}

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  /** Every tensor expectedTensors(config) names (lm_head.weight may also be there when tied). */
  tensors: Map<string, HostTensor>;
  /** Bytes of tensor data, as stored (bf16 weights count 2 bytes per value). */
  weightBytes: number;
}

/** Buffers some exporters save that the engine recomputes; tolerated and dropped. */
const IGNORED_TENSOR = /\.rotary_emb\.inv_freq$/;

async function readIndex(indexPath: string): Promise<ShardIndex> {
  const index = await readJsonFile(indexPath, true);
  const map = index.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new ModelFileError(indexPath, "weight_map is missing or not an object");
  }
  for (const [name, shard] of Object.entries(map as Json)) {
    // Shard names come from the file; a path in one would read outside the model directory.
    if (typeof shard !== "string" || shard !== basename(shard) || !shard.endsWith(".safetensors")) {
      throw new ModelFileError(
        indexPath,
        `tensor "${name}" maps to ${JSON.stringify(shard)}, not a shard file`,
      );
    }
  }
  if (Object.keys(map).length === 0) throw new ModelFileError(indexPath, "weight_map names no tensor");
  const meta = index.metadata as Json | undefined;
  const totalSize = typeof meta?.total_size === "number" ? meta.total_size : undefined;
  return { path: indexPath, weightMap: map as Record<string, string>, totalSize };
}

/** Reads the shards named by the index and checks that index and shards agree both ways. */
async function readSharded(dir: string, index: ShardIndex): Promise<CheckpointTensors> {
  const map = index.weightMap;
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(map)) {
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  for (const [shard, names] of byShard) {
    const path = join(dir, shard);
    if (!existsSync(path)) {
      throw new ModelFileError(
        path,
        `missing: ${INDEX_FILE} names it for "${names[0]}" and ${names.length - 1} more`,
      );
    }
  }
  const files = await Promise.all([...byShard.keys()].map((s) => readSafetensors(join(dir, s))));
  const tensors = new Map<string, HostTensor>();
  const sources = new Map<string, string>();
  for (const [i, [shard, names]] of [...byShard].entries()) {
    const path = join(dir, shard);
    const file = files[i]!;
    for (const name of file.tensors.keys()) {
      const listed = map[name];
      if (listed !== shard) {
        throw new ModelFileError(
          path,
          listed === undefined
            ? `tensor "${name}" is not in ${INDEX_FILE}`
            : `tensor "${name}" is here but ${INDEX_FILE} puts it in ${String(listed)}`,
        );
      }
    }
    for (const name of names) {
      const t = file.tensors.get(name);
      if (t === undefined)
        throw new ModelFileError(path, `${INDEX_FILE} puts tensor "${name}" here, but it is not`);
      tensors.set(name, t);
      sources.set(name, path);
    }
  }
  return { tensors, sources, files: [...byShard.keys()], index };
}

/**
 * Reads every tensor of a checkpoint directory: the shards model.safetensors.index.json names (the index
 * and the shards must agree both ways), or else model.safetensors. Each file is parsed strictly
 * (readSafetensors). The tensors are not checked against config.json: loadCheckpoint does that.
 */
export async function loadCheckpointTensors(dir: string): Promise<CheckpointTensors> {
  const indexPath = join(dir, INDEX_FILE);
  if (existsSync(indexPath)) return readSharded(dir, await readIndex(indexPath));
  const single = join(dir, SINGLE_FILE);
  if (!existsSync(single)) {
    throw new ModelFileError(dir, `no weights: neither ${SINGLE_FILE} nor ${INDEX_FILE} is there`);
  }
  const { tensors } = await readSafetensors(single);
  const sources = new Map([...tensors.keys()].map((n) => [n, single]));
  return { tensors, sources, files: [SINGLE_FILE], index: undefined };
}

/** Checks the tensors against config.json: every expected name with its shape, and nothing else. */
function checkAgainstConfig(config: ModelConfig, read: CheckpointTensors, weightsFile: string): void {
  const { tensors, sources } = read;
  const expected = expectedTensors(config);
  for (const [name, shape] of expected) {
    const t = tensors.get(name);
    if (t === undefined) {
      const why = name === "lm_head.weight" ? " (tie_word_embeddings is false, so it is required)" : "";
      throw new ModelFileError(weightsFile, `tensor "${name}" [${shape.join(", ")}] is missing${why}`);
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFileError(
        sources.get(name) ?? weightsFile,
        `tensor "${name}" has shape [${t.shape.join(", ")}], config.json implies [${shape.join(", ")}]`,
      );
    }
  }
  const embed = expected.get("model.embed_tokens.weight")!;
  for (const [name, t] of tensors) {
    if (expected.has(name)) continue;
    if (IGNORED_TENSOR.test(name)) {
      tensors.delete(name);
      continue;
    }
    // Some tied checkpoints store lm_head anyway (a copy of the embedding); harmless if it fits.
    if (
      name === "lm_head.weight" &&
      t.shape.length === 2 &&
      t.shape[0] === embed[0] &&
      t.shape[1] === embed[1]
    ) {
      continue;
    }
    throw new ModelFileError(
      sources.get(name) ?? weightsFile,
      `unexpected tensor "${name}": not part of a ${config.family} model with this config.json`,
    );
  }
}

/** config.json and generation_config.json of a checkpoint directory, parsed; errors name the file. */
export async function readCheckpointConfig(
  root: string,
): Promise<{ config: ModelConfig; configJson: Json; genJson: Json }> {
  const path = join(root, "config.json");
  const configJson = await readJsonFile(path, true);
  const genJson = (await readJsonFile(join(root, "generation_config.json"), false)) ?? {};
  try {
    return { config: parseModelConfig(configJson, genJson), configJson, genJson };
  } catch (err) {
    if (!(err instanceof UnsupportedModelError)) throw err;
    const detail = err.message.slice(`unsupported model: ${err.field}: `.length);
    throw new UnsupportedModelError(err.field, `${detail} (${path})`, { cause: err });
  }
}

/** Reads the tensors of `root` and checks them against `config` (names and shapes). */
export async function readCheckedWeights(
  root: string,
  config: ModelConfig,
): Promise<{ tensors: Map<string, HostTensor>; weightBytes: number }> {
  const read = await loadCheckpointTensors(root);
  checkAgainstConfig(config, read, read.index?.path ?? join(root, SINGLE_FILE));
  let weightBytes = 0;
  for (const t of read.tensors.values()) weightBytes += t.data.byteLength;
  return { tensors: read.tensors, weightBytes };
}

/**
 * Loads and checks a checkpoint directory's config and weights, without a tokenizer (loadModelDir
 * loads the tokenizer too). Errors name the file (and tensor) at fault.
 */
export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const root = resolve(dir);
  const { config } = await readCheckpointConfig(root);
  return { dir: root, config, ...(await readCheckedWeights(root, config)) };
}
