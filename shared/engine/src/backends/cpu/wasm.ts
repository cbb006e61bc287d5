// The kernels' WebAssembly module (built from shared/engine/assembly/ by `npm run build`, never committed)
// and the one shared memory every thread runs it on. The memory is managed from here: a bump
// allocator for weights (loaded once, kept for the backend's life) above a 64 KiB floor that holds the
// thread pool's control block; the module itself keeps nothing in memory (AssemblyScript's stub runtime).
import { readFileSync } from "node:fs";
import type { DType } from "../../tensor.js";
import { DTYPE_BF16, DTYPE_F16, DTYPE_F32 } from "./kernel-abi.js";

const PAGE = 65536;
/** wasm32's whole address space: shared memories must declare a maximum, and weights may need most of it. */
const MAX_PAGES = 65536;
/** Bytes below this hold the pool's control block; the kernel's operands live above. */
export const HEAP_BASE = PAGE;

/** The kernels' dtype code of each weight dtype (kernel-abi.ts). */
export const DTYPE_CODE: Readonly<Record<DType, number>> = {
  f32: DTYPE_F32,
  f16: DTYPE_F16,
  bf16: DTYPE_BF16,
};

export type MatmulFn = (
  x: number,
  xv: number,
  w: number,
  bias: number,
  out: number,
  n: number,
  k: number,
  m: number,
  j0: number,
  j1: number,
  dtype: number,
) => void;

/**
 * The kernel's job(): claims and runs chunks of the job whose arguments are at byte offset `args` until
 * none are left (control.ts); 1 if it ran the last one.
 */
export type JobFn = (args: number, claim: number, done: number) => number;

/** assembly/attention.ts: one query row over its visible KV slots, heads h0 .. h1 - 1. */
export type AttentionFn = (
  q: number,
  k: number,
  v: number,
  slots: number,
  nSlots: number,
  out: number,
  h0: number,
  h1: number,
  group: number,
  headDim: number,
  width: number,
  scale: number,
  scores: number,
) => void;

/** assembly/elementwise.ts. */
export interface ElementwiseFns {
  rmsNorm(x: number, w: number, out: number, total: number, groupSize: number, eps: number): void;
  rope(x: number, out: number, cs: number, rows: number, cols: number, headDim: number): void;
  siluMul(gate: number, up: number, out: number, len: number): void;
  add(a: number, b: number, out: number, len: number): void;
}

/** assembly/topk.ts: thread t's partial records of every row, and their merge into the answer. */
export interface TopKFns {
  /** out[r] (i32) = index of row r's largest value, lowest on ties. */
  argmaxRows(x: number, rows: number, cols: number, out: number): void;
  topkRows(x: number, rows: number, cols: number, k: number, threads: number, t: number, part: number): void;
  topkMerge(
    part: number,
    rows: number,
    k: number,
    parts: number,
    ids: number,
    values: number,
    lse: number,
    heap: number,
  ): void;
}

export interface Kernels extends ElementwiseFns, TopKFns {
  matmul: MatmulFn;
  /** x [n, k] into xv with each 8-value block evens first: the order 2-byte weights are read in. */
  interleave(x: number, xv: number, n: number, k: number): void;
  job: JobFn;
  /** Every chunk of the job at `args`, on the calling thread. */
  jobAll(args: number): void;
  attention: AttentionFn;
}

export interface KernelModule {
  module: WasmModule;
  /** Whether the module uses relaxed-SIMD fused multiply-add (Node 20 refuses it without a flag). */
  relaxed: boolean;
}

/**
 * The part of the WebAssembly JS API used here, typed locally: the project compiles without lib.dom (which
 * is where TypeScript declares WebAssembly), and pulling it in would declare every browser global.
 */
export interface WasmModule {
  readonly __wasmModule?: never;
}
export interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Instance: new (
    module: WasmModule,
    imports: Record<string, Record<string, unknown>>,
  ) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let cached: KernelModule | undefined;

function wasmFile(name: string): Buffer {
  // src/backends/cpu/ and dist/backends/cpu/ both sit three levels under the package root.
  const url = new URL(`../../../dist/wasm/${name}`, import.meta.url);
  try {
    return readFileSync(url);
  } catch (err) {
    throw new Error(
      `the cpu backend's kernel ${name} is missing: run \`npm run build\` (it compiles shared/engine/assembly/): ${
        err instanceof Error ? err.message : String(err)
      }`,
    );
  }
}

/** The relaxed-SIMD build where this runtime validates it, else the plain SIMD build. */
export function kernelModule(): KernelModule {
  if (cached) return cached;
  const relaxed = wasmFile("kernels-relaxed.wasm");
  if (wasm.validate(relaxed)) cached = { module: new wasm.Module(relaxed), relaxed: true };
  else cached = { module: new wasm.Module(wasmFile("kernels.wasm")), relaxed: false };
  return cached;
}

