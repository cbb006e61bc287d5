// Worker threads over one shared WebAssembly.Memory, each running the same kernel module. A job's output
// columns are cut into chunks, and every thread, the main one included, claims chunks until none are left
// (control.ts, and job() in assembly/jobs.ts): `threads` counts every core used, and a thread that is
// not running when a job comes (asleep, or descheduled because another process holds its core) takes no
// chunk instead of holding the job up. Products too small to pay for a hand-off run on the main thread.
//
// Why chunks rather than one fixed share per thread: with fixed shares, the main thread finished its share
// and then waited for the workers', and another process on one core made every product wait for a
// descheduled worker. Chunks are balanced for the threads when they all run (a multiple of `threads`, about
// CHUNK_WORK multiply-adds each).
//
// Synchronisation: a waiting thread polls Atomics.load (DEFAULT_SPIN: 2000 polls, about 12 us, the gaps
// between a decode step's jobs) before it sleeps in Atomics.wait. Sleeping at once loses the worker for
// every job (its wake-up outlasts most decode-sized products, which the main thread then does alone);
// spinning long keeps it from yielding when it shares a core, and a worker descheduled while it holds a
// chunk stalls the job. The measurements: bench/results/cpu-decode.md, "Synchronisation: spin before sleeping".
import { Worker } from "node:worker_threads";
import {
  ARGS,
  CLAIM,
  CLAIM_BYTE_OFFSET,
  CONTROL_BYTE_OFFSET,
  CONTROL_SLOTS,
  control,
  DONE,
  DONE_BYTE_OFFSET,
  JOB_BYTE_OFFSET,
  SEQ,
  STOP,
  type WorkerInit,
  waitWhile,
} from "./control.js";
import {
  ATT_GROUP,
  ATT_HEAD_DIM,
  ATT_HEADS,
  ATT_K,
  ATT_LONGEST,
  ATT_OFFSETS,
  ATT_OUT,
  ATT_SCALE,
  ATT_SCORES,
  ATT_SLOTS,
  ATT_V,
  ATT_WIDTH,
  DTYPE_F32,
  JOB_AUX,
  JOB_CHUNKS,
  JOB_DTYPE,
  JOB_FIXED,
  JOB_K,
  JOB_MODE,
  JOB_N,
  JOB_SEGMENT,
  JOB_SEGMENTS,
  JOB_X,
  MAX_SEGMENTS,
  MODE_ATTENTION,
  MODE_SILU_MUL,
  MODE_TOPK,
  NO_CHUNK,
  SEG_AUX,
  SEG_BIAS,
  SEG_M,
  SEG_OUT,
  SEG_W,
  TAG_SHIFT,
  TOPK_K,
} from "./kernel-abi.js";
import { instantiate, type Kernels, type WasmMemory, type WasmModule } from "./wasm.js";
import { WORKER_SOURCE } from "./worker.js";

/** Multiply-adds a product's chunk aims at (about 20 us on one core): small enough to rebalance, large enough that claims cost little. */
export const CHUNK_WORK = 262144;
/**
 * Chunks per thread at most: every claim is a compare-exchange on one cache line that the threads pass
 * around (about 0.1-0.2 us each), so a product of many small chunks spends its time claiming them.
 */
export const MAX_CHUNKS_PER_THREAD = 16;
/** Values a top-k chunk aims at. */
export const TOPK_CHUNK = 65536;

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

/** pool.attention()'s arguments: byte offsets into the shared memory, and the shapes. */
export interface AttentionJob {
  q: number;
  k: number;
  v: number;
  slots: number;
  offsets: number;
  out: number;
  rows: number;
  heads: number;
  group: number;
  headDim: number;
  width: number;
  scale: number;
  longest: number;
  scores: number;
  chunks: number;
}

const f32Bits = new Float32Array(1);
const i32Bits = new Int32Array(f32Bits.buffer);

export interface Job {
  /** MODE_LINEAR, MODE_SILU_MUL or MODE_ADD (kernel-abi.ts; assembly/jobs.ts says what each does). */
  mode: number;
  x: number;
  /**
   * Room for n * k f32 where 2-byte weights read x from: run() fills it (the kernel's interleave()) once on
   * this thread before the hand-off. Unused for f32 weights.
   */
  xv?: number;
  n: number;
  k: number;
  dtype: number;
  segments: readonly JobSegment[];
}

