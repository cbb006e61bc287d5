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
  PENDING,
  SEQ,
  STOP,
  share,
  type WorkerInit,
  waitWhile,
} from "./control.js";
import { instantiate, type MatmulFn, type WasmMemory, type WasmModule } from "./wasm.js";
import { WORKER_SOURCE } from "./worker.js";

export interface PoolOptions {
  threads: number;
  /** Polls before sleeping, for workers waiting for a job and the main thread waiting for workers. */
  spin: number;
  /** Multiply-adds (n * k * m) below which a product runs on the main thread only. */
  minSplitWork: number;
}

export class MatmulPool {
  private readonly ctl: Int32Array;
  private readonly workers: Worker[];
  private readonly local: MatmulFn;
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

  /** out[n, m] = x[n, k] W[m, k]^T (+ bias), all byte offsets into the shared memory. */
  matmul(x: number, w: number, bias: number, out: number, n: number, k: number, m: number, dt: number): void {
    if (this.destroyed) throw new Error("cpu backend: used after destroy()");
    const threads =
      n * k * m < this.options.minSplitWork ? 1 : Math.min(this.options.threads, Math.ceil(m / 4));
    if (threads <= 1) {
      this.local(x, w, bias, out, n, k, m, 0, m, dt);
      return;
    }
    const ctl = this.ctl;
    const args = [x, w, bias, out, n, k, m, dt, threads];
    for (let i = 0; i < args.length; i++) ctl[ARGS + i] = args[i] as number;
    Atomics.store(ctl, PENDING, threads - 1);
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
    const [j0, j1] = share(m, threads, 0);
    this.local(x, w, bias, out, n, k, m, j0, j1, dt);
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
