// The `cpu` (WebAssembly SIMD) linear kernels against the reference ones, table-driven over odd shapes
// (rows and columns that fill no tile, inner widths that are not a multiple of four, the head's own
// widths), all three products, accumulation into existing values; and the committed module is exactly
// what its AssemblyScript source compiles to.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { Rng } from "../../sampling/rng.js";
import { compileKernels, GENERATED, generatedSource } from "../wasm/build.js";
import { REFERENCE_LINEAR } from "./linear-kernels.js";
import { wasmLinear } from "./linear-wasm.js";

const uniform = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => 2 * rng.next() - 1);

/** sum (a - b)^2 / sum b^2: f32 sums against f64 ones give ~1e-14; a wrong index gives ~1. */
function nmse(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return den === 0 ? num : num / den;
}

const SHAPES = [
  [1, 1, 1],
  [1, 7, 5],
  [3, 13, 9],
  [5, 8, 17],
  [8, 33, 16],
  [11, 64, 3],
  [17, 384, 130],
  [70, 768, 384],
  [4, 384, 1024],
] as const;

const cpu = wasmLinear();

for (const [rows, inF, outF] of SHAPES) {
  test(`train linear kernels - cpu equals reference: [${rows}, ${inF}] x [${outF}, ${inF}]^T, dx, dW`, () => {
    const rng = new Rng(rows * 1000 + inF * 10 + outF);
    const x = uniform(rng, rows * inF);
    const w = uniform(rng, outF * inF);
    const dy = uniform(rng, rows * outF);
    const base = uniform(rng, rows * inF);
    const dw0 = uniform(rng, outF * inF);
    const bound = 1e-10;
    const y = nmse(cpu.forward(x, w, rows, inF, outF), REFERENCE_LINEAR.forward(x, w, rows, inF, outF));
    assert.ok(y <= bound, `forward nmse ${y}`);
    const dx = nmse(
      cpu.backwardInput(dy, w, rows, inF, outF),
      REFERENCE_LINEAR.backwardInput(dy, w, rows, inF, outF),
    );
    assert.ok(dx <= bound, `dx nmse ${dx}`);
    const into = cpu.backwardInput(dy, w, rows, inF, outF, base.slice());
    const intoRef = REFERENCE_LINEAR.backwardInput(dy, w, rows, inF, outF, base.slice());
    assert.ok(nmse(into, intoRef) <= bound, "dx added into existing values");
    const dwCpu = dw0.slice();
    const dwRef = dw0.slice();
    cpu.backwardWeight(dy, x, rows, inF, outF, dwCpu);
    REFERENCE_LINEAR.backwardWeight(dy, x, rows, inF, outF, dwRef);
    const dw = nmse(dwCpu, dwRef);
    assert.ok(dw <= bound, `dW nmse ${dw}`);
    assert.throws(() => cpu.forward(x, w, rows, inF + 1, outF), RangeError);
  });
}

test("train linear kernels - the committed module is its AssemblyScript source's build", () => {
  assert.equal(
    readFileSync(GENERATED, "utf8"),
    generatedSource(compileKernels()),
    "run: npx tsx shared/engine/src/train/wasm/build.ts",
  );
});

test("train linear kernels - cpu is faster than reference on the head's fc shape", () => {
  const rng = new Rng(5);
  const [rows, inF, outF] = [64, 768, 384];
  const x = uniform(rng, rows * inF);
  const w = uniform(rng, outF * inF);
  const time = (f: () => void) => {
    f();
    const t = performance.now();
    for (let i = 0; i < 3; i++) f();
    return (performance.now() - t) / 3;
  };
  const ref = time(() => REFERENCE_LINEAR.forward(x, w, rows, inF, outF));
  const fast = time(() => cpu.forward(x, w, rows, inF, outF));
  console.log(
    `# fc forward [64, 768] x [384, 768]^T: reference ${ref.toFixed(1)} ms, cpu ${fast.toFixed(1)} ms`,
  );
  assert.ok(fast < ref, `cpu ${fast} ms vs reference ${ref} ms`);
});
