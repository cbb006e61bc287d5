// The L2 prefetch of one-row products (WebGpuBackendOptions.prefetch: extra workgroups of a product read
// the weights of the product that followed it in the last step) changes nothing but timing: a greedy
// generate() of the bundled draft model at batch 1 gives the same tokens with it as without, bit for bit
// the same logits on a repeated step, and the prefetching programs did run (pipelines of their own).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { generate } from "../../generate.js";
import { loadModelDir } from "../../loader/hf-model.js";
import { Model } from "../../model/model.js";
import { randomWeight, seeded, uniform } from "../conformance-support.js";
import { createWebGpuBackend, type WebGpuBackend } from "./backend.js";
import { createWebGpuDevice } from "./device.js";

// Beside the source, or under the working directory where a bundle of this test runs (bench/gpu-run.sh).
const BESIDE = fileURLToPath(new URL("../../../../../models/tiny-code-draft/", import.meta.url));
const TINY_DRAFT = existsSync(BESIDE) ? BESIDE : resolve("models/tiny-code-draft");

/** Three chained one-row products (the last wider, as an LM head), read once: one "step". */
async function step(be: WebGpuBackend, weights: ReturnType<WebGpuBackend["loadWeight"]>[], x: Float32Array) {
  let h = be.fromHost(1, x.length, x);
  for (const w of weights) h = be.matmul(h, w);
  return be.readRows(h);
}

test("webgpu prefetch - chained one-row products read the same with and without it", async () => {
  const plain = createWebGpuBackend(await createWebGpuDevice({ label: "no prefetch" }));
  const prefetching = createWebGpuBackend(await createWebGpuDevice({ label: "prefetch" }), {
    prefetch: true,
  });
  try {
    const shapes: [number, number][] = [
      [96, 64],
      [40, 96],
      [5000, 40],
    ];
    const x = uniform(seeded("prefetch x"), 64);
    const load = (be: WebGpuBackend) =>
      shapes.map(([m, k], i) =>
        be.loadWeight(`w${i}`, randomWeight(seeded(`prefetch w${i}`), [m, k], "bf16")),
      );
    const [wp, wq] = [load(plain), load(prefetching)];
    const expected = await step(plain, wp, x);
    // The first step learns the order of the products; the next ones prefetch (the last product's target is
    // the first one's weights, for the step after).
    for (let i = 0; i < 3; i++) assert.deepEqual(await step(prefetching, wq, x), expected, `step ${i}`);
    assert.ok(prefetching.stats().pipelines > plain.stats().pipelines, "prefetching programs were built");
  } finally {
    plain.destroy();
    prefetching.destroy();
  }
});

test("webgpu prefetch - greedy generate() of the draft model gives the same tokens with it", async () => {
  const source = await loadModelDir(TINY_DRAFT);
  const run = async (prefetch: boolean) => {
    const be = createWebGpuBackend(await createWebGpuDevice({ label: `generate, prefetch ${prefetch}` }), {
      prefetch,
    });
    try {
      const model = Model.load(be, source);
      const out = await generate(model, [{ prompt: [0, 333, 288, 1986], maxTokens: 12, stopTokenIds: [] }], {
        blockSize: 4,
      });
      return out.outputs[0]?.tokens;
    } finally {
      be.destroy();
    }
  };
  assert.deepEqual(await run(true), await run(false));
});
