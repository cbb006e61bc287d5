// The cpu backend's matmul kernel on the bundled model's shapes, and end-to-end decode against reference:
//   node --conditions=source --import tsx bench/cpu-matmul.ts [--quick] [--kernel-only]
// Per shape [m, k] (bf16 weights, as tiny-code ships) and n = 1, 2, 4, 8, 16 positions, with 1 thread and
// all: microseconds per product, GFLOP/s (2 n k m / t), GB/s of weight bytes read (m k 2 / t: the bound at
// decode) and the cost relative to n = 1. Then the synchronisation choice (spinning on Atomics.load
// before Atomics.wait, against Atomics.wait alone) for n = 1 on all threads, and `specloop model generate`
// decode tokens/s on --backend cpu and reference (128 new tokens). Prints markdown for
// bench/results/cpu-matmul.md.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { createCpuBackend } from "../shared/engine/src/backends/cpu/backend.js";
import { MODE_LINEAR } from "../shared/engine/src/backends/cpu/kernel-abi.js";
import { KernelPool } from "../shared/engine/src/backends/cpu/pool.js";
import { DTYPE_CODE, kernelModule, sharedMemory, WasmHeap } from "../shared/engine/src/backends/cpu/wasm.js";
import { generate } from "../shared/engine/src/generate.js";
import { loadModelDir } from "../shared/engine/src/loader/hf-model.js";
import { Model } from "../shared/engine/src/model/model.js";

const quick = process.argv.includes("--quick");
/** The kernel tables only: no CLI run (which needs every package built) and no in-process decode. */
const kernelOnly = process.argv.includes("--kernel-only");
/** tiny-code: q/o [384, 384], k/v [128, 384], gate/up [768, 384], down [384, 768], tied LM head [8192, 384]. */
const SHAPES: [string, number, number][] = [
  ["q/o", 384, 384],
  ["k/v", 128, 384],
  ["gate/up", 768, 384],
  ["down", 384, 768],
  ["lm head", 8192, 384],
];
const NS = [1, 2, 4, 8, 16];
const all = availableParallelism();
const threadCounts = all > 1 ? [1, all] : [1];

const { module, relaxed } = kernelModule();

function fill(heap: WasmHeap, ptr: number, bytes: number): void {
  const b = heap.bytes(ptr, bytes);
  // bf16 bit patterns of moderate values (exponent near 127), never NaN.
  for (let i = 0; i < bytes; i += 2) {
    b[i] = (i * 37) & 0xff;
    b[i + 1] = 0x3e + ((i >> 1) & 1);
  }
}

interface Setup {
  pool: KernelPool;
  weights: number[];
  x: number;
  /** Room for x interleaved (pool.ts, Job.xv). */
  xv: number;
  out: number;
}

/** A pool on its own memory (a memory's control block serves one pool), holding every shape's weight. */
async function setup(threads: number, spin: number, minSplitWork: number): Promise<Setup> {
  const memory = sharedMemory();
  const heap = new WasmHeap(memory);
  const weights = SHAPES.map(([, m, k]) => {
    const ptr = heap.alloc(m * k * 2);
    fill(heap, ptr, m * k * 2);
    return ptr;
  });
  const x = heap.alloc(16 * 768 * 4);
  heap.f32(x, 16 * 768).fill(0.01);
  const xv = heap.alloc(16 * 768 * 4);
  const out = heap.alloc(16 * 8192 * 4);
  return {
    pool: await KernelPool.create(module, memory, { threads, spin, minSplitWork }),
    weights,
    x,
    xv,
    out,
  };
}

/** Median-of-batches microseconds per product. */
function time({ pool, weights, x, xv, out }: Setup, i: number, n: number, k: number, m: number): number {
  const w = weights[i] as number;
  const flops = 2 * n * k * m;
  const reps = Math.max(5, Math.round((quick ? 2e8 : 1e9) / flops / 5));
  const job = { mode: MODE_LINEAR, x, xv, n, k, dtype: DTYPE_CODE.bf16 };
  const samples: number[] = [];
  for (let s = 0; s < 6; s++) {
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < reps; r++) pool.run({ ...job, segments: [{ w, bias: 0, out, m }] });
    samples.push(Number(process.hrtime.bigint() - t0) / 1e3 / reps);
  }
  samples.shift(); // warm-up
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] as number;
}

