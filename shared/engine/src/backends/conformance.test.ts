// Every op of every fast backend against the reference backend, table-driven as ggml's test-backend-ops:
// odd shapes (1, 7, 513), several sequences of different lengths, trees, GQA ratios 1 and 3, head dims 64
// and 128, f32/f16/bf16 weights; seeded inputs (each backend gets the same ones), tie-free argmax inputs,
// a normalised error bound per op, and NaN/Inf checks. A new backend is one more row in BACKENDS.
//
// On this machine `webgpu` runs on lavapipe (Mesa's software Vulkan); on a machine with a GPU the same test
// checks the hardware path (SPECLOOP_WEBGPU_EXPECT=hardware in device.test.ts asserts which one it is).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Activation, BatchLayout, Weight } from "../backend.js";
import { defaultInvFreq } from "../model/rope.js";
import type { Rng } from "../sampling/rng.js";
import type { DType } from "../tensor.js";
import {
  firstNonFinite,
  makeLayout,
  maxAbs,
  nmse,
  prefillLayout,
  randomWeight,
  type SeqSpec,
  seeded,
  type TestBackend,
  uniform,
} from "./conformance-support.js";
import { createCpuBackend } from "./cpu/backend.js";
import { ReferenceBackend } from "./reference/backend.js";
import { topKRows as topKOf } from "./reference/topk.js";
import { RefActivation } from "./reference/types.js";
import { createWebGpuBackend } from "./webgpu/backend.js";
import { createWebGpuDevice } from "./webgpu/device.js";

interface BackendRow {
  name: string;
  open(): Promise<TestBackend>;
}

/** The backends checked against `reference`. */
const ALL_BACKENDS: BackendRow[] = [
  // 3 threads on any machine and every product and top-k split, so uneven column shares are exercised too.
  { name: "cpu", open: () => createCpuBackend({ threads: 3, minSplitWork: 0, minTopKSplit: 0 }) },
  {
    name: "webgpu",
    open: async () => createWebGpuBackend(await createWebGpuDevice({ label: "conformance" })),
  },
  // Products of 2-16 rows through the skinny program whatever their width (by default only products of
  // 3,072 outputs or more take it, wider than the cases here).
  {
    name: "webgpu-skinny",
    open: async () =>
      createWebGpuBackend(await createWebGpuDevice({ label: "conformance" }), { fewRows: "skinny" }),
  },
  // The kernels an adapter without subgroup operations gets (workgroup-memory reductions).
  {
    name: "webgpu-nosubgroups",
    open: async () =>
      createWebGpuBackend(await createWebGpuDevice({ label: "conformance" }), { subgroups: false }),
  },
];

// SPECLOOP_CONFORMANCE_BACKENDS (names, comma-separated) and SPECLOOP_CONFORMANCE_OPS (a regular expression
// over "op case-name") narrow a run: lavapipe is slow, and the GPU machine runs the webgpu rows from a bundle.
const onlyBackends = process.env.SPECLOOP_CONFORMANCE_BACKENDS?.split(",");
const onlyOps = new RegExp(process.env.SPECLOOP_CONFORMANCE_OPS ?? "");
const BACKENDS = ALL_BACKENDS.filter((b) => onlyBackends?.includes(b.name) ?? true);

interface Case {
  op: string;
  name: string;
  /** Largest normalised error (sum (a - b)^2 / sum b^2) against the reference; 0: exact. */
  maxNmse: number;
  run(b: TestBackend, rng: Rng): Promise<Float32Array | Int32Array>;
}

const DTYPES: DType[] = ["f32", "f16", "bf16"];
/** f32 arithmetic against the reference's f64 sums: errors near 1e-14; a wrong index or mask gives > 1e-3. */
const F32_NMSE = 1e-10;

function input(b: TestBackend, rng: Rng, rows: number, cols: number, scale = 1): Activation {
  return b.fromHost(rows, cols, uniform(rng, rows * cols, -scale, scale));
}

const cases: Case[] = [];

