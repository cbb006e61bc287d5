// The thread pool's control block: Int32 slots at the bottom of the shared memory (below HEAP_BASE),
// read by the main thread and every worker. A job is published by writing its arguments, then PENDING,
// then bumping SEQ (Atomics orders the plain writes before it); each worker computes its share of the
// output columns and decrements PENDING, the last one notifying.
import type { WasmMemory, WasmModule } from "./wasm.js";

export const CONTROL_BYTE_OFFSET = 1024;
export const SEQ = 0;
export const PENDING = 1;
export const STOP = 2;
/** x, w, bias, out, n, k, m, dtype, threads taking part. */
export const ARGS = 3;
export const CONTROL_SLOTS = ARGS + 9;

export interface WorkerInit {
  module: WasmModule;
  memory: WasmMemory;
  /** Worker index, 1.. (the main thread is 0). */
  index: number;
  /** Atomics.load polls before sleeping in Atomics.wait. */
  spin: number;
}

/** Output columns [j0, j1) of thread `t` of `threads`: chunks in multiples of 4 (the kernel's row tile). */
export function share(m: number, threads: number, t: number): [number, number] {
  const per = Math.ceil(m / threads / 4) * 4;
  return [Math.min(m, t * per), Math.min(m, (t + 1) * per)];
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
