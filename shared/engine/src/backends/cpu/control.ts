// The thread pool's control block: Int32 slots in the first page of the shared memory (below HEAP_BASE),
// read by the main thread and every worker. A job is published by closing CLAIM (its next chunk set to
// 0xffff: none), writing the arguments, zeroing DONE, opening CLAIM at chunk 0 under the job's tag, then
// bumping SEQ to wake the workers (Atomics orders the plain writes before it). Every thread, the main one
// included, then runs the kernel's job(), which claims chunks through CLAIM and counts them in DONE; the
// thread that finishes the last chunk notifies DONE. The arguments' layout is the kernel's
// (assembly/matmul.ts, job()).
import type { WasmMemory, WasmModule } from "./wasm.js";

// Not at the bottom: the kernel module's own static data (AssemblyScript's exp() lookup tables, used by the
// silu epilogue) is placed from byte 1024 up, and job arguments written there would corrupt it. 60 KiB
// leaves the module room for its data and stays below HEAP_BASE (64 KiB).
export const CONTROL_BYTE_OFFSET = 61440;
// Four cache lines (16 slots each) that different threads write at different times, so that no write
// invalidates a line another thread is reading for another purpose: SEQ and STOP (the main thread writes
// them once a job; idle workers spin on SEQ), the arguments (written before a job, only read during it),
// DONE and CLAIM (every thread writes them during a job).
export const SEQ = 0;
export const STOP = 1;
/** First slot of the job arguments (assembly/matmul.ts, job()). */
export const ARGS = 16;
/** Chunks of the current job finished. */
export const DONE = 48;
/** Job argument slots: 8 fixed (mode, x, n, k, dtype, chunks, segments, aux), then 5 per segment. */
export const JOB_FIXED = 8;
export const JOB_SEGMENT = 5;
export const MAX_SEGMENTS = 3;
/** Job slot holding the number of chunks its columns are cut into. */
export const JOB_CHUNKS = 5;
/** Job slot of a mode's extra pointer (products: xv, x interleaved for 2-byte weights; MODE_TOPK: the records). */
export const JOB_AUX = 7;
/** The job's tag (high 16 bits) and its next unclaimed chunk (low 16; 0xffff: none). */
export const CLAIM = 64;
export const CONTROL_SLOTS = CLAIM + 1;
/** Byte offset of the job arguments, the pointer job() is called with. */
export const JOB_BYTE_OFFSET = CONTROL_BYTE_OFFSET + ARGS * 4;
export const CLAIM_BYTE_OFFSET = CONTROL_BYTE_OFFSET + CLAIM * 4;
export const DONE_BYTE_OFFSET = CONTROL_BYTE_OFFSET + DONE * 4;
/** A chunk count a job never reaches: CLAIM's low half while no chunk may be claimed. */
export const NO_CHUNK = 0xffff;

/** The kernel's job modes. */
export const MODE_LINEAR = 0;
export const MODE_SILU_MUL = 1;
export const MODE_ADD = 2;
/** Not a product: softmax + top-k partials over column shares (assembly/topk.ts). */
export const MODE_TOPK = 3;
/** Not a product: attention, the (row, head) pairs cut into chunks (assembly/attention.ts). */
export const MODE_ATTENTION = 4;

export interface WorkerInit {
  module: WasmModule;
  memory: WasmMemory;
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
