// The eagle speculator head's configuration and tensor layout. The config travels as the safetensors
// `__metadata__` string map (and again in the SpeculatorManifest's config map), so it is parsed from
// strings here, and every refusal names the key.
//
// The head (EAGLE, with EAGLE-3's multi-layer feature fusion as an option), per position i:
//   g_i = f_i (one feature layer) or fuse(concat of the feature layers' f_i) (several: EAGLE-3's fc)
//   x_i = fc(concat(g_i, embed(token i+1)))        embed: the target's table, shared, not in the blob
//   h_i = one Llama decoder layer over x_i          own q/k/v/o, gate/up/down, input/post norms; RoPE, GQA
//   logits_i = lm_head(norm(h_i))                   lm_head: the target's, shared, not in the blob
// When drafting past the committed tokens, h_i (pre-norm) stands in for g at the next depth.

import { SpeculatorBlobError } from "../errors.js";
import type { ModelConfig } from "../model/config.js";

/** The architecture string of this head, in the blob's metadata and in SpeculatorManifest.architecture. */
export const EAGLE_ARCHITECTURE = "eagle-v1";

export interface EagleConfig {
  architecture: typeof EAGLE_ARCHITECTURE;
  /** The target's hidden size: features, embeddings and the head's residual stream are this wide. */
  hiddenSize: number;
  /** The target's vocabulary (the head reads the target's embed and lm_head). */
  vocabSize: number;
  /** Target layers whose outputs are the features, low to high (the order of the concatenation). */
  featureLayers: readonly number[];
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
}

/** Metadata keys, one per config field (HF-style names, as the trainer writes them). */
export const EAGLE_KEYS = {
  architecture: "architecture",
  hiddenSize: "hidden_size",
  vocabSize: "vocab_size",
  featureLayers: "feature_layers",
  numHeads: "num_attention_heads",
  numKvHeads: "num_key_value_heads",
  headDim: "head_dim",
  intermediateSize: "intermediate_size",
  rmsNormEps: "rms_norm_eps",
  ropeTheta: "rope_theta",
} as const satisfies Record<keyof EagleConfig, string>;

export interface EagleConfigOptions {
  /** Target layers to draft from; default: the last layer only (EAGLE-1). Three spread layers is EAGLE-3. */
  featureLayers?: readonly number[];
}

/** A head shaped like one layer of `target` (heads, GQA, MLP width, eps and RoPE base as the target's). */
export function eagleConfigFor(target: ModelConfig, options: EagleConfigOptions = {}): EagleConfig {
  const config: EagleConfig = {
    architecture: EAGLE_ARCHITECTURE,
    hiddenSize: target.hiddenSize,
    vocabSize: target.vocabSize,
    featureLayers: [...(options.featureLayers ?? [target.numLayers - 1])],
    numHeads: target.numHeads,
    numKvHeads: target.numKvHeads,
    headDim: target.headDim,
    intermediateSize: target.intermediateSize,
    rmsNormEps: target.rmsNormEps,
    ropeTheta: target.ropeTheta,
  };
  // Round-trip through the parser so a bad option (a repeated or negative layer) is refused here too.
  const parsed = parseEagleConfig(eagleMetadata(config));
  checkFitsTarget(parsed, target);
  return parsed;
}

/** The config as the string map written into `__metadata__` and the manifest's config. */
export function eagleMetadata(c: EagleConfig): Record<string, string> {
  return {
    [EAGLE_KEYS.architecture]: c.architecture,
    [EAGLE_KEYS.hiddenSize]: String(c.hiddenSize),
    [EAGLE_KEYS.vocabSize]: String(c.vocabSize),
    [EAGLE_KEYS.featureLayers]: c.featureLayers.join(","),
    [EAGLE_KEYS.numHeads]: String(c.numHeads),
    [EAGLE_KEYS.numKvHeads]: String(c.numKvHeads),
    [EAGLE_KEYS.headDim]: String(c.headDim),
    [EAGLE_KEYS.intermediateSize]: String(c.intermediateSize),
    [EAGLE_KEYS.rmsNormEps]: String(c.rmsNormEps),
    [EAGLE_KEYS.ropeTheta]: String(c.ropeTheta),
  };
}

function field(meta: Readonly<Record<string, string>>, key: string): string {
  const v = meta[key];
  if (v === undefined) throw new SpeculatorBlobError(key, "missing from the metadata");
  return v.trim();
}

function posInt(meta: Readonly<Record<string, string>>, key: string): number {
  const s = field(meta, key);
  const v = Number(s);
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(v) || v <= 0)
    throw new SpeculatorBlobError(key, `expected a positive integer, got ${JSON.stringify(s)}`);
  return v;
}

function posNum(meta: Readonly<Record<string, string>>, key: string): number {
  const s = field(meta, key);
  const v = Number(s);
  if (s === "" || !Number.isFinite(v) || v <= 0)
    throw new SpeculatorBlobError(key, `expected a positive number, got ${JSON.stringify(s)}`);
  return v;
}

