// The machine's own ceilings for bench/cpu-decode.ts, measured from WebAssembly by the probes in the kernels'
// module (shared/engine/assembly/probe.ts) on 1..N worker threads over one shared memory:
// - copy: memory.copy of `copyBytes` split across the threads (GB/s of bytes copied; the traffic is twice that);
// - read: a read-only f32x4 streaming sum, at each size of `readSizes` (one near the model's weight bytes,
//   which on a machine with a large L3 stay in cache between decode steps, and one past the last-level cache);
// - madd: register-only f32x4 multiply-add chains per thread (fused only where relaxed SIMD runs).
// Each figure is the best of a few trials (a ceiling), all threads started together at a barrier and timed
// from the first start to the last finish.
import { Worker } from "node:worker_threads";
import { kernelModule, type WasmMemory } from "../shared/engine/src/backends/cpu/wasm.js";

export interface Ceilings {
  threads: number;
  relaxedSimd: boolean;
  copy: { bytes: number; gbPerSecond: number; trafficGbPerSecond: number };
  read: { bytes: number; gbPerSecond: number }[];
  madd: { gflopsPerSecond: number; gflopsPerThread: number; fused: boolean };
}

// Dynamic import: the eval'd source is a script or a module depending on the parent's --input-type.
const WORKER = `
import("node:worker_threads").then(({ parentPort, workerData }) => {
const { module, memory, barrier } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory, abort() {} } }).exports;
const flag = new Int32Array(barrier);
parentPort.on("message", (m) => {
  // Everyone arrives, then all start together.
  Atomics.add(flag, 0, 1);
  while (Atomics.load(flag, 0) < m.threads) {}
  const t0 = performance.now();
  let sink = 0;
  for (let r = 0; r < m.reps; r++) {
    if (m.op === "copy") ex.probeCopy(m.dst, m.src, m.bytes);
    else if (m.op === "read") sink += ex.probeSum(m.src, m.bytes);
    else sink += ex.probeMadd(m.iters, 1 + r * 1e-9);
  }
  parentPort.postMessage({ t0, t1: performance.now(), sink });
});
parentPort.postMessage("ready");
});
`;

const MiB = 2 ** 20;

interface Op {
  op: "copy" | "read" | "madd";
  reps: number;
  /** Per thread t: src/dst/bytes of its share. */
  share?: (t: number) => { src: number; dst?: number; bytes: number };
  iters?: number;
}

export async function measureCeilings(
  threads: number,
  options: { copyBytes?: number; readSizes?: number[]; trials?: number } = {},
): Promise<Ceilings> {
  const copyBytes = options.copyBytes ?? 256 * MiB;
  const readSizes = options.readSizes ?? [24 * MiB, 1024 * MiB];
  const trials = options.trials ?? 3;
  const { module, relaxed } = kernelModule();
  const base = 64 * 1024;
  const need = base + Math.max(2 * copyBytes, ...readSizes) + 64 * threads;
  const Memory = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => WasmMemory } })
    .WebAssembly.Memory;
  const memory = new Memory({ initial: Math.ceil(need / 65536), maximum: 65536, shared: true });
  // Touch every page once so that no trial pays for first-touch page faults.
  new Uint8Array(memory.buffer).fill(1);
  const barrier = new SharedArrayBuffer(4);
  const flag = new Int32Array(barrier);
  const workers = Array.from(
    { length: threads },
    () => new Worker(WORKER, { eval: true, workerData: { module, memory, barrier } }),
  );
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once("message", resolve))));

  /** Seconds from the first thread's start to the last one's end, best of `trials`. */
  const run = async (op: Op): Promise<number> => {
    let best = Number.POSITIVE_INFINITY;
    for (let trial = 0; trial < trials; trial++) {
      Atomics.store(flag, 0, 0);
      const done = workers.map(
        (w, t) =>
          new Promise<{ t0: number; t1: number }>((resolve) => {
            w.once("message", resolve);
            w.postMessage({ op: op.op, reps: op.reps, threads, iters: op.iters, ...op.share?.(t) });
          }),
      );
      const times = await Promise.all(done);
      // performance.now() in a worker counts from the worker's own start: use each one's duration and the
      // barrier's simultaneity instead of comparing origins.
      const seconds = Math.max(...times.map((x) => x.t1 - x.t0)) / 1000;
      best = Math.min(best, seconds);
    }
    return best;
  };

  const slice = (total: number, t: number) => {
    const per = Math.floor(total / threads / 64) * 64;
    return { offset: t * per, bytes: per };
  };
  try {
    const copyReps = 2;
    const copyT = await run({
      op: "copy",
      reps: copyReps,
      share: (t) => {
        const s = slice(copyBytes, t);
        return { src: base + s.offset, dst: base + copyBytes + s.offset, bytes: s.bytes };
      },
    });
    const copied = slice(copyBytes, 0).bytes * threads * copyReps;
    const read = [];
    for (const size of readSizes) {
      // Repeat small sizes so each trial reads at least 512 MiB.
      const reps = Math.max(2, Math.ceil((512 * MiB) / size));
      const seconds = await run({
        op: "read",
        reps,
        share: (t) => {
          const s = slice(size, t);
          return { src: base + s.offset, bytes: s.bytes };
        },
      });
      read.push({ bytes: size, gbPerSecond: (slice(size, 0).bytes * threads * reps) / seconds / 1e9 });
    }
    const iters = 20_000_000;
    const maddT = await run({ op: "madd", reps: 1, iters });
    const gflops = (threads * iters * 80) / maddT / 1e9;
    return {
      threads,
      relaxedSimd: relaxed,
      copy: {
        bytes: copyBytes,
        gbPerSecond: copied / copyT / 1e9,
        trafficGbPerSecond: (2 * copied) / copyT / 1e9,
      },
      read,
      madd: { gflopsPerSecond: gflops, gflopsPerThread: gflops / threads, fused: relaxed },
    };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
