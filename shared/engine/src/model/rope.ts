// The RoPE inverse frequencies a model's config implies, as transformers computes them
// (modeling_rope_utils: _compute_default_rope_parameters and _compute_llama3_parameters).
import type { RopeSpec } from "../backend.js";
import type { Llama3RopeScaling, ModelConfig } from "./config.js";

/** invFreq[i] = 1 / theta^(2i / headDim), rounded to f32 as transformers' float tensor holds it. */
export function defaultInvFreq(headDim: number, theta: number): Float32Array {
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < out.length; i++) out[i] = 1 / theta ** ((2 * i) / headDim);
  return out;
}

/**
 * Llama 3's scaling: wavelengths shorter than originalMaxPositions / highFreqFactor are kept, longer than
 * originalMaxPositions / lowFreqFactor are divided by `factor`, and those between are interpolated
 * smoothly between the two.
 */
export function llama3InvFreq(base: Float32Array, s: Llama3RopeScaling): Float32Array {
  const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor;
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / s.factor;
    const smooth =
      (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

export function ropeSpec(config: ModelConfig): RopeSpec {
  const base = defaultInvFreq(config.headDim, config.ropeTheta);
  const invFreq = config.ropeScaling === undefined ? base : llama3InvFreq(base, config.ropeScaling);
  return { headDim: config.headDim, theta: config.ropeTheta, invFreq };
}
