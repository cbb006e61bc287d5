// The `cpu` backend: every op as a WebAssembly SIMD kernel (shared/engine/assembly/) over one shared memory,
// the matrix products (the LM head included) split across worker threads. Everything a pass touches lives
// in that memory: two-dimensional weights in their checkpoint dtype (bf16/f16 stay 2 bytes and are never
// widened whole), norms and biases widened to f32, the paged KV cache, each batch's per-row data, and the
// activations themselves (activation.ts), so no op copies through the JS heap; values reach the host only
// through readRows, argmaxRows and topKRows.
//
// The fused ops (qkvProject, gateUpSilu, matmulAdd) each run as one pool job: one hand-off to the workers,
// the residual add and silu * up done by the kernel on each thread's columns. Attention, norms, RoPE and the
// elementwise ops run on the main thread alone (a few thousand values a token: a hand-off costs more).
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
  TopKRows,
  Weight,
} from "../../backend.js";
import {
  bf16ToF32,
  DTYPE_BYTES,
  type DType,
  f16ToF32,
  type HostTensor,
  numel,
  toFloat32,
} from "../../tensor.js";
import { checkAttention } from "../reference/attention.js";
import { checkTopK } from "../reference/topk.js";
import { Activations, type CpuActivation, cpuAct } from "./activation.js";
import { BatchUploads, CpuBatch, cpuBatch } from "./batch.js";
import { MODE_ADD, MODE_LINEAR, MODE_SILU_MUL, TOPK_PAIR_BYTES, TOPK_RECORD_HEADER } from "./kernel-abi.js";
import { CpuKvStorage } from "./kv.js";
import { type JobSegment, KernelPool } from "./pool.js";
import { DTYPE_CODE, kernelModule, Scratch, sharedMemory, WasmHeap } from "./wasm.js";

export interface CpuBackendOptions {
  /** Threads per product, the main thread included (default: os.availableParallelism()). */
  threads?: number;
  /** Atomics.load polls before a waiting thread sleeps (default DEFAULT_SPIN, about 12 us; 0 sleeps at once). */
  spin?: number;
  /** Multiply-adds below which a product is not split (default 32768: a wake-up costs more). */
  minSplitWork?: number;
  /** Values (rows x columns) below which topKRows runs on the main thread alone (default TOPK_SPLIT). */
  minTopKSplit?: number;
}

/**
 * Polls before a waiting worker sleeps. pool.ts says why 2000 (about 12 us: the gaps between a decode step's
 * jobs) and not 20000: as fast on an idle machine, and 60% faster with another process on one of 2 cores.
 */
export const DEFAULT_SPIN = 2000;

/** topKRows' default split point (bench/results/cpu-decode.md, "softmax + top-k", measured it). */
export const TOPK_SPLIT = 65536;

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

/** A 1-D weight (a norm's scale, a bias), widened to f32 in the shared memory; dtype is the checkpoint's. */
export class CpuVector implements Weight {
  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** Byte offset of shape[0] f32 values. */
    readonly ptr: number,
  ) {}
}

export async function createCpuBackend(options: CpuBackendOptions = {}): Promise<CpuBackend> {
  const { module, relaxed } = kernelModule();
  const memory = sharedMemory();
  const pool = await KernelPool.create(module, memory, {
    threads: Math.max(1, Math.floor(options.threads ?? availableParallelism())),
    spin: options.spin ?? DEFAULT_SPIN,
    minSplitWork: options.minSplitWork ?? 32768,
  });
  return new CpuBackend(new WasmHeap(memory), pool, relaxed, options.minTopKSplit ?? TOPK_SPLIT);
}

export class CpuBackend implements Backend {
  readonly kind = "cpu" as const;
  private readonly acts: Activations;
  private readonly batches: BatchUploads;
  /** A job's room for x interleaved (2-byte weights; pool.ts, Job.xv). */
  private readonly xvScratch: Scratch;
  /** The main-thread ops' scratch (gate's product in gateUpSilu, attention scores, top-k records, ids). */
  private readonly opScratch: Scratch;
  /** KV storages' blocks, given back once the storage is collected. */
  private readonly kvBlocks: FinalizationRegistry<number>;

  constructor(
    private readonly heap: WasmHeap,
    private readonly pool: KernelPool,
    /** Whether the kernel runs relaxed-SIMD fused multiply-add (else multiply then add). */
    readonly fma: boolean,
    private readonly minTopKSplit = TOPK_SPLIT,
  ) {
    this.acts = new Activations(heap);
    this.batches = new BatchUploads(heap);
    this.xvScratch = new Scratch(heap);
    this.opScratch = new Scratch(heap);
    this.kvBlocks = new FinalizationRegistry((block) => heap.release(block));
  }

