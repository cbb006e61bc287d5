// Every training op's gradient against central finite differences, table-driven as the forward
// conformance test (backends/conformance.test.ts): odd shapes (1, 7, 13, 33), rows that are not a multiple
// of the four-row blocking, GQA ratios 1 and 3, causal and training-time-test masks, the full vocabulary and
// a draft vocabulary, and the whole eagle head pass unrolled over three draft steps (one and three feature
// layers), each parameter tensor checked.
//
// Each case's output is reduced to L = sum_i out_i R_i with fixed random R (so every output element
// matters), the analytic gradient is the op's backward of R, and the numeric one (L(x + e) - L(x - e)) /
// (2e) at a dozen seeded elements of every input (the step rounded to f32 as the inputs are). The bound is
// on ||analytic - numeric|| / ||numeric|| per input: f32 arithmetic gives 1e-8..2e-4 here; a term
// scaled by 0.95 gives ~5e-2, a missing term or a wrong index more.
import assert from "node:assert/strict";
import { test } from "node:test";
import { eagleConfigFor } from "../../eagle/config.js";
import type { ModelConfig } from "../../model/config.js";
import { defaultInvFreq } from "../../model/rope.js";
import { Rng } from "../../sampling/rng.js";
import { ParamLayout } from "../head-params.js";
import { HeadPass } from "../head-pass.js";
import { tttLayout } from "../ttt-layout.js";
import { attentionBackward, attentionForward, causalMask } from "./attention.js";
import { inverseVocab, softCrossEntropy, targetFromLogits, targetFromTopK } from "./cross-entropy.js";
import { acceptanceTerm, rejectedTerm } from "./draft-objective.js";
import { addForward, siluGateBackward, siluGateForward } from "./elementwise.js";
import { embeddingBackward, embeddingForward } from "./embedding.js";
import { linearBackwardInput, linearBackwardWeight, linearForward } from "./linear.js";
import { REFERENCE_LINEAR } from "./linear-kernels.js";
import { wasmLinear } from "./linear-wasm.js";
import { rmsNormBackward, rmsNormForward } from "./rmsnorm.js";
import { ropeBackward, ropeForward } from "./rope.js";

type Grads = Record<string, Float32Array | Float64Array>;

interface Instance {
  /** The inputs whose gradients are checked (perturbed in place). */
  inputs: Record<string, Float32Array>;
  forward(): ArrayLike<number>;
  /** d L / d input for L = sum out * dOut. */
  backward(dOut: Float64Array): Grads;
}

interface GradCase {
  op: string;
  name: string;
  make(rng: Rng): Instance;
  /** Step of the finite differences (default 1e-2). */
  eps?: number;
  /** Largest ||analytic - numeric|| / ||numeric|| (default 1e-3). */
  tol?: number;
}

const uniform = (rng: Rng, n: number, lo = -1, hi = 1) =>
  Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.next());

const cases: GradCase[] = [];

for (const [rows, inF, outF] of [
  [1, 7, 5],
  [5, 13, 9],
  [8, 33, 17],
  [11, 64, 3],
] as const) {
  cases.push({
    op: "linear",
    name: `[${rows}, ${inF}] x [${outF}, ${inF}]^T`,
    make: (rng) => {
      const x = uniform(rng, rows * inF);
      const w = uniform(rng, outF * inF);
      return {
        inputs: { x, w },
        forward: () => linearForward(x, w, rows, inF, outF),
        backward: (d) => {
          const dy = Float32Array.from(d);
          const dw = new Float32Array(w.length);
          linearBackwardWeight(dy, x, rows, inF, outF, dw);
          return { x: linearBackwardInput(dy, w, rows, inF, outF), w: dw };
        },
      };
    },
  });
}