for (const [i, [n, k, m, bias]] of (
  [
    [1, 7, 5, false],
    [1, 513, 33, true],
    [3, 64, 129, false],
    [8, 1024, 40, true],
    [16, 513, 70, false],
    [17, 96, 33, true],
    [70, 100, 130, true],
    [144, 64, 40, false],
    [257, 96, 70, true],
  ] as const
).entries()) {
  const dtype = DTYPES[i % 3] as DType;
  cases.push({
    op: "matmul",
    name: `${dtype} [${n}, ${k}] x [${m}, ${k}]^T${bias ? " + bias" : ""}`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const w = b.loadWeight("w", randomWeight(rng, [m, k], dtype));
      const bw = bias ? b.loadWeight("b", randomWeight(rng, [m], dtype)) : undefined;
      return b.readRows(b.matmul(input(b, rng, n, k), w, bw));
    },
  });
}

// Every decode/verify width the kernel tiles differently (n = 1..16), over odd output and inner sizes.
for (let n = 1; n <= 16; n++) {
  const [k, m] = [
    [513, 7],
    [7, 513],
    [64, 1],
    [100, 33],
  ][n % 4] as [number, number];
  const dtype = DTYPES[n % 3] as DType;
  cases.push({
    op: "matmul",
    name: `n = ${n}: ${dtype} [${n}, ${k}] x [${m}, ${k}]^T + bias`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const w = b.loadWeight("w", randomWeight(rng, [m, k], dtype));
      const bw = b.loadWeight("b", randomWeight(rng, [m], "f32"));
      return b.readRows(b.matmul(input(b, rng, n, k), w, bw));
    },
  });
}

// The optional fused ops, on the matrix-vector path (one chunk of n <= 16 rows, or several: n = 17, 40; odd
// k for the partial chunk) and past it (n = 257: the backend's own fallback). A backend without the op is
// checked through the plain ops, which is what forward() runs for it.
for (const [i, [n, k, m, bias]] of (
  [
    [1, 513, 33, true],
    [3, 64, 129, false],
    [16, 100, 70, true],
    [17, 96, 33, false],
    [40, 100, 70, true],
    [257, 96, 33, false],
  ] as const
).entries()) {
  const dtype = DTYPES[i % 3] as DType;
  cases.push({
    op: "matmulAdd",
    name: `${dtype} [${n}, ${k}] x [${m}, ${k}]^T${bias ? " + bias" : ""} + residual`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const w = b.loadWeight("w", randomWeight(rng, [m, k], dtype));
      const bw = bias ? b.loadWeight("b", randomWeight(rng, [m], dtype)) : undefined;
      const x = input(b, rng, n, k);
      const res = input(b, rng, n, m, 4);
      const y = b.matmulAdd ? b.matmulAdd(x, w, res, bw) : b.add(res, b.matmul(x, w, bw));
      return b.readRows(y);
    },
  });
  cases.push({
    op: "gateUpSilu",
    name: `${dtype} [${n}, ${k}] x 2 x [${m}, ${k}]^T`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const g = b.loadWeight("gate", randomWeight(rng, [m, k], dtype));
      const u = b.loadWeight("up", randomWeight(rng, [m, k], dtype));
      const x = input(b, rng, n, k, 3);
      const y = b.gateUpSilu ? b.gateUpSilu(x, g, u) : b.siluMul(b.matmul(x, g), b.matmul(x, u));
      return b.readRows(y);
    },
  });
  // GQA shapes: k and v narrower than q; with biases (Qwen2) the fused kernel does not apply.
  cases.push({
    op: "qkvProject",
    name: `${dtype} [${n}, ${k}] x [${m} + ${m >> 1} + ${m >> 1}, ${k}]^T${bias ? " + biases" : ""}`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const [wq, wk, wv] = [m, m >> 1, m >> 1].map((rows, j) =>
        b.loadWeight(`w${j}`, randomWeight(rng, [rows, k], dtype)),
      ) as [Weight, Weight, Weight];
      const biases = bias
        ? {
            q: b.loadWeight("bq", randomWeight(rng, [m], dtype)),
            k: b.loadWeight("bk", randomWeight(rng, [m >> 1], dtype)),
            v: b.loadWeight("bv", randomWeight(rng, [m >> 1], dtype)),
          }
        : {};
      const x = input(b, rng, n, k);
      const out = b.qkvProject
        ? b.qkvProject(x, wq, wk, wv, biases)
        : { q: b.matmul(x, wq, biases.q), k: b.matmul(x, wk, biases.k), v: b.matmul(x, wv, biases.v) };
      const parts = [await b.readRows(out.q), await b.readRows(out.k), await b.readRows(out.v)];
      const all = new Float32Array(parts.reduce((t, p) => t + p.length, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      return all;
    },
  });
}

