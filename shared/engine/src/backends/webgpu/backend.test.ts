// The webgpu backend as a whole (its ops one by one are in ../conformance.test.ts): the bundled tiny-code
// model's logits and greedy tokens match transformers' as on the reference backend, greedy generate() one
// step ahead (ids kept on the device) gives what the host loop gives, a repeated forward reuses pooled
// buffers and submits once per read, Dawn errors surface at the read, and a process that destroys the
// backend exits by itself.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Backend } from "../../backend.js";
import { WebGpuKernelError } from "../../errors.js";
import { type GenerateRequest, generate } from "../../generate.js";
import { loadModelDir } from "../../loader/hf-model.js";
import { Model } from "../../model/model.js";
import { runParity } from "../../model/parity-support.js";
import { f32Tensor } from "../../tensor.js";
import { createWebGpuBackend } from "./backend.js";
import { createWebGpuDevice } from "./device.js";
import { gpuBuf } from "./resources.js";

const TINY_CODE = fileURLToPath(new URL("../../../../../models/tiny-code/", import.meta.url));
const TINY_DRAFT = fileURLToPath(new URL("../../../../../models/tiny-code-draft/", import.meta.url));

// lavapipe runs the model at a few GFLOP/s: the inputs of up to 35 tokens and the first greedy tokens keep
// this test to seconds (model/parity.test.ts runs every input on the reference backend).
const MAX_PROMPT = 35;
const GREEDY_TOKENS = 8;

test("webgpu backend - tiny-code matches transformers: top-8 logits at every position, greedy tokens", async () => {
  const be = createWebGpuBackend(await createWebGpuDevice({ label: "tiny-code" }));
  try {
    const { maxDiff, where, greedy } = await runParity(be, TINY_CODE, {
      inputs: (i) => i.input_ids.length <= MAX_PROMPT,
      greedyTokens: GREEDY_TOKENS,
      label: "tiny-code on webgpu",
    });
    // The parity test's bound for the reference backend (model/parity.test.ts).
    assert.ok(maxDiff <= 2e-3, `max |logit diff| ${maxDiff} at ${where}`);
    for (const g of greedy) assert.deepEqual(g.tokens, g.expected, `greedy continuation of ${g.name}`);
  } finally {
    be.destroy();
  }
});

test("webgpu backend - greedy generate() one step ahead (argmaxIds) equals the host loop", async () => {
  const be = createWebGpuBackend(await createWebGpuDevice({ label: "ahead" }));
  try {
    const source = await loadModelDir(TINY_DRAFT);
    // The same device and kernels without argmaxIds: generate() then reads every step's ids before the next.
    const hostOnly: Backend = Object.create(be, { argmaxIds: { value: undefined } });
    const ahead = Model.load(be, source);
    const host = Model.load(hostOnly, source);
    let aheadIds = 0;
    const argmaxIds = be.argmaxIds.bind(be);
    be.argmaxIds = (x) => {
      aheadIds++;
      return argmaxIds(x);
    };
    const prompts = [[0, 333, 288, 1986], [0], [0, 7536, 366, 4658, 1943, 7289, 544]];
    // Different limits (the batch shrinks twice) and, once the free run shows a token, a stop token there.
    const batch: GenerateRequest[] = prompts.map((prompt, i) => ({
      prompt,
      maxTokens: 5 + 4 * i,
      stopTokenIds: [],
    }));
    const plain = await generate(host, batch, { blockSize: 4 });
    assert.equal(aheadIds, 0);
    const run = await generate(ahead, batch, { blockSize: 4 });
    assert.ok(aheadIds >= run.stats.decodeSteps, "the one-step-ahead path ran");
    assert.deepEqual(
      run.outputs.map((o) => o.tokens),
      plain.outputs.map((o) => o.tokens),
    );
    assert.equal(run.stats.decodeTokens, plain.stats.decodeTokens);
    assert.equal(run.stats.decodeSteps, plain.stats.decodeSteps);
    const stop = plain.outputs[2]!.tokens[3]!;
    const stopping = batch.map((r) => ({ ...r, stopTokenIds: [stop] }));
    const plainStop = await generate(host, stopping, { blockSize: 4 });
    const aheadStop = await generate(ahead, stopping, { blockSize: 4 });
    assert.equal(plainStop.outputs[2]!.finishReason, "stop");
    assert.deepEqual(
      aheadStop.outputs.map((o) => [o.tokens, o.finishReason]),
      plainStop.outputs.map((o) => [o.tokens, o.finishReason]),
    );
    assert.equal(aheadStop.stats.decodeTokens, plainStop.stats.decodeTokens);
  } finally {
    be.destroy();
  }
});

test("webgpu backend - argmaxIds keeps the ids of its last 3 calls: they read as argmaxRows, older ones are refused", async () => {
  const be = createWebGpuBackend(await createWebGpuDevice({ label: "ids ring" }));
  try {
    const x = be.fromHost(2, 5, [0, 3, 1, 3, -1, 7, 2, 9, 9, 0]);
    const expected = Array.from(await be.argmaxRows(x));
    assert.deepEqual(expected, [1, 2]);
    const handles = [1, 2, 3, 4].map(() => be.argmaxIds(x));
    for (const h of handles.slice(1)) assert.deepEqual(Array.from(await be.readIds(h)), expected);
    await assert.rejects(be.readIds(handles[0]!), /overwritten/);
    const table = be.loadWeight("table", f32Tensor([5, 2], [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]));
    assert.throws(() => be.embedIds(table, handles[0]!), /overwritten/);
    assert.deepEqual(Array.from(await be.readRows(be.embedIds(table, handles[3]!))), [1, 1, 2, 2]);
  } finally {
    be.destroy();
  }
});

