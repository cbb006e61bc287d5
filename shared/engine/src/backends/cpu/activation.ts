// The cpu backend's activations: f32 [rows, cols], row-major, in the shared wasm memory where every kernel
// reads and writes them, so that no op copies through the JS heap (the host sees values only at
// readRows/argmaxRows/topKRows). Their blocks come from the backend's WasmHeap and go back to it on
// release(), which forward() calls for every intermediate; an activation never released is freed once it
// is garbage-collected (a FinalizationRegistry: its callbacks run between tasks, so a caller that keeps
// dropping unreleased activations inside one long chain of microtasks holds their memory until it yields).
// Using an activation after release() throws instead of reading memory another activation may now own.
import type { Activation } from "../../backend.js";
import type { WasmHeap } from "./wasm.js";

/** An activation's block, shared with its finalizer: the address, and whether it was given back. */
interface Cell {
  ptr: number;
  freed: boolean;
}

export class CpuActivation implements Activation {
  constructor(
    readonly rows: number,
    readonly cols: number,
    /** @internal */ readonly cell: Cell,
  ) {}

  /** Byte offset of the values in the shared memory. */
  get ptr(): number {
    if (this.cell.freed) throw new Error("cpu backend: an activation used after release()");
    return this.cell.ptr;
  }

  get length(): number {
    return this.rows * this.cols;
  }
}

/** Creates activations on a heap and frees them on release() or, failing that, on collection. */
export class Activations {
  private readonly registry = new FinalizationRegistry<Cell>((cell) => this.free(cell));

  constructor(private readonly heap: WasmHeap) {}

  /** A new [rows, cols] activation, its values undefined until an op writes them. */
  create(rows: number, cols: number): CpuActivation {
    const cell = { ptr: this.heap.alloc(rows * cols * 4), freed: false };
    const a = new CpuActivation(rows, cols, cell);
    this.registry.register(a, cell);
    return a;
  }

  /** Gives x's block back now (a second release of the same activation does nothing). */
  release(x: CpuActivation): void {
    this.free(x.cell);
  }

  private free(cell: Cell): void {
    if (cell.freed) return;
    cell.freed = true;
    this.heap.release(cell.ptr);
  }
}

export function cpuAct(x: Activation): CpuActivation {
  if (!(x instanceof CpuActivation)) throw new TypeError("cpu backend: activation from another backend");
  return x;
}
