// A Hugging Face model directory: config.json (+ generation_config.json), tokenizer.json (+
// tokenizer_config.json), and weights as one model.safetensors or shards listed by
// model.safetensors.index.json. Everything is cross-checked before the engine sees it: the index
// against the shards, and the tensors against what config.json implies (names and shapes), so a
// damaged or mismatched checkpoint fails here with the file and tensor named. The config and weights
// are read by checkpoint.ts (which also serves checkpoints that have no tokenizer).
import { basename, join, resolve } from "node:path";
import { ModelFileError } from "../errors.js";
import { type ChatTemplate, loadChatTemplate } from "../tokenizer/chat-template.js";
import { Tokenizer } from "../tokenizer/tokenizer.js";
import { type Checkpoint, readCheckedWeights, readCheckpointConfig } from "./checkpoint.js";
import { type Json, readJsonFile } from "./json-file.js";

export { INDEX_FILE, SINGLE_FILE } from "./checkpoint.js";

/** Sampling defaults the checkpoint recommends (generation_config.json); absent keys stay undefined. */
export interface GenerationDefaults {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  doSample?: boolean;
}

export interface LoadedModel extends Checkpoint {
  /** The directory's basename. */
  modelId: string;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | undefined;
  generation: GenerationDefaults;
}

export interface LoadModelOptions {
  /** Overrides the model id (default: the directory's basename). */
  modelId?: string;
}

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

/** Loads and checks a Hugging Face model directory. Errors name the file (and tensor) at fault. */
export async function loadModelDir(dir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const root = resolve(dir);
  const { config, configJson, genJson } = await readCheckpointConfig(root);

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

  const { tensors, weightBytes } = await readCheckedWeights(root, config);

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
