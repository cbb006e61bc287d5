// The argmax fused into a one-row LM head (ops/matmul.ts: the matrix-vector program writes each
// workgroup's best logit, ops/argmax.ts then runs its final pass alone) against the reference backend: the
// logits themselves, the ids through argmaxRows and through argmaxIds/readIds, ties between equal logits
// (two identical weight rows, in different workgroups and in the same one: the lower index wins), with and
// without the fused RMSNorm, with and without subgroups.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { HostTensor } from "../../tensor.js";
import { nmse, randomWeight, seeded, type TestBackend, uniform } from "../conformance-support.js";
import { ReferenceBackend } from "../reference/backend.js";
import { createWebGpuBackend, type WebGpuBackend } from "./backend.js";
import { createWebGpuDevice } from "./device.js";
import { ARGMAX_FUSED_MIN_OUTPUTS } from "./ops/matmul.js";

/** As the conformance test's bound: f32 sums against the reference's f64 ones. */
const F32_NMSE = 1e-10;

/** [m, k] bf16 weights whose row `copyTo` repeats row `copyFrom`: equal logits at both. */
function weightsWithTie(name: string, m: number, k: number, copyFrom: number, copyTo: number): HostTensor {
  const t = randomWeight(seeded(name), [m, k], "bf16");
  const words = new Uint16Array(t.data.buffer, t.data.byteOffset, m * k);
  words.copyWithin(copyTo * k, copyFrom * k, (copyFrom + 1) * k);
  return t;
}

let reference: ReferenceBackend;
let webgpu: WebGpuBackend;
let noSubgroups: WebGpuBackend;

before(async () => {
  reference = new ReferenceBackend();
  webgpu = createWebGpuBackend(await createWebGpuDevice({ label: "argmax fused" }));
  noSubgroups = createWebGpuBackend(await createWebGpuDevice({ label: "argmax fused, no subgroups" }), {
    subgroups: false,
  });
});

after(() => {
  webgpu?.destroy();
  noSubgroups?.destroy();
});

interface Head {
  m: number;
  k: number;
  norm: boolean;
  /** Row copied and where to: the tie. */
  tie: [number, number];
}

const HEADS: Head[] = [
  // An odd width (the last workgroup partly past m), rows far apart (different workgroups).
  { m: ARGMAX_FUSED_MIN_OUTPUTS + 905, k: 72, norm: true, tie: [4000, 17] },
  // k with a partial chunk, neighbouring rows (the same workgroup).
  { m: 8192, k: 100, norm: false, tie: [3001, 3000] },
];

/** The head's logits and ids on `b`; the maximum is planted at the tie's rows by scaling x. */
async function runHead(
  b: TestBackend,
  h: Head,
  name: string,
): Promise<{ logits: Float32Array; ids: number[] }> {
  const rng = seeded(`${name} x`);
  const w = b.loadWeight("lm_head", weightsWithTie(name, h.m, h.k, h.tie[0], h.tie[1]));
  const x = b.fromHost(1, h.k, uniform(rng, h.k, -1, 1));
  let logits: ReturnType<TestBackend["matmul"]>;
  if (h.norm) {
    const g = b.loadWeight("norm", randomWeight(rng, [h.k], "bf16", 0.5, 1.5));
    const fused = b.rmsNormMatmul?.(x, { weight: g, eps: 1e-6 }, w);
    logits = fused ?? b.matmul(b.rmsNorm(x, g, 1e-6), w);
  } else logits = b.matmul(x, w);
  const values = await b.readRows(logits);
  const ids = [...(await b.argmaxRows(logits))];
  if (b.argmaxIds && b.readIds) ids.push(...(await b.readIds(b.argmaxIds(logits))));
  b.release(logits);
  return { logits: values, ids };
}

test("webgpu argmax fused into the LM head - ids and logits match the reference, lowest index on ties", async (t) => {
  for (const h of HEADS) {
    for (const [label, be] of [
      ["subgroups", () => webgpu],
      ["no subgroups", () => noSubgroups],
    ] as const) {
      const name = `[1, ${h.k}] x [${h.m}, ${h.k}]^T${h.norm ? " (rmsNorm)" : ""}, tie ${h.tie}, ${label}`;
      await t.test(name, async () => {
        const expected = await runHead(reference, h, name);
        const b = be();
        const dispatches = b.stats().dispatches;
        const actual = await runHead(b, h, name);
        assert.ok(nmse(actual.logits, expected.logits) <= F32_NMSE, "logits");
        assert.deepEqual(actual.ids, [expected.ids[0], expected.ids[0]]);
        // The product, then one dispatch per argmax (argmaxRows, argmaxIds): the fused path ran.
        assert.equal(b.stats().dispatches - dispatches, 3, "dispatches");
        // Whether or not the random weights put the maximum on the tie, the tie's rows are equal logits.
        assert.equal(actual.logits[h.tie[0]], actual.logits[h.tie[1]]);
      });
    }
  }
});

test("webgpu argmax fused into the LM head - a planted maximum on a tie gives the lower index", async () => {
  // x = the tied row itself (bf16 values widened): its logit is the row's squared norm, far above the
  // others' (random rows are nearly orthogonal to it), at both the tied rows.
  const m = 5000;
  const k = 64;
  const [from, to] = [4321, 99];
  const w = weightsWithTie("planted", m, k, from, to);
  const words = new Uint16Array(w.data.buffer, w.data.byteOffset, m * k);
  const x = Float32Array.from({ length: k }, (_, i) => {
    const f = new Float32Array(new Uint32Array([(words[from * k + i] as number) << 16]).buffer)[0] as number;
    return 4 * f;
  });
  for (const b of [webgpu, noSubgroups]) {
    const logits = b.matmul(b.fromHost(1, k, x), b.loadWeight("lm_head", w));
    assert.deepEqual([...(await b.argmaxRows(logits))], [to]);
    b.release(logits);
  }
});
