// One forward pass for every family (Llama, Qwen2, Qwen3), written once against the Backend interface:
//   embed -> per layer [rmsNorm, q/k/v (+bias), (qwen3: per-head q/k rmsNorm), rope, writeKv, attention,
//   o_proj (+bias), residual add, rmsNorm, gate/up, siluMul, down, residual add] -> final norm ->
//   the rows whose logits are wanted -> lm_head.
// Where the backend has the optional fused ops (qkvProject, rmsNormRope, gateUpSilu, matmulAdd) they replace
// the plain ops they stand for: q/k/v as one step, q/k norm with RoPE, gate/up/siluMul as one, each
// projection with its residual add.
// The families differ only in which optional weights exist, so there is no per-family branch.
import type { Activation, Backend, BatchLayout, KvStorage, RopeSpec, Weight } from "../backend.js";
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

/** The attention block plus its residual: residual + o_proj(attention(...)). */
function attentionBlock(
  ctx: ForwardContext,
  w: LayerWeights,
  layer: number,
  x: Activation,
  residual: Activation,
  kv: KvStorage,
  batch: ReturnType<Backend["prepareBatch"]>,
): Activation {
  const { backend: be, config: c } = ctx;
  let { q, k, v } = be.qkvProject
    ? be.qkvProject(x, w.q, w.k, w.v, { q: w.qBias, k: w.kBias, v: w.vBias })
    : { q: be.matmul(x, w.q, w.qBias), k: be.matmul(x, w.k, w.kBias), v: be.matmul(x, w.v, w.vBias) };
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
  const attn = be.attention(q, kv, layer, batch, c.numHeads, 1 / Math.sqrt(c.headDim));
  be.release(q);
  const out = linearAdd(be, attn, w.o, residual, w.oBias);
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

/** The MLP block plus its residual: residual + down(silu(gate(x)) * up(x)). */
function mlpBlock(be: Backend, w: LayerWeights, x: Activation, residual: Activation): Activation {
  let act: Activation;
  if (be.gateUpSilu) {
    act = be.gateUpSilu(x, w.gate, w.up);
  } else {
    const gate = be.matmul(x, w.gate);
    const up = be.matmul(x, w.up);
    act = be.siluMul(gate, up);
    be.release(gate);
    be.release(up);
  }
  const out = linearAdd(be, act, w.down, residual);
  be.release(act);
  return out;
}

/** Releases `old` and returns `next`: for ops that replace an activation. */
function swap(be: Backend, old: Activation, next: Activation): Activation {
  be.release(old);
  return next;
}

export function forward(
  ctx: ForwardContext,
  kv: KvStorage,
  layout: BatchLayout,
  ids: Int32Array,
  options: ForwardOptions = {},
): ForwardOutput {
  const { backend: be, config: c, weights } = ctx;
  if (ids.length !== layout.rows) throw new RangeError(`forward: ${ids.length} ids for ${layout.rows} rows`);
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
  let h = be.embed(weights.embed, ids);
  weights.layers.forEach((w, layer) => {
    const normed = be.rmsNorm(h, w.inputNorm, c.rmsNormEps);
    const mid = attentionBlock(ctx, w, layer, normed, h, kv, batch);
    be.release(normed);
    if (!wantHidden.has(layer - 1)) be.release(h);
    const normed2 = be.rmsNorm(mid, w.postNorm, c.rmsNormEps);
    h = mlpBlock(be, w, normed2, mid);
    be.release(normed2);
    be.release(mid);
    if (wantHidden.has(layer)) hidden.set(layer, h);
  });
  const normed = be.rmsNorm(h, weights.norm, c.rmsNormEps);
  if (!wantHidden.has(c.numLayers - 1)) be.release(h);
  const logitRows = options.logitRows ?? lastRows(layout);
  let logits: Activation | undefined;
  if (logitRows.length > 0) {
    const rows = be.gatherRows(normed, logitRows);
    logits = be.matmul(rows, weights.lmHead);
    be.release(rows);
  }
  if (!options.normedHidden) be.release(normed);
  return { logits, logitRows, hidden, normed: options.normedHidden ? normed : undefined };
}
