// The `reference` backend: plain TypeScript over Float32Array, every op run at once, clear before fast
// and never optimised. It is the yardstick the cpu and webgpu backends are checked against (the op
// conformance test) and the backend the model's parity test runs on. Weights are widened to f32 at load.
import type {
  Activation,
  Backend,
  BatchLayout,
  KvCacheSpec,
  KvStorage,
  PreparedBatch,
  QkvActivations,
  QkvBiases,
  RopeSpec,
  TopKRows,
  Weight,
} from "../../backend.js";
import { type HostTensor, toFloat32 } from "../../tensor.js";
import { attention } from "./attention.js";
import { add, argmaxRows, gather, siluMul } from "./elementwise.js";
import { copyKv, writeKv } from "./kv.js";
import { matmul } from "./matmul.js";
import { rmsNorm } from "./norm.js";
import { rope } from "./rope.js";
import { topKRows } from "./topk.js";
import { act, batch, kvStorage, RefActivation, RefBatch, RefKvStorage, RefWeight, weight } from "./types.js";

export class ReferenceBackend implements Backend {
  readonly kind = "reference" as const;

  loadWeight(name: string, tensor: HostTensor): Weight {
    return new RefWeight(name, [...tensor.shape], tensor.dtype, toFloat32(tensor));
  }

  /** An activation from host values (tests, and callers that feed features in). */
  fromHost(rows: number, cols: number, values: ArrayLike<number>): Activation {
    return new RefActivation(rows, cols, Float32Array.from(values));
  }

  createKvStorage(spec: KvCacheSpec): KvStorage {
    return new RefKvStorage(spec);
  }

  prepareBatch(layout: BatchLayout, kvBlockSize: number): PreparedBatch {
    if (layout.positions.length !== layout.rows || layout.slots.length !== layout.rows) {
      throw new RangeError(
        `prepareBatch: ${layout.rows} rows, ${layout.positions.length} positions, ${layout.slots.length} slots`,
      );
    }
    return new RefBatch(layout, kvBlockSize);
  }

  embed(table: Weight, ids: Int32Array): Activation {
    const t = weight(table);
    return gather(t.data, t.shape[1] as number, ids);
  }

  rmsNorm(x: Activation, w: Weight, eps: number, groupSize?: number): Activation {
    return rmsNorm(act(x), weight(w).data, eps, groupSize);
  }

  matmul(x: Activation, w: Weight, bias?: Weight): Activation {
    const wt = weight(w);
    return matmul(act(x), wt.data, wt.shape, bias === undefined ? undefined : weight(bias).data);
  }

  rope(x: Activation, b: PreparedBatch, spec: RopeSpec): Activation {
    return rope(act(x), batch(b).layout.positions, spec);
  }

  writeKv(kv: KvStorage, layer: number, k: Activation, v: Activation, b: PreparedBatch): void {
    writeKv(kvStorage(kv), layer, act(k), act(v), batch(b));
  }

  attention(
    q: Activation,
    kv: KvStorage,
    layer: number,
    b: PreparedBatch,
    numHeads: number,
    scale: number,
  ): Activation {
    return attention(act(q), kvStorage(kv), layer, batch(b), numHeads, scale);
  }

  siluMul(gate: Activation, up: Activation): Activation {
    return siluMul(act(gate), act(up));
  }

  add(a: Activation, b: Activation): Activation {
    return add(act(a), act(b));
  }

  // The fused ops, as the plain ops composed (the definition the fast backends are checked against).

  matmulAdd(x: Activation, w: Weight, residual: Activation, bias?: Weight): Activation {
    return this.add(residual, this.matmul(x, w, bias));
  }

  gateUpSilu(x: Activation, gate: Weight, up: Weight): Activation {
    return this.siluMul(this.matmul(x, gate), this.matmul(x, up));
  }

  qkvProject(x: Activation, q: Weight, k: Weight, v: Weight, biases: QkvBiases = {}): QkvActivations {
    return {
      q: this.matmul(x, q, biases.q),
      k: this.matmul(x, k, biases.k),
      v: this.matmul(x, v, biases.v),
    };
  }

  rmsNormRope(x: Activation, w: Weight, eps: number, b: PreparedBatch, spec: RopeSpec): Activation {
    return this.rope(this.rmsNorm(x, w, eps, spec.headDim), b, spec);
  }

  gatherRows(x: Activation, rows: Int32Array): Activation {
    const a = act(x);
    return gather(a.data, a.cols, rows);
  }

  copyKv(kv: KvStorage, srcSlots: Int32Array, dstSlots: Int32Array): void {
    copyKv(kvStorage(kv), srcSlots, dstSlots);
  }

  async readRows(x: Activation): Promise<Float32Array> {
    return act(x).data.slice();
  }

  async argmaxRows(x: Activation): Promise<Int32Array> {
    return argmaxRows(act(x));
  }

  async topKRows(x: Activation, k: number): Promise<TopKRows> {
    return topKRows(act(x), k);
  }

  release(_x: Activation): void {
    // Garbage-collected: nothing to free early.
  }

  destroy(): void {
    // Holds no resources beyond garbage-collected arrays.
  }
}