  get threads(): number {
    return this.pool.threads;
  }

  /** Bytes of the shared memory in use up to its high-water mark (weights, caches, activations, scratch). */
  get wasmBytes(): number {
    return this.heap.used;
  }

  /** Bytes of the shared memory allocated now. */
  get wasmLiveBytes(): number {
    return this.heap.liveBytes;
  }

  loadWeight(name: string, tensor: HostTensor): Weight {
    if (tensor.shape.length !== 2) {
      const data = toFloat32(tensor);
      const ptr = this.heap.alloc(data.length * 4);
      this.heap.f32(ptr, data.length).set(data);
      return new CpuVector(name, [...tensor.shape], tensor.dtype, ptr);
    }
    const bytes = numel(tensor.shape) * DTYPE_BYTES[tensor.dtype];
    if (tensor.data.byteLength !== bytes)
      throw new RangeError(`weight ${name}: ${tensor.data.byteLength} bytes for [${tensor.shape}]`);
    const ptr = this.heap.alloc(bytes);
    this.heap.bytes(ptr, bytes).set(tensor.data);
    return new CpuWeight(name, [...tensor.shape], tensor.dtype, ptr);
  }

  releaseWeight(w: Weight): void {
    if (!(w instanceof CpuWeight || w instanceof CpuVector)) {
      throw new TypeError(`cpu backend: ${w.name} is not a weight of this backend`);
    }
    this.heap.release(w.ptr);
  }

  fromHost(rows: number, cols: number, values: ArrayLike<number>): Activation {
    if (values.length !== rows * cols)
      throw new RangeError(`fromHost: ${values.length} values for [${rows}, ${cols}]`);
    const a = this.acts.create(rows, cols);
    this.heap.f32(a.ptr, a.length).set(values);
    return a;
  }

  createKvStorage(spec: KvCacheSpec): KvStorage {
    const kv = new CpuKvStorage(spec, this.heap);
    this.kvBlocks.register(kv, kv.block);
    return kv;
  }

  prepareBatch(layout: BatchLayout, kvBlockSize: number): PreparedBatch {
    if (layout.positions.length !== layout.rows || layout.slots.length !== layout.rows) {
      throw new RangeError(
        `prepareBatch: ${layout.rows} rows, ${layout.positions.length} positions, ${layout.slots.length} slots`,
      );
    }
    return new CpuBatch(layout, kvBlockSize);
  }

  /** The rows asked for, widened to f32 straight into the activation (bf16: a shift; f16: the table-free rule). */
  embed(table: Weight, ids: Int32Array): Activation {
    const t = matrix(table);
    const [rows, cols] = t.shape as [number, number];
    const out = this.acts.create(ids.length, cols);
    const dst = this.heap.f32(out.ptr, out.length);
    const buffer = this.heap.memory.buffer;
    ids.forEach((id, r) => {
      if (!(id >= 0 && id < rows)) throw new RangeError(`embed: id ${id} outside [0, ${rows})`);
      if (t.dtype === "f32") {
        dst.set(new Float32Array(buffer, t.ptr + id * cols * 4, cols), r * cols);
        return;
      }
      const src = new Uint16Array(buffer, t.ptr + id * cols * 2, cols);
      const widen = t.dtype === "bf16" ? bf16ToF32 : f16ToF32;
      for (let c = 0; c < cols; c++) dst[r * cols + c] = widen(src[c] as number);
    });
    return out;
  }

  rmsNorm(x: Activation, w: Weight, eps: number, groupSize?: number): Activation {
    const a = cpuAct(x);
    const group = groupSize ?? a.cols;
    const v = vector(w);
    if (a.cols % group !== 0 || v.shape[0] !== group)
      throw new RangeError(`rmsNorm: ${a.cols} columns, group ${group}, weight [${w.shape}]`);
    const out = this.acts.create(a.rows, a.cols);
    this.pool.kernels.rmsNorm(a.ptr, v.ptr, out.ptr, a.length, group, eps);
    return out;
  }

