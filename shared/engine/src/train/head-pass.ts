// The eagle head's forward and backward on the host over one training batch, unrolled over the draft
// steps of a TttLayout, exactly the served head's computation (eagle/head.ts over the reference backend):
//   g = features (one layer) or fuse(features) (several); x = fc(concat(g, embed(token)))
//   a = rmsNorm(x); q, k, v = a Wq, a Wk, a Wv; RoPE on q and k; attention (GQA) over the mask
//   mid = x + o(attn); h = mid + down(silu(gate(b)) * up(b)), b = rmsNorm(mid)
//   logits = rmsNorm(h, norm) lm^T        (lm: the target's lm_head rows of the trained vocabulary)
// h is the output hidden that the next draft step reads in place of g. The forward keeps what the
// backward needs (a tape per step); the backward runs the steps in reverse, so the gradient of a step's
// keys and values is complete (every later step that attends to them has added its share) before that
// step's own projections are differentiated. Embed and lm_head are the target's and stay frozen.
import type { RopeSpec } from "../backend.js";
import type { EagleConfig } from "../eagle/config.js";
import type { HeadTensors } from "./head-params.js";
import { attentionBackward, attentionForward } from "./ops/attention.js";
import { addInto, siluGateBackward, siluGateForward } from "./ops/elementwise.js";
import { embeddingForward } from "./ops/embedding.js";
import { type LinearKernels, REFERENCE_LINEAR } from "./ops/linear-kernels.js";
import { rmsNormBackward, rmsNormForward } from "./ops/rmsnorm.js";
import { ropeBackward, ropeForward } from "./ops/rope.js";
import type { TttLayout } from "./ttt-layout.js";

/** What the head reads of its target, frozen. */
export interface FrozenTarget {
  /** The target's embedding table [vocab, hidden]. */
  embed: Float32Array;
  /** The target's lm_head rows of the trained vocabulary [cols, hidden] (all rows, or a draft vocabulary's). */
  lm: Float32Array;
  cols: number;
}

export interface PassInputs {
  layout: TttLayout;
  /** Step 0's rows' target features, in step 0's row order: [steps[0].count, F * hidden]. */
  features: Float32Array;
  /** Per step, per row: the token the row reads (token i+1+k of its example). */
  tokens: Int32Array[];
  /** Per step: the query rows (0-based among the step's query rows) whose logits are wanted. */
  logitRows: Int32Array[];
}

interface Tape {
  c: Float32Array;
  x: Float32Array;
  inv1: Float64Array;
  a: Float32Array;
  kcat: Float32Array;
  vcat: Float32Array;
  keys: number;
  q: Float32Array;
  probs: Float64Array;
  o: Float32Array;
  mid: Float32Array;
  inv2: Float64Array;
  b: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  act: Float32Array;
  h: Float32Array;
  hRows: Float32Array;
  inv3: Float64Array;
}

export class HeadPass {
  private readonly tapes: Tape[] = [];
  private readonly kSteps: Float32Array[] = [];
  private readonly vSteps: Float32Array[] = [];
  private readonly H: number;
  private readonly qw: number;
  private readonly kvw: number;
  private readonly scale: number;

  constructor(
    private readonly config: EagleConfig,
    private readonly rope: RopeSpec,
    private readonly w: HeadTensors,
    private readonly target: FrozenTarget,
    private readonly inputs: PassInputs,
    /** The products' kernels: the reference (plain TypeScript) or cpu (WebAssembly SIMD) ones. */
    private readonly lin: LinearKernels = REFERENCE_LINEAR,
  ) {
    this.H = config.hiddenSize;
    this.qw = config.numHeads * config.headDim;
    this.kvw = config.numKvHeads * config.headDim;
    this.scale = 1 / Math.sqrt(config.headDim);
    const F = config.featureLayers.length;
    const n0 = inputs.layout.steps[0]?.count ?? 0;
    if (inputs.features.length !== n0 * F * this.H)
      throw new RangeError(`HeadPass: ${inputs.features.length} feature values for [${n0}, ${F * this.H}]`);
  }

  /** Steps run so far. */
  get stepsRun(): number {
    return this.tapes.length;
  }

  /** The output hidden (pre-norm) of step k's query rows [queries, hidden] (after runStep(k)). */
  hidden(k: number): Float32Array {
    const t = this.tapes[k];
    if (t === undefined) throw new RangeError(`HeadPass: step ${k} has not run`);
    return t.h;
  }

