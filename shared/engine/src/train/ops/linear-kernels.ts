// The three products of a linear layer as one pluggable set: `reference` (linear.ts, plain TypeScript with
// f64 sums: the definition) and `cpu` (linear-wasm.ts, WebAssembly SIMD with f32 sums, checked against the
// reference). The head pass takes either; everything else in a step is the same code.
import { linearBackwardInput, linearBackwardWeight, linearForward } from "./linear.js";

export type LinearKernelsName = "reference" | "cpu";

export interface LinearKernels {
  readonly name: LinearKernelsName;
  /** y[rows, out] = x[rows, in] W^T. */
  forward(x: Float32Array, w: Float32Array, rows: number, inF: number, outF: number): Float32Array;
  /** dx[rows, in] = dy W, added into `into` when given. */
  backwardInput(
    dy: Float32Array,
    w: Float32Array,
    rows: number,
    inF: number,
    outF: number,
    into?: Float32Array,
  ): Float32Array;
  /** dW[out, in] += dy^T x. */
  backwardWeight(
    dy: Float32Array,
    x: Float32Array,
    rows: number,
    inF: number,
    outF: number,
    dw: Float32Array,
  ): void;
}

export const REFERENCE_LINEAR: LinearKernels = Object.freeze({
  name: "reference" as const,
  forward: linearForward,
  backwardInput: linearBackwardInput,
  backwardWeight: linearBackwardWeight,
});
