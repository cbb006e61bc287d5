// The `cpu` backend: the reference backend's ops, with every matrix product (the LM head included) on the
// WebAssembly SIMD kernel (assembly/matmul.ts) split across worker threads over one shared memory.
// Two-dimensional weights are copied once into that memory in their checkpoint dtype (bf16/f16 stay 2
// bytes) and are never widened whole; the embedding rows a pass needs are widened on the fly. One-
// dimensional weights (norms, biases) are small and stay f32 on the JS side for the reference ops.
//
// The fused ops (qkvProject, gateUpSilu, matmulAdd) each run as one pool job: one hand-off to the workers,
// the residual add and silu * up done by the kernel on each thread's columns.
//
// Activations stay reference activations (Float32Array on the JS heap): each product copies x into the
// wasm memory and the result out. That costs n * (k + m) * 4 bytes per product against m * k * 2 bytes of
// weights read, a few percent at decode; moving the other ops into wasm removes it.
import { availableParallelism } from "node:os";
import type {
  Activation,
  Backend,
  BatchLayout,
  KvCacheSpec,
  KvStorage,
  PreparedBatch,
  QkvActivations,
  QkvBiases,
  RopeSpec,
  Weight,
} from "../../backend.js";
import { DTYPE_BYTES, type DType, type HostTensor, numel, toFloat32 } from "../../tensor.js";
import { ReferenceBackend } from "../reference/backend.js";
import { act, RefActivation, weight as refWeight } from "../reference/types.js";
import { MODE_ADD, MODE_LINEAR, MODE_SILU_MUL } from "./control.js";
import { type JobSegment, MatmulPool } from "./pool.js";
import { DTYPE_CODE, kernelModule, sharedMemory, WasmHeap } from "./wasm.js";

export interface CpuBackendOptions {
  /** Threads per product, the main thread included (default: os.availableParallelism()). */
  threads?: number;
  /** Atomics.load polls before a waiting thread sleeps (default 20000, about 0.1 ms; 0 sleeps at once). */
  spin?: number;
  /** Multiply-adds below which a product is not split (default 32768: a wake-up costs more). */
  minSplitWork?: number;
}

/** A 2-D weight resident in the shared wasm memory, in its checkpoint dtype. */
export class CpuWeight implements Weight {
  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** Byte offset in the shared memory. */
    readonly ptr: number,
  ) {}
}

export async function createCpuBackend(options: CpuBackendOptions = {}): Promise<CpuBackend> {
  const { module, relaxed } = kernelModule();
  const memory = sharedMemory();
  const pool = await MatmulPool.create(module, memory, {
    threads: Math.max(1, Math.floor(options.threads ?? availableParallelism())),
    spin: options.spin ?? 20000,
    minSplitWork: options.minSplitWork ?? 32768,
  });
  return new CpuBackend(new WasmHeap(memory), pool, relaxed);
}

export class CpuBackend implements Backend {
  readonly kind = "cpu" as const;
  private readonly ref = new ReferenceBackend();
  private scratch = { ptr: 0, bytes: 0 };

  constructor(
    private readonly heap: WasmHeap,
    private readonly pool: MatmulPool,
    /** Whether the kernel runs relaxed-SIMD fused multiply-add (else multiply then add). */
    readonly fma: boolean,
  ) {}

  get threads(): number {
    return this.pool.threads;
  }

  /** Bytes of the shared memory in use (weights and the product scratch). */
  get wasmBytes(): number {
    return this.heap.used;
  }

  loadWeight(name: string, tensor: HostTensor): Weight {
    if (tensor.shape.length !== 2) return this.ref.loadWeight(name, tensor);
    const bytes = numel(tensor.shape) * DTYPE_BYTES[tensor.dtype];
    if (tensor.data.byteLength !== bytes)
      throw new RangeError(`weight ${name}: ${tensor.data.byteLength} bytes for [${tensor.shape}]`);
    const ptr = this.heap.alloc(bytes);
    this.heap.bytes(ptr, bytes).set(tensor.data);
    return new CpuWeight(name, [...tensor.shape], tensor.dtype, ptr);
  }

