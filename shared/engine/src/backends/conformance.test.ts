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
import { createWebGpuBackend } from "./webgpu/backend.js";
import { createWebGpuDevice } from "./webgpu/device.js";

interface BackendRow {
  name: string;
  open(): Promise<TestBackend>;
}

/** The backends checked against `reference`. */
const BACKENDS: BackendRow[] = [
  // 3 threads on any machine and every product split, so uneven column shares are exercised too.
  { name: "cpu", open: () => createCpuBackend({ threads: 3, minSplitWork: 0 }) },
  {
    name: "webgpu",
    open: async () => createWebGpuBackend(await createWebGpuDevice({ label: "conformance" })),
  },
];

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

// The optional fused ops, on the matrix-vector path (n <= 16, odd k for the partial chunk) and past it
// (n = 17: the backend's own fallback). A backend without the op is checked through the plain ops, which
// is what forward() runs for it.
for (const [i, [n, k, m, bias]] of (
  [
    [1, 513, 33, true],
    [3, 64, 129, false],
    [16, 100, 70, true],
    [17, 96, 33, false],
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
  name: "[2, 600] ties: the lowest index wins",
  maxNmse: 0,
  run: async (b) => {
    const values = new Float32Array(1200);
    for (const at of [3, 300, 599, 600 + 257, 600 + 511]) values[at] = 1;
    return b.argmaxRows(b.fromHost(2, 600, values));
  },
});

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
    for (const c of cases) {
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