// The optional RMSNorm-fused products: on the matrix-vector path with k a multiple of 8 (16-byte x loads)
// and not (a partial chunk), in one chunk of rows (n <= 16) or several (n = 17, 33), and past it (n = 257:
// the backend's own fallback); and wide enough for the webgpu backend's skinny program by default (m >=
// 3,072; from 32,768, an LM head's width, two outputs a lane).
for (const [i, [n, k, m]] of (
  [
    [1, 1024, 64],
    [3, 513, 33],
    [16, 96, 40],
    [17, 64, 33],
    [33, 513, 40],
    [257, 64, 33],
    [9, 100, 4100],
    [5, 72, 32776],
  ] as const
).entries()) {
  const dtype = DTYPES[i % 3] as DType;
  const normOf = (b: TestBackend, rng: Rng) => ({
    weight: b.loadWeight("norm", randomWeight(rng, [k], DTYPES[(i + 1) % 3] as DType, 0.5, 1.5)),
    eps: 1e-6,
  });
  cases.push({
    op: "rmsNormMatmul",
    name: `${dtype} rmsNorm([${n}, ${k}]) x [${m}, ${k}]^T`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const norm = normOf(b, rng);
      const w = b.loadWeight("w", randomWeight(rng, [m, k], dtype));
      const x = input(b, rng, n, k, 3);
      const y = b.rmsNormMatmul
        ? b.rmsNormMatmul(x, norm, w)
        : b.matmul(b.rmsNorm(x, norm.weight, norm.eps), w);
      return b.readRows(y);
    },
  });
  cases.push({
    op: "rmsNormGateUpSilu",
    name: `${dtype} rmsNorm([${n}, ${k}]) x 2 x [${m}, ${k}]^T`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const norm = normOf(b, rng);
      const g = b.loadWeight("gate", randomWeight(rng, [m, k], dtype));
      const u = b.loadWeight("up", randomWeight(rng, [m, k], dtype));
      const x = input(b, rng, n, k, 3);
      let y: Activation;
      if (b.rmsNormGateUpSilu) y = b.rmsNormGateUpSilu(x, norm, g, u);
      else {
        const xn = b.rmsNorm(x, norm.weight, norm.eps);
        y = b.siluMul(b.matmul(xn, g), b.matmul(xn, u));
      }
      return b.readRows(y);
    },
  });
  // With biases (Qwen2) on every other shape.
  const bias = i % 2 === 1;
  cases.push({
    op: "rmsNormQkvProject",
    name: `${dtype} rmsNorm([${n}, ${k}]) x [${m} + ${m >> 1} + ${m >> 1}, ${k}]^T${bias ? " + biases" : ""}`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const norm = normOf(b, rng);
      const [wq, wk, wv] = [m, m >> 1, m >> 1].map((rows, j) =>
        b.loadWeight(`w${j}`, randomWeight(rng, [rows, k], dtype)),
      ) as [Weight, Weight, Weight];
      const biases = bias
        ? {
            q: b.loadWeight("bq", randomWeight(rng, [m], dtype)),
            k: b.loadWeight("bk", randomWeight(rng, [m >> 1], dtype)),
            v: b.loadWeight("bv", randomWeight(rng, [m >> 1], dtype)),
          }
        : {};
      const x = input(b, rng, n, k, 3);
      let out: { q: Activation; k: Activation; v: Activation };
      if (b.rmsNormQkvProject) out = b.rmsNormQkvProject(x, norm, wq, wk, wv, biases);
      else {
        const xn = b.rmsNorm(x, norm.weight, norm.eps);
        out = { q: b.matmul(xn, wq, biases.q), k: b.matmul(xn, wk, biases.k), v: b.matmul(xn, wv, biases.v) };
      }
      const parts = [await b.readRows(out.q), await b.readRows(out.k), await b.readRows(out.v)];
      return Float32Array.from(parts.flatMap((p) => Array.from(p)));
    },
  });
}

