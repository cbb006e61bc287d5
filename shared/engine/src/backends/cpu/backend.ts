// The `cpu` backend: the reference backend's ops, with every matrix product (the LM head included) on the
// WebAssembly SIMD kernel (assembly/matmul.ts) split across worker threads over one shared memory.
// Two-dimensional weights are copied once into that memory in their checkpoint dtype (bf16/f16 stay 2
// bytes) and are never widened whole; the embedding rows a pass needs are widened on the fly. One-
// dimensional weights (norms, biases) are small and stay f32 on the JS side for the reference ops.
//
// The fused ops (qkvProject, gateUpSilu, matmulAdd) each run as one pool job: one hand-off to the workers,
// the residual add and silu * up done by the kernel on each thread's columns.
//
// The KV cache lives in the same memory (kv.ts) and attention runs there (assembly/attention.ts), over
// each row's visible slots resolved once per batch.
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
import { act, RefActivation, batch as refBatch, weight as refWeight } from "../reference/types.js";
import { MODE_ADD, MODE_LINEAR, MODE_SILU_MUL } from "./control.js";
import { CpuKvStorage, type VisibleSlots, visibleSlots } from "./kv.js";
import { type JobSegment, MatmulPool } from "./pool.js";
import { DTYPE_CODE, kernelModule, Scratch, sharedMemory, WasmHeap } from "./wasm.js";

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
  /** The products' scratch (x, out, bias); products run one at a time. */
  private readonly scratch: Scratch;
  /** The main-thread ops' scratch (attention, norms, RoPE, elementwise), apart from the products'. */
  private readonly opScratch: Scratch;
  /** Each batch's visible slots per row, resolved on the first layer's attention. */
  private readonly visible = new WeakMap<PreparedBatch, VisibleSlots>();
  /** Each batch's RoPE cos/sin table ([rows, headDim]: cos of each pair, then sin), for one RopeSpec. */
  private readonly ropeTables = new WeakMap<PreparedBatch, { spec: RopeSpec; cs: Float32Array }>();
  /** 1-D weights (norms) copied once into the wasm memory, for the norm kernels. */
  private readonly vectors = new WeakMap<Weight, number>();

  constructor(
    private readonly heap: WasmHeap,
    private readonly pool: MatmulPool,
    /** Whether the kernel runs relaxed-SIMD fused multiply-add (else multiply then add). */
    readonly fma: boolean,
  ) {
    this.scratch = new Scratch(heap);
    this.opScratch = new Scratch(heap);
  }

  get threads(): number {
    return this.pool.threads;
  }

  /** Bytes of the shared memory in use (weights and the product scratch). */
  get wasmBytes(): number {
    return this.heap.used;
  }

  loadWeight(name: string, tensor: HostTensor): Weight {
    if (tensor.shape.length !== 2) {
      // Kept f32 on the JS side (biases are read from there) and also copied into the wasm memory once.
      const w = this.ref.loadWeight(name, tensor);
      const data = refWeight(w).data;
      const ptr = this.heap.alloc(data.length * 4);
      this.heap.f32(ptr, data.length).set(data);
      this.vectors.set(w, ptr);
      return w;
    }
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
    return new CpuKvStorage(spec, this.heap);
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
    const a = act(x);
    const group = groupSize ?? a.cols;
    const wPtr = this.vectors.get(w);
    if (wPtr === undefined || a.cols % group !== 0 || w.shape[0] !== group)
      throw new RangeError(`rmsNorm: ${a.cols} columns, group ${group}, weight [${w.shape}]`);
    const len = a.data.length;
    const base = this.opScratch.at(len * 4);
    this.heap.f32(base, len).set(a.data);
    this.pool.kernels.rmsNorm(base, wPtr, base, len, group, eps);
    return new RefActivation(a.rows, a.cols, this.heap.f32(base, len).slice());
  }

  rmsNormRope(x: Activation, w: Weight, eps: number, b: PreparedBatch, spec: RopeSpec): Activation {
    const a = act(x);
    const d = spec.headDim;
    const wPtr = this.vectors.get(w);
    if (wPtr === undefined || a.cols % d !== 0 || w.shape[0] !== d)
      throw new RangeError(`rmsNormRope: ${a.cols} columns, head dim ${d}, weight [${w.shape}]`);
    const cs = this.ropeTable(a, b, spec);
    const len = a.data.length;
    const base = this.opScratch.at(len * 4 + cs.length * 4);
    const csPtr = base + len * 4;
    this.heap.f32(base, len).set(a.data);
    this.heap.f32(csPtr, cs.length).set(cs);
    // In place: the norm writes x's slot, RoPE reads and rewrites it (each pair read before written).
    this.pool.kernels.rmsNorm(base, wPtr, base, len, d, eps);
    this.pool.kernels.rope(base, base, csPtr, a.rows, a.cols, d);
    return new RefActivation(a.rows, a.cols, this.heap.f32(base, len).slice());
  }

  /**
   * cos and sin of position * invFreq for each row of the batch: as the reference, the angle is rounded to
   * f32 first (transformers forms it in float32) and cos/sin taken in f64, then stored as f32.
   */
  private ropeTable(a: RefActivation, b: PreparedBatch, spec: RopeSpec): Float32Array {
    const { positions } = refBatch(b).layout;
    const d = spec.headDim;
    const half = d / 2;
    if (positions.length !== a.rows || spec.invFreq.length !== half)
      throw new RangeError(`rope: x [${a.rows}, ${a.cols}], ${positions.length} positions, head dim ${d}`);
    const cached = this.ropeTables.get(b);
    if (cached !== undefined && cached.spec === spec) return cached.cs;
    const cs = new Float32Array(a.rows * d);
    for (let r = 0; r < a.rows; r++) {
      const pos = positions[r] as number;
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(pos * (spec.invFreq[i] as number));
        cs[r * d + i] = Math.cos(angle);
        cs[r * d + half + i] = Math.sin(angle);
      }
    }
    this.ropeTables.set(b, { spec, cs });
    return cs;
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
    let at = this.scratch.at(bytes);
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

  rope(x: Activation, b: PreparedBatch, spec: RopeSpec): Activation {
    const a = act(x);
    if (a.cols % spec.headDim !== 0)
      throw new RangeError(`rope: x [${a.rows}, ${a.cols}], head dim ${spec.headDim}`);
    const cs = this.ropeTable(a, b, spec);
    const len = a.data.length;
    const base = this.opScratch.at(len * 4 + cs.length * 4);
    const csPtr = base + len * 4;
    this.heap.f32(base, len).set(a.data);
    this.heap.f32(csPtr, cs.length).set(cs);
    this.pool.kernels.rope(base, base, csPtr, a.rows, a.cols, spec.headDim);
    return new RefActivation(a.rows, a.cols, this.heap.f32(base, len).slice());
  }

  writeKv(kv: KvStorage, layer: number, k: Activation, v: Activation, b: PreparedBatch): void {
    const c = cpuKv(kv);
    const ka = act(k);
    const va = act(v);
    const width = c.slotWidth;
    const { slots } = refBatch(b).layout;
    if (ka.cols !== width || va.cols !== width || ka.rows !== slots.length || va.rows !== slots.length) {
      throw new RangeError(
        `writeKv: k [${ka.rows}, ${ka.cols}], v [${va.rows}, ${va.cols}] for ${slots.length} slots of ${width}`,
      );
    }
    const kc = c.view(layer, "k");
    const vc = c.view(layer, "v");
    slots.forEach((slot, r) => {
      if (!(slot >= 0 && slot < c.numSlots))
        throw new RangeError(`writeKv: slot ${slot} outside [0, ${c.numSlots})`);
      kc.set(ka.data.subarray(r * width, (r + 1) * width), slot * width);
      vc.set(va.data.subarray(r * width, (r + 1) * width), slot * width);
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
    const qa = act(q);
    const { headDim, numKvHeads } = c.spec;
    if (qa.cols !== numHeads * headDim || numHeads % numKvHeads !== 0) {
      throw new RangeError(
        `attention: q [${qa.rows}, ${qa.cols}] with ${numHeads} heads of ${headDim}, ${numKvHeads} KV heads`,
      );
    }
    const kPtr = c.k[layer];
    const vPtr = c.v[layer];
    if (kPtr === undefined || vPtr === undefined) throw new RangeError(`attention: no layer ${layer}`);
    const rb = refBatch(b);
    let vis = this.visible.get(b);
    if (vis === undefined) {
      vis = visibleSlots(rb.layout, rb.blockSize);
      for (const slot of vis.slots)
        if (!(slot >= 0 && slot < c.numSlots))
          throw new RangeError(`attention: slot ${slot} outside [0, ${c.numSlots})`);
      this.visible.set(b, vis);
    }
    const n = qa.rows;
    let longest = 0;
    for (let r = 0; r < n; r++)
      longest = Math.max(longest, (vis.offsets[r + 1] as number) - (vis.offsets[r] as number));
    const qBytes = n * qa.cols * 4;
    const slotBytes = vis.slots.length * 4;
    // Scores are f64, 8-byte aligned after the i32 slots.
    const scoresAt = Math.ceil((2 * qBytes + slotBytes) / 8) * 8;
    const base = this.opScratch.at(scoresAt + longest * 8);
    const outPtr = base + qBytes;
    const slotsPtr = outPtr + qBytes;
    this.heap.f32(base, n * qa.cols).set(qa.data);
    new Int32Array(this.heap.memory.buffer, slotsPtr, vis.slots.length).set(vis.slots);
    const kernel = this.pool.kernels.attention;
    const group = numHeads / numKvHeads;
    const rowBytes = qa.cols * 4;
    for (let r = 0; r < n; r++) {
      const from = vis.offsets[r] as number;
      const count = (vis.offsets[r + 1] as number) - from;
      kernel(
        base + r * rowBytes,
        kPtr,
        vPtr,
        slotsPtr + from * 4,
        count,
        outPtr + r * rowBytes,
        numHeads,
        group,
        headDim,
        c.slotWidth,
        scale,
        base + scoresAt,
      );
    }
    return new RefActivation(n, qa.cols, this.heap.f32(outPtr, n * qa.cols).slice());
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
    const a = act(x);
    const b = act(y);
    if (a.rows !== b.rows || a.cols !== b.cols)
      throw new RangeError(`${op}: [${a.rows}, ${a.cols}] and [${b.rows}, ${b.cols}]`);
    const len = a.data.length;
    const base = this.opScratch.at(len * 8);
    const bPtr = base + len * 4;
    this.heap.f32(base, len).set(a.data);
    this.heap.f32(bPtr, len).set(b.data);
    kernel(base, bPtr, base, len);
    return new RefActivation(a.rows, a.cols, this.heap.f32(base, len).slice());
  }

  gatherRows(x: Activation, rows: Int32Array): Activation {
    return this.ref.gatherRows(x, rows);
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

function cpuKv(kv: KvStorage): CpuKvStorage {
  if (!(kv instanceof CpuKvStorage)) throw new TypeError("cpu backend: KV storage from another backend");
  return kv;
}
