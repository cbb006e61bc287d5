// The thread pool's control block: Int32 slots in the first page of the shared memory (below HEAP_BASE),
// read by the main thread and every worker. A job is published by writing its arguments, then PENDING,
// then bumping SEQ (Atomics orders the plain writes before it); each worker runs the kernel's job() on
// them, which computes that thread's share of the output columns, and decrements PENDING, the last one
// notifying. The arguments' layout is the kernel's (assembly/matmul.ts, job()).
import type { WasmMemory, WasmModule } from "./wasm.js";

// Not at the bottom: the kernel module's own static data (AssemblyScript's exp() lookup tables, used by the
// silu epilogue) is placed from byte 1024 up, and job arguments written there would corrupt it. 60 KiB
// leaves the module room for its data and stays below HEAP_BASE (64 KiB).
export const CONTROL_BYTE_OFFSET = 61440;
export const SEQ = 0;
export const PENDING = 1;
export const STOP = 2;
/** First slot of the job arguments (assembly/matmul.ts, job()). */
export const ARGS = 3;
/** Job argument slots: 8 fixed (mode, x, n, k, dtype, threads, segments, unused), then 5 per segment. */
export const JOB_FIXED = 8;
export const JOB_SEGMENT = 5;
export const MAX_SEGMENTS = 3;
/** Job slot holding the number of threads taking part. */
export const JOB_THREADS = 5;
export const CONTROL_SLOTS = ARGS + JOB_FIXED + JOB_SEGMENT * MAX_SEGMENTS;
/** Byte offset of the job arguments, the pointer job() is called with. */
export const JOB_BYTE_OFFSET = CONTROL_BYTE_OFFSET + ARGS * 4;

/** The kernel's job modes. */
export const MODE_LINEAR = 0;
export const MODE_SILU_MUL = 1;
export const MODE_ADD = 2;

export interface WorkerInit {
  module: WasmModule;
  memory: WasmMemory;
  /** Worker index, 1.. (the main thread is 0). */
  index: number;
  /** Atomics.load polls before sleeping in Atomics.wait. */
  spin: number;
}

export function control(memory: WasmMemory): Int32Array {
  return new Int32Array(memory.buffer, CONTROL_BYTE_OFFSET, CONTROL_SLOTS);
}

/** Waits until ctl[slot] differs from `value`: `spin` polls first, then sleeps in Atomics.wait. */
export function waitWhile(ctl: Int32Array, slot: number, value: number, spin: number): number {
  for (let i = 0; i < spin; i++) {
    const now = Atomics.load(ctl, slot);
    if (now !== value) return now;
  }
  for (;;) {
    Atomics.wait(ctl, slot, value);
    const now = Atomics.load(ctl, slot);
    if (now !== value) return now;
  }
}