for (const dtype of DTYPES) {
  cases.push({
    op: "embed",
    name: `${dtype} table [37, 513], repeated ids`,
    maxNmse: 0,
    run: async (b, rng) => {
      const t = b.loadWeight("embed", randomWeight(rng, [37, 513], dtype));
      return b.readRows(b.embed(t, Int32Array.from([36, 0, 5, 5, 17])));
    },
  });
}

for (const [i, [rows, cols, group]] of (
  [
    [3, 513, 513],
    [5, 256, 64],
    [2, 1024, 128],
  ] as const
).entries()) {
  const dtype = DTYPES[i] as DType;
  cases.push({
    op: "rmsNorm",
    name: `${dtype} [${rows}, ${cols}] groups of ${group}`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const w = b.loadWeight("norm", randomWeight(rng, [group], dtype, 0.5, 1.5));
      return b.readRows(b.rmsNorm(input(b, rng, rows, cols, 3), w, 1e-6, group));
    },
  });
}

/** A batch of one row per position (no sequences) and Qwen's RoPE (theta 1e6) for the rope cases. */
function ropeBatch(b: TestBackend, positions: readonly number[], headDim: number) {
  const rows = positions.length;
  const layout: BatchLayout = {
    sequences: [],
    rows,
    positions: Int32Array.from(positions),
    slots: new Int32Array(rows),
  };
  const spec = { headDim, theta: 1e6, invFreq: defaultInvFreq(headDim, 1e6) };
  return { rows, batch: b.prepareBatch(layout, 16), spec };
}

for (const [headDim, heads, positions] of [
  [64, 3, [0, 1, 7, 513]],
  [128, 2, [5, 4095, 32768, 131071, 9]],
] as const) {
  cases.push({
    op: "rope",
    name: `head dim ${headDim}, ${heads} heads, positions up to ${Math.max(...positions)}`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const { rows, batch, spec } = ropeBatch(b, positions, headDim);
      return b.readRows(b.rope(input(b, rng, rows, heads * headDim), batch, spec));
    },
  });
}

// Qwen3's q/k norm then RoPE; a backend without the fused op is checked through rmsNorm then rope.
for (const [i, [headDim, heads, positions]] of (
  [
    [64, 3, [0, 1, 7, 513]],
    [128, 2, [5, 4095, 131071]],
  ] as const
).entries()) {
  const dtype = DTYPES[i + 1] as DType;
  cases.push({
    op: "rmsNormRope",
    name: `${dtype} head dim ${headDim}, ${heads} heads, positions up to ${Math.max(...positions)}`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => {
      const { rows, batch, spec } = ropeBatch(b, positions, headDim);
      const w = b.loadWeight("norm", randomWeight(rng, [headDim], dtype, 0.5, 1.5));
      const x = input(b, rng, rows, heads * headDim, 3);
      const y = b.rmsNormRope
        ? b.rmsNormRope(x, w, 1e-6, batch, spec)
        : b.rope(b.rmsNorm(x, w, 1e-6, headDim), batch, spec);
      return b.readRows(y);
    },
  });
}

for (const [rows, cols] of [
  [1, 7],
  [7, 513],
] as const) {
  cases.push({
    op: "siluMul",
    name: `[${rows}, ${cols}]`,
    maxNmse: F32_NMSE,
    run: async (b, rng) => b.readRows(b.siluMul(input(b, rng, rows, cols, 10), input(b, rng, rows, cols))),
  });
  cases.push({
    op: "add",
    name: `[${rows}, ${cols}]`,
    maxNmse: 0,
    run: async (b, rng) => b.readRows(b.add(input(b, rng, rows, cols), input(b, rng, rows, cols))),
  });
}

cases.push({
  op: "gatherRows",
  name: "[9, 33] rows 8, 0, 0, 3",
  maxNmse: 0,
  run: async (b, rng) => b.readRows(b.gatherRows(input(b, rng, 9, 33), Int32Array.from([8, 0, 0, 3]))),
});

