// Worker threads over one shared WebAssembly.Memory, each running the same kernel module. A product's
// output columns (rows of W) are split into equal chunks, the main thread taking chunk 0 itself so that
// `threads` counts every core used. Products too small to pay for a wake-up run on the main thread alone.
//
// Synchronisation: a waiting thread polls Atomics.load (the backend's default: 20000 polls, about 0.1 ms at
// the ~6 ns a poll takes here) before it sleeps in Atomics.wait. Measured on the 2-core development machine
// (bench/cpu-matmul.ts, bf16, n = 1, 2 threads, us per product, spinning vs Atomics.wait alone): q/o
// [384, 384] 13.7 vs 70.9, gate/up [768, 384] 24.7 vs 83.2, LM head [8192, 384] 264 vs 346: a sleeping
// worker's wake-up (~60 us) costs more than a whole decode-sized product, so spinning it is. How long:
// on an idle machine tiny-code decode ran at 318-324 tokens/s with 20000 polls and 366-374 with 200000, but
// with other processes on the cores (oversubscribed) 200000 polls fell to 11 tokens/s against 59 with 20000
// (one thread: 222): a spinning thread takes the core its partner needs. 20000 is the default; the `spin`
// option raises it on a dedicated machine.
import { Worker } from "node:worker_threads";
import {
  ARGS,
  CONTROL_BYTE_OFFSET,
  CONTROL_SLOTS,
  control,
  JOB_BYTE_OFFSET,
  JOB_FIXED,
  JOB_SEGMENT,
  JOB_THREADS,
  MAX_SEGMENTS,
  MODE_LINEAR,
  PENDING,
  SEQ,
  STOP,
  type WorkerInit,
  waitWhile,
} from "./control.js";
import { instantiate, type Kernels, type WasmMemory, type WasmModule } from "./wasm.js";
import { WORKER_SOURCE } from "./worker.js";

export interface PoolOptions {
  threads: number;
  /** Polls before sleeping, for workers waiting for a job and the main thread waiting for workers. */
  spin: number;
  /** Multiply-adds (n * k * m) below which a product runs on the main thread only. */
  minSplitWork: number;
}

/** One product of a job: weight, bias (0: none), output, output columns, and the mode's extra pointer. */
export interface JobSegment {
  w: number;
  bias: number;
  out: number;
  m: number;
  aux?: number;
}

export interface Job {
  /** MODE_LINEAR, MODE_SILU_MUL or MODE_ADD (control.ts; assembly/matmul.ts says what each does). */
  mode: number;
  x: number;
  n: number;
  k: number;
  dtype: number;
  segments: readonly JobSegment[];
}

export class MatmulPool {
  private readonly ctl: Int32Array;
  private readonly workers: Worker[];
  private readonly local: Kernels;
  private destroyed = false;

  private constructor(
    memory: WasmMemory,
    module: WasmModule,
    workers: Worker[],
    readonly options: PoolOptions,
  ) {
    this.ctl = control(memory);
    this.workers = workers;
    this.local = instantiate(module, memory);
  }

  static async create(module: WasmModule, memory: WasmMemory, options: PoolOptions): Promise<MatmulPool> {
    if (memory.buffer.byteLength < CONTROL_BYTE_OFFSET + CONTROL_SLOTS * 4)
      throw new RangeError("MatmulPool: memory too small for the control block");
    // One pool per memory: its control block is this memory's. A destroyed pool's STOP is cleared here.
    Atomics.store(control(memory), STOP, 0);
    const workers: Worker[] = [];
    for (let index = 1; index < options.threads; index++) {
      const workerData: WorkerInit = { module, memory, index, spin: options.spin };
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData });
      // A worker never keeps the process alive: the main thread waits on it synchronously while it works.
      w.unref();
      workers.push(w);
    }
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.once("message", () => resolve());
            w.once("error", reject);
          }),
      ),
    );
    return new MatmulPool(memory, module, workers, options);
  }

  get threads(): number {
    return this.options.threads;
  }

  /** The kernels instantiated on the main thread (ops that run there alone, such as attention). */
  get kernels(): Kernels {
    return this.local;
  }

  /** out[n, m] = x[n, k] W[m, k]^T (+ bias), all byte offsets into the shared memory. */
  matmul(x: number, w: number, bias: number, out: number, n: number, k: number, m: number, dt: number): void {
    this.run({ mode: MODE_LINEAR, x, n, k, dtype: dt, segments: [{ w, bias, out, m }] });
  }

  /**
   * Runs a job (one or more products of one x, with the mode's epilogue) with one hand-off: its output
   * columns, all segments together, are split across the threads, the main thread taking share 0.
   */
  run(job: Job): void {
    if (this.destroyed) throw new Error("cpu backend: used after destroy()");
    const { segments } = job;
    if (segments.length === 0 || segments.length > MAX_SEGMENTS)
      throw new RangeError(`cpu backend: a job of ${segments.length} segments`);
    let cols = 0;
    for (const s of segments) cols += s.m;
    const threads =
      job.n * job.k * cols < this.options.minSplitWork
        ? 1
        : Math.min(this.options.threads, Math.ceil(cols / 4));
    const ctl = this.ctl;
    const a = ARGS;
    ctl[a] = job.mode;
    ctl[a + 1] = job.x;
    ctl[a + 2] = job.n;
    ctl[a + 3] = job.k;
    ctl[a + 4] = job.dtype;
    ctl[a + JOB_THREADS] = Math.max(1, threads);
    ctl[a + 6] = segments.length;
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i] as JobSegment;
      const o = a + JOB_FIXED + i * JOB_SEGMENT;
      ctl[o] = s.w;
      ctl[o + 1] = s.bias;
      ctl[o + 2] = s.out;
      ctl[o + 3] = s.m;
      ctl[o + 4] = s.aux ?? 0;
    }
    if (threads <= 1) {
      this.local.job(JOB_BYTE_OFFSET, 0);
      return;
    }
    Atomics.store(ctl, PENDING, threads - 1);
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
    this.local.job(JOB_BYTE_OFFSET, 0);
    let left = Atomics.load(ctl, PENDING);
    while (left !== 0) left = waitWhile(ctl, PENDING, left, this.options.spin);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    Atomics.store(this.ctl, STOP, 1);
    Atomics.add(this.ctl, SEQ, 1);
    Atomics.notify(this.ctl, SEQ);
    for (const w of this.workers) void w.terminate();
  }
}
