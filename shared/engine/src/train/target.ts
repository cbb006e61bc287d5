// What the trainer needs of the target model: its config and its frozen embedding table and lm_head as
// host f32 arrays, and, when it recomputes features itself, one batched prefill that yields the head's
// training example for a committed token sequence (features of the feature layers and the full next-token
// logits at every position).
import { buildLayout } from "../kv/layout.js";
import { KvManager } from "../kv/manager.js";
import type { ModelConfig } from "../model/config.js";
import type { Model, ModelSource } from "../model/model.js";
import { type HostTensor, toFloat32 } from "../tensor.js";
import type { EagleTrainingExample } from "./examples.js";

export interface TrainerTarget {
  config: ModelConfig;
  /** [vocab, hidden]. */
  embed: Float32Array;
  /** [vocab, hidden]; the same array as embed when the target ties them. */
  lmHead: Float32Array;
}

/** The frozen tables of a model source (a LoadedModel from loadModelDir, or synthetic tensors). */
export function trainerTarget(source: ModelSource): TrainerTarget {
  const get = (name: string): HostTensor => {
    const t = source.tensors.get(name);
    if (t === undefined) throw new RangeError(`trainerTarget: the model has no ${name}`);
    return t;
  };
  const embed = toFloat32(get("model.embed_tokens.weight"));
  const lmHead = source.config.tieWordEmbeddings ? embed : toFloat32(get("lm_head.weight"));
  return { config: source.config, embed, lmHead };
}

export interface TargetExampleOptions {
  /** The head's feature layers (EagleConfig.featureLayers). */
  featureLayers: readonly number[];
  /** First target position trained (default 0). */
  trainFrom?: number;
}

/**
 * Runs `tokens` through `model` in one prefill and returns the head's training example: the residual
 * stream after each feature layer at every position (concatenated per row, as the node ships them) and
 * the full next-token logits at every position. Costs one target forward over the tokens.
 */
export async function targetExample(
  model: Model,
  tokens: Int32Array,
  options: TargetExampleOptions,
): Promise<EagleTrainingExample> {
  const be = model.backend;
  const T = tokens.length;
  const H = model.config.hiddenSize;
  const layers = options.featureLayers;
  const blockSize = 16;
  const kv = new KvManager(be, model.kvSpec(Math.ceil(T / blockSize) + 1, blockSize));
  if (kv.allocateSlots("example", T) === null)
    throw new RangeError(`targetExample: no KV room for ${T} tokens`);
  const out = model.forward(kv.storage, buildLayout(kv, [{ seq: "example", newTokens: T }]), tokens, {
    hiddenLayers: layers,
    logitRows: Int32Array.from({ length: T }, (_, i) => i),
  });
  try {
    const per = await Promise.all(layers.map((l) => be.readRows(out.hidden.get(l)!)));
    const features = new Float32Array(T * layers.length * H);
    for (let r = 0; r < T; r++) {
      per.forEach((rows, j) => {
        features.set(rows.subarray(r * H, (r + 1) * H), (r * layers.length + j) * H);
      });
    }
    if (out.logits === undefined) throw new RangeError("targetExample: the forward returned no logits");
    const targetLogits = await be.readRows(out.logits);
    return { tokens, features, targetLogits, trainFrom: options.trainFrom ?? 0 };
  } finally {
    // The KV storage is garbage-collected by every backend; the activations are released now.
    for (const h of new Set(out.hidden.values())) be.release(h);
    if (out.logits !== undefined) be.release(out.logits);
  }
}