for (const [rows, cols] of [
  [1, 7],
  [3, 513],
  [2, 1500],
] as const) {
  cases.push({
    op: "argmax",
    name: `[${rows}, ${cols}] tie-free`,
    maxNmse: 0,
    run: async (b, rng) => {
      // A shuffled ramp per row: every value distinct, the maximum anywhere.
      const values = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        const row = Array.from({ length: cols }, (_, c) => c / cols - 0.5);
        for (let c = cols - 1; c > 0; c--) {
          const j = Math.floor(rng.next() * (c + 1));
          [row[c], row[j]] = [row[j] as number, row[c] as number];
        }
        values.set(row, r * cols);
      }
      return b.argmaxRows(b.fromHost(rows, cols, values));
    },
  });
}
cases.push({
  op: "argmax",
  name: "[2, 9000] ties in different slices of a row: the lowest index wins",
  maxNmse: 0,
  run: async (b) => {
    const values = new Float32Array(18000);
    for (const at of [4500, 3, 8999, 9000 + 8998, 9000 + 4500]) values[at] = 1;
    return b.argmaxRows(b.fromHost(2, 9000, values));
  },
});
cases.push({
  op: "argmax",
  name: "[3, 10000] tie-free, the maximum past the first slice",
  maxNmse: 0,
  run: async (b, rng) => {
    const values = uniform(rng, 30000, -1, 1);
    values[7777] = 2;
    values[10000 + 9999] = 2;
    values[20000 + 4096] = 2;
    return b.argmaxRows(b.fromHost(3, 10000, values));
  },
});
cases.push({
  op: "argmax",
  name: "[2, 600] ties: the lowest index wins",
  maxNmse: 0,
  run: async (b) => {
    const values = new Float32Array(1200);
    for (const at of [3, 300, 599, 600 + 257, 600 + 511]) values[at] = 1;
    return b.argmaxRows(b.fromHost(2, 600, values));
  },
});

/** Each row a shuffled ramp over [-10, 10): logit-like, every value distinct, the largest anywhere. */
function shuffledRamps(rng: Rng, rows: number, cols: number): Float32Array {
  const values = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = Array.from({ length: cols }, (_, c) => 20 * (c / cols - 0.5));
    for (let c = cols - 1; c > 0; c--) {
      const j = Math.floor(rng.next() * (c + 1));
      [row[c], row[j]] = [row[j] as number, row[c] as number];
    }
    values.set(row, r * cols);
  }
  return values;
}

/** topKRows where the backend has it, else what its callers do: read the rows back and take them on the host. */
async function topK(b: TestBackend, x: Activation, k: number) {
  if (b.topKRows) return b.topKRows(x, k);
  const data = await b.readRows(x);
  return topKOf(new RefActivation(x.rows, x.cols, data), k);
}

/** The log-sum-exp's bound: f32 exp summed in f64 against f64 throughout, both rounded to f32 (~1e-7 relative). */
const LSE_NMSE = 1e-12;

// Softmax + top-k: odd widths, a single column, k = 1, 8, 20 and k = cols, and Qwen's vocabulary (151936);
// the cpu row splits every call's columns over its 3 threads (minTopKSplit 0), so records of uneven and empty
// shares are merged. Ids and values must be exact (values as the row holds them, ids as floats after them);
// the log-sum-exp within LSE_NMSE.
for (const [rows, cols, k] of [
  [1, 1, 1],
  [1, 513, 1],
  [3, 513, 8],
  [2, 513, 20],
  [5, 37, 37],
  [4, 8193, 20],
  [1, 151936, 8],
] as const) {
  cases.push({
    op: "topKRows",
    name: `[${rows}, ${cols}] k = ${k} tie-free: ids and values`,
    maxNmse: 0,
    run: async (b, rng) => {
      const t = await topK(b, b.fromHost(rows, cols, shuffledRamps(rng, rows, cols)), k);
      assert.equal(t.k, k);
      return Float32Array.from([...t.values, ...t.ids]);
    },
  });
  cases.push({
    op: "topKRows",
    name: `[${rows}, ${cols}] k = ${k}: logSumExp`,
    maxNmse: LSE_NMSE,
    run: async (b, rng) =>
      (await topK(b, b.fromHost(rows, cols, shuffledRamps(rng, rows, cols)), k)).logSumExp,
  });
}
for (const [rows, cols, k, ones] of [
  [2, 600, 6, [3, 300, 599, 600 + 257, 600 + 511]],
  [2, 9000, 6, [4500, 3, 8999, 9000 + 4500, 9000 + 8998]],
] as const) {
  cases.push({
    op: "topKRows",
    name: `[${rows}, ${cols}] k = ${k} ties: the lowest id first`,
    maxNmse: 0,
    run: async (b) => {
      // Ones among zeros: the ones by id, then the lowest-id zeros; past the split, ties span shares.
      const values = new Float32Array(rows * cols);
      for (const at of ones) values[at] = 1;
      const t = await topK(b, b.fromHost(rows, cols, values), k);
      return Float32Array.from([...t.values, ...t.ids, ...t.logSumExp]);
    },
  });
}

