// The thread pool's control block: Int32 slots in the first page of the shared memory (below HEAP_BASE),
// read by the main thread and every worker. A job is published by closing CLAIM (its next chunk set to
// NO_CHUNK), writing the arguments, zeroing DONE, opening CLAIM at chunk 0 under the job's tag, then
// bumping SEQ to wake the workers (Atomics orders the plain writes before it). Every thread, the main one
// included, then runs the kernel's job(), which claims chunks through CLAIM and counts them in DONE; the
// thread that finishes the last chunk notifies DONE. The arguments' layout, the modes and the claim word's
// fields are kernel-abi.ts's, the one source compiled into the kernels too (assembly/jobs.ts, job()).
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
/** First slot of the job arguments (kernel-abi.ts lays them out; assembly/jobs.ts, job(), reads them). */
export const ARGS = 16;
/** Chunks of the current job finished. */
export const DONE = 48;
/** The claim word (kernel-abi.ts, CHUNK_MASK): the job's tag and its next unclaimed chunk. */
export const CLAIM = 64;
export const CONTROL_SLOTS = CLAIM + 1;
/** Byte offset of the job arguments, the pointer job() is called with. */
export const JOB_BYTE_OFFSET = CONTROL_BYTE_OFFSET + ARGS * 4;
export const CLAIM_BYTE_OFFSET = CONTROL_BYTE_OFFSET + CLAIM * 4;
export const DONE_BYTE_OFFSET = CONTROL_BYTE_OFFSET + DONE * 4;

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
