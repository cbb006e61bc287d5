// The webgpu backend's own objects behind the Backend interface's opaque handles. Objects of another backend
// are refused by name rather than misread.
import type { Activation, KvCacheSpec, KvStorage, TokenIds, Weight } from "../../backend.js";
import { DTYPE_BYTES, type DType, type HostTensor, numel } from "../../tensor.js";

/**
 * Each row's best value and its column per slice of columns, written by the product that made an activation
 * (ops/matmul.ts: a one-row LM head), so that its argmax is the final pass of ops/argmax.ts alone.
 */
export interface ArgmaxParts {
  values: GPUBuffer;
  indices: GPUBuffer;
  /** Slices per row. */
  slices: number;
}

/** An f32 [rows, cols] activation in a pooled buffer (the buffer may be larger than rows * cols * 4). */
export class GpuActivation implements Activation {
  /** Argmax partials its product wrote beside it, or null; released with the activation. */
  argmaxParts: ArgmaxParts | null = null;
  constructor(
    readonly rows: number,
    readonly cols: number,
    /** Null once released. */
    public buffer: GPUBuffer | null,
  ) {}

  get elements(): number {
    return this.rows * this.cols;
  }
}

/** One i32 token id per row, in a buffer of the backend's ring of ids (Backend.argmaxIds). */
export class GpuTokenIds implements TokenIds {
  constructor(
    readonly rows: number,
    /** Every id is below this (the argmax's row length). */
    readonly bound: number,
    readonly buffer: GPUBuffer,
    /** Which argmaxIds call made them (the ring slot is serial % its length). */
    readonly serial: number,
  ) {}
}

/** Elements per stored row: rows are padded so that 16-byte loads of 8 elements stay inside one row. */
export function weightRowStride(cols: number): number {
  return Math.ceil(cols / 8) * 8;
}

/**
 * A weight as [rows, cols] (a vector is one row), rows padded to weightRowStride with zeros; f32 as is,
 * f16/bf16 as their 2-byte bit patterns, two to a u32 word, low half first.
 */
export class GpuWeight implements Weight {
  readonly rows: number;
  readonly cols: number;
  readonly rowStride: number;
  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly buffer: GPUBuffer,
  ) {
    this.cols = shape.length === 0 ? 1 : (shape[shape.length - 1] as number);
    this.rows = numel(shape) / this.cols;
    this.rowStride = weightRowStride(this.cols);
  }
}

/** The bytes of `t` in GpuWeight's layout. */
export function packWeight(t: HostTensor): Uint8Array {
  const cols = t.shape.length === 0 ? 1 : (t.shape[t.shape.length - 1] as number);
  const rows = numel(t.shape) / cols;
  const stride = weightRowStride(cols);
  const bytes = DTYPE_BYTES[t.dtype];
  const out = new Uint8Array(Math.max(16, rows * stride * bytes));
  if (stride === cols) {
    out.set(t.data.subarray(0, rows * cols * bytes));
  } else {
    for (let r = 0; r < rows; r++) {
      out.set(t.data.subarray(r * cols * bytes, (r + 1) * cols * bytes), r * stride * bytes);
    }
  }
  return out;
}

/** Per layer one K and one V buffer of [numBlocks * blockSize slots, numKvHeads * headDim] f32. */
export class GpuKvStorage implements KvStorage {
  readonly k: GPUBuffer[] = [];
  readonly v: GPUBuffer[] = [];
  readonly bytes: number;

  constructor(
    readonly spec: KvCacheSpec,
    device: GPUDevice,
  ) {
    const layerBytes = spec.numBlocks * spec.blockSize * spec.numKvHeads * spec.headDim * 4;
    if (layerBytes > device.limits.maxStorageBufferBindingSize) {
      throw new RangeError(
        `KV cache of ${layerBytes} bytes per layer is past this device's storage binding limit ` +
          `(${device.limits.maxStorageBufferBindingSize}); use fewer blocks`,
      );
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    for (let l = 0; l < spec.numLayers; l++) {
      // New buffers are zeroed by WebGPU: unwritten slots read as 0, never as garbage or NaN.
      this.k.push(device.createBuffer({ label: `kv k${l}`, size: Math.max(16, layerBytes), usage }));
      this.v.push(device.createBuffer({ label: `kv v${l}`, size: Math.max(16, layerBytes), usage }));
    }
    this.bytes = 2 * spec.numLayers * layerBytes;
  }

  get slotWidth(): number {
    return this.spec.numKvHeads * this.spec.headDim;
  }

  get slots(): number {
    return this.spec.numBlocks * this.spec.blockSize;
  }

  destroy(): void {
    for (const b of [...this.k, ...this.v]) b.destroy();
    this.k.length = 0;
    this.v.length = 0;
  }
}

export function gpuAct(x: Activation): GpuActivation {
  if (!(x instanceof GpuActivation)) throw new TypeError("webgpu backend: activation from another backend");
  if (x.buffer === null)
    throw new Error(`webgpu backend: activation [${x.rows}, ${x.cols}] used after release`);
  return x;
}

export function gpuBuf(x: Activation): GPUBuffer {
  return gpuAct(x).buffer as GPUBuffer;
}

export function gpuWeight(w: Weight): GpuWeight {
  if (!(w instanceof GpuWeight)) throw new TypeError(`webgpu backend: weight ${w.name} from another backend`);
  return w;
}

export function gpuKv(kv: KvStorage): GpuKvStorage {
  if (!(kv instanceof GpuKvStorage)) throw new TypeError("webgpu backend: KV storage from another backend");
  return kv;
}

export function gpuIds(ids: TokenIds): GpuTokenIds {
  if (!(ids instanceof GpuTokenIds)) throw new TypeError("webgpu backend: token ids from another backend");
  return ids;
}