interface AttentionSpec {
  seqs: SeqSpec[];
  heads: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
  /** Keep tree nodes [srcNodes] of sequence 0 as its next tokens (copyKv), then attend one more token. */
  keep?: number[];
}

async function attentionCase(b: TestBackend, rng: Rng, s: AttentionSpec): Promise<Float32Array> {
  const numBlocks = 40;
  const layout = makeLayout(rng, s.seqs, s.blockSize, numBlocks);
  const width = s.kvHeads * s.headDim;
  const kv = b.createKvStorage({
    numLayers: 2,
    numBlocks,
    blockSize: s.blockSize,
    numKvHeads: s.kvHeads,
    headDim: s.headDim,
  });
  const scale = 1 / Math.sqrt(s.headDim);
  const layer = 1;
  const pre = prefillLayout(layout, s.blockSize);
  if (pre.rows > 0) {
    const pb = b.prepareBatch(pre, s.blockSize);
    b.writeKv(kv, layer, input(b, rng, pre.rows, width, 2), input(b, rng, pre.rows, width), pb);
  }
  const batch = b.prepareBatch(layout, s.blockSize);
  b.writeKv(kv, layer, input(b, rng, layout.rows, width, 2), input(b, rng, layout.rows, width), batch);
  const out = await b.readRows(
    b.attention(input(b, rng, layout.rows, s.heads * s.headDim, 2), kv, layer, batch, s.heads, scale),
  );
  if (!s.keep) return out;
  // Move the kept nodes' K and V down to the positions right after the cache, as an accepted branch.
  const seq = layout.sequences[0]!;
  const slotOf = (p: number) =>
    (seq.blockTable[Math.floor(p / s.blockSize)] as number) * s.blockSize + (p % s.blockSize);
  const src = Int32Array.from(s.keep, (node) => slotOf(seq.cachedTokens + node));
  const dst = Int32Array.from(s.keep, (_, i) => slotOf(seq.cachedTokens + i));
  b.copyKv(kv, src, dst);
  const cached = seq.cachedTokens + s.keep.length;
  const next: BatchLayout = {
    sequences: [{ rowStart: 0, newTokens: 1, cachedTokens: cached, blockTable: seq.blockTable }],
    rows: 1,
    positions: Int32Array.from([cached]),
    slots: Int32Array.from([slotOf(cached)]),
  };
  const nb = b.prepareBatch(next, s.blockSize);
  b.writeKv(kv, layer, input(b, rng, 1, width, 2), input(b, rng, 1, width), nb);
  const after = await b.readRows(
    b.attention(input(b, rng, 1, s.heads * s.headDim, 2), kv, layer, nb, s.heads, scale),
  );
  return Float32Array.from([...out, ...after]);
}