function layerList(meta: Readonly<Record<string, string>>, key: string): number[] {
  const s = field(meta, key);
  const parts = s.split(",").map((p) => p.trim());
  const layers = parts.map(Number);
  if (s === "" || parts.some((p) => !/^\d+$/.test(p)))
    throw new SpeculatorBlobError(key, `expected comma-separated layer indices, got ${JSON.stringify(s)}`);
  if (new Set(layers).size !== layers.length)
    throw new SpeculatorBlobError(key, `layer repeated in ${JSON.stringify(s)}`);
  return layers;
}

/** Parses and checks the metadata string map; throws SpeculatorBlobError naming the key. */
export function parseEagleConfig(meta: Readonly<Record<string, string>>): EagleConfig {
  const architecture = field(meta, EAGLE_KEYS.architecture);
  if (architecture !== EAGLE_ARCHITECTURE) {
    throw new SpeculatorBlobError(
      EAGLE_KEYS.architecture,
      `"${architecture}" is not supported (supported: ${EAGLE_ARCHITECTURE})`,
    );
  }
  const numHeads = posInt(meta, EAGLE_KEYS.numHeads);
  const numKvHeads = posInt(meta, EAGLE_KEYS.numKvHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new SpeculatorBlobError(
      EAGLE_KEYS.numKvHeads,
      `${numKvHeads} does not divide ${EAGLE_KEYS.numHeads} ${numHeads}`,
    );
  }
  const headDim = posInt(meta, EAGLE_KEYS.headDim);
  if (headDim % 2 !== 0) throw new SpeculatorBlobError(EAGLE_KEYS.headDim, `${headDim} must be even (RoPE)`);
  return {
    architecture: EAGLE_ARCHITECTURE,
    hiddenSize: posInt(meta, EAGLE_KEYS.hiddenSize),
    vocabSize: posInt(meta, EAGLE_KEYS.vocabSize),
    featureLayers: layerList(meta, EAGLE_KEYS.featureLayers),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: posInt(meta, EAGLE_KEYS.intermediateSize),
    rmsNormEps: posNum(meta, EAGLE_KEYS.rmsNormEps),
    ropeTheta: posNum(meta, EAGLE_KEYS.ropeTheta),
  };
}

/** Refuses a head that cannot draft for `target`: the shared embed/lm_head and the features must fit. */
export function checkFitsTarget(c: EagleConfig, target: ModelConfig): void {
  if (c.hiddenSize !== target.hiddenSize) {
    throw new SpeculatorBlobError(
      EAGLE_KEYS.hiddenSize,
      `${c.hiddenSize}, but the target's hidden size is ${target.hiddenSize}`,
    );
  }
  if (c.vocabSize !== target.vocabSize) {
    throw new SpeculatorBlobError(
      EAGLE_KEYS.vocabSize,
      `${c.vocabSize}, but the target's lm_head has ${target.vocabSize} rows`,
    );
  }
  for (const l of c.featureLayers) {
    if (l >= target.numLayers) {
      throw new SpeculatorBlobError(
        EAGLE_KEYS.featureLayers,
        `layer ${l} is out of range: the target has ${target.numLayers} layers (0..${target.numLayers - 1})`,
      );
    }
  }
}

/** Tensor names of the head, in the order the trainer and randomEagleWeights write them. */
export const EAGLE_TENSORS = {
  fuse: "fuse.weight",
  fc: "fc.weight",
  inputNorm: "layer.input_layernorm.weight",
  q: "layer.self_attn.q_proj.weight",
  k: "layer.self_attn.k_proj.weight",
  v: "layer.self_attn.v_proj.weight",
  o: "layer.self_attn.o_proj.weight",
  postNorm: "layer.post_attention_layernorm.weight",
  gate: "layer.mlp.gate_proj.weight",
  up: "layer.mlp.up_proj.weight",
  down: "layer.mlp.down_proj.weight",
  norm: "norm.weight",
} as const;

/**
 * Every tensor the blob must hold, with its shape ([out, in] for linears, as HF): `fuse.weight`
 * [hidden, F * hidden] only with F > 1 feature layers; `fc.weight` [hidden, 2 * hidden] over
 * concat(g, embedding); one decoder layer; the final norm. Nothing else (embed and lm_head are the target's).
 */
export function expectedEagleTensors(c: EagleConfig): Map<string, number[]> {
  const h = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const out = new Map<string, number[]>();
  if (c.featureLayers.length > 1) out.set(EAGLE_TENSORS.fuse, [h, c.featureLayers.length * h]);
  out.set(EAGLE_TENSORS.fc, [h, 2 * h]);
  out.set(EAGLE_TENSORS.inputNorm, [h]);
  out.set(EAGLE_TENSORS.q, [q, h]);
  out.set(EAGLE_TENSORS.k, [kv, h]);
  out.set(EAGLE_TENSORS.v, [kv, h]);
  out.set(EAGLE_TENSORS.o, [h, q]);
  out.set(EAGLE_TENSORS.postNorm, [h]);
  out.set(EAGLE_TENSORS.gate, [c.intermediateSize, h]);
  out.set(EAGLE_TENSORS.up, [c.intermediateSize, h]);
  out.set(EAGLE_TENSORS.down, [h, c.intermediateSize]);
  out.set(EAGLE_TENSORS.norm, [h]);
  return out;
}