  rmsNormRope(x: Activation, w: Weight, eps: number, b: PreparedBatch, spec: RopeSpec): Activation {
    const a = cpuAct(x);
    const d = spec.headDim;
    const v = vector(w);
    if (a.cols % d !== 0 || v.shape[0] !== d)
      throw new RangeError(`rmsNormRope: ${a.cols} columns, head dim ${d}, weight [${w.shape}]`);
    const cs = this.ropeTable(a, cpuBatch(b), spec);
    const out = this.acts.create(a.rows, a.cols);
    // The norm writes out, RoPE rewrites it in place (each pair read before written).
    this.pool.kernels.rmsNorm(a.ptr, v.ptr, out.ptr, a.length, d, eps);
    this.pool.kernels.rope(out.ptr, out.ptr, cs, a.rows, a.cols, d);
    return out;
  }

  rope(x: Activation, b: PreparedBatch, spec: RopeSpec): Activation {
    const a = cpuAct(x);
    if (a.cols % spec.headDim !== 0)
      throw new RangeError(`rope: x [${a.rows}, ${a.cols}], head dim ${spec.headDim}`);
    const cs = this.ropeTable(a, cpuBatch(b), spec);
    const out = this.acts.create(a.rows, a.cols);
    this.pool.kernels.rope(a.ptr, out.ptr, cs, a.rows, a.cols, spec.headDim);
    return out;
  }

  private ropeTable(a: CpuActivation, b: CpuBatch, spec: RopeSpec): number {
    if (b.layout.positions.length !== a.rows || spec.invFreq.length !== spec.headDim / 2) {
      throw new RangeError(
        `rope: x [${a.rows}, ${a.cols}], ${b.layout.positions.length} positions, head dim ${spec.headDim}`,
      );
    }
    return this.batches.rope(b, spec);
  }

  matmul(x: Activation, w: Weight, bias?: Weight): Activation {
    return this.linear(MODE_LINEAR, x, [w], [bias])[0] as CpuActivation;
  }

  // The fused ops: one pool job each (one hand-off to the workers instead of one per product), with the
  // elementwise tail (residual add, silu * up) in the kernel's epilogue over each thread's own columns.

  matmulAdd(x: Activation, w: Weight, residual: Activation, bias?: Weight): Activation {
    const r = cpuAct(residual);
    const [m] = w.shape as [number];
    if (r.rows !== x.rows || r.cols !== m)
      throw new RangeError(`matmulAdd: residual [${r.rows}, ${r.cols}] for [${x.rows}, ${m}]`);
    return this.linear(MODE_ADD, x, [w], [bias], r)[0] as CpuActivation;
  }

  gateUpSilu(x: Activation, gate: Weight, up: Weight): Activation {
    if (gate.dtype !== up.dtype || gate.shape[0] !== up.shape[0] || gate.shape[1] !== up.shape[1])
      throw new RangeError(`gateUpSilu: gate ${gate.dtype} [${gate.shape}], up ${up.dtype} [${up.shape}]`);
    // Segment 1's output holds silu(gate) * up after the job; segment 0's (gate's product) is scratch.
    return this.linear(
      MODE_SILU_MUL,
      x,
      [gate, up],
      [undefined, undefined],
      undefined,
      true,
    )[1] as CpuActivation;
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
    return { q: qa as CpuActivation, k: ka as CpuActivation, v: va as CpuActivation };
  }

  /**
   * One pool job over weights of one dtype sharing x, each product into a new activation (with
   * `firstIsScratch`, the first one's output goes to scratch instead and is not returned).
   */
  private linear(
    mode: number,
    x: Activation,
    ws: readonly Weight[],
    biases: readonly (Weight | undefined)[],
    residual?: CpuActivation,
    firstIsScratch = false,
  ): (CpuActivation | undefined)[] {
    const a = cpuAct(x);
    const n = a.rows;
    const k = a.cols;
    const dtype = (ws[0] as Weight).dtype;
    const outs: (CpuActivation | undefined)[] = [];
    const segments: JobSegment[] = ws.map((w, i) => {
      const t = matrix(w);
      const [m, wk] = t.shape as [number, number];
      if (wk !== k) throw new RangeError(`matmul: x [${n}, ${k}] by weight [${w.shape}]`);
      const bias = biases[i];
      let biasPtr = 0;
      if (bias !== undefined) {
        const b = vector(bias);
        if (b.shape[0] !== m) throw new RangeError(`matmul: bias of ${b.shape[0]} for ${m} outputs`);
        biasPtr = b.ptr;
      }
      let out: number;
      if (i === 0 && firstIsScratch) {
        out = this.opScratch.at(n * m * 4);
        outs.push(undefined);
      } else {
        const y = this.acts.create(n, m);
        out = y.ptr;
        outs.push(y);
      }
      return { w: t.ptr, bias: biasPtr, out, m, aux: residual?.ptr ?? 0 };
    });
    // x interleaved for 2-byte weights (pool.ts, Job.xv).
    const xv = dtype === "f32" ? undefined : this.xvScratch.at(n * k * 4);
    this.pool.run({ mode, x: a.ptr, xv, n, k, dtype: DTYPE_CODE[dtype], segments });
    return outs;
  }

