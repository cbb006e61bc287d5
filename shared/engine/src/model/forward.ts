// One forward pass for every family (Llama, Qwen2, Qwen3), written once against the Backend interface:
//   embed -> per layer [rmsNorm, q/k/v (+bias), (qwen3: per-head q/k rmsNorm), rope, writeKv, attention,
//   o_proj (+bias), residual add, rmsNorm, gate/up, siluMul, down, residual add] -> final norm ->
//   the rows whose logits are wanted -> lm_head.
// Where the backend has the optional fused ops (qkvProject, rmsNormRope, gateUpSilu, matmulAdd, and the
// rmsNorm* and ropeAttention ones) they replace the plain ops they stand for: q/k/v as one step, q/k norm with
// RoPE, gate/up/siluMul as one, each projection with its residual add, each RMSNorm with the projection that
// reads it, and the q/k preparation + KV write with the attention.
// The families differ only in which optional weights exist, so there is no per-family branch.
import type {
  Activation,
  Backend,
  BatchLayout,
  KvStorage,
  PreparedBatch,
  RopeSpec,
  TokenIds,
  Weight,
} from "../backend.js";
import type { ModelConfig } from "./config.js";
import type { LayerWeights, ModelWeights } from "./weights.js";

export interface ForwardOptions {
  /** Batch rows whose logits are wanted, in this order; default: the last row of each sequence. */
  logitRows?: Int32Array;
  /** Layers whose output (the residual stream after layer l) is returned for every row (eagle features). */
  hiddenLayers?: readonly number[];
  /** Also return the final-normed hidden state of every row (what lm_head reads). */
  normedHidden?: boolean;
}

export interface ForwardOutput {
  /** [logitRows.length, vocab]; undefined when no rows were asked for. */
  logits: Activation | undefined;
  logitRows: Int32Array;
  /** Layer index -> [rows, hidden]. */
  hidden: Map<number, Activation>;
  normed: Activation | undefined;
}

/** The last row of each sequence in the batch. */
export function lastRows(layout: BatchLayout): Int32Array {
  return Int32Array.from(layout.sequences, (s) => s.rowStart + s.newTokens - 1);
}

export interface ForwardContext {
  backend: Backend;
  config: ModelConfig;
  weights: ModelWeights;
  rope: RopeSpec;
}

/** What one decoder layer needs of its model: the target's config, or a speculator head's (eagle/). */
export type LayerConfig = Pick<ModelConfig, "numHeads" | "headDim" | "rmsNormEps">;

export interface LayerContext {
  backend: Backend;
  config: LayerConfig;
  rope: RopeSpec;
}

/** q, k, v of rmsNorm(h, w.inputNorm): one fused step where the backend has it. */
function projectQkv(ctx: LayerContext, w: LayerWeights, h: Activation) {
  const { backend: be, config: c } = ctx;
  const biases = { q: w.qBias, k: w.kBias, v: w.vBias };
  if (be.rmsNormQkvProject) {
    return be.rmsNormQkvProject(h, { weight: w.inputNorm, eps: c.rmsNormEps }, w.q, w.k, w.v, biases);
  }
  const x = be.rmsNorm(h, w.inputNorm, c.rmsNormEps);
  const out = be.qkvProject
    ? be.qkvProject(x, w.q, w.k, w.v, biases)
    : { q: be.matmul(x, w.q, w.qBias), k: be.matmul(x, w.k, w.kBias), v: be.matmul(x, w.v, w.vBias) };
  be.release(x);
  return out;
}

/** The attention block plus its residual: h + o_proj(attention(rmsNorm(h) ...)). */
function attentionBlock(
  ctx: LayerContext,
  w: LayerWeights,
  layer: number,
  h: Activation,
  kv: KvStorage,
  batch: PreparedBatch,
): Activation {
  const { backend: be, config: c } = ctx;
  let { q, k, v } = projectQkv(ctx, w, h);
  const scale = 1 / Math.sqrt(c.headDim);
  if (be.ropeAttention) {
    const qkNorm =
      w.qNorm !== undefined && w.kNorm !== undefined
        ? { q: w.qNorm, k: w.kNorm, eps: c.rmsNormEps }
        : undefined;
    const attn = be.ropeAttention(q, k, v, kv, layer, batch, ctx.rope, c.numHeads, scale, qkNorm);
    be.release(q);
    be.release(k);
    be.release(v);
    const out = linearAdd(be, attn, w.o, h, w.oBias);
    be.release(attn);
    return out;
  }
  if (w.qNorm !== undefined && w.kNorm !== undefined && be.rmsNormRope) {
    q = swap(be, q, be.rmsNormRope(q, w.qNorm, c.rmsNormEps, batch, ctx.rope));
    k = swap(be, k, be.rmsNormRope(k, w.kNorm, c.rmsNormEps, batch, ctx.rope));
  } else {
    if (w.qNorm !== undefined && w.kNorm !== undefined) {
      q = swap(be, q, be.rmsNorm(q, w.qNorm, c.rmsNormEps, c.headDim));
      k = swap(be, k, be.rmsNorm(k, w.kNorm, c.rmsNormEps, c.headDim));
    }
    q = swap(be, q, be.rope(q, batch, ctx.rope));
    k = swap(be, k, be.rope(k, batch, ctx.rope));
  }
  be.writeKv(kv, layer, k, v, batch);
  be.release(k);
  be.release(v);
  const attn = be.attention(q, kv, layer, batch, c.numHeads, scale);
  be.release(q);
  const out = linearAdd(be, attn, w.o, h, w.oBias);
  be.release(attn);
  return out;
}