for (const [rows, cols, eps] of [
  [1, 7, 1e-5],
  [5, 64, 1e-6],
  [3, 33, 1e-2],
] as const) {
  cases.push({
    op: "rmsNorm",
    name: `[${rows}, ${cols}], eps ${eps}`,
    make: (rng) => {
      const x = uniform(rng, rows * cols);
      const w = uniform(rng, cols, 0.5, 1.5);
      return {
        inputs: { x, w },
        forward: () => rmsNormForward(x, w, rows, cols, eps).y,
        backward: (d) => {
          const { inv } = rmsNormForward(x, w, rows, cols, eps);
          const dw = new Float32Array(cols);
          return { x: rmsNormBackward(Float32Array.from(d), x, w, inv, rows, cols, dw), w: dw };
        },
      };
    },
  });
}

for (const [rows, heads, headDim] of [
  [1, 1, 4],
  [3, 2, 16],
  [6, 3, 8],
] as const) {
  cases.push({
    op: "rope",
    name: `[${rows}, ${heads} x ${headDim}]`,
    make: (rng) => {
      const cols = heads * headDim;
      const x = uniform(rng, rows * cols);
      const positions = Int32Array.from({ length: rows }, () => Math.floor(rng.next() * 1000));
      const spec = { headDim, theta: 10000, invFreq: defaultInvFreq(headDim, 10000) };
      return {
        inputs: { x },
        forward: () => ropeForward(x, cols, positions, spec),
        backward: (d) => ({ x: ropeBackward(Float32Array.from(d), cols, positions, spec) }),
      };
    },
  });
}

/** Attention cases: a mask, its number of keys, and the head shape. */
function attentionCase(
  name: string,
  nk: number,
  mask: ReturnType<typeof causalMask>,
  heads: number,
  kvHeads: number,
  headDim: number,
): GradCase {
  const nq = mask.offsets.length - 1;
  const shape = { numHeads: heads, numKvHeads: kvHeads, headDim };
  const scale = 1 / Math.sqrt(headDim);
  return {
    op: "attention",
    name,
    make: (rng) => {
      const q = uniform(rng, nq * heads * headDim, -2, 2);
      const k = uniform(rng, nk * kvHeads * headDim, -2, 2);
      const v = uniform(rng, nk * kvHeads * headDim);
      return {
        inputs: { q, k, v },
        forward: () => attentionForward(q, k, v, nq, nk, shape, mask, scale).out,
        backward: (d) => {
          const { probs } = attentionForward(q, k, v, nq, nk, shape, mask, scale);
          const dk = new Float32Array(k.length);
          const dv = new Float32Array(v.length);
          const dq = attentionBackward(
            Float32Array.from(d),
            q,
            k,
            v,
            probs,
            nq,
            nk,
            shape,
            mask,
            scale,
            dk,
            dv,
          );
          return { q: dq, k: dk, v: dv };
        },
      };
    },
  };
}

cases.push(attentionCase("causal, one sequence of 5, MHA 2 heads of 8", 5, causalMask([5]), 2, 2, 8));
cases.push(
  attentionCase("causal, sequences of 3, 1, 6, GQA 6:2 heads of 4", 10, causalMask([3, 1, 6]), 6, 2, 4),
);
{
  // The trainer's own training-time-test mask at draft step 2: two examples (one with context rows).
  const ttt = tttLayout(
    [
      { length: 9, trainFrom: 5 },
      { length: 6, trainFrom: 0 },
    ],
    3,
  );
  const st = ttt.steps[2]!;
  cases.push(
    attentionCase(
      "training-time test, step 2 of 3, two examples, GQA 3:1",
      ttt.keyBase[3]!,
      st.mask,
      3,
      1,
      8,
    ),
  );
}

cases.push({
  op: "siluGate",
  name: "[4, 13]",
  make: (rng) => {
    const gate = uniform(rng, 52, -4, 4);
    const up = uniform(rng, 52, -2, 2);
    return {
      inputs: { gate, up },
      forward: () => siluGateForward(gate, up),
      backward: (d) => {
        const { dGate, dUp } = siluGateBackward(Float32Array.from(d), gate, up);
        return { gate: dGate, up: dUp };
      },
    };
  },
});

