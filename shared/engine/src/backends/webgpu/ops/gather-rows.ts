// Rows of an activation by index (the rows whose logits are wanted, or a tree's accepted branch).
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, gpuBuf } from "../resources.js";
import { elementwiseKernel, elementwiseWorkgroups } from "./elementwise-common.js";

export function gatherRowsWgsl(): string {
  return elementwiseKernel(
    `@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`,
    `let r = i / params.cols;
  y[i] = x[u32(ids[r]) * params.cols + i % params.cols];`,
    ["cols"],
  );
}

export function encodeGatherRows(rec: Recorder, x: GpuActivation, rows: Int32Array): GpuActivation {
  for (const r of rows) {
    if (!(r >= 0 && r < x.rows)) throw new RangeError(`gatherRows: row ${r} outside [0, ${x.rows})`);
  }
  const y = rec.activation(rows.length, x.cols);
  if (y.elements === 0) return y;
  rec.dispatch({
    key: "gatherRows",
    wgsl: gatherRowsWgsl,
    params: new ParamBlock().u32(y.elements).u32(x.cols),
    buffers: [gpuBuf(x), rec.upload(rows), gpuBuf(y)],
    workgroups: elementwiseWorkgroups(y.elements),
  });
  return y;
}