test("webgpu backend - a repeated forward reuses pooled buffers and submits once per read", async () => {
  const be = createWebGpuBackend(await createWebGpuDevice({ label: "pool" }));
  try {
    const w = be.loadWeight(
      "w",
      f32Tensor(
        [8, 8],
        Float32Array.from({ length: 64 }, (_, i) => (i % 7) / 7),
      ),
    );
    const step = async () => {
      let x = be.fromHost(2, 8, new Float32Array(16).fill(1));
      for (let i = 0; i < 3; i++) {
        const y = be.matmul(x, w);
        be.release(x);
        const z = be.gatherRows(y, Int32Array.from([0, 1]));
        be.release(y);
        const act = be.siluMul(z, z);
        be.release(z);
        x = be.add(act, act);
        be.release(act);
      }
      const ids = await be.argmaxRows(x);
      be.release(x);
      return ids;
    };
    await step();
    const first = be.stats();
    await step();
    await step();
    const later = be.stats();
    assert.equal(later.pool.created, first.pool.created, "a steady forward created new buffers");
    assert.equal(later.submits - first.submits, 2, "one submit per awaited read");
    assert.equal(later.pipelines, first.pipelines);
    assert.equal(first.weightBytes, 8 * 8 * 4);
  } finally {
    be.destroy();
  }
});

test("webgpu backend - a recording longer than one uniform arena chunk (64 KiB) computes every step", async () => {
  // No early submits: the whole recording is one encoder, so the arena has to grow past one chunk.
  const be = createWebGpuBackend(await createWebGpuDevice({ label: "arena" }), { submitEvery: 0 });
  try {
    // 64 KiB holds 4096 uniform blocks at lavapipe's 16-byte alignment (256 at the H100's 256 bytes).
    const steps = 4500;
    const one = be.fromHost(1, 4, [1, 1, 1, 1]);
    let x = be.fromHost(1, 4, [0, 1, 2, 3]);
    for (let i = 0; i < steps; i++) {
      const next = be.add(x, one);
      be.release(x);
      x = next;
    }
    const before = be.stats().submits;
    assert.deepEqual(Array.from(await be.readRows(x)), [steps, steps + 1, steps + 2, steps + 3]);
    assert.equal(be.stats().submits - before, 1);
  } finally {
    be.destroy();
  }
});

test("webgpu backend - early submits (submitEvery) compute what one submit per read does", async () => {
  const run = async (submitEvery: number) => {
    const be = createWebGpuBackend(await createWebGpuDevice({ label: "early submits" }), { submitEvery });
    try {
      const w = be.loadWeight(
        "w",
        f32Tensor(
          [8, 8],
          Float32Array.from({ length: 64 }, (_, i) => ((i % 5) - 2) / 8),
        ),
      );
      let x = be.fromHost(
        2,
        8,
        Float32Array.from({ length: 16 }, (_, i) => i / 16),
      );
      const before = be.stats().submits;
      for (let i = 0; i < 40; i++) {
        const y = be.matmulAdd(x, w, x);
        be.release(x);
        x = y;
      }
      const recorded = be.stats().submits - before;
      return { values: Array.from(await be.readRows(x)), recorded, total: be.stats().submits - before };
    } finally {
      be.destroy();
    }
  };
  const early = await run(7);
  const once = await run(0);
  assert.deepEqual(early.values, once.values);
  assert.equal(early.recorded, 5, "40 dispatches, a submit every 7");
  assert.equal(once.recorded, 0);
  assert.equal(once.total, 1);
});

test("webgpu backend - a Dawn validation error fails the next read loudly", async () => {
  const be = createWebGpuBackend(await createWebGpuDevice({ label: "errors" }));
  try {
    const x = be.fromHost(1, 4, [1, 2, 3, 4]);
    const y = be.add(x, x);
    // A buffer destroyed behind the backend's back makes the recorded submit invalid.
    gpuBuf(y).destroy();
    await assert.rejects(be.readRows(y), WebGpuKernelError);
  } finally {
    be.destroy();
  }
});

test("webgpu backend - a process that destroys the backend exits by itself", () => {
  const script = `
    import { createWebGpuBackend } from "./backend.ts";
    import { createWebGpuDevice } from "./device.ts";
    const be = createWebGpuBackend(await createWebGpuDevice());
    const x = be.fromHost(1, 3, [1, 5, 2]);
    console.log((await be.argmaxRows(be.add(x, x)))[0]);
    be.destroy();
  `;
  const child = spawnSync(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "--input-type=module", "-e", script],
    { cwd: fileURLToPath(new URL(".", import.meta.url)), encoding: "utf8", timeout: 30_000 },
  );
  assert.equal(child.signal, null, `the process did not exit by itself: ${child.stderr}`);
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout.trim(), "1");
});
