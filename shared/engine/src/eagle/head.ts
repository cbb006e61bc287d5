// An eagle head resident in a backend, next to the target it drafts for: its own tensors, the target's
// embed table and lm_head (shared, never copied), and its forward pass, written over Backend ops so it
// runs wherever the target runs. The one decoder layer is forward.ts's decoderLayer.
//
// Inputs enter through the backend as activations. The fc over concat(g, embedding) is computed as two
// products, fc[:, :H] g + fc[:, H:] e (the columns split once at load), because the Backend has no concat.
// Feature rows come from the host (TargetFeatures, or the head's own hidden read back between depths), so
// the backend must be able to take host rows: every backend here can (fromHost).
import type {
  Activation,
  Backend,
  BatchLayout,
  KvCacheSpec,
  KvStorage,
  RopeSpec,
  Weight,
} from "../backend.js";
import { SpeculatorBlobError } from "../errors.js";
import { decoderLayer, type LayerContext } from "../model/forward.js";
import type { Model } from "../model/model.js";
import { defaultInvFreq } from "../model/rope.js";
import type { LayerWeights } from "../model/weights.js";
import { DTYPE_BYTES, f32Tensor, type HostTensor } from "../tensor.js";
import { EAGLE_TENSORS, type EagleConfig } from "./config.js";
import { type SpeculatorManifestFacts, validateSpeculatorBlob } from "./validate.js";

/** A backend that can turn host rows into an activation (reference, cpu and webgpu all can). */
export interface HostRowsBackend extends Backend {
  fromHost(rows: number, cols: number, values: ArrayLike<number>): Activation;
}

export function canTakeHostRows(be: Backend): be is HostRowsBackend {
  return typeof (be as Partial<HostRowsBackend>).fromHost === "function";
}

interface EagleWeights {
  /** [H, F * H], only with several feature layers. */
  fuse?: Weight;
  /** fc's columns over g and over the embedding: [H, H] each. */
  fcFeature: Weight;
  fcEmbed: Weight;
  layer: LayerWeights;
  norm: Weight;
  /** The target's, shared. */
  embed: Weight;
  lmHead: Weight;
  /** With a draft vocabulary: 0 on its tokens, -1e30 elsewhere, added to the logits (never proposed). */
  draftMask?: Weight;
}

/**
 * What a head row reads besides its token: the target's features (the committed positions: [rows,
 * F * hidden], the feature layers concatenated), or g itself (draft depths: the head's own output hidden
 * of the parent row, [rows, hidden]).
 */
export type EagleInput = { kind: "features"; data: Float32Array } | { kind: "hidden"; data: Float32Array };

export interface EagleForwardOutput {
  /** [logitRows.length, vocab]. */
  logits: Activation;
  /** The head's output hidden (pre-norm) of the same rows: [logitRows.length, hidden]. */
  hidden: Activation;
}

export interface EagleHeadOptions {
  /** The version id (the manifest's), reported by the drafter; default: the blob's sha256. */
  version?: string;
  manifest?: SpeculatorManifestFacts;
}

/** Columns [from, from + width) of a 2-D host tensor: a copy, in the same dtype. */
function columns(t: HostTensor, from: number, width: number): HostTensor {
  const [rows, cols] = t.shape as [number, number];
  const e = DTYPE_BYTES[t.dtype];
  const data = new Uint8Array(rows * width * e);
  for (let r = 0; r < rows; r++) {
    const at = t.data.byteOffset + (r * cols + from) * e;
    data.set(new Uint8Array(t.data.buffer, at, width * e), r * width * e);
  }
  return { dtype: t.dtype, shape: [rows, width], data };
}

export class EagleHead {
  readonly rope: RopeSpec;
  private readonly ctx: LayerContext;
  private released = false;

  private constructor(
    readonly backend: HostRowsBackend,
    readonly config: EagleConfig,
    readonly version: string,
    readonly sha256: string,
    private readonly weights: EagleWeights,
  ) {
    // Plain RoPE at the head's base, no scaling: the head attends over a window of recent positions, and
    // its KV positions are relative to the window's start (see eagle-drafter.ts), far below any scaling knee.
    this.rope = {
      headDim: config.headDim,
      theta: config.ropeTheta,
      invFreq: defaultInvFreq(config.headDim, config.ropeTheta),
    };
    this.ctx = { backend, config, rope: this.rope };
  }