export function sharedMemory(): WasmMemory {
  return new wasm.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
}

export function instantiate(module: WasmModule, memory: WasmMemory): Kernels {
  const instance = new wasm.Instance(module, { env: { memory, abort: () => {} } });
  return {
    matmul: instance.exports.matmul as MatmulFn,
    interleave: instance.exports.interleave as Kernels["interleave"],
    job: instance.exports.job as JobFn,
    jobAll: instance.exports.jobAll as Kernels["jobAll"],
    attention: instance.exports.attention as AttentionFn,
    rmsNorm: instance.exports.rmsNorm as ElementwiseFns["rmsNorm"],
    rope: instance.exports.rope as ElementwiseFns["rope"],
    siluMul: instance.exports.siluMul as ElementwiseFns["siluMul"],
    add: instance.exports.add as ElementwiseFns["add"],
    argmaxRows: instance.exports.argmaxRows as TopKFns["argmaxRows"],
    topkRows: instance.exports.topkRows as TopKFns["topkRows"],
    topkMerge: instance.exports.topkMerge as TopKFns["topkMerge"],
  };
}

/** Allocation granule: every block starts on a cache line and its size is a whole number of lines. */
const LINE = 64;

/**
 * An allocator over the shared memory, growing it on demand: weights (kept for the backend's life),
 * activations, KV caches and scratch regions (freed). First fit over an address-ordered list of free
 * blocks, coalesced with their neighbours when freed; a block freed at the top lowers the top. Blocks are
 * cache-line aligned, so no two allocations share a line (threads write different activations' columns).
 */
export class WasmHeap {
  private top = HEAP_BASE;
  /** Live allocations: address -> bytes (rounded up to LINE). */
  private readonly sizes = new Map<number, number>();
  /** Free blocks below the top, by address: [ptr, bytes] pairs. */
  private readonly free: [number, number][] = [];
  private live = 0;

  constructor(readonly memory: WasmMemory) {}

  /** Bytes from the heap's base to its top (its high-water mark: weights, caches, activations, scratch). */
  get used(): number {
    return this.top - HEAP_BASE;
  }

  /** Bytes allocated and not freed. */
  get liveBytes(): number {
    return this.live;
  }

  alloc(bytes: number): number {
    const size = Math.max(LINE, Math.ceil(bytes / LINE) * LINE);
    let ptr = -1;
    for (let i = 0; i < this.free.length; i++) {
      const block = this.free[i] as [number, number];
      if (block[1] < size) continue;
      ptr = block[0];
      if (block[1] === size) this.free.splice(i, 1);
      else {
        block[0] += size;
        block[1] -= size;
      }
      break;
    }
    if (ptr < 0) {
      ptr = this.top;
      this.top += size;
      const have = this.memory.buffer.byteLength;
      if (this.top > have) this.memory.grow(Math.ceil((this.top - have) / PAGE));
    }
    this.sizes.set(ptr, size);
    this.live += size;
    return ptr;
  }

  /** Gives a block back (any block alloc() returned and not yet freed). */
  release(ptr: number): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) throw new RangeError(`cpu backend: freeing ${ptr}, which is not allocated`);
    this.sizes.delete(ptr);
    this.live -= size;
    // Insert in address order, then merge with the block after and the block before.
    let i = 0;
    while (i < this.free.length && (this.free[i] as [number, number])[0] < ptr) i++;
    this.free.splice(i, 0, [ptr, size]);
    const next = this.free[i + 1];
    const block = this.free[i] as [number, number];
    if (next !== undefined && block[0] + block[1] === next[0]) {
      block[1] += next[1];
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev !== undefined && prev[0] + prev[1] === block[0]) {
      prev[1] += block[1];
      this.free.splice(i, 1);
      i--;
    }
    const last = this.free[this.free.length - 1];
    if (last !== undefined && last[0] + last[1] === this.top) {
      this.top = last[0];
      this.free.pop();
    }
  }

  /** A view of the memory as it is now (a grown shared memory has a new, longer buffer). */
  bytes(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }

  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, length);
  }
}

/**
 * A scratch region of the heap that grows geometrically when a larger one is asked for (the smaller one is
 * freed). Users run one at a time per region; what it holds is gone at the next at().
 */
export class Scratch {
  private ptr = 0;
  private size = 0;

  constructor(private readonly heap: WasmHeap) {}

  /** The region's address, at least `bytes` long. */
  at(bytes: number): number {
    if (bytes > this.size) {
      if (this.size > 0) this.heap.release(this.ptr);
      const size = Math.max(bytes, this.size * 2);
      this.ptr = this.heap.alloc(size);
      this.size = size;
    }
    return this.ptr;
  }
}