cases.push({
  op: "add",
  name: "[3, 7]",
  make: (rng) => {
    const a = uniform(rng, 21);
    const b = uniform(rng, 21);
    return {
      inputs: { a, b },
      forward: () => addForward(a, b),
      backward: (d) => ({ a: Float32Array.from(d), b: Float32Array.from(d) }),
    };
  },
});

cases.push({
  op: "embedding",
  name: "ids 3, 0, 3, 5 of a [6, 7] table",
  make: (rng) => {
    const table = uniform(rng, 42);
    const ids = Int32Array.of(3, 0, 3, 5);
    return {
      inputs: { table },
      forward: () => embeddingForward(table, 7, ids),
      backward: (d) => {
        const dt = new Float32Array(42);
        embeddingBackward(Float32Array.from(d), 7, ids, dt);
        return { table: dt };
      },
    };
  },
});

function softmaxRows(logits: Float32Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < cols; c++) max = Math.max(max, logits[r * cols + c]!);
    let total = 0;
    for (let c = 0; c < cols; c++) total += Math.exp(logits[r * cols + c]! - max);
    for (let c = 0; c < cols; c++) out[r * cols + c] = Math.exp(logits[r * cols + c]! - max) / total;
  }
  return out;
}

for (const [rows, vocab, draft] of [
  [1, 7, 0],
  [4, 33, 0],
  [3, 40, 11],
] as const) {
  cases.push({
    op: "softCrossEntropy",
    name: `${rows} rows, vocabulary ${vocab}${draft > 0 ? `, draft vocabulary ${draft} (d2t)` : ""}`,
    make: (rng) => {
      const d2t = draft > 0 ? Int32Array.from({ length: draft }, (_, i) => (i * 7 + 3) % vocab) : undefined;
      const cols = d2t?.length ?? vocab;
      const logits = uniform(rng, rows * cols, -3, 3);
      const targets = new Float64Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        targets.set(targetFromLogits(uniform(rng, vocab, -3, 3), d2t).train, r * cols);
      }
      const weights = Float64Array.from({ length: rows }, (_, r) => 0.5 + r);
      return {
        inputs: { logits },
        forward: () => [softCrossEntropy(logits, targets, weights, rows, cols).loss],
        backward: (d) => ({
          logits: softCrossEntropy(logits, targets, weights, rows, cols).dLogits.map((g) => g * d[0]!),
        }),
      };
    },
  });
}

cases.push({
  op: "rejected",
  name: "3 rows of 9, rejected token over-proposed by the head (q(t) > p(t))",
  eps: 2e-3,
  make: (rng) => {
    const rows = 3;
    const cols = 9;
    const logits = uniform(rng, rows * cols, -1, 1);
    const col = [2, 5, 0];
    // The rejected token gets most of the head's mass, little of the target's: the hinge is active.
    for (let r = 0; r < rows; r++) logits[r * cols + col[r]!] = 3;
    const targetP = [0.05, 0.2, 0.01];
    const term = (dl: Float32Array | undefined, scale: number) => {
      const probs = softmaxRows(logits, rows, cols);
      const sink = dl ?? new Float32Array(rows * cols);
      let total = 0;
      for (let r = 0; r < rows; r++)
        total += rejectedTerm(probs, r * cols, cols, col[r]!, targetP[r]!, scale, sink);
      return total;
    };
    return {
      inputs: { logits },
      forward: () => [term(undefined, 1)],
      backward: (d) => {
        const dl = new Float32Array(rows * cols);
        term(dl, d[0]!);
        return { logits: dl };
      },
    };
  },
});