const ATTENTION: [string, AttentionSpec][] = [
  [
    "3 chains (cached 5/0/17, new 1/4/2), GQA 1, head dim 64",
    {
      seqs: [
        { cached: 5, newTokens: 1 },
        { cached: 0, newTokens: 4 },
        { cached: 17, newTokens: 2 },
      ],
      heads: 4,
      kvHeads: 4,
      headDim: 64,
      blockSize: 4,
    },
  ],
  [
    "2 chains (cached 70/3, new 1/7), GQA 3, head dim 128",
    {
      seqs: [
        { cached: 70, newTokens: 1 },
        { cached: 3, newTokens: 7 },
      ],
      heads: 6,
      kvHeads: 2,
      headDim: 128,
      blockSize: 16,
    },
  ],
  [
    "a tree of 5 and a forest of 5 beside a chain, GQA 3, head dim 64",
    {
      seqs: [
        { cached: 9, newTokens: 5, parents: [-1, 0, 0, 1, 2] },
        { cached: 0, newTokens: 5, parents: [-1, -1, 0, 1, 1] },
        { cached: 2, newTokens: 3 },
      ],
      heads: 3,
      kvHeads: 1,
      headDim: 64,
      blockSize: 4,
    },
  ],
  [
    // Head dims off the cpu kernel's 32-dimension chunks: 80 = 2 x 32 + 4 x 4, 18 = 4 x 4 + 2.
    "2 chains (cached 9/30, new 3/1), GQA 2, head dim 80",
    {
      seqs: [
        { cached: 9, newTokens: 3 },
        { cached: 30, newTokens: 1 },
      ],
      heads: 4,
      kvHeads: 2,
      headDim: 80,
      blockSize: 8,
    },
  ],
  [
    "a chain (cached 13, new 2), GQA 1, head dim 18",
    {
      seqs: [{ cached: 13, newTokens: 2 }],
      heads: 3,
      kvHeads: 3,
      headDim: 18,
      blockSize: 4,
    },
  ],
  [
    "tree of 5, keep branch 0-2-4 (copyKv), then one token",
    {
      seqs: [{ cached: 6, newTokens: 5, parents: [-1, 0, 0, 1, 2] }],
      heads: 2,
      kvHeads: 2,
      headDim: 64,
      blockSize: 4,
      keep: [0, 2, 4],
    },
  ],
];
for (const [name, spec] of ATTENTION) {
  cases.push({
    op: spec.keep ? "copyKv" : "attention",
    name,
    maxNmse: F32_NMSE,
    run: (b, rng) => attentionCase(b, rng, spec),
  });
}

interface RopeAttentionSpec {
  /** Decode cases: each sequence two steps of one new token (newTokens 2 here), the second reading the first's K/V. */
  seqs: SeqSpec[];
  decode: boolean;
  heads: number;
  kvHeads: number;
  headDim: number;
  qkNorm: DType | null;
}

/** Step `step` of a decode over `layout`'s sequences: each one token, at cachedTokens + step. */
function decodeStep(layout: BatchLayout, blockSize: number, step: number): BatchLayout {
  const sequences = layout.sequences.map((s, i) => ({
    rowStart: i,
    newTokens: 1,
    cachedTokens: s.cachedTokens + step,
    blockTable: s.blockTable,
  }));
  const slotOf = (s: (typeof sequences)[number]) =>
    (s.blockTable[Math.floor(s.cachedTokens / blockSize)] as number) * blockSize +
    (s.cachedTokens % blockSize);
  return {
    sequences,
    rows: sequences.length,
    positions: Int32Array.from(sequences, (s) => s.cachedTokens),
    slots: Int32Array.from(sequences, slotOf),
  };
}

async function ropeAttentionCase(b: TestBackend, rng: Rng, s: RopeAttentionSpec): Promise<Float32Array> {
  const blockSize = 4;
  const numBlocks = 40;
  const layout = makeLayout(rng, s.seqs, blockSize, numBlocks);
  const width = s.kvHeads * s.headDim;
  const kv = b.createKvStorage({
    numLayers: 2,
    numBlocks,
    blockSize,
    numKvHeads: s.kvHeads,
    headDim: s.headDim,
  });
  const layer = 1;
  const scale = 1 / Math.sqrt(s.headDim);
  const rope = { headDim: s.headDim, theta: 1e6, invFreq: defaultInvFreq(s.headDim, 1e6) };
  const qkNorm = s.qkNorm
    ? {
        q: b.loadWeight("qn", randomWeight(rng, [s.headDim], s.qkNorm, 0.5, 1.5)),
        k: b.loadWeight("kn", randomWeight(rng, [s.headDim], s.qkNorm, 0.5, 1.5)),
        eps: 1e-6,
      }
    : undefined;
  const pre = prefillLayout(layout, blockSize);
  if (pre.rows > 0) {
    const pb = b.prepareBatch(pre, blockSize);
    b.writeKv(kv, layer, input(b, rng, pre.rows, width, 2), input(b, rng, pre.rows, width), pb);
  }
  const run = async (l: BatchLayout) => {
    const batch = b.prepareBatch(l, blockSize);
    const q = input(b, rng, l.rows, s.heads * s.headDim, 2);
    const k = input(b, rng, l.rows, width, 2);
    const v = input(b, rng, l.rows, width);
    if (b.ropeAttention) {
      return b.readRows(b.ropeAttention(q, k, v, kv, layer, batch, rope, s.heads, scale, qkNorm));
    }
    const prep = (x: Activation, w: Weight | undefined) =>
      b.rope(w && qkNorm ? b.rmsNorm(x, w, qkNorm.eps, s.headDim) : x, batch, rope);
    b.writeKv(kv, layer, prep(k, qkNorm?.k), v, batch);
    return b.readRows(b.attention(prep(q, qkNorm?.q), kv, layer, batch, s.heads, scale));
  };
  if (!s.decode) return run(layout);
  const first = await run(decodeStep(layout, blockSize, 0));
  const second = await run(decodeStep(layout, blockSize, 1));
  return Float32Array.from([...first, ...second]);
}