  /** Copies each row's K and V into its slot of layer `layer`, within the memory. */
  writeKv(kv: KvStorage, layer: number, k: Activation, v: Activation, b: PreparedBatch): void {
    const c = cpuKv(kv);
    const ka = cpuAct(k);
    const va = cpuAct(v);
    const width = c.slotWidth;
    const { slots } = cpuBatch(b).layout;
    if (ka.cols !== width || va.cols !== width || ka.rows !== slots.length || va.rows !== slots.length) {
      throw new RangeError(
        `writeKv: k [${ka.rows}, ${ka.cols}], v [${va.rows}, ${va.cols}] for ${slots.length} slots of ${width}`,
      );
    }
    const kPtr = c.k[layer];
    const vPtr = c.v[layer];
    if (kPtr === undefined || vPtr === undefined) throw new RangeError(`writeKv: no layer ${layer}`);
    const mem = this.heap.bytes(0, this.heap.memory.buffer.byteLength);
    const rowBytes = width * 4;
    slots.forEach((slot, r) => {
      if (!(slot >= 0 && slot < c.numSlots))
        throw new RangeError(`writeKv: slot ${slot} outside [0, ${c.numSlots})`);
      mem.copyWithin(kPtr + slot * rowBytes, ka.ptr + r * rowBytes, ka.ptr + (r + 1) * rowBytes);
      mem.copyWithin(vPtr + slot * rowBytes, va.ptr + r * rowBytes, va.ptr + (r + 1) * rowBytes);
    });
  }

  attention(
    q: Activation,
    kv: KvStorage,
    layer: number,
    b: PreparedBatch,
    numHeads: number,
    scale: number,
  ): Activation {
    const c = cpuKv(kv);
    const qa = cpuAct(q);
    checkAttention(qa, c.spec, numHeads);
    const { headDim, numKvHeads } = c.spec;
    const kPtr = c.k[layer];
    const vPtr = c.v[layer];
    if (kPtr === undefined || vPtr === undefined) throw new RangeError(`attention: no layer ${layer}`);
    const vis = this.batches.slots(cpuBatch(b));
    if (vis.all.length > 0 && vis.checkedFor !== c.numSlots) {
      for (const slot of vis.all)
        if (!(slot >= 0 && slot < c.numSlots))
          throw new RangeError(`attention: slot ${slot} outside [0, ${c.numSlots})`);
      vis.checkedFor = c.numSlots;
    }
    const n = qa.rows;
    const out = this.acts.create(n, qa.cols);
    const chunks = this.pool.attentionChunks(n, numHeads, vis.longest, headDim);
    // Each chunk's f32 scores, 16-byte aligned (the scratch is cache-line aligned).
    const scores = this.opScratch.at(chunks * Math.ceil(vis.longest / 4) * 16 + 16);
    this.pool.attention({
      q: qa.ptr,
      k: kPtr,
      v: vPtr,
      slots: vis.slots,
      offsets: vis.offsetsPtr,
      out: out.ptr,
      rows: n,
      heads: numHeads,
      group: numHeads / numKvHeads,
      headDim,
      width: c.slotWidth,
      scale,
      longest: vis.longest,
      scores,
      chunks,
    });
    return out;
  }

  siluMul(gate: Activation, up: Activation): Activation {
    return this.binary("siluMul", gate, up, this.pool.kernels.siluMul);
  }

  add(a: Activation, b: Activation): Activation {
    return this.binary("add", a, b, this.pool.kernels.add);
  }

  /** An elementwise op of two same-shaped activations on its wasm kernel. */
  private binary(
    op: string,
    x: Activation,
    y: Activation,
    kernel: (a: number, b: number, out: number, len: number) => void,
  ): Activation {
    const a = cpuAct(x);
    const b = cpuAct(y);
    if (a.rows !== b.rows || a.cols !== b.cols)
      throw new RangeError(`${op}: [${a.rows}, ${a.cols}] and [${b.rows}, ${b.cols}]`);
    const out = this.acts.create(a.rows, a.cols);
    kernel(a.ptr, b.ptr, out.ptr, a.length);
    return out;
  }

