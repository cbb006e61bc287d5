// cpu backend: splitting a product (or a top-k) across threads changes no bit of it, weights stay in their dtype's
// bytes, and the worker pool never keeps a process alive (after destroy(), or if destroy() is forgotten).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import type { TopKRows } from "../../backend.js";
import { randomWeight, seeded, uniform } from "../conformance-support.js";
import { createCpuBackend } from "./backend.js";

test("cpu backend - a product split over 1, 2 and 5 threads gives the same bits", async () => {
  const rng = seeded("cpu split");
  const [n, k, m] = [5, 384, 1001];
  const w = randomWeight(rng, [m, k], "bf16");
  const x = uniform(rng, n * k);
  const results: Float32Array[] = [];
  for (const threads of [1, 2, 5]) {
    const b = await createCpuBackend({ threads, minSplitWork: 0 });
    try {
      assert.equal(b.threads, threads);
      results.push(await b.readRows(b.matmul(b.fromHost(n, k, x), b.loadWeight("w", w))));
    } finally {
      b.destroy();
    }
  }
  assert.deepEqual(results[1], results[0]);
  assert.deepEqual(results[2], results[0]);
});

test("cpu backend - chunk claims hold across many back-to-back jobs, split and not, on more threads than cores", async () => {
  // Late workers (woken for a job already finished by the others) must never run a chunk of the next one:
  // every result is compared with one thread's, bit for bit, over jobs that alternate between the main
  // thread alone and all threads.
  const rng = seeded("cpu claims");
  const small = randomWeight(rng, [8, 64], "bf16");
  const big = randomWeight(rng, [300, 128], "bf16");
  const up = randomWeight(rng, [300, 128], "bf16");
  const xs = [uniform(rng, 64), uniform(rng, 3 * 128), uniform(rng, 128)];
  const one = await createCpuBackend({ threads: 1 });
  const many = await createCpuBackend({ threads: 6, minSplitWork: 20000, minTopKSplit: 256 });
  try {
    const run = async (b: typeof one, i: number) => {
      const [ws, wb, wu] = [b.loadWeight("s", small), b.loadWeight("b", big), b.loadWeight("u", up)];
      const out: number[] = [];
      for (let r = 0; r < i; r++) {
        const a = await b.readRows(b.matmul(b.fromHost(1, 64, xs[0] as Float32Array), ws));
        const c = await b.readRows(b.matmul(b.fromHost(3, 128, xs[1] as Float32Array), wb));
        const g = b.gateUpSilu(b.fromHost(1, 128, xs[2] as Float32Array), wb, wu);
        const t = await b.topKRows(g, 5);
        out.push(
          a[r % 8] as number,
          c[(r * 7) % 900] as number,
          ...t.ids,
          ...(await b.readRows(g)).slice(0, 3),
        );
      }
      return out;
    };
    assert.deepEqual(await run(many, 300), await run(one, 300));
  } finally {
    one.destroy();
    many.destroy();
  }
});

test("cpu backend - topKRows split over 1, 2 and 5 threads gives the same answer, and refuses k outside [1, cols]", async () => {
  const rng = seeded("cpu topk split");
  const [rows, cols, k] = [3, 1001, 20];
  const x = uniform(rng, rows * cols, -8, 8);
  const answers: TopKRows[] = [];
  for (const threads of [1, 2, 5]) {
    const b = await createCpuBackend({ threads, minTopKSplit: 0 });
    try {
      answers.push(await b.topKRows(b.fromHost(rows, cols, x), k));
      await assert.rejects(b.topKRows(b.fromHost(rows, cols, x), 0), RangeError);
      await assert.rejects(b.topKRows(b.fromHost(rows, cols, x), cols + 1), RangeError);
    } finally {
      b.destroy();
    }
  }
  for (const a of answers.slice(1)) {
    assert.deepEqual(a.ids, answers[0]?.ids);
    assert.deepEqual(a.values, answers[0]?.values);
    // The partial sums are combined in a different order: equal to f32 rounding, not to the bit.
    a.logSumExp.forEach((v, r) => {
      assert.ok(Math.abs(v - (answers[0]?.logSumExp[r] as number)) <= 1e-5 * Math.abs(v), `row ${r}`);
    });
  }
});

test("cpu backend - 2-byte weights take 2 bytes of wasm memory, and embed widens only the rows asked for", async () => {
  const b = await createCpuBackend({ threads: 1 });
  try {
    const rng = seeded("cpu embed");
    const table = randomWeight(rng, [1000, 64], "bf16");
    const before = b.wasmBytes;
    const t = b.loadWeight("embed", table);
    assert.ok(
      b.wasmBytes - before <= 1000 * 64 * 2 + 64,
      `${b.wasmBytes - before} bytes for a bf16 [1000, 64]`,
    );
    const rows = await b.readRows(b.embed(t, Int32Array.from([999, 3])));
    const bits = new Uint16Array(table.data.buffer);
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    u32[0] = (bits[999 * 64] as number) << 16;
    assert.equal(rows[0], f32[0]);
    assert.throws(() => b.embed(t, Int32Array.from([1000])), RangeError);
  } finally {
    b.destroy();
  }
});

const backendUrl = new URL("./backend.ts", import.meta.url).href;

function runChild(destroy: boolean): { status: number | null; ms: number; out: string } {
  const script = [
    `import { createCpuBackend } from ${JSON.stringify(backendUrl)};`,
    "const b = await createCpuBackend({ threads: 4, minSplitWork: 0 });",
    'const w = b.loadWeight("w", { dtype: "f32", shape: [64, 8], data: new Uint8Array(64 * 8 * 4) });',
    "await b.readRows(b.matmul(b.fromHost(2, 8, new Float32Array(16)), w));",
    destroy ? "b.destroy();" : "",
    'console.log("done");',
  ].join("\n");
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "--input-type=module", "-e", script],
    { cwd: fileURLToPath(new URL(".", import.meta.url)), encoding: "utf8", timeout: 30_000 },
  );
  return { status: r.status, ms: Date.now() - started, out: `${r.stdout}${r.stderr}` };
}

test("cpu backend - the process exits once the backend is destroyed", () => {
  const r = runChild(true);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /done/);
});

test("cpu backend - idle workers do not keep the process alive even without destroy()", () => {
  const r = runChild(false);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /done/);
});
