// cpu backend: splitting a product across threads changes no bit of it, weights stay in their dtype's
// bytes, and the worker pool never keeps a process alive (after destroy(), or if destroy() is forgotten).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
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
