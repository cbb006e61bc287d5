// The `cpu` linear kernels: the WebAssembly SIMD products of assembly/train/linear.ts (embedded by
// wasm/build.ts), run synchronously on the calling thread over a memory of their own. Each call copies its
// operands in and the result out (O(operands) next to O(rows * in * out) multiply-adds), so weights that
// change every step need no residency bookkeeping. The module is compiled once per process.
import { LINEAR_KERNELS_WASM_BASE64 } from "../wasm/linear-kernels.gen.js";
import type { LinearKernels } from "./linear-kernels.js";

interface Exports {
  abT(a: number, b: number, c: number, m: number, n: number, k: number): void;
  atB(a: number, sp: number, st: number, b: number, s: number, p: number, q: number, c: number): void;
}

/**
 * The part of the WebAssembly JS API used here, typed locally as backends/cpu/wasm.ts does: the project
 * compiles without lib.dom, where TypeScript declares WebAssembly.
 */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Memory: new (descriptor: {
    initial: number;
  }) => { readonly buffer: ArrayBufferLike; grow(pages: number): number };
  Instance: new (
    module: object,
    imports: Record<string, Record<string, unknown>>,
  ) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const PAGE = 65536;
let module: object | undefined;

class WasmLinear implements LinearKernels {
  readonly name = "cpu" as const;
  private readonly memory = new wasm.Memory({ initial: 1 });
  private readonly k: Exports;

  constructor(mod: object) {
    const instance = new wasm.Instance(mod, { env: { memory: this.memory } });
    this.k = instance.exports as unknown as Exports;
  }

  /** Byte offsets of consecutive f32 regions of the given lengths (16-byte aligned), the memory grown to fit. */
  private layout(...lengths: number[]): number[] {
    const at: number[] = [];
    let end = 0;
    for (const n of lengths) {
      at.push(end);
      end += Math.ceil((n * 4) / 16) * 16;
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    return at;
  }

  private put(at: number, values: Float32Array): void {
    new Float32Array(this.memory.buffer, at, values.length).set(values);
  }

  private view(at: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, at, n);
  }

  forward(x: Float32Array, w: Float32Array, rows: number, inF: number, outF: number): Float32Array {
    if (x.length !== rows * inF || w.length !== outF * inF)
      throw new RangeError(
        `linearForward (cpu): x of ${x.length} for [${rows}, ${inF}], W of ${w.length} for [${outF}, ${inF}]`,
      );
    const [px, pw, py] = this.layout(x.length, w.length, rows * outF) as [number, number, number];
    this.put(px, x);
    this.put(pw, w);
    this.k.abT(px, pw, py, rows, outF, inF);
    return this.view(py, rows * outF).slice();
  }

  backwardInput(
    dy: Float32Array,
    w: Float32Array,
    rows: number,
    inF: number,
    outF: number,
    into?: Float32Array,
  ): Float32Array {
    if (
      dy.length !== rows * outF ||
      w.length !== outF * inF ||
      (into !== undefined && into.length !== rows * inF)
    )
      throw new RangeError(
        `linearBackwardInput (cpu): dy ${dy.length} for [${rows}, ${outF}], W ${w.length}`,
      );
    const [pd, pw, px] = this.layout(dy.length, w.length, rows * inF) as [number, number, number];
    this.put(pd, dy);
    this.put(pw, w);
    const out = this.view(px, rows * inF);
    if (into === undefined) out.fill(0);
    else out.set(into);
    // dx[r, :] += sum_j dy[r, j] W[j, :]
    this.k.atB(pd, outF, 1, pw, outF, rows, inF, px);
    const dx = into ?? new Float32Array(rows * inF);
    dx.set(this.view(px, rows * inF));
    return dx;
  }

  backwardWeight(
    dy: Float32Array,
    x: Float32Array,
    rows: number,
    inF: number,
    outF: number,
    dw: Float32Array,
  ): void {
    if (dy.length !== rows * outF || x.length !== rows * inF || dw.length !== outF * inF)
      throw new RangeError(`linearBackwardWeight (cpu): dy ${dy.length}, x ${x.length}, dW ${dw.length}`);
    const [pd, px, pw] = this.layout(dy.length, x.length, dw.length) as [number, number, number];
    this.put(pd, dy);
    this.put(px, x);
    this.put(pw, dw);
    // dW[j, :] += sum_r dy[r, j] x[r, :]
    this.k.atB(pd, 1, outF, px, rows, outF, inF, pw);
    dw.set(this.view(pw, dw.length));
  }
}

/** The `cpu` kernels; throws where WebAssembly SIMD is not available. */
export function wasmLinear(): LinearKernels {
  module ??= new wasm.Module(Buffer.from(LINEAR_KERNELS_WASM_BASE64, "base64"));
  return new WasmLinear(module);
}