  /** Runs the next step; returns the logits of its logitRows [rows, cols]. */
  runStep(): Float32Array {
    const k = this.tapes.length;
    const { layout, tokens, logitRows } = this.inputs;
    const st = layout.steps[k];
    if (st === undefined) throw new RangeError(`HeadPass: no step ${k}`);
    const { config: cfg, w, H, qw, kvw } = this;
    const n = st.count;
    const nq = n - st.context;
    // g: the features (fused when several layers) at step 0, the parent rows' output hidden after.
    let g: Float32Array;
    if (k === 0) {
      const F = cfg.featureLayers.length;
      g =
        w.fuse !== undefined
          ? this.lin.forward(this.inputs.features, w.fuse, n, F * H, H)
          : this.inputs.features;
    } else {
      const prev = this.hidden(k - 1);
      g = new Float32Array(n * H);
      for (let r = 0; r < n; r++) g.set(prev.subarray(st.parent[r]! * H, (st.parent[r]! + 1) * H), r * H);
    }
    const e = embeddingForward(this.target.embed, H, tokens[k]!);
    const c = new Float32Array(n * 2 * H);
    for (let r = 0; r < n; r++) {
      c.set(g.subarray(r * H, (r + 1) * H), r * 2 * H);
      c.set(e.subarray(r * H, (r + 1) * H), r * 2 * H + H);
    }
    const x = this.lin.forward(c, w.fc, n, 2 * H, H);
    const n1 = rmsNormForward(x, w.inputNorm, n, H, cfg.rmsNormEps);
    const a = n1.y;
    const kRows = ropeForward(this.lin.forward(a, w.k, n, H, kvw), kvw, st.position, this.rope);
    const vRows = this.lin.forward(a, w.v, n, H, kvw);
    this.kSteps.push(kRows);
    this.vSteps.push(vRows);
    const keys = layout.keyBase[k + 1]!;
    const kcat = new Float32Array(keys * kvw);
    const vcat = new Float32Array(keys * kvw);
    for (let m = 0; m <= k; m++) {
      kcat.set(this.kSteps[m]!, layout.keyBase[m]! * kvw);
      vcat.set(this.vSteps[m]!, layout.keyBase[m]! * kvw);
    }
    const aq = a.subarray(st.context * H);
    const qPos = st.position.subarray(st.context);
    const q = ropeForward(this.lin.forward(aq, w.q, nq, H, qw), qw, qPos, this.rope);
    const shape = { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim };
    const att = attentionForward(q, kcat, vcat, nq, keys, shape, st.mask, this.scale);
    const mid = addInto(this.lin.forward(att.out, w.o, nq, qw, H), x.subarray(st.context * H));
    const n2 = rmsNormForward(mid, w.postNorm, nq, H, cfg.rmsNormEps);
    const I = cfg.intermediateSize;
    const gate = this.lin.forward(n2.y, w.gate, nq, H, I);
    const up = this.lin.forward(n2.y, w.up, nq, H, I);
    const act = siluGateForward(gate, up);
    const h = addInto(this.lin.forward(act, w.down, nq, I, H), mid);
    const rows = logitRows[k] ?? new Int32Array(0);
    const hRows = new Float32Array(rows.length * H);
    rows.forEach((r, j) => {
      hRows.set(h.subarray(r * H, (r + 1) * H), j * H);
    });
    const n3 = rmsNormForward(hRows, w.norm, rows.length, H, cfg.rmsNormEps);
    const logits = this.lin.forward(n3.y, this.target.lm, rows.length, H, this.target.cols);
    this.tapes.push({
      c,
      x,
      inv1: n1.inv,
      a,
      kcat,
      vcat,
      keys,
      q,
      probs: att.probs,
      o: att.out,
      mid,
      inv2: n2.inv,
      b: n2.y,
      gate,
      up,
      act,
      h,
      hRows,
      inv3: n3.inv,
    });
    return logits;
  }