const lines: string[] = [];
const say = (s: string) => {
  lines.push(s);
  console.log(s);
};

const model = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model;
say(`- CPU: ${model}; ${all} cores (os.availableParallelism); Node ${process.version}`);
say(
  `- kernel: WebAssembly SIMD${relaxed ? " with relaxed-SIMD FMA" : " (relaxed SIMD not validated by this Node: multiply then add)"}, bf16 weights`,
);
if (!kernelOnly) {
  say("");
  say("End to end, `specloop model generate --model models/tiny-code --tokens 0 --max-tokens 128` (greedy):");
  say("");
  say("| backend | decode tokens/s |");
  say("|---|---|");
  for (const backend of ["reference", "cpu"]) {
    const json = execFileSync(
      process.execPath,
      [
        "cli/dist/main.js",
        ...["model", "generate", "--model", "models/tiny-code", "--tokens", "0", "--max-tokens", "128"],
        ...["--backend", backend, "--json"],
      ],
      { encoding: "utf8" },
    );
    const r = JSON.parse(json) as { decode_tokens_per_second: number; backend_used: string };
    say(`| ${r.backend_used} | ${r.decode_tokens_per_second.toFixed(1)} |`);
  }

  // The same decode in this process: the cpu backend on 1 and all threads, with short and long spins.
  {
    const loaded = await loadModelDir("models/tiny-code");
    say("");
    say("In process, `generate` on tiny-code, batch 1, 128 new tokens after a warm-up (tokens/s):");
    say("");
    say("| threads | spin (polls) | decode tokens/s |");
    say("|---|---|---|");
    for (const [threads, spin] of [
      [1, 0],
      [all, 20000],
      [all, 200000],
    ] as const) {
      const be = await createCpuBackend({ threads, spin });
      const model = Model.load(be, loaded);
      await generate(model, [{ prompt: [0], maxTokens: 16, stopTokenIds: [] }]);
      const t0 = performance.now();
      await generate(model, [{ prompt: [0], maxTokens: 129, stopTokenIds: [] }]);
      say(`| ${threads} | ${spin} | ${(128 / ((performance.now() - t0) / 1000)).toFixed(1)} |`);
      be.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 200)); // let the destroyed pools' workers exit
  }
}

// Kernel tables after the end-to-end runs: no worker of this process competes with the CLI for cores.
say("");
say("| shape [m, k] | threads | n | us / product | GFLOP/s | weight GB/s | cost vs n = 1 |");
say("|---|---|---|---|---|---|---|");
for (const threads of threadCounts) {
  const s = await setup(threads, 20000, 32768);
  SHAPES.forEach(([name, m, k], i) => {
    let base = 0;
    for (const n of NS) {
      const us = time(s, i, n, k, m);
      if (n === 1) base = us;
      const gflops = (2 * n * k * m) / us / 1e3;
      const gbs = (m * k * 2) / us / 1e3;
      say(
        `| ${name} [${m}, ${k}] | ${threads} | ${n} | ${us.toFixed(1)} | ${gflops.toFixed(1)} | ${gbs.toFixed(1)} | ${(us / base).toFixed(2)} |`,
      );
    }
  });
  s.pool.destroy();
}

if (all > 1) {
  say("");
  say(`Synchronisation, n = 1 on ${all} threads, us / product (lower is better):`);
  say("");
  say("| shape | spin 20000 then wait | Atomics.wait only |");
  say("|---|---|---|");
  const spin = await setup(all, 20000, 0);
  const wait = await setup(all, 0, 0);
  SHAPES.forEach(([name, m, k], i) => {
    const a = time(spin, i, 1, k, m);
    const b = time(wait, i, 1, k, m);
    say(`| ${name} [${m}, ${k}] | ${a.toFixed(1)} | ${b.toFixed(1)} |`);
  });
  spin.pool.destroy();
  wait.pool.destroy();
}
