// The model families the engine runs, parsed from a Hugging Face config.json. Everything the forward
// pass needs is made explicit here (no reading config.json elsewhere), and anything the engine does not
// implement is refused by name rather than silently ignored.
import { UnsupportedModelError } from "../errors.js";

export type ModelFamily = "llama" | "qwen2" | "qwen3";

export const ARCHITECTURES: Readonly<Record<string, ModelFamily>> = {
  LlamaForCausalLM: "llama",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
};

/** Llama 3's frequency-dependent RoPE scaling ("rope_type": "llama3"). */
export interface Llama3RopeScaling {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface ModelConfig {
  family: ModelFamily;
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** May differ from hiddenSize / numHeads (Qwen3). */
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | undefined;
  /** Context length: positions beyond it are refused. */
  maxPositions: number;
  tieWordEmbeddings: boolean;
  /** Bias on the q, k and v projections (Qwen2; Llama with attention_bias). */
  qkvBias: boolean;
  /** Bias on the output projection (Llama with attention_bias). */
  oBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  bosTokenId: number | undefined;
  eosTokenIds: number[];
}

type Json = Record<string, unknown>;

function num(cfg: Json, key: string, fallback?: number): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new UnsupportedModelError(
      key,
      v === undefined ? "missing" : `expected a number, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

function posInt(cfg: Json, key: string, fallback?: number): number {
  const v = num(cfg, key, fallback);
  if (!Number.isInteger(v) || v <= 0)
    throw new UnsupportedModelError(key, `expected a positive integer, got ${v}`);
  return v;
}

function bool(cfg: Json, key: string, fallback: boolean): boolean {
  const v = cfg[key] ?? fallback;
  if (typeof v !== "boolean")
    throw new UnsupportedModelError(key, `expected true or false, got ${JSON.stringify(v)}`);
  return v;
}

function tokenIds(v: unknown, key: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (!Number.isInteger(id) || (id as number) < 0)
      throw new UnsupportedModelError(key, `bad token id ${JSON.stringify(id)}`);
  }
  return list as number[];
}

/** RoPE base and scaling, from the classic keys or transformers 5's `rope_parameters`. */
function parseRope(cfg: Json): { theta: number; scaling: Llama3RopeScaling | undefined } {
  const params = (cfg.rope_parameters ?? undefined) as Json | undefined;
  const scaling = (cfg.rope_scaling ?? params) as Json | undefined | null;
  const theta = num(params && typeof params.rope_theta === "number" ? params : cfg, "rope_theta", 10_000);
  const type = scaling ? (scaling.rope_type ?? scaling.type ?? "default") : "default";
  if (type === "default") return { theta, scaling: undefined };
  if (type !== "llama3" || scaling == null) {
    throw new UnsupportedModelError(
      "rope_scaling.rope_type",
      `"${String(type)}" (supported: default, llama3)`,
    );
  }
  const field = (k: string) => `rope_scaling.${k}`;
  const get = (k: string): number => {
    const v = scaling[k];
    if (typeof v !== "number" || !(v > 0))
      throw new UnsupportedModelError(field(k), `expected a positive number`);
    return v;
  };
  return {
    theta,
    scaling: {
      type: "llama3",
      factor: get("factor"),
      lowFreqFactor: get("low_freq_factor"),
      highFreqFactor: get("high_freq_factor"),
      originalMaxPositions: get("original_max_position_embeddings"),
    },
  };
}

/** Parses and checks a config.json object; throws UnsupportedModelError naming the offending field. */
export function parseModelConfig(cfg: Json, generationConfig: Json = {}): ModelConfig {
  const archs = cfg.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : undefined;
  if (architecture === undefined) throw new UnsupportedModelError("architectures", "missing");
  const family = ARCHITECTURES[architecture];
  if (family === undefined) {
    throw new UnsupportedModelError(
      "architectures",
      `"${architecture}" (supported: ${Object.keys(ARCHITECTURES).join(", ")})`,
    );
  }
  const act = cfg.hidden_act ?? "silu";
  if (act !== "silu") throw new UnsupportedModelError("hidden_act", `"${String(act)}" (supported: silu)`);
  if (cfg.mlp_bias === true) throw new UnsupportedModelError("mlp_bias", "true is not supported");
  if (cfg.use_sliding_window === true)
    throw new UnsupportedModelError("use_sliding_window", "sliding-window attention is not supported");
  if (typeof cfg.quantization_config === "object" && cfg.quantization_config !== null) {
    throw new UnsupportedModelError("quantization_config", "quantized checkpoints are not supported");
  }
  if (num(cfg, "pretraining_tp", 1) !== 1)
    throw new UnsupportedModelError("pretraining_tp", "only 1 is supported");

  const hiddenSize = posInt(cfg, "hidden_size");
  const numHeads = posInt(cfg, "num_attention_heads");
  const numKvHeads = posInt(cfg, "num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new UnsupportedModelError(
      "num_key_value_heads",
      `${numKvHeads} does not divide num_attention_heads ${numHeads}`,
    );
  }
  const headDim = cfg.head_dim == null ? hiddenSize / numHeads : posInt(cfg, "head_dim");
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new UnsupportedModelError("head_dim", `${headDim} must be an even integer`);
  }
  const rope = parseRope(cfg);
  const attentionBias = bool(cfg, "attention_bias", false);
  return {
    family,
    architecture,
    vocabSize: posInt(cfg, "vocab_size"),
    hiddenSize,
    intermediateSize: posInt(cfg, "intermediate_size"),
    numLayers: posInt(cfg, "num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num(cfg, "rms_norm_eps", 1e-6),
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    maxPositions: posInt(cfg, "max_position_embeddings"),
    tieWordEmbeddings: bool(cfg, "tie_word_embeddings", false),
    qkvBias: family === "qwen2" || attentionBias,
    oBias: family !== "qwen2" && attentionBias,
    qkNorm: family === "qwen3",
    bosTokenId: tokenIds(generationConfig.bos_token_id ?? cfg.bos_token_id, "bos_token_id")[0],
    eosTokenIds: tokenIds(generationConfig.eos_token_id ?? cfg.eos_token_id, "eos_token_id"),
  };
}

/** The tensor names and shapes a checkpoint of this config must hold (HF naming, [out, in] for linears). */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  out.set("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]);
  out.set("model.norm.weight", [c.hiddenSize]);
  if (!c.tieWordEmbeddings) out.set("lm_head.weight", [c.vocabSize, c.hiddenSize]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.set(`${p}.input_layernorm.weight`, [c.hiddenSize]);
    out.set(`${p}.post_attention_layernorm.weight`, [c.hiddenSize]);
    out.set(`${p}.self_attn.q_proj.weight`, [q, c.hiddenSize]);
    out.set(`${p}.self_attn.k_proj.weight`, [kv, c.hiddenSize]);
    out.set(`${p}.self_attn.v_proj.weight`, [kv, c.hiddenSize]);
    out.set(`${p}.self_attn.o_proj.weight`, [c.hiddenSize, q]);
    if (c.qkvBias) {
      out.set(`${p}.self_attn.q_proj.bias`, [q]);
      out.set(`${p}.self_attn.k_proj.bias`, [kv]);
      out.set(`${p}.self_attn.v_proj.bias`, [kv]);
    }
    if (c.oBias) out.set(`${p}.self_attn.o_proj.bias`, [c.hiddenSize]);
    if (c.qkNorm) {
      out.set(`${p}.self_attn.q_norm.weight`, [c.headDim]);
      out.set(`${p}.self_attn.k_norm.weight`, [c.headDim]);
    }
    out.set(`${p}.mlp.gate_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    out.set(`${p}.mlp.up_proj.weight`, [c.intermediateSize, c.hiddenSize]);
    out.set(`${p}.mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize]);
  }
  return out;
}
