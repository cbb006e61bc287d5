// The one interface every backend implements: `reference` (plain TypeScript, the yardstick, never
// optimised), `cpu` (WebAssembly SIMD on all cores) and `webgpu` (WGSL through Dawn). The model's forward
// pass (model/forward.ts) is written once against it.
//
// Ops take and return backend-owned activations (Activation). A backend may run an op at once (reference,
// cpu) or record it (webgpu encodes a whole forward into few command buffers); nothing reaches the host
// until readRows/argmaxRows is awaited. Activations are row-major f32 [rows, cols] in meaning, whatever
// the backend stores. Per-pass metadata (positions, KV slots, attention layout) is uploaded once per
// forward through prepareBatch, not per op.
import type { DType, HostTensor } from "./tensor.js";

export type BackendKind = "reference" | "cpu" | "webgpu";

/** A weight resident in the backend, in whatever layout it chose (2-byte weights stay 2 bytes). */
export interface Weight {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** A [rows, cols] activation owned by the backend. */
export interface Activation {
  readonly rows: number;
  readonly cols: number;
}

/**
 * One token id per row, held by the backend (a greedy step's argmax left on the device: argmaxIds). A backend
 * may keep only the most recent ones (webgpu: those of its last 3 argmaxIds calls) and refuse an older handle.
 */
export interface TokenIds {
  readonly rows: number;
}

export interface KvCacheSpec {
  numLayers: number;
  numBlocks: number;
  /** Tokens per block. */
  blockSize: number;
  numKvHeads: number;
  headDim: number;
}

/** KV storage for every layer: [numBlocks, blockSize, numKvHeads, headDim] for K and for V. */
export interface KvStorage {
  readonly spec: KvCacheSpec;
  /** Bytes held (K and V, all layers). */
  readonly bytes: number;
}

/**
 * One sequence's part of a forward pass. Its new tokens are rows [rowStart, rowStart + newTokens) of
 * the batch. Before the pass the cache holds `cachedTokens` of its tokens; the pass writes the new ones
 * at logical positions cachedTokens .. cachedTokens + newTokens - 1, mapped to physical slots through
 * `blockTable`.
 */
export interface SequenceLayout {
  rowStart: number;
  newTokens: number;
  cachedTokens: number;
  /** Physical block ids, in logical order; long enough for cachedTokens + newTokens. */
  blockTable: Int32Array;
  /**
   * Tree attention over the new tokens: treeParents[i] is the index (among the new tokens) of token i's
   * parent, or -1 if its parent is the last cached token. Token i attends to the cached tokens, its
   * ancestors and itself; its RoPE position is cachedTokens + depth(i). Absent means a chain
   * (treeParents[i] = i - 1): ordinary causal attention.
   */
  treeParents?: Int32Array;
}

/** What a forward pass is over: every sequence's layout, and the per-row data derived from it. */
export interface BatchLayout {
  sequences: readonly SequenceLayout[];
  /** Total new tokens (rows). */
  rows: number;
  /** RoPE position of each row. */
  positions: Int32Array;
  /** Physical KV slot (block * blockSize + offset) each row's K and V are written to. */
  slots: Int32Array;
}

/** A BatchLayout uploaded to the backend for one forward pass. */
export interface PreparedBatch {
  readonly layout: BatchLayout;
}

export interface RopeSpec {
  headDim: number;
  theta: number;
  /** Inverse frequencies per rotary pair (headDim / 2), already scaled (llama3 scaling applied). */
  invFreq: Float32Array;
}

export interface QkvBiases {
  q?: Weight;
  k?: Weight;
  v?: Weight;
}

export interface QkvActivations {
  q: Activation;
  k: Activation;
  v: Activation;
}

/** An RMSNorm applied to an op's input first: rmsNorm(x, weight, eps) over whole rows. */
export interface RmsNormSpec {
  weight: Weight;
  eps: number;
}

/** Qwen3's per-head RMSNorm of q and k before RoPE: the weights [headDim] and epsilon. */
export interface QkNormSpec {
  q: Weight;
  k: Weight;
  eps: number;
}

/** topKRows' answer for n rows: ids and values [n, k] row-major, logSumExp [n]. */
export interface TopKRows {
  k: number;
  ids: Int32Array;
  values: Float32Array;
  logSumExp: Float32Array;
}

export interface Backend {
  readonly kind: BackendKind;

  /** Uploads a weight; 2-byte dtypes may stay 2 bytes. */
  loadWeight(name: string, tensor: HostTensor): Weight;
  createKvStorage(spec: KvCacheSpec): KvStorage;
  prepareBatch(layout: BatchLayout, kvBlockSize: number): PreparedBatch;

