// y = silu(gate) * up with silu(g) = g / (1 + e^-g), one thread per element.
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, gpuBuf } from "../resources.js";
import { elementwiseKernel, elementwiseWorkgroups } from "./elementwise-common.js";

export function siluMulWgsl(): string {
  return elementwiseKernel(
    `@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`,
    // For g below about -88, e^-g overflows to +inf and g / inf is -0: the limit, no NaN.
    `let g = gate[i];
  y[i] = g / (1.0 + exp(-g)) * up[i];`,
  );
}

export function encodeSiluMul(rec: Recorder, gate: GpuActivation, up: GpuActivation): GpuActivation {
  if (gate.rows !== up.rows || gate.cols !== up.cols) {
    throw new RangeError(`siluMul: [${gate.rows}, ${gate.cols}] and [${up.rows}, ${up.cols}]`);
  }
  const y = rec.activation(gate.rows, gate.cols);
  rec.dispatch({
    key: "siluMul",
    wgsl: siluMulWgsl,
    params: new ParamBlock().u32(gate.elements),
    buffers: [gpuBuf(gate), gpuBuf(up), gpuBuf(y)],
    workgroups: elementwiseWorkgroups(gate.elements),
  });
  return y;
}
