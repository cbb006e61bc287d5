// y = a + b, one thread per element.
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, gpuBuf } from "../resources.js";
import { elementwiseKernel, elementwiseWorkgroups } from "./elementwise-common.js";

export function addWgsl(): string {
  return elementwiseKernel(
    `@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`,
    "y[i] = a[i] + b[i];",
  );
}

export function encodeAdd(rec: Recorder, a: GpuActivation, b: GpuActivation): GpuActivation {
  if (a.rows !== b.rows || a.cols !== b.cols) {
    throw new RangeError(`add: [${a.rows}, ${a.cols}] and [${b.rows}, ${b.cols}]`);
  }
  const y = rec.activation(a.rows, a.cols);
  rec.dispatch({
    key: "add",
    wgsl: addWgsl,
    params: new ParamBlock().u32(a.elements),
    buffers: [gpuBuf(a), gpuBuf(b), gpuBuf(y)],
    workgroups: elementwiseWorkgroups(a.elements),
  });
  return y;
}
