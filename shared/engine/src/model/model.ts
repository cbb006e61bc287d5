// A model resident in a backend: config, weights, RoPE table, and the forward pass bound to them.
import type { Backend, BatchLayout, KvCacheSpec, KvStorage, RopeSpec, TokenIds } from "../backend.js";
import type { HostTensor } from "../tensor.js";
import type { ModelConfig } from "./config.js";
import { type ForwardOptions, type ForwardOutput, forward } from "./forward.js";
import { ropeSpec } from "./rope.js";
import { loadWeights, type ModelWeights } from "./weights.js";

/** What a model is loaded from: a LoadedModel from loadModelDir, or synthetic weights in tests. */
export interface ModelSource {
  config: ModelConfig;
  tensors: ReadonlyMap<string, HostTensor>;
}

export class Model {
  readonly rope: RopeSpec;

  private constructor(
    readonly backend: Backend,
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
  ) {
    this.rope = ropeSpec(config);
  }

  /** Uploads every weight the config names to the backend (checked by name and shape). */
  static load(backend: Backend, source: ModelSource): Model {
    return new Model(backend, source.config, loadWeights(backend, source.config, source.tensors));
  }

  /** The KV cache shape this model needs, for a given number of blocks. */
  kvSpec(numBlocks: number, blockSize: number): KvCacheSpec {
    const c = this.config;
    return { numLayers: c.numLayers, numBlocks, blockSize, numKvHeads: c.numKvHeads, headDim: c.headDim };
  }

  /**
   * Runs `ids` (one per row of `layout`; on the host, or held by the backend: Backend.argmaxIds) through the
   * model, writing their K and V into `kv`.
   */
  forward(
    kv: KvStorage,
    layout: BatchLayout,
    ids: Int32Array | TokenIds,
    options?: ForwardOptions,
  ): ForwardOutput {
    return forward(this, kv, layout, ids, options);
  }
}
