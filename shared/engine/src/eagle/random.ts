// Random eagle heads: a valid blob, deterministic from a seed, for tests and for a node's day-0 head before
// the trainer has published one. Any weights are valid to serve, since verification keeps the output exact;
// random ones just draft badly. Linears are uniform in +-1/sqrt(fan_in) (PyTorch's default scale, which
// keeps activations O(1) through the layer), norms are ones.
import { encodeSafetensors } from "../loader/safetensors.js";
import type { ModelConfig } from "../model/config.js";
import { Rng } from "../sampling/rng.js";
import { type DType, type HostTensor, hostTensor, numel } from "../tensor.js";
import { type EagleConfig, eagleConfigFor, eagleMetadata, expectedEagleTensors } from "./config.js";

export interface RandomEagleOptions {
  seed: number;
  /** Target layers to draft from; default: the last one. */
  featureLayers?: readonly number[];
  /** Storage dtype of every tensor; default bf16 (what a trained head ships in). */
  dtype?: DType;
}

/** The head's tensors for `config`, drawn from `seed`. */
export function randomEagleTensors(
  config: EagleConfig,
  seed: number,
  dtype: DType = "bf16",
): Map<string, HostTensor> {
  const rng = new Rng(seed);
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of expectedEagleTensors(config)) {
    const n = numel(shape);
    let values: Float32Array;
    if (shape.length === 1) {
      values = new Float32Array(n).fill(1);
    } else {
      const bound = 1 / Math.sqrt(shape[1] as number);
      values = Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound);
    }
    out.set(name, hostTensor(shape, values, dtype));
  }
  return out;
}

/** A valid eagle-v1 safetensors blob for `target`, the same bytes for the same options. */
export function randomEagleWeights(target: ModelConfig, options: RandomEagleOptions): Uint8Array {
  const config = eagleConfigFor(target, { featureLayers: options.featureLayers });
  return encodeSafetensors(randomEagleTensors(config, options.seed, options.dtype), eagleMetadata(config));
}
