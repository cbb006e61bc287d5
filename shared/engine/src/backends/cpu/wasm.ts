// The matmul kernel's WebAssembly module (built from shared/engine/assembly/ by `npm run build`, never
// committed) and the one shared memory every thread runs it on. The memory is managed from here: a bump
// allocator for weights (loaded once, kept for the backend's life) above a 64 KiB floor that holds the
// thread pool's control block; the module itself keeps nothing in memory (AssemblyScript's stub runtime).
import { readFileSync } from "node:fs";
import type { DType } from "../../tensor.js";

const PAGE = 65536;
/** wasm32's whole address space: shared memories must declare a maximum, and weights may need most of it. */
const MAX_PAGES = 65536;
/** Bytes below this hold the pool's control block; the kernel's operands live above. */
export const HEAP_BASE = PAGE;

/** The kernel's dtype codes (assembly/matmul.ts). */
export const DTYPE_CODE: Readonly<Record<DType, number>> = { f32: 0, f16: 1, bf16: 2 };

export type MatmulFn = (
  x: number,
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

/** The kernel's job(): thread t's share of the job whose arguments are at byte offset `args`. */
export type JobFn = (args: number, t: number) => void;

/** assembly/attention.ts: one query row over its visible KV slots, every head. */
export type AttentionFn = (
  q: number,
  k: number,
  v: number,
  slots: number,
  nSlots: number,
  out: number,
  numHeads: number,
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

export interface Kernels extends ElementwiseFns {
  matmul: MatmulFn;
  job: JobFn;
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
  const relaxed = wasmFile("matmul-relaxed.wasm");
  if (wasm.validate(relaxed)) cached = { module: new wasm.Module(relaxed), relaxed: true };
  else cached = { module: new wasm.Module(wasmFile("matmul.wasm")), relaxed: false };
  return cached;
}

export function sharedMemory(): WasmMemory {
  return new wasm.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
}

export function instantiate(module: WasmModule, memory: WasmMemory): Kernels {
  const instance = new wasm.Instance(module, { env: { memory, abort: () => {} } });
  return {
    matmul: instance.exports.matmul as MatmulFn,
    job: instance.exports.job as JobFn,
    attention: instance.exports.attention as AttentionFn,
    rmsNorm: instance.exports.rmsNorm as ElementwiseFns["rmsNorm"],
    rope: instance.exports.rope as ElementwiseFns["rope"],
    siluMul: instance.exports.siluMul as ElementwiseFns["siluMul"],
    add: instance.exports.add as ElementwiseFns["add"],
  };
}

/** A bump allocator over the shared memory, growing it on demand. */
export class WasmHeap {
  private top = HEAP_BASE;

  constructor(readonly memory: WasmMemory) {}

  /** Bytes handed out so far (weights and scratch). */
  get used(): number {
    return this.top - HEAP_BASE;
  }

  alloc(bytes: number): number {
    const ptr = Math.ceil(this.top / 64) * 64; // cache-line aligned
    this.top = ptr + bytes;
    const have = this.memory.buffer.byteLength;
    if (this.top > have) this.memory.grow(Math.ceil((this.top - have) / PAGE));
    return ptr;
  }

  /** Gives back the most recent allocation if it ends at the top (the matmul scratch being resized). */
  freeTop(ptr: number, bytes: number): void {
    if (ptr + bytes === this.top) this.top = ptr;
  }

  /** A view of the memory as it is now (a grown shared memory has a new, longer buffer). */
  bytes(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }
}

/**
 * A scratch region of the heap that grows geometrically when a larger one is asked for; its previous
 * allocation is given back when it is still the top of the heap. Users run one at a time per region.
 */
export class Scratch {
  private ptr = 0;
  private size = 0;

  constructor(private readonly heap: WasmHeap) {}

  /** The region's address, at least `bytes` long. */
  at(bytes: number): number {
    if (bytes > this.size) {
      if (this.size > 0) this.heap.freeTop(this.ptr, this.size);
      const size = Math.max(bytes, this.size * 2);
      this.ptr = this.heap.alloc(size);
      this.size = size;
    }
    return this.ptr;
  }
}
