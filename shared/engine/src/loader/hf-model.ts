// A Hugging Face model directory: config.json (+ generation_config.json), tokenizer.json (+
// tokenizer_config.json), and weights as one model.safetensors or shards listed by
// model.safetensors.index.json. Everything is cross-checked before the engine sees it: the index
// against the shards, and the tensors against what config.json implies (names and shapes), so a
// damaged or mismatched checkpoint fails here with the file and tensor named.
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ModelFileError, UnsupportedModelError } from "../errors.js";
import { expectedTensors, type ModelConfig, parseModelConfig } from "../model/config.js";
import type { HostTensor } from "../tensor.js";
import { type ChatTemplate, loadChatTemplate } from "../tokenizer/chat-template.js";
import { Tokenizer } from "../tokenizer/tokenizer.js";
import { type Json, readJsonFile } from "./json-file.js";
import { readSafetensors } from "./safetensors.js";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

/** Sampling defaults the checkpoint recommends (generation_config.json); absent keys stay undefined. */
export interface GenerationDefaults {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  doSample?: boolean;
}

export interface LoadedModel {
  dir: string;
  /** The directory's basename. */
  modelId: string;
  config: ModelConfig;
  /** Every tensor expectedTensors(config) names (lm_head.weight may also be there when tied). */
  tensors: Map<string, HostTensor>;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | undefined;
  generation: GenerationDefaults;
  /** Bytes of tensor data, as stored (bf16 weights count 2 bytes per value). */
  weightBytes: number;
}

export interface LoadModelOptions {
  /** Overrides the model id (default: the directory's basename). */
  modelId?: string;
}

/** Buffers some exporters save that the engine recomputes; tolerated and dropped. */
const IGNORED_TENSOR = /\.rotary_emb\.inv_freq$/;

function generationDefaults(gen: Json): GenerationDefaults {
  const out: GenerationDefaults = {};
  const n = (k: string) => (typeof gen[k] === "number" && Number.isFinite(gen[k]) ? gen[k] : undefined);
  const maxNewTokens = n("max_new_tokens");
  if (maxNewTokens !== undefined) out.maxNewTokens = maxNewTokens;
  const temperature = n("temperature");
  if (temperature !== undefined) out.temperature = temperature;
  const topP = n("top_p");
  if (topP !== undefined) out.topP = topP;
  const topK = n("top_k");
  if (topK !== undefined) out.topK = topK;
  if (typeof gen.do_sample === "boolean") out.doSample = gen.do_sample;
  return out;
}

/** Tensor name -> the file it came from, for error messages. */
type Sources = Map<string, string>;

/** Reads the shards named by the index and checks that index and shards agree both ways. */
async function readSharded(dir: string, indexPath: string): Promise<[Map<string, HostTensor>, Sources]> {
  const index = await readJsonFile(indexPath, true);
  const map = index.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new ModelFileError(indexPath, "weight_map is missing or not an object");
  }
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(map as Json)) {
    // Shard names come from the file; a path in one would read outside the model directory.
    if (typeof shard !== "string" || shard !== basename(shard) || !shard.endsWith(".safetensors")) {
      throw new ModelFileError(
        indexPath,
        `tensor "${name}" maps to ${JSON.stringify(shard)}, not a shard file`,
      );
    }
    const list = byShard.get(shard) ?? [];
    list.push(name);
    byShard.set(shard, list);
  }
  if (byShard.size === 0) throw new ModelFileError(indexPath, "weight_map names no tensor");
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
  const sources: Sources = new Map();
  for (const [i, [shard, names]] of [...byShard].entries()) {
    const path = join(dir, shard);
    const file = files[i]!;
    for (const name of file.tensors.keys()) {
      const listed = (map as Json)[name];
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
  return [tensors, sources];
}

async function readWeights(dir: string): Promise<[Map<string, HostTensor>, Sources, string]> {
  const indexPath = join(dir, INDEX_FILE);
  if (existsSync(indexPath)) return [...(await readSharded(dir, indexPath)), indexPath];
  const single = join(dir, SINGLE_FILE);
  if (!existsSync(single)) {
    throw new ModelFileError(dir, `no weights: neither ${SINGLE_FILE} nor ${INDEX_FILE} is there`);
  }
  const { tensors } = await readSafetensors(single);
  return [tensors, new Map([...tensors.keys()].map((n) => [n, single])), single];
}

/** Checks the tensors against config.json: every expected name with its shape, and nothing else. */
function checkAgainstConfig(
  config: ModelConfig,
  tensors: Map<string, HostTensor>,
  sources: Sources,
  weightsFile: string,
): void {
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

/** parseModelConfig, with the config file's path added to a refusal so the user knows where to look. */
function parseConfigAt(path: string, configJson: Json, genJson: Json): ModelConfig {
  try {
    return parseModelConfig(configJson, genJson);
  } catch (err) {
    if (!(err instanceof UnsupportedModelError)) throw err;
    const detail = err.message.slice(`unsupported model: ${err.field}: `.length);
    throw new UnsupportedModelError(err.field, `${detail} (${path})`, { cause: err });
  }
}

/** Loads and checks a Hugging Face model directory. Errors name the file (and tensor) at fault. */
export async function loadModelDir(dir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const root = resolve(dir);
  const configJson = await readJsonFile(join(root, "config.json"), true);
  const genJson = (await readJsonFile(join(root, "generation_config.json"), false)) ?? {};
  const config = parseConfigAt(join(root, "config.json"), configJson, genJson);

  const tokenizerConfig = (await readJsonFile(join(root, "tokenizer_config.json"), false)) ?? {};
  const padTokenId = genJson.pad_token_id ?? configJson.pad_token_id;
  const tokenizer = await Tokenizer.fromFiles(
    join(root, "tokenizer.json"),
    join(root, "tokenizer_config.json"),
    {
      bosTokenId: config.bosTokenId,
      eosTokenIds: config.eosTokenIds,
      padTokenId: Number.isInteger(padTokenId) ? (padTokenId as number) : undefined,
    },
  );
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new ModelFileError(
      join(root, "tokenizer.json"),
      `holds ${tokenizer.vocabSize} token ids but config.json vocab_size is ${config.vocabSize}`,
    );
  }
  const chatTemplate = await loadChatTemplate(root, tokenizerConfig, {
    bosToken: tokenizer.bosToken,
    eosToken: tokenizer.eosToken,
  });

  const [tensors, sources, weightsFile] = await readWeights(root);
  checkAgainstConfig(config, tensors, sources, weightsFile);
  let weightBytes = 0;
  for (const t of tensors.values()) weightBytes += t.data.byteLength;

  return {
    dir: root,
    modelId: options.modelId ?? basename(root),
    config,
    tensors,
    tokenizer,
    chatTemplate,
    generation: generationDefaults(genJson),
    weightBytes,
  };
}
