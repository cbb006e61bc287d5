// A model's weights resident in a backend, named by role rather than by checkpoint key. Loading checks
// every tensor against expectedTensors(config), so a mismatch fails here with the tensor named.
import type { Backend, Weight } from "../backend.js";
import { ModelFileError } from "../errors.js";
import type { HostTensor } from "../tensor.js";
import { expectedTensors, type ModelConfig } from "./config.js";

export interface LayerWeights {
  inputNorm: Weight;
  q: Weight;
  k: Weight;
  v: Weight;
  o: Weight;
  qBias?: Weight;
  kBias?: Weight;
  vBias?: Weight;
  oBias?: Weight;
  /** Qwen3's per-head norms of q and k. */
  qNorm?: Weight;
  kNorm?: Weight;
  postNorm: Weight;
  gate: Weight;
  up: Weight;
  down: Weight;
}

export interface ModelWeights {
  embed: Weight;
  norm: Weight;
  /** The embedding table itself when the model ties its word embeddings. */
  lmHead: Weight;
  layers: LayerWeights[];
}

export function loadWeights(
  backend: Backend,
  config: ModelConfig,
  tensors: ReadonlyMap<string, HostTensor>,
): ModelWeights {
  const expected = expectedTensors(config);
  const load = (name: string): Weight => {
    const t = tensors.get(name);
    const shape = expected.get(name);
    if (t === undefined) throw new ModelFileError(name, "tensor missing from the checkpoint");
    if (shape === undefined || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFileError(name, `shape [${t.shape}], expected [${shape ?? "none"}]`);
    }
    return backend.loadWeight(name, t);
  };
  const optional = (on: boolean, name: string): Weight | undefined => (on ? load(name) : undefined);
  const embed = load("model.embed_tokens.weight");
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    layers.push({
      inputNorm: load(`${p}.input_layernorm.weight`),
      q: load(`${p}.self_attn.q_proj.weight`),
      k: load(`${p}.self_attn.k_proj.weight`),
      v: load(`${p}.self_attn.v_proj.weight`),
      o: load(`${p}.self_attn.o_proj.weight`),
      qBias: optional(config.qkvBias, `${p}.self_attn.q_proj.bias`),
      kBias: optional(config.qkvBias, `${p}.self_attn.k_proj.bias`),
      vBias: optional(config.qkvBias, `${p}.self_attn.v_proj.bias`),
      oBias: optional(config.oBias, `${p}.self_attn.o_proj.bias`),
      qNorm: optional(config.qkNorm, `${p}.self_attn.q_norm.weight`),
      kNorm: optional(config.qkNorm, `${p}.self_attn.k_norm.weight`),
      postNorm: load(`${p}.post_attention_layernorm.weight`),
      gate: load(`${p}.mlp.gate_proj.weight`),
      up: load(`${p}.mlp.up_proj.weight`),
      down: load(`${p}.mlp.down_proj.weight`),
    });
  }
  return {
    embed,
    norm: load("model.norm.weight"),
    lmHead: config.tieWordEmbeddings ? embed : load("lm_head.weight"),
    layers,
  };
}