const ROPE_ATTENTION: [string, RopeAttentionSpec][] = [
  [
    "decode, 2 steps of 3 sequences (cached 5/0/17), GQA 2, head dim 128, bf16 q/k norm",
    {
      seqs: [
        { cached: 5, newTokens: 2 },
        { cached: 0, newTokens: 2 },
        { cached: 17, newTokens: 2 },
      ],
      decode: true,
      heads: 4,
      kvHeads: 2,
      headDim: 128,
      qkNorm: "bf16",
    },
  ],
  [
    "decode, 2 steps of 2 sequences (cached 70/3), GQA 1, head dim 64, no q/k norm",
    {
      seqs: [
        { cached: 70, newTokens: 2 },
        { cached: 3, newTokens: 2 },
      ],
      decode: true,
      heads: 3,
      kvHeads: 3,
      headDim: 64,
      qkNorm: null,
    },
  ],
  [
    "chains and a tree in one pass, GQA 3, head dim 64, f32 q/k norm",
    {
      seqs: [
        { cached: 9, newTokens: 5, parents: [-1, 0, 0, 1, 2] },
        { cached: 0, newTokens: 4 },
        { cached: 2, newTokens: 1 },
      ],
      decode: false,
      heads: 3,
      kvHeads: 1,
      headDim: 64,
      qkNorm: "f32",
    },
  ],
];
for (const [name, spec] of ROPE_ATTENTION) {
  cases.push({
    op: "ropeAttention",
    name,
    maxNmse: F32_NMSE,
    run: (b, rng) => ropeAttentionCase(b, rng, spec),
  });
}

let reference: TestBackend;
const opened = new Map<string, TestBackend>();

before(async () => {
  reference = new ReferenceBackend();
  for (const row of BACKENDS) opened.set(row.name, await row.open());
});

after(() => {
  for (const b of opened.values()) b.destroy();
});

test("backend conformance - every op of every backend matches the reference", async (t) => {
  const summary: string[] = [];
  for (const row of BACKENDS) {
    for (const c of cases.filter((c) => onlyOps.test(`${c.op} ${c.name}`))) {
      await t.test(`${row.name} ${c.op} ${c.name}`, async () => {
        const caseName = `${c.op} ${c.name}`;
        const expected = await c.run(reference, seeded(caseName));
        const actual = await c.run(opened.get(row.name) as TestBackend, seeded(caseName));
        assert.equal(firstNonFinite(expected), -1, "the reference itself produced a NaN or infinity");
        const bad = firstNonFinite(actual);
        assert.equal(bad, -1, `non-finite value ${actual[bad]} at ${bad}`);
        assert.equal(actual.length, expected.length, "output length");
        const err = nmse(actual, expected);
        summary.push(
          `${row.name}\t${c.op}\t${c.name}\tnmse ${err.toExponential(2)}\tmax abs ${maxAbs(actual, expected).toExponential(2)}`,
        );
        if (c.maxNmse === 0) assert.deepEqual(Array.from(actual), Array.from(expected));
        else assert.ok(err <= c.maxNmse, `nmse ${err} above ${c.maxNmse}`);
      });
    }
  }
  t.diagnostic(`\n${summary.join("\n")}`);
});