  fromHost(rows: number, cols: number, values: ArrayLike<number>): Activation {
    return this.ref.fromHost(rows, cols, values);
  }

  createKvStorage(spec: KvCacheSpec): KvStorage {
    return this.ref.createKvStorage(spec);
  }

  prepareBatch(layout: BatchLayout, kvBlockSize: number): PreparedBatch {
    return this.ref.prepareBatch(layout, kvBlockSize);
  }

  embed(table: Weight, ids: Int32Array): Activation {
    if (!(table instanceof CpuWeight)) return this.ref.embed(table, ids);
    const [rows, cols] = table.shape as [number, number];
    const rowBytes = cols * DTYPE_BYTES[table.dtype];
    const out = RefActivation.zeros(ids.length, cols);
    ids.forEach((id, r) => {
      if (id < 0 || id >= rows) throw new RangeError(`embed: id ${id} outside [0, ${rows})`);
      const data = this.heap.bytes(table.ptr + id * rowBytes, rowBytes);
      out.data.set(toFloat32({ dtype: table.dtype, shape: [cols], data }), r * cols);
    });
    return out;
  }

  rmsNorm(x: Activation, w: Weight, eps: number, groupSize?: number): Activation {
    return this.ref.rmsNorm(x, w, eps, groupSize);
  }

  matmul(x: Activation, w: Weight, bias?: Weight): Activation {
    const [y] = this.linear(MODE_LINEAR, x, [w], [bias]);
    return y as RefActivation;
  }

  // The fused ops: one pool job each (one hand-off to the workers instead of one per product), with the
  // elementwise tail (residual add, silu * up) in the kernel's epilogue over each thread's own columns.

  matmulAdd(x: Activation, w: Weight, residual: Activation, bias?: Weight): Activation {
    const r = act(residual);
    const [m] = w.shape as [number];
    if (r.rows !== x.rows || r.cols !== m)
      throw new RangeError(`matmulAdd: residual [${r.rows}, ${r.cols}] for [${x.rows}, ${m}]`);
    const [y] = this.linear(MODE_ADD, x, [w], [bias], r.data);
    return y as RefActivation;
  }

  gateUpSilu(x: Activation, gate: Weight, up: Weight): Activation {
    if (gate.dtype !== up.dtype || gate.shape[0] !== up.shape[0] || gate.shape[1] !== up.shape[1])
      throw new RangeError(`gateUpSilu: gate ${gate.dtype} [${gate.shape}], up ${up.dtype} [${up.shape}]`);
    // Segment 1's output holds silu(gate) * up after the job; segment 0's (gate) is scratch.
    const [, y] = this.linear(MODE_SILU_MUL, x, [gate, up], [undefined, undefined], undefined, [false, true]);
    return y as RefActivation;
  }

  qkvProject(x: Activation, q: Weight, k: Weight, v: Weight, biases: QkvBiases = {}): QkvActivations {
    if (q.dtype !== k.dtype || q.dtype !== v.dtype) {
      // One job runs one weight dtype; mixed checkpoints take three.
      return {
        q: this.matmul(x, q, biases.q),
        k: this.matmul(x, k, biases.k),
        v: this.matmul(x, v, biases.v),
      };
    }
    const [qa, ka, va] = this.linear(MODE_LINEAR, x, [q, k, v], [biases.q, biases.k, biases.v]);
    return { q: qa as RefActivation, k: ka as RefActivation, v: va as RefActivation };
  }

