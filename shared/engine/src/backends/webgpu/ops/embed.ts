// Rows of the embedding table by token id, widened to f32 (the table keeps its checkpoint dtype).
import type { DType } from "../../../tensor.js";
import { ParamBlock, type Recorder } from "../recorder.js";
import { type GpuActivation, type GpuWeight, gpuBuf } from "../resources.js";
import { weightScalar } from "../wgsl.js";
import { elementwiseKernel, elementwiseWorkgroups } from "./elementwise-common.js";

export function embedWgsl(dtype: DType): string {
  return elementwiseKernel(
    `${weightScalar(1, "table", dtype)}
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`,
    `let r = i / params.cols;
  y[i] = tableAt(u32(ids[r]) * params.rowStride + i % params.cols);`,
    ["cols", "rowStride"],
  );
}

export function encodeEmbed(rec: Recorder, table: GpuWeight, ids: Int32Array): GpuActivation {
  for (const id of ids) {
    if (!(id >= 0 && id < table.rows)) throw new RangeError(`embed: id ${id} outside [0, ${table.rows})`);
  }
  const y = rec.activation(ids.length, table.cols);
  if (y.elements === 0) return y;
  rec.dispatch({
    key: `embed:${table.dtype}`,
    wgsl: () => embedWgsl(table.dtype),
    params: new ParamBlock().u32(y.elements).u32(table.cols).u32(table.rowStride),
    buffers: [table.buffer, rec.upload(ids), gpuBuf(y)],
    workgroups: elementwiseWorkgroups(y.elements),
  });
  return y;
}