/** residual + x W^T (+ bias), fused when the backend can. */
function linearAdd(be: Backend, x: Activation, w: Weight, residual: Activation, bias?: Weight): Activation {
  if (be.matmulAdd) return be.matmulAdd(x, w, residual, bias);
  const y = be.matmul(x, w, bias);
  const out = be.add(residual, y);
  be.release(y);
  return out;
}

/** The MLP block plus its residual: h + down(silu(gate(x)) * up(x)), x = rmsNorm(h, w.postNorm). */
function mlpBlock(ctx: LayerContext, w: LayerWeights, h: Activation): Activation {
  const { backend: be, config: c } = ctx;
  let act: Activation;
  if (be.rmsNormGateUpSilu) {
    act = be.rmsNormGateUpSilu(h, { weight: w.postNorm, eps: c.rmsNormEps }, w.gate, w.up);
  } else {
    const x = be.rmsNorm(h, w.postNorm, c.rmsNormEps);
    if (be.gateUpSilu) {
      act = be.gateUpSilu(x, w.gate, w.up);
    } else {
      const gate = be.matmul(x, w.gate);
      const up = be.matmul(x, w.up);
      act = be.siluMul(gate, up);
      be.release(gate);
      be.release(up);
    }
    be.release(x);
  }
  const out = linearAdd(be, act, w.down, h);
  be.release(act);
  return out;
}

/**
 * One pre-norm decoder layer over the residual stream h: h + attn(norm(h)), then + mlp(norm(.)). Writes
 * this layer's K and V (KV layer `layer`) and returns the new residual stream; h stays the caller's.
 * Exported for the eagle head (eagle/head.ts), whose one layer is this same block.
 */
export function decoderLayer(
  ctx: LayerContext,
  w: LayerWeights,
  layer: number,
  h: Activation,
  kv: KvStorage,
  batch: PreparedBatch,
): Activation {
  const mid = attentionBlock(ctx, w, layer, h, kv, batch);
  const out = mlpBlock(ctx, w, mid);
  ctx.backend.release(mid);
  return out;
}

/** Whether `rows` is 0, 1, ..., n - 1: every row in order (a decode step's last rows). */
function isEveryRow(rows: Int32Array, n: number): boolean {
  if (rows.length !== n) return false;
  for (let i = 0; i < n; i++) if (rows[i] !== i) return false;
  return true;
}

/** Releases `old` and returns `next`: for ops that replace an activation. */
function swap(be: Backend, old: Activation, next: Activation): Activation {
  be.release(old);
  return next;
}

/** The embeddings of ids the backend holds (Backend.argmaxIds). */
function embedIds(be: Backend, table: Weight, ids: TokenIds): Activation {
  if (!be.embedIds) throw new RangeError(`forward: the ${be.kind} backend takes ids on the host only`);
  return be.embedIds(table, ids);
}

export function forward(
  ctx: ForwardContext,
  kv: KvStorage,
  layout: BatchLayout,
  ids: Int32Array | TokenIds,
  options: ForwardOptions = {},
): ForwardOutput {
  const { backend: be, config: c, weights } = ctx;
  const onHost = ids instanceof Int32Array;
  const n = onHost ? ids.length : ids.rows;
  if (n !== layout.rows) throw new RangeError(`forward: ${n} ids for ${layout.rows} rows`);
  for (const p of layout.positions) {
    if (p >= c.maxPositions)
      throw new RangeError(`forward: position ${p} is past the context length ${c.maxPositions}`);
  }
  const wantHidden = new Set(options.hiddenLayers ?? []);
  for (const l of wantHidden) {
    if (!(Number.isInteger(l) && l >= 0 && l < c.numLayers)) throw new RangeError(`forward: no layer ${l}`);
  }
  const batch = be.prepareBatch(layout, kv.spec.blockSize);
  const hidden = new Map<number, Activation>();
  let h = onHost ? be.embed(weights.embed, ids) : embedIds(be, weights.embed, ids);
  weights.layers.forEach((w, layer) => {
    const next = decoderLayer(ctx, w, layer, h, kv, batch);
    if (!wantHidden.has(layer - 1)) be.release(h);
    h = next;
    if (wantHidden.has(layer)) hidden.set(layer, h);
  });
  const logitRows = options.logitRows ?? lastRows(layout);
  if (be.rmsNormMatmul && !options.normedHidden) {
    // The final norm with the LM head, on the wanted rows only (a row's norm is its own), in one step.
    let logits: Activation | undefined;
    if (logitRows.length > 0) {
      const rows = isEveryRow(logitRows, layout.rows) ? h : be.gatherRows(h, logitRows);
      logits = be.rmsNormMatmul(rows, { weight: weights.norm, eps: c.rmsNormEps }, weights.lmHead);
      if (rows !== h) be.release(rows);
    }
    if (!wantHidden.has(c.numLayers - 1)) be.release(h);
    return { logits, logitRows, hidden, normed: undefined };
  }
  const normed = be.rmsNorm(h, weights.norm, c.rmsNormEps);
  if (!wantHidden.has(c.numLayers - 1)) be.release(h);
  let logits: Activation | undefined;
  if (logitRows.length > 0) {
    const rows = be.gatherRows(normed, logitRows);
    logits = be.matmul(rows, weights.lmHead);
    be.release(rows);
  }
  if (!options.normedHidden) be.release(normed);
  return { logits, logitRows, hidden, normed: options.normedHidden ? normed : undefined };
}