  /**
   * Validates `blob` against `target` (and the manifest, when given), then uploads the head's tensors to
   * `backend`, which must be the target's: the head reads the target's embed and lm_head in place.
   */
  static load(backend: Backend, blob: Uint8Array, target: Model, options: EagleHeadOptions = {}): EagleHead {
    if (backend !== target.backend)
      throw new RangeError("EagleHead.load: the head must live on the target's backend");
    if (!canTakeHostRows(backend)) {
      throw new SpeculatorBlobError(
        "backend",
        `the ${backend.kind} backend cannot take host rows (fromHost)`,
      );
    }
    const { config, tensors, sha256, draftVocab } = validateSpeculatorBlob(
      blob,
      target.config,
      options.manifest,
    );
    const t = (name: string): HostTensor => tensors.get(name) as HostTensor; // validated present
    const load = (name: string, tensor: HostTensor = t(name)) => backend.loadWeight(`eagle.${name}`, tensor);
    const h = config.hiddenSize;
    const fc = t(EAGLE_TENSORS.fc);
    const weights: EagleWeights = {
      fuse: config.featureLayers.length > 1 ? load(EAGLE_TENSORS.fuse) : undefined,
      fcFeature: load(`${EAGLE_TENSORS.fc}[:, :${h}]`, columns(fc, 0, h)),
      fcEmbed: load(`${EAGLE_TENSORS.fc}[:, ${h}:]`, columns(fc, h, h)),
      layer: {
        inputNorm: load(EAGLE_TENSORS.inputNorm),
        q: load(EAGLE_TENSORS.q),
        k: load(EAGLE_TENSORS.k),
        v: load(EAGLE_TENSORS.v),
        o: load(EAGLE_TENSORS.o),
        postNorm: load(EAGLE_TENSORS.postNorm),
        gate: load(EAGLE_TENSORS.gate),
        up: load(EAGLE_TENSORS.up),
        down: load(EAGLE_TENSORS.down),
      },
      norm: load(EAGLE_TENSORS.norm),
      embed: target.weights.embed,
      lmHead: target.weights.lmHead,
    };
    if (draftVocab !== undefined) {
      const mask = new Float32Array(config.vocabSize).fill(-1e30);
      for (const id of draftVocab) mask[id] = 0;
      weights.draftMask = backend.loadWeight("eagle.draft_vocab_mask", f32Tensor([config.vocabSize], mask));
    }
    return new EagleHead(
      backend,
      config,
      options.version ?? options.manifest?.versionId ?? sha256,
      sha256,
      weights,
    );
  }

  /**
   * Frees the head's own weights on the backend (not the target's embedding and LM head, which it reads in
   * place). For a head swapped out that no sequence drafts with any more; it must not be used after.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    const w = this.weights;
    const own = [w.fuse, w.fcFeature, w.fcEmbed, ...Object.values(w.layer), w.norm, w.draftMask];
    for (const x of own) if (x !== undefined) this.backend.releaseWeight?.(x);
  }

  /** Width of one feature row: the feature layers' outputs side by side. */
  get featureWidth(): number {
    return this.config.featureLayers.length * this.config.hiddenSize;
  }

  /** The head's KV cache: one layer, the head's kv heads. */
  kvSpec(numBlocks: number, blockSize: number): KvCacheSpec {
    const c = this.config;
    return { numLayers: 1, numBlocks, blockSize, numKvHeads: c.numKvHeads, headDim: c.headDim };
  }

  /**
   * Runs one head row per row of `layout` (token i: the token after the row's position; input i: its
   * feature or parent hidden), writing the rows' K and V into `kv`; returns logits and output hidden of
   * `logitRows`, in that order. The caller reads them back and releases them.
   */
  forward(
    kv: KvStorage,
    layout: BatchLayout,
    tokens: Int32Array,
    input: EagleInput,
    logitRows: Int32Array,
  ): EagleForwardOutput {
    if (logitRows.length === 0) throw new RangeError("EagleHead.forward: no logit rows (use prime)");
    const h = this.layer(kv, layout, tokens, input);
    const be = this.backend;
    const hidden = be.gatherRows(h, logitRows);
    be.release(h);
    const normed = be.rmsNorm(hidden, this.weights.norm, this.config.rmsNormEps);
    const logits = be.matmul(normed, this.weights.lmHead, this.weights.draftMask);
    be.release(normed);
    return { logits, hidden };
  }

  /** Runs rows only for their K and V (catching the head up on committed positions): no logits. */
  prime(kv: KvStorage, layout: BatchLayout, tokens: Int32Array, input: EagleInput): void {
    this.backend.release(this.layer(kv, layout, tokens, input));
  }

  /** fc over (g, embedding), then the decoder layer: the residual stream h of every row. */
  private layer(kv: KvStorage, layout: BatchLayout, tokens: Int32Array, input: EagleInput): Activation {
    const be = this.backend;
    const c = this.config;
    const w = this.weights;
    const n = layout.rows;
    if (tokens.length !== n) throw new RangeError(`EagleHead: ${tokens.length} tokens for ${n} rows`);
    const width = input.kind === "features" ? this.featureWidth : c.hiddenSize;
    if (input.data.length !== n * width) {
      throw new RangeError(`EagleHead: ${input.data.length} ${input.kind} values for [${n}, ${width}]`);
    }
    if (kv.spec.numLayers !== 1 || kv.spec.numKvHeads !== c.numKvHeads || kv.spec.headDim !== c.headDim) {
      throw new RangeError("EagleHead: the KV storage is not shaped for this head (see kvSpec)");
    }
    const batch = be.prepareBatch(layout, kv.spec.blockSize);

    let g = be.fromHost(n, width, input.data);
    if (input.kind === "features" && w.fuse !== undefined) {
      const fused = be.matmul(g, w.fuse);
      be.release(g);
      g = fused;
    }
    const e = be.embed(w.embed, tokens);
    const eProj = be.matmul(e, w.fcEmbed);
    be.release(e);
    let x: Activation;
    if (be.matmulAdd) {
      x = be.matmulAdd(g, w.fcFeature, eProj);
    } else {
      const gProj = be.matmul(g, w.fcFeature);
      x = be.add(gProj, eProj);
      be.release(gProj);
    }
    be.release(g);
    be.release(eProj);

    const h = decoderLayer(this.ctx, w.layer, 0, x, kv, batch);
    be.release(x);
    return h;
  }
}