  /**
   * One pool job over weights of one dtype sharing x: copies x (and the residual, for MODE_ADD) and the
   * biases into the scratch, runs the job, and copies out the outputs marked in `read` (default all).
   */
  private linear(
    mode: number,
    x: Activation,
    ws: readonly Weight[],
    biases: readonly (Weight | undefined)[],
    residual?: Float32Array,
    read?: readonly boolean[],
  ): (RefActivation | undefined)[] {
    const a = act(x);
    const n = a.rows;
    const k = a.cols;
    const dtype = (ws[0] as Weight).dtype;
    let bytes = n * k * 4 + (residual ? residual.length * 4 : 0);
    const bs: (Float32Array | undefined)[] = [];
    ws.forEach((w, i) => {
      if (!(w instanceof CpuWeight)) throw new TypeError(`cpu backend: weight ${w.name} is not a matrix`);
      const [m, wk] = w.shape as [number, number];
      if (wk !== k) throw new RangeError(`matmul: x [${n}, ${k}] by weight [${w.shape}]`);
      const bias = biases[i];
      const b = bias === undefined ? undefined : refWeight(bias).data;
      if (b !== undefined && b.length !== m)
        throw new RangeError(`matmul: bias of ${b.length} for ${m} outputs`);
      bs.push(b);
      bytes += n * m * 4 + (b ? m * 4 : 0);
    });
    let at = this.scratchFor(bytes);
    const xPtr = at;
    this.heap.f32(xPtr, n * k).set(a.data);
    at += n * k * 4;
    let aux = 0;
    if (residual) {
      aux = at;
      this.heap.f32(aux, residual.length).set(residual);
      at += residual.length * 4;
    }
    const segments: JobSegment[] = ws.map((w, i) => {
      const m = w.shape[0] as number;
      const b = bs[i];
      let bias = 0;
      if (b) {
        bias = at;
        this.heap.f32(bias, m).set(b);
        at += m * 4;
      }
      const out = at;
      at += n * m * 4;
      return { w: (w as CpuWeight).ptr, bias, out, m, aux };
    });
    this.pool.run({ mode, x: xPtr, n, k, dtype: DTYPE_CODE[dtype], segments });
    return segments.map((s, i) =>
      read === undefined || read[i]
        ? new RefActivation(n, s.m, this.heap.f32(s.out, n * s.m).slice())
        : undefined,
    );
  }

  /** The product scratch (x, out, bias), grown geometrically; products run one at a time. */
  private scratchFor(bytes: number): number {
    if (bytes > this.scratch.bytes) {
      if (this.scratch.bytes > 0) this.heap.freeTop(this.scratch.ptr, this.scratch.bytes);
      const size = Math.max(bytes, this.scratch.bytes * 2);
      this.scratch = { ptr: this.heap.alloc(size), bytes: size };
    }
    return this.scratch.ptr;
  }

  rope(x: Activation, b: PreparedBatch, spec: RopeSpec): Activation {
    return this.ref.rope(x, b, spec);
  }

  writeKv(kv: KvStorage, layer: number, k: Activation, v: Activation, b: PreparedBatch): void {
    this.ref.writeKv(kv, layer, k, v, b);
  }

  attention(
    q: Activation,
    kv: KvStorage,
    layer: number,
    b: PreparedBatch,
    numHeads: number,
    scale: number,
  ): Activation {
    return this.ref.attention(q, kv, layer, b, numHeads, scale);
  }

  siluMul(gate: Activation, up: Activation): Activation {
    return this.ref.siluMul(gate, up);
  }

  add(a: Activation, b: Activation): Activation {
    return this.ref.add(a, b);
  }

  gatherRows(x: Activation, rows: Int32Array): Activation {
    return this.ref.gatherRows(x, rows);
  }

  copyKv(kv: KvStorage, srcSlots: Int32Array, dstSlots: Int32Array): void {
    this.ref.copyKv(kv, srcSlots, dstSlots);
  }

  readRows(x: Activation): Promise<Float32Array> {
    return this.ref.readRows(x);
  }

  argmaxRows(x: Activation): Promise<Int32Array> {
    return this.ref.argmaxRows(x);
  }

  release(_x: Activation): void {
    // Activations are garbage-collected arrays; weights live as long as the backend.
  }

  /** Stops the worker threads; the backend is unusable after. */
  destroy(): void {
    this.pool.destroy();
  }
}