cases.push({
  op: "acceptance",
  name: "4 rows of 13, 1 - sum min(p, q)",
  eps: 1e-3,
  make: (rng) => {
    const rows = 4;
    const cols = 13;
    const logits = uniform(rng, rows * cols, -2, 2);
    const targets = Array.from(
      { length: rows },
      () => targetFromLogits(uniform(rng, cols, -2, 2), undefined).full,
    );
    const term = (dl: Float32Array | undefined, scale: number) => {
      const probs = softmaxRows(logits, rows, cols);
      const sink = dl ?? new Float32Array(rows * cols);
      let total = 0;
      for (let r = 0; r < rows; r++) total += acceptanceTerm(probs, r * cols, cols, targets[r]!, scale, sink);
      return total;
    };
    return {
      inputs: { logits },
      forward: () => [term(undefined, 1)],
      backward: (d) => {
        const dl = new Float32Array(rows * cols);
        term(dl, d[0]!);
        return { logits: dl };
      },
    };
  },
});

/** A tiny Llama-shaped target: hidden 8, 4 layers, 2 heads of 4 over 1 KV head, vocabulary 19. */
const TINY: ModelConfig = {
  family: "llama",
  vocabSize: 19,
  hiddenSize: 8,
  intermediateSize: 12,
  numLayers: 4,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 4,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  maxPositions: 64,
  tieWordEmbeddings: true,
  qkvBias: false,
  oBias: false,
  qkNorm: false,
  bosTokenId: 0,
  eosTokenIds: [0],
} as unknown as ModelConfig;

for (const [featureLayers, kernels] of [
  [[3], REFERENCE_LINEAR],
  [[0, 1, 3], REFERENCE_LINEAR],
  [[0, 1, 3], wasmLinear()],
] as const) {
  cases.push({
    op: "eaglePass",
    name: `head unrolled 3 steps, 2 examples (context rows, a draft vocabulary of 11), feature layers ${featureLayers}, ${kernels.name} linear kernels`,
    // The cpu kernels sum in f32: the loss's own rounding shows in the finite differences.
    tol: kernels.name === "cpu" ? 5e-3 : 2e-3,
    make: (rng) => {
      const config = eagleConfigFor(TINY, { featureLayers });
      const layout = new ParamLayout(config);
      const params = uniform(rng, layout.size, -0.6, 0.6);
      for (const e of layout.entries) if (e.shape.length === 1) params.fill(1, e.offset, e.offset + e.size);
      for (const e of layout.entries)
        if (e.shape.length === 1)
          for (let i = e.offset; i < e.offset + e.size; i++) params[i]! += (rng.next() - 0.5) * 0.4;
      const H = TINY.hiddenSize;
      const F = featureLayers.length;
      const spans = [
        { length: 8, trainFrom: 5 },
        { length: 6, trainFrom: 1 },
      ];
      const ttt = tttLayout(spans, 3);
      const lmRows = Int32Array.from({ length: 11 }, (_, i) => (i * 5 + 2) % TINY.vocabSize);
      const embed = uniform(rng, TINY.vocabSize * H);
      const lm = new Float32Array(lmRows.length * H);
      lmRows.forEach((id, i) => {
        lm.set(embed.subarray(id * H, (id + 1) * H), i * H);
      });
      const feats = uniform(rng, ttt.steps[0]!.count * F * H, -2, 2);
      const tokens = ttt.steps.map((s) =>
        Int32Array.from({ length: s.count }, () => Math.floor(rng.next() * TINY.vocabSize)),
      );
      // Every query row's logits, except one row per step (as the trainer skips rows without a target).
      const logitRows = ttt.steps.map((s) =>
        Int32Array.from({ length: s.count - s.context - 1 }, (_, i) => i + 1),
      );
      const rope = {
        headDim: config.headDim,
        theta: config.ropeTheta,
        invFreq: defaultInvFreq(config.headDim, config.ropeTheta),
      };
      const run = () => {
        const pass = new HeadPass(
          config,
          rope,
          layout.views(params),
          { embed, lm, cols: lmRows.length },
          { layout: ttt, features: feats, tokens, logitRows },
          kernels,
        );
        const out: Float32Array[] = [];
        for (let k = 0; k < 3; k++) out.push(pass.runStep());
        return { pass, out };
      };
      const inputs: Record<string, Float32Array> = {};
      for (const e of layout.entries) inputs[e.name] = params.subarray(e.offset, e.offset + e.size);
      return {
        inputs,
        forward: () => {
          const { out } = run();
          const flat = new Float32Array(out.reduce((n, o) => n + o.length, 0));
          let at = 0;
          for (const o of out) {
            flat.set(o, at);
            at += o.length;
          }
          return flat;
        },
        backward: (d) => {
          const { pass, out } = run();
          const dl: Float32Array[] = [];
          let at = 0;
          for (const o of out) {
            dl.push(Float32Array.from(d.subarray(at, at + o.length)));
            at += o.length;
          }
          const grad = new Float32Array(layout.size);
          pass.backward(dl, layout.views(grad));
          const g: Grads = {};
          for (const e of layout.entries) g[e.name] = grad.subarray(e.offset, e.offset + e.size);
          return g;
        },
      };
    },
  });
}