  /** Rows of the embedding table: [ids.length, hidden]. */
  embed(table: Weight, ids: Int32Array): Activation;
  /**
   * RMSNorm over groups of `groupSize` columns (default: the whole row), times `weight` [groupSize]:
   * y = x / sqrt(mean(x^2) + eps) * w. groupSize = headDim gives Qwen3's per-head q/k norm.
   */
  rmsNorm(x: Activation, weight: Weight, eps: number, groupSize?: number): Activation;
  /** x [n, k] times weight [m, k] transposed (HF linear layout), plus bias [m]: [n, m]. */
  matmul(x: Activation, weight: Weight, bias?: Weight): Activation;
  /** Rotates each head of x [n, heads * headDim] at each row's position (HF "rotate half" layout). */
  rope(x: Activation, batch: PreparedBatch, rope: RopeSpec): Activation;
  /** Writes k and v [n, kvHeads * headDim] of layer `layer` at the batch's slots. */
  writeKv(kv: KvStorage, layer: number, k: Activation, v: Activation, batch: PreparedBatch): void;
  /**
   * Attention of q [n, heads * headDim] over each sequence's cached and new tokens of layer `layer`
   * (GQA: head h reads kv head floor(h / (heads / kvHeads))), causal or tree-masked per SequenceLayout,
   * softmax(q.k * scale): [n, heads * headDim].
   */
  attention(
    q: Activation,
    kv: KvStorage,
    layer: number,
    batch: PreparedBatch,
    numHeads: number,
    scale: number,
  ): Activation;
  /** silu(gate) * up, elementwise. */
  siluMul(gate: Activation, up: Activation): Activation;
  /** a + b, elementwise. */
  add(a: Activation, b: Activation): Activation;
  /** The given rows of x, in order: [rows.length, cols]. */
  gatherRows(x: Activation, rows: Int32Array): Activation;
  /** Copies the K and V of every layer from srcSlots[i] to dstSlots[i] (keeping an accepted tree branch). */
  copyKv(kv: KvStorage, srcSlots: Int32Array, dstSlots: Int32Array): void;

  // Optional fused ops. A backend that has one does in one step what the plain ops do in several; forward()
  // uses them when present and the plain ops otherwise, so every result must equal the plain composition
  // (conformance.test.ts checks each against the reference backend's).

  /** residual + x weight^T (+ bias): matmul then add(residual, product). */
  matmulAdd?(x: Activation, weight: Weight, residual: Activation, bias?: Weight): Activation;
  /** silu(x gate^T) * (x up^T): two matmuls and siluMul. */
  gateUpSilu?(x: Activation, gate: Weight, up: Weight): Activation;
  /** [x q^T + qBias, x k^T + kBias, x v^T + vBias]: the attention's three projections of one input. */
  qkvProject?(x: Activation, q: Weight, k: Weight, v: Weight, biases?: QkvBiases): QkvActivations;

  /** rope(rmsNorm(x, weight, eps, headDim), batch, rope): Qwen3's per-head q/k norm, then RoPE. */
  rmsNormRope?(x: Activation, weight: Weight, eps: number, batch: PreparedBatch, rope: RopeSpec): Activation;

  /** qkvProject(rmsNorm(x, norm.weight, norm.eps), ...): the layer's input norm with the projections. */
  rmsNormQkvProject?(
    x: Activation,
    norm: RmsNormSpec,
    q: Weight,
    k: Weight,
    v: Weight,
    biases?: QkvBiases,
  ): QkvActivations;
  /** gateUpSilu(rmsNorm(x, norm.weight, norm.eps), gate, up): the post-attention norm with the MLP's input. */
  rmsNormGateUpSilu?(x: Activation, norm: RmsNormSpec, gate: Weight, up: Weight): Activation;
  /** matmul(rmsNorm(x, norm.weight, norm.eps), weight): the final norm with the LM head. */
  rmsNormMatmul?(x: Activation, norm: RmsNormSpec, weight: Weight): Activation;
  /**
   * Attention with its inputs prepared, from the raw projections: q' = rope(n(q)) and k' = rope(n(k)) where
   * n is rmsNorm(., qkNorm.q / qkNorm.k, qkNorm.eps, headDim) when qkNorm is given (Qwen3) and the identity
   * otherwise; then writeKv(kv, layer, k', v, batch) and attention(q', kv, layer, batch, numHeads, scale).
   */
  ropeAttention?(
    q: Activation,
    k: Activation,
    v: Activation,
    kv: KvStorage,
    layer: number,
    batch: PreparedBatch,
    rope: RopeSpec,
    numHeads: number,
    scale: number,
    qkNorm?: QkNormSpec,
  ): Activation;

  // Optional: greedy decoding with the ids kept on the device. A backend that records its ops (webgpu) can
  // then record step n + 1, fed by step n's argmax, before step n's ids reach the host (generate.ts).

  /** argmaxRows without the read: each row's argmax (lowest index on ties), held by the backend. */
  argmaxIds?(x: Activation): TokenIds;
  /** embed() of ids held by the backend. */
  embedIds?(table: Weight, ids: TokenIds): Activation;
  /** The ids, to the host. */
  readIds?(ids: TokenIds): Promise<Int32Array>;

  /** Reads x back to the host as f32, row-major. */
  readRows(x: Activation): Promise<Float32Array>;
  /** Index of the largest value of each row (lowest index on ties). */
  argmaxRows(x: Activation): Promise<Int32Array>;
  /**
   * Softmax + top-k without reading whole rows back: per row, the k largest values with their column
   * ids, largest first (lowest id on ties), and the row's log-sum-exp, so value - logSumExp is the
   * log-probability. Optional: callers fall back to readRows. Traces and Score's top_logprobs use it.
   */
  topKRows?(x: Activation, k: number): Promise<TopKRows>;

  /** Frees an activation's memory early (optional for garbage-collected backends). */
  release(x: Activation): void;
  /**
   * Frees a weight's memory (a swapped-out speculator head's); the weight must not be used after. Absent
   * where the garbage collector frees weights (reference).
   */
  releaseWeight?(w: Weight): void;
  destroy(): void;
}