/**
 * The cpu backend's worker threads and the jobs it hands them: every kernel that is worth splitting across
 * threads (the products with their fused epilogues, attention, softmax + top-k) runs as one job of the kernel
 * module on all of them.
 */
export class KernelPool {
  private readonly ctl: Int32Array;
  private readonly workers: Worker[];
  private readonly local: Kernels;
  private destroyed = false;
  /** The last job's tag (CLAIM's high half). */
  private tag = 0;

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

  static async create(module: WasmModule, memory: WasmMemory, options: PoolOptions): Promise<KernelPool> {
    if (memory.buffer.byteLength < CONTROL_BYTE_OFFSET + CONTROL_SLOTS * 4)
      throw new RangeError("KernelPool: memory too small for the control block");
    // One pool per memory: its control block is this memory's. A destroyed pool's STOP is cleared here.
    Atomics.store(control(memory), STOP, 0);
    const workers: Worker[] = [];
    for (let index = 1; index < options.threads; index++) {
      const workerData: WorkerInit = { module, memory, spin: options.spin };
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
    return new KernelPool(memory, module, workers, options);
  }

  get threads(): number {
    return this.options.threads;
  }

  /** The kernels instantiated on the main thread (ops that run there alone, such as attention). */
  get kernels(): Kernels {
    return this.local;
  }

  /**
   * Runs a job (one or more products of one x, with the mode's epilogue) with one hand-off: its output
   * columns, all segments together, are cut into chunks that the threads claim.
   */
  run(job: Job): void {
    const { segments } = job;
    if (segments.length === 0 || segments.length > MAX_SEGMENTS)
      throw new RangeError(`cpu backend: a job of ${segments.length} segments`);
    let cols = 0;
    for (const s of segments) cols += s.m;
    // SILU_MUL's segments share their columns (two products each); LINEAR's are laid end to end.
    const width = job.mode === MODE_SILU_MUL ? (segments[0] as JobSegment).m : cols;
    const work = job.n * job.k * cols;
    const split = work >= this.options.minSplitWork && this.options.threads > 1;
    const chunks = split ? this.chunks(Math.ceil(width / 4), work / CHUNK_WORK) : 1;
    const ctl = this.open(job.mode, job.x, job.n, chunks);
    const a = ARGS;
    ctl[a + JOB_K] = job.k;
    ctl[a + JOB_DTYPE] = job.dtype;
    ctl[a + JOB_SEGMENTS] = segments.length;
    if (job.dtype !== DTYPE_F32) {
      if (job.xv === undefined) throw new RangeError("cpu backend: a 2-byte weight's job needs xv");
      this.local.interleave(job.x, job.xv, job.n, job.k);
    }
    ctl[a + JOB_AUX] = job.xv ?? 0;
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i] as JobSegment;
      const o = a + JOB_FIXED + i * JOB_SEGMENT;
      ctl[o + SEG_W] = s.w;
      ctl[o + SEG_BIAS] = s.bias;
      ctl[o + SEG_OUT] = s.out;
      ctl[o + SEG_M] = s.m;
      ctl[o + SEG_AUX] = s.aux ?? 0;
    }
    this.dispatch(chunks, split);
  }

  /**
   * How many chunks a topK call of rows x cols values cuts each row's columns into (its records per row,
   * which the caller allocates and merges): 1 unless `split`.
   */
  topKChunks(rows: number, cols: number, split: boolean): number {
    return split && this.options.threads > 1
      ? this.chunks(Math.ceil(cols / 4), (rows * cols) / TOPK_CHUNK)
      : 1;
  }

  /**
   * Softmax + top-k partial records of x [rows, cols] (assembly/topk.ts) at `part`, `chunks` records per
   * row (topKChunks; the caller merges them with topkMerge).
   */
  topK(x: number, rows: number, cols: number, k: number, part: number, chunks: number): void {
    const ctl = this.open(MODE_TOPK, x, rows, chunks);
    ctl[ARGS + JOB_K] = cols;
    ctl[ARGS + TOPK_K] = k;
    ctl[ARGS + JOB_AUX] = part;
    this.dispatch(chunks, chunks > 1);
  }

  /**
   * How many chunks attention over rows x heads (row, head) pairs of at most `longest` slots is cut into
   * (each needs its own scores scratch: Math.ceil(longest / 4) * 16 bytes): 1 below minSplitWork.
   */
  attentionChunks(rows: number, heads: number, longest: number, headDim: number): number {
    const work = rows * heads * longest * headDim * 2;
    const split = work >= this.options.minSplitWork && this.options.threads > 1;
    return split ? this.chunks(rows * heads, work / CHUNK_WORK) : 1;
  }

  /**
   * Attention (assembly/attention.ts, attentionChunk) of q [rows, heads * headDim] into out over the cache
   * rows at k and v (width f32 per slot): row r sees the slot ids slots[offsets[r] .. offsets[r + 1]) (both
   * i32 in the memory); at most `longest` of them. a.chunks from attentionChunks(), a.scores its scratch.
   */
  attention(a: AttentionJob): void {
    const chunks = a.chunks;
    const ctl = this.open(MODE_ATTENTION, a.q, a.rows, chunks);
    const s = ARGS;
    ctl[s + ATT_HEADS] = a.heads;
    ctl[s + ATT_GROUP] = a.group;
    ctl[s + ATT_HEAD_DIM] = a.headDim;
    ctl[s + ATT_SCORES] = a.scores;
    ctl[s + ATT_K] = a.k;
    ctl[s + ATT_V] = a.v;
    ctl[s + ATT_SLOTS] = a.slots;
    ctl[s + ATT_OFFSETS] = a.offsets;
    ctl[s + ATT_OUT] = a.out;
    ctl[s + ATT_WIDTH] = a.width;
    f32Bits[0] = a.scale;
    ctl[s + ATT_SCALE] = i32Bits[0] as number;
    ctl[s + ATT_LONGEST] = a.longest;
    this.dispatch(chunks, chunks > 1);
  }

  /** A multiple of the thread count near `target` chunks, at most `most` (whole 4-column tiles), at least 1. */
  private chunks(most: number, target: number): number {
    const t = this.options.threads;
    const perThread = Math.min(MAX_CHUNKS_PER_THREAD, Math.max(1, Math.round(target / t)));
    return Math.max(1, Math.min(most, t * perThread));
  }

  /**
   * Starts a job: a new tag, no chunk claimable while its arguments are written (control.ts), and the
   * slots every mode has (mode, x, rows, chunks) written. Returns the control block for the mode's others.
   */
  private open(mode: number, x: number, n: number, chunks: number): Int32Array {
    if (this.destroyed) throw new Error("cpu backend: used after destroy()");
    this.tag = (this.tag + 1) & 0x7fff;
    const ctl = this.ctl;
    Atomics.store(ctl, CLAIM, (this.tag << TAG_SHIFT) | NO_CHUNK);
    ctl[ARGS + JOB_MODE] = mode;
    ctl[ARGS + JOB_X] = x;
    ctl[ARGS + JOB_N] = n;
    ctl[ARGS + JOB_CHUNKS] = chunks;
    return ctl;
  }

  /**
   * Runs the job in the argument slots: here alone, or handed to every worker with the main thread
   * claiming chunks beside them, then waiting until all `chunks` are done.
   */
  private dispatch(chunks: number, split: boolean): void {
    const ctl = this.ctl;
    if (!split) {
      this.local.jobAll(JOB_BYTE_OFFSET);
      return;
    }
    Atomics.store(ctl, DONE, 0);
    Atomics.store(ctl, CLAIM, this.tag << TAG_SHIFT);
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
    if (this.local.job(JOB_BYTE_OFFSET, CLAIM_BYTE_OFFSET, DONE_BYTE_OFFSET) !== 0) return;
    // A worker holds the last chunks: it notifies DONE when it finishes the last one.
    for (let done = Atomics.load(ctl, DONE); done !== chunks; )
      done = waitWhile(ctl, DONE, done, this.options.spin);
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