function lossOf(out: ArrayLike<number>, r: Float64Array): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i]! * r[i]!;
  return s;
}

for (const c of cases) {
  test(`train ops gradcheck - ${c.op}: ${c.name}`, () => {
    const rng = new Rng(cases.indexOf(c) + 1);
    const inst = c.make(rng);
    const out0 = inst.forward();
    const r = Float64Array.from({ length: out0.length }, () => rng.next() * 2 - 1);
    const analytic = inst.backward(r);
    const eps = c.eps ?? 1e-2;
    const tol = c.tol ?? 1e-3;
    let worst = 0;
    for (const [name, x] of Object.entries(inst.inputs)) {
      const g = analytic[name];
      assert.ok(g !== undefined && g.length === x.length, `${name}: no gradient of the right size`);
      const picks = new Set<number>();
      while (picks.size < Math.min(12, x.length)) picks.add(Math.floor(rng.next() * x.length));
      let diff = 0;
      let norm = 0;
      for (const i of picks) {
        const orig = x[i]!;
        x[i] = orig + eps;
        const up = x[i]! - orig;
        const lp = lossOf(inst.forward(), r);
        x[i] = orig - eps;
        const down = orig - x[i]!;
        const lm = lossOf(inst.forward(), r);
        x[i] = orig;
        const numeric = (lp - lm) / (up + down);
        diff += (numeric - g[i]!) ** 2;
        norm += numeric ** 2;
      }
      assert.ok(
        norm > 0,
        `${name}: the numeric gradient is zero at every checked element (a case that cannot fail)`,
      );
      const err = Math.sqrt(diff / norm);
      worst = Math.max(worst, err);
      assert.ok(
        err <= tol,
        `${name}: ||analytic - numeric|| / ||numeric|| = ${err.toExponential(2)} > ${tol}`,
      );
    }
    console.log(`# ${c.op} ${c.name}: worst relative error ${worst.toExponential(2)}`);
  });
}

test("train ops - targets: a draft vocabulary renormalises the target and flags an argmax outside it", () => {
  const logits = Float32Array.of(0, 3, 1, 2);
  const inside = targetFromLogits(logits, Int32Array.of(1, 3));
  assert.ok(inside.argmaxInside);
  const z = Math.exp(0) + Math.exp(3) + Math.exp(1) + Math.exp(2);
  assert.ok(Math.abs(inside.full[0]! - Math.exp(3) / z) < 1e-12);
  assert.ok(Math.abs(inside.train[0]! + inside.train[1]! - 1) < 1e-12);
  assert.equal(targetFromLogits(logits, Int32Array.of(0, 2)).argmaxInside, false);
  const t2d = inverseVocab(Int32Array.of(1, 3), 4);
  const topk = targetFromTopK(Int32Array.of(3, 2), Float32Array.of(Math.log(0.5), Math.log(0.3)), t2d, 2);
  assert.deepEqual([...topk.train], [0, 1]);
  assert.ok(topk.argmaxInside);
  assert.equal(topk.argmax, 3);
  assert.throws(() => inverseVocab(Int32Array.of(1, 1), 4), /listed twice/);
});