  gatherRows(x: Activation, rows: Int32Array): Activation {
    const a = cpuAct(x);
    const out = this.acts.create(rows.length, a.cols);
    const mem = this.heap.bytes(0, this.heap.memory.buffer.byteLength);
    const rowBytes = a.cols * 4;
    rows.forEach((row, i) => {
      if (!(row >= 0 && row < a.rows)) throw new RangeError(`gather: row ${row} outside [0, ${a.rows})`);
      mem.copyWithin(out.ptr + i * rowBytes, a.ptr + row * rowBytes, a.ptr + (row + 1) * rowBytes);
    });
    return out;
  }

  /** As the reference's: every source read before any destination is written (overlapping moves). */
  copyKv(kv: KvStorage, srcSlots: Int32Array, dstSlots: Int32Array): void {
    const c = cpuKv(kv);
    if (srcSlots.length !== dstSlots.length) {
      throw new RangeError(`copyKv: ${srcSlots.length} sources for ${dstSlots.length} destinations`);
    }
    const width = c.slotWidth;
    for (const s of [...srcSlots, ...dstSlots]) {
      if (!(s >= 0 && s < c.numSlots)) throw new RangeError(`copyKv: slot ${s} outside [0, ${c.numSlots})`);
    }
    for (let layer = 0; layer < c.spec.numLayers; layer++) {
      for (const cache of [c.view(layer, "k"), c.view(layer, "v")]) {
        const staged = Array.from(srcSlots, (s) => cache.slice(s * width, (s + 1) * width));
        staged.forEach((values, i) => {
          cache.set(values, (dstSlots[i] as number) * width);
        });
      }
    }
  }

  async readRows(x: Activation): Promise<Float32Array> {
    const a = cpuAct(x);
    return this.heap.f32(a.ptr, a.length).slice();
  }

  /** On the kernel (assembly/topk.ts): a vocabulary-sized row in about a microsecond. */
  async argmaxRows(x: Activation): Promise<Int32Array> {
    const a = cpuAct(x);
    const ids = this.opScratch.at(a.rows * 4);
    this.pool.kernels.argmaxRows(a.ptr, a.rows, a.cols, ids);
    return this.heap.i32(ids, a.rows).slice();
  }

  /**
   * Softmax + top-k on the kernel (assembly/topk.ts): per row, partial records over column chunks (claimed
   * by the threads once a call has minTopKSplit values), then one merge here.
   */
  async topKRows(x: Activation, k: number): Promise<TopKRows> {
    const a = cpuAct(x);
    checkTopK(k, a.cols);
    const { rows, cols } = a;
    const chunks = this.pool.topKChunks(rows, cols, rows * cols >= this.minTopKSplit);
    const stride = TOPK_RECORD_HEADER + TOPK_PAIR_BYTES * k;
    // The records (f64 inside: 8-byte aligned), the merge's heap of k pairs, ids, values, logSumExp.
    const heapAt = rows * chunks * stride;
    const idsAt = heapAt + TOPK_PAIR_BYTES * k;
    const valuesAt = idsAt + rows * k * 4;
    const lseAt = valuesAt + rows * k * 4;
    const base = this.opScratch.at(lseAt + rows * 4);
    this.pool.topK(a.ptr, rows, cols, k, base, chunks);
    this.pool.kernels.topkMerge(
      base,
      rows,
      k,
      chunks,
      base + idsAt,
      base + valuesAt,
      base + lseAt,
      base + heapAt,
    );
    return {
      k,
      ids: this.heap.i32(base + idsAt, rows * k).slice(),
      values: this.heap.f32(base + valuesAt, rows * k).slice(),
      logSumExp: this.heap.f32(base + lseAt, rows).slice(),
    };
  }

  release(x: Activation): void {
    this.acts.release(cpuAct(x));
  }

  /** Stops the worker threads; the backend is unusable after. */
  destroy(): void {
    this.pool.destroy();
  }
}

function cpuKv(kv: KvStorage): CpuKvStorage {
  if (!(kv instanceof CpuKvStorage)) throw new TypeError("cpu backend: KV storage from another backend");
  return kv;
}

function matrix(w: Weight): CpuWeight {
  if (!(w instanceof CpuWeight))
    throw new TypeError(`cpu backend: weight ${w.name} is not a matrix of this backend`);
  return w;
}

function vector(w: Weight): CpuVector {
  if (!(w instanceof CpuVector))
    throw new TypeError(`cpu backend: weight ${w.name} is not a vector of this backend`);
  return w;
}
