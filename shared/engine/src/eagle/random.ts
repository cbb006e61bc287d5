// Random eagle heads: a valid blob, deterministic from a seed, for tests and for a node's day-0 head before
// the trainer has published one. Any weights are valid to serve, since verification keeps the output exact;
// random ones just draft badly. Linears are uniform in +-1/sqrt(fan_in) (PyTorch's default scale, which
// keeps activations O(1) through the layer), norms are ones.
import { encodeSafetensors } from "../loader/safetensors.js";
import type { ModelConfig } from "../model/config.js";
import { Rng } from "../sampling/rng.js";
import type { DType, HostTensor } from "../tensor.js";
import { type EagleConfig, eagleConfigFor, eagleMetadata, expectedEagleTensors } from "./config.js";

export interface RandomEagleOptions {
  seed: number;
  /** Target layers to draft from; default: the last one. */
  featureLayers?: readonly number[];
  /** Storage dtype of every tensor; default bf16 (what a trained head ships in). */
  dtype?: DType;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits of v, rounded to nearest even. */
function bf16Bits(v: number): number {
  f32[0] = v;
  const u = u32[0] as number;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f16 bits of v for |v| within f16's normal range or zero (the values drawn here are), rounded to nearest. */
function f16Bits(v: number): number {
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a < 2 ** -14) return sign;
  let e = Math.floor(Math.log2(a));
  let m = Math.round((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e++;
  }
  return sign | ((e + 15) << 10) | m;
}

function encode(values: Float32Array, shape: readonly number[], dtype: DType): HostTensor {
  if (dtype === "f32") return { dtype, shape, data: new Uint8Array(values.buffer) };
  const bits = Uint16Array.from(values, dtype === "bf16" ? bf16Bits : f16Bits);
  return { dtype, shape, data: new Uint8Array(bits.buffer) };
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
    const n = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if (shape.length === 1) {
      values = new Float32Array(n).fill(1);
    } else {
      const bound = 1 / Math.sqrt(shape[1] as number);
      values = Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound);
    }
    out.set(name, encode(values, shape, dtype));
  }
  return out;
}

/** A valid eagle-v1 safetensors blob for `target`, the same bytes for the same options. */
export function randomEagleWeights(target: ModelConfig, options: RandomEagleOptions): Uint8Array {
  const config = eagleConfigFor(target, { featureLayers: options.featureLayers });
  return encodeSafetensors(randomEagleTensors(config, options.seed, options.dtype), eagleMetadata(config));
}
