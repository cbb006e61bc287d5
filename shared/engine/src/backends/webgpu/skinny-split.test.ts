// The skinny program split over k (ops/skinny-program.ts with SkinnySpec.split, then
// ops/skinny-reduce-program.ts) against the reference backend, in every mode the fused ops use: a plain
// product with a bias, with a residual, gate/up with silu, q/k/v with and without biases, and each with the
// RMSNorm of x folded in; 2-16 rows and more (chunks of 16), k with a partial chunk (513: scalar x) and
// without (1,024), splits that divide k's chunks unevenly. ../conformance.test.ts checks the products the
// backend splits by itself (its `webgpu` and `webgpu-skinny` rows); here every product is split.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Activation, Weight } from "../../backend.js";
import type { DType } from "../../tensor.js";
import {
  firstNonFinite,
  nmse,
  randomWeight,
  seeded,
  type TestBackend,
  uniform,
} from "../conformance-support.js";
import { ReferenceBackend } from "../reference/backend.js";
import { createWebGpuBackend, type WebGpuBackend } from "./backend.js";
import { createWebGpuDevice } from "./device.js";

/** As the conformance test's bound: f32 sums against the reference's f64 ones. */
const F32_NMSE = 1e-10;

type Op = "matmul" | "matmulAdd" | "gateUpSilu" | "qkvProject";

interface SplitCase {
  op: Op;
  n: number;
  k: number;
  m: number;
  dtype: DType;
  bias: boolean;
  norm: boolean;
}

const CASES: SplitCase[] = [
  { op: "matmul", n: 2, k: 513, m: 33, dtype: "bf16", bias: true, norm: false },
  { op: "matmul", n: 16, k: 1024, m: 70, dtype: "f16", bias: false, norm: true },
  { op: "matmulAdd", n: 7, k: 1024, m: 40, dtype: "bf16", bias: true, norm: false },
  { op: "matmulAdd", n: 20, k: 513, m: 33, dtype: "f32", bias: false, norm: false },
  { op: "gateUpSilu", n: 5, k: 513, m: 70, dtype: "bf16", bias: false, norm: true },
  { op: "gateUpSilu", n: 16, k: 1024, m: 33, dtype: "f16", bias: false, norm: false },
  { op: "qkvProject", n: 3, k: 1024, m: 64, dtype: "bf16", bias: false, norm: true },
  { op: "qkvProject", n: 9, k: 513, m: 40, dtype: "f32", bias: true, norm: false },
];

/** Runs `c` on `b` with inputs drawn from `rng`; all outputs as one array (q, k, v in turn). */
async function runCase(b: TestBackend, c: SplitCase, name: string): Promise<Float32Array> {
  const rng = seeded(name);
  const { n, k, m, dtype } = c;
  const w = (label: string, rows: number) => b.loadWeight(label, randomWeight(rng, [rows, k], dtype));
  const vec = (label: string, len: number) => b.loadWeight(label, randomWeight(rng, [len], dtype));
  const norm = c.norm
    ? { weight: b.loadWeight("norm", randomWeight(rng, [k], "bf16", 0.5, 1.5)), eps: 1e-6 }
    : undefined;
  const x = b.fromHost(n, k, uniform(rng, n * k, -2, 2));
  const xn = (): Activation => (norm ? b.rmsNorm(x, norm.weight, norm.eps) : x);
  let outs: Activation[];
  if (c.op === "matmul") {
    const wt = w("w", m);
    const bias = c.bias ? vec("b", m) : undefined;
    outs = [norm && b.rmsNormMatmul && !bias ? b.rmsNormMatmul(x, norm, wt) : b.matmul(xn(), wt, bias)];
  } else if (c.op === "matmulAdd") {
    const wt = w("w", m);
    const bias = c.bias ? vec("b", m) : undefined;
    const res = b.fromHost(n, m, uniform(rng, n * m, -4, 4));
    outs = [b.matmulAdd ? b.matmulAdd(x, wt, res, bias) : b.add(res, b.matmul(x, wt, bias))];
  } else if (c.op === "gateUpSilu") {
    const [g, u] = [w("gate", m), w("up", m)];
    if (norm && b.rmsNormGateUpSilu) outs = [b.rmsNormGateUpSilu(x, norm, g, u)];
    else if (b.gateUpSilu) outs = [b.gateUpSilu(xn(), g, u)];
    else outs = [b.siluMul(b.matmul(xn(), g), b.matmul(xn(), u))];
  } else {
    const [wq, wk, wv] = [w("q", m), w("k", m >> 1), w("v", m >> 1)] as [Weight, Weight, Weight];
    const biases = c.bias ? { q: vec("bq", m), k: vec("bk", m >> 1), v: vec("bv", m >> 1) } : {};
    const r =
      norm && b.rmsNormQkvProject
        ? b.rmsNormQkvProject(x, norm, wq, wk, wv, biases)
        : b.qkvProject
          ? b.qkvProject(xn(), wq, wk, wv, biases)
          : {
              q: b.matmul(xn(), wq, biases.q),
              k: b.matmul(xn(), wk, biases.k),
              v: b.matmul(xn(), wv, biases.v),
            };
    outs = [r.q, r.k, r.v];
  }
  const parts = [];
  for (const o of outs) parts.push(await b.readRows(o));
  const all = new Float32Array(parts.reduce((t, p) => t + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

let reference: ReferenceBackend;
let split: WebGpuBackend;

before(async () => {
  reference = new ReferenceBackend();
  // 3 splits: uneven shares of k's chunks (64 or 128 of them here), and each split's slices uneven too.
  split = createWebGpuBackend(await createWebGpuDevice({ label: "skinny split" }), {
    fewRows: "skinny",
    skinnySplits: 3,
  });
});

after(() => {
  split?.destroy();
});

test("webgpu skinny split - every fused mode split over k matches the reference", async (t) => {
  for (const c of CASES) {
    const name = `${c.op}${c.norm ? " (rmsNorm)" : ""} ${c.dtype} [${c.n}, ${c.k}] x [${c.m}, ${c.k}]^T${c.bias ? " + bias" : ""}`;
    await t.test(name, async () => {
      const dispatchesBefore = split.stats().dispatches;
      const expected = await runCase(reference, c, name);
      const actual = await runCase(split, c, name);
      assert.equal(actual.length, expected.length);
      assert.equal(firstNonFinite(actual), -1, "a non-finite output");
      const err = nmse(actual, expected);
      assert.ok(err <= F32_NMSE, `nmse ${err}`);
      // The product went through the split path: the split product and its reduction, two dispatches.
      assert.equal(split.stats().dispatches - dispatchesBefore, 2, "dispatches of the split product");
    });
  }
});