  /**
   * Backpropagates d loss / d logits of every step run (dLogits[k]: [logitRows[k].length, cols]) and adds
   * the parameters' gradients into `grads`.
   */
  backward(dLogits: readonly Float32Array[], grads: HeadTensors): void {
    const { config: cfg, w, H, qw, kvw } = this;
    const { layout, logitRows } = this.inputs;
    const K = this.tapes.length;
    const I = cfg.intermediateSize;
    const shape = { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim };
    const dK = layout.steps.slice(0, K).map((s) => new Float32Array(s.count * kvw));
    const dV = layout.steps.slice(0, K).map((s) => new Float32Array(s.count * kvw));
    const dH = layout.steps.slice(0, K).map((s) => new Float32Array((s.count - s.context) * H));
    for (let k = K - 1; k >= 0; k--) {
      const st = layout.steps[k]!;
      const t = this.tapes[k]!;
      const n = st.count;
      const nq = n - st.context;
      const dh = dH[k]!;
      // Loss rows: through the lm_head (frozen: input gradient only) and the final norm.
      const rows = logitRows[k] ?? new Int32Array(0);
      const dl = dLogits[k];
      if (rows.length > 0 && dl !== undefined) {
        if (dl.length !== rows.length * this.target.cols)
          throw new RangeError(`HeadPass.backward: step ${k}: ${dl.length} logit gradients`);
        const dz = this.lin.backwardInput(dl, this.target.lm, rows.length, H, this.target.cols);
        const dhRows = rmsNormBackward(dz, t.hRows, w.norm, t.inv3, rows.length, H, grads.norm);
        rows.forEach((r, j) => {
          for (let i = 0; i < H; i++) dh[r * H + i]! += dhRows[j * H + i]!;
        });
      }
      // MLP block: h = mid + down(act).
      const dmid = dh.slice();
      const dact = this.lin.backwardInput(dh, w.down, nq, I, H);
      this.lin.backwardWeight(dh, t.act, nq, I, H, grads.down);
      const { dGate, dUp } = siluGateBackward(dact, t.gate, t.up);
      const db = this.lin.backwardInput(dGate, w.gate, nq, H, I);
      this.lin.backwardInput(dUp, w.up, nq, H, I, db);
      this.lin.backwardWeight(dGate, t.b, nq, H, I, grads.gate);
      this.lin.backwardWeight(dUp, t.b, nq, H, I, grads.up);
      rmsNormBackward(db, t.mid, w.postNorm, t.inv2, nq, H, grads.postNorm, dmid);
      // Attention block: mid = x + o(attn).
      const dAttn = this.lin.backwardInput(dmid, w.o, nq, qw, H);
      this.lin.backwardWeight(dmid, t.o, nq, qw, H, grads.o);
      const dkcat = new Float32Array(t.keys * kvw);
      const dvcat = new Float32Array(t.keys * kvw);
      const dq = attentionBackward(
        dAttn,
        t.q,
        t.kcat,
        t.vcat,
        t.probs,
        nq,
        t.keys,
        shape,
        st.mask,
        this.scale,
        dkcat,
        dvcat,
      );
      for (let m = 0; m <= k; m++) {
        const from = layout.keyBase[m]! * kvw;
        addInto(dK[m]!, dkcat.subarray(from, from + dK[m]!.length));
        addInto(dV[m]!, dvcat.subarray(from, from + dV[m]!.length));
      }
      const da = new Float32Array(n * H);
      const aq = t.a.subarray(st.context * H);
      const dqPre = ropeBackward(dq, qw, st.position.subarray(st.context), this.rope);
      this.lin.backwardInput(dqPre, w.q, nq, H, qw, da.subarray(st.context * H));
      this.lin.backwardWeight(dqPre, aq, nq, H, qw, grads.q);
      // This step's keys and values: every step that attends to them has run its backward by now.
      const dkPre = ropeBackward(dK[k]!, kvw, st.position, this.rope);
      this.lin.backwardInput(dkPre, w.k, n, H, kvw, da);
      this.lin.backwardWeight(dkPre, t.a, n, H, kvw, grads.k);
      this.lin.backwardInput(dV[k]!, w.v, n, H, kvw, da);
      this.lin.backwardWeight(dV[k]!, t.a, n, H, kvw, grads.v);
      const dx = rmsNormBackward(da, t.x, w.inputNorm, t.inv1, n, H, grads.inputNorm);
      addInto(dx.subarray(st.context * H), dmid);
      // fc over concat(g, embedding): the embedding is frozen, g's half of dc flows on.
      const dc = this.lin.backwardInput(dx, w.fc, n, 2 * H, H);
      this.lin.backwardWeight(dx, t.c, n, 2 * H, H, grads.fc);
      if (k > 0) {
        const prev = dH[k - 1]!;
        for (let r = 0; r < n; r++) {
          const p = st.parent[r]! * H;
          for (let i = 0; i < H; i++) prev[p + i]! += dc[r * 2 * H + i]!;
        }
      } else if (grads.fuse !== undefined) {
        const F = cfg.featureLayers.length;
        const dg = new Float32Array(n * H);
        for (let r = 0; r < n; r++) dg.set(dc.subarray(r * 2 * H, r * 2 * H + H), r * H);
        this.lin.backwardWeight(dg, this.inputs.features, n, F * H, H, grads.fuse);
      }
    }
  }
}
