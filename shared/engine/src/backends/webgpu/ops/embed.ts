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
  if (ids.length === 0) return rec.activation(0, table.cols);
  return dispatchEmbed(rec, table, rec.upload(ids), ids.length);
}

/**
 * Rows of the table for `rows` ids already on the device (an argmax's output: always inside the table, for
 * the table is the LM head whose columns it indexes, or a vocabulary of the same size).
 */
export function encodeEmbedIds(rec: Recorder, table: GpuWeight, ids: GPUBuffer, rows: number): GpuActivation {
  if (rows === 0) return rec.activation(0, table.cols);
  return dispatchEmbed(rec, table, ids, rows);
}

function dispatchEmbed(rec: Recorder, table: GpuWeight, ids: GPUBuffer, rows: number): GpuActivation {
  const y = rec.activation(rows, table.cols);
  rec.dispatch({
    key: `embed:${table.dtype}`,
    wgsl: () => embedWgsl(table.dtype),
    params: new ParamBlock().u32(y.elements).u32(table.cols).u32(table.rowStride),
    buffers: [table.buffer, ids, gpuBuf(y)],
    workgroups: elementwiseWorkgroups(y.elements),
  });
  return y;
}
