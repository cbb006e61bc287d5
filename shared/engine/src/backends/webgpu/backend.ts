// The `webgpu` backend: WGSL kernels through Dawn. Weights stay resident (2-byte dtypes two to a u32),
// activations are f32 in pooled buffers, and every op is only recorded (recorder.ts), submitted in chunks of
// `submitEvery` dispatches and when a read is awaited, which reads back just what was asked for. Shape logic
// and the kernels live in ops/, one file per op; the optional fused ops (rmsNorm* products, ropeAttention,
// ...) make a decoder layer 5 dispatches (docs/ARCHITECTURE.md, "The webgpu backend").
import type {
  Activation,
  Backend,
  BatchLayout,
  KvCacheSpec,
  KvStorage,
  PreparedBatch,
  QkNormSpec,
  QkvActivations,
  QkvBiases,
  RmsNormSpec,
  RopeSpec,
  TokenIds,
  Weight,
} from "../../backend.js";
import { WebGpuKernelError } from "../../errors.js";
import { DTYPE_BYTES, type HostTensor, numel } from "../../tensor.js";
import { BatchSlot, GpuBatch, gpuBatch, packBatch } from "./batch.js";
import type { PoolStats } from "./buffer-pool.js";
import type { WebGpuDevice } from "./device.js";
import { encodeAdd } from "./ops/add.js";
import { dispatchArgmax, encodeArgmax } from "./ops/argmax.js";
import { encodeAttention, encodeRopeAttention } from "./ops/attention.js";
import { encodeCopyKv } from "./ops/copy-kv.js";
import { encodeEmbed, encodeEmbedIds } from "./ops/embed.js";
import { encodeGatherRows } from "./ops/gather-rows.js";
import {
  encodeGateUpSilu,
  encodeMatmul,
  encodeMatmulAdd,
  encodeQkvProject,
  type MatvecNorm,
} from "./ops/matmul.js";
import { encodeRmsNorm } from "./ops/rms-norm.js";
import { encodeRmsNormRope, encodeRope } from "./ops/rope.js";
import { encodeSiluMul } from "./ops/silu-mul.js";
import { encodeWriteKv } from "./ops/write-kv.js";
import { type ProfileEntry, Recorder } from "./recorder.js";
import {
  GpuActivation,
  GpuKvStorage,
  GpuTokenIds,
  GpuWeight,
  gpuAct,
  gpuBuf,
  gpuIds,
  gpuKv,
  gpuWeight,
  packWeight,
} from "./resources.js";

export interface WebGpuBackendStats {
  pool: PoolStats;
  /** Bytes of resident weights (2-byte dtypes at 2 bytes, plus row padding). */
  weightBytes: number;
  kvBytes: number;
  pipelines: number;
  dispatches: number;
  submits: number;
  /** Bind groups created so far (steady decoding reuses them: see Recorder.bindGroup). */
  bindGroups: number;
}

export interface WebGpuBackendOptions {
  /**
   * Submit the recorded commands every this many dispatches, not only at reads, so that the GPU runs the
   * first layers of a forward while the rest is being recorded (default DEFAULT_SUBMIT_EVERY; 0: one submit
   * per read). Measured on the H100 before the fused ops: 120 -> 158 tok/s at batch 1 with 48.
   */
  submitEvery?: number;
  /**
   * Time every dispatch on the GPU (timestamp-query; benchmarks only): each dispatch then runs in a compute
   * pass of its own, which costs time itself. Read with profileReport().
   */
  profile?: boolean;
  /**
   * Use subgroup operations where the adapter has them at a fixed size (default true). false takes the
   * workgroup-memory kernels every adapter runs (tests check both on lavapipe).
   */
  subgroups?: boolean;
  /**
   * Which program products of 2-16 rows take (Recorder.fewRows; default "auto"). Benchmarks compare them; the
   * conformance test runs both.
   */
  fewRows?: "auto" | "matvec" | "skinny";
  /**
   * Splits of k for the skinny program (Recorder.skinnySplits): "auto" splits products with few workgroups
   * over more of them, a second dispatch adding the splits up (ops/matmul.ts); N: N for every product; 0,
   * the default: never. Off by default until it is measured on the GPU (bench/results/
   * gpu-decode-h100-round5.md: no device time was had for it).
   */
  skinnySplits?: "auto" | number;
  /**
   * One-row products of a vocabulary's width also write each workgroup's best logit, so that an argmax of
   * them is one small dispatch (default true; false: the two-pass argmax, for before/after benchmarks).
   */
  fuseArgmax?: boolean;
  /**
   * One-row products also read the next product's weights into the L2 cache with extra workgroups (default
   * false), so that each product of a decode step at batch 1 finds its weights there (Recorder.prefetch).
   */
  prefetch?: boolean;
}

/**
 * The default of WebGpuBackendOptions.submitEvery. A Qwen3 decode step is 144 dispatches (5 a layer): about 5
 * submits, each ~40 us of fixed cost on the H100's host, against GPU work that trails the recording by at
 * most one chunk of ~32 dispatches.
 */
export const DEFAULT_SUBMIT_EVERY = 32;

/** argmaxIds writes its ids into a ring of this many buffers: a handle is good for this many calls. */
const IDS_RING = 3;

export class WebGpuBackend implements Backend {
  readonly kind = "webgpu" as const;
  private readonly rec: Recorder;
  private readonly weights = new Set<GpuWeight>();
  private readonly caches = new Set<GpuKvStorage>();
  private weightBytes = 0;
  /**
   * Where prepared batches keep their metadata while the last one's commands are submitted (every decode
   * step): one slot, since a step's batch is done with once its read is made; a batch prepared while the
   * slot's holder still has unsubmitted commands gets buffers of its own.
   */
  private readonly batchSlot = new BatchSlot();
  private destroyed = false;
  /** GPUBufferUsage.COPY_DST, read once (Dawn's flag namespace is a native object). */
  private readonly copyDst = GPUBufferUsage.COPY_DST;
  /** The first validation or out-of-memory error Dawn reported; the next read throws it. */
  private deviceError: string | null = null;
  /** A batch's buffers go back to the pool once the batch is garbage and the next submit is made. */
  private readonly batchFinalizer = new FinalizationRegistry<GPUBuffer[]>((buffers) => {
    if (this.destroyed) return;
    for (const b of buffers) this.rec.releaseAfterSubmit(b);
  });
  /**
   * The buffers argmaxIds writes, in turn: a decode step's ids are read by the next step's embedding and by
   * one read, so a few suffice, and the same buffers every step keep the recorder's bind groups (a buffer per
   * call, freed when its handle was garbage, made them new every few steps). idsSerial counts the calls.
   */
  private readonly idsRing: GPUBuffer[] = [];
  private idsRingBytes = 0;
  private idsSerial = 0;

  /** Takes ownership of `gpu`: destroy() destroys it. */
  constructor(
    readonly gpu: WebGpuDevice,
    options: WebGpuBackendOptions = {},
  ) {
    this.rec = new Recorder(gpu.device, options.subgroups === false ? 0 : gpu.subgroupSize);
    this.rec.submitEvery = Math.max(0, Math.floor(options.submitEvery ?? DEFAULT_SUBMIT_EVERY));
    this.rec.fewRows = options.fewRows ?? "auto";
    this.rec.skinnySplits = options.skinnySplits ?? 0;
    this.rec.fuseArgmax = options.fuseArgmax ?? true;
    this.rec.prefetch = options.prefetch ?? false;
    if (options.profile) {
      if (!gpu.features.has("timestamp-query"))
        throw new RangeError("webgpu backend: profiling needs the timestamp-query feature");
      this.rec.enableProfile();
    }
    gpu.device.addEventListener("uncapturederror", (event) => {
      this.deviceError ??= (event as GPUUncapturedErrorEvent).error.message;
    });
  }

  loadWeight(name: string, tensor: HostTensor): Weight {
    const bytes = packWeight(tensor);
    const limit = this.gpu.limits.maxStorageBufferBindingSize;
    if (bytes.byteLength > limit) {
      throw new RangeError(
        `weight ${name}: ${bytes.byteLength} bytes is past the storage binding limit ${limit}`,
      );
    }
    if (tensor.data.byteLength !== numel(tensor.shape) * DTYPE_BYTES[tensor.dtype]) {
      throw new RangeError(
        `weight ${name}: ${tensor.data.byteLength} bytes for ${tensor.dtype} [${tensor.shape}]`,
      );
    }
    const buffer = this.gpu.device.createBuffer({
      label: name,
      size: bytes.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      mappedAtCreation: true,
    });
    new Uint8Array(buffer.getMappedRange()).set(bytes);
    buffer.unmap();
    const w = new GpuWeight(name, [...tensor.shape], tensor.dtype, buffer);
    this.weights.add(w);
    this.weightBytes += bytes.byteLength;
    return w;
  }

  /** An activation holding host values (tests, and callers that feed features in). */
  fromHost(rows: number, cols: number, values: ArrayLike<number>): Activation {
    if (values.length !== rows * cols)
      throw new RangeError(`fromHost: ${values.length} values for [${rows}, ${cols}]`);
    return new GpuActivation(rows, cols, this.rec.persistentUpload(Float32Array.from(values)));
  }

  createKvStorage(spec: KvCacheSpec): KvStorage {
    const kv = new GpuKvStorage(spec, this.gpu.device);
    this.caches.add(kv);
    return kv;
  }

  prepareBatch(layout: BatchLayout, kvBlockSize: number): PreparedBatch {
    const meta = packBatch(layout, kvBlockSize);
    const slot = this.batchSlot.free(this.rec.submits) ? this.batchSlot : null;
    const batch = new GpuBatch(layout, kvBlockSize, meta, this.rec, slot);
    // The registry holds the batch's `owned` array (not the batch), so buffers added later are freed too.
    this.batchFinalizer.register(batch, batch.owned);
    return batch;
  }

  embed(table: Weight, ids: Int32Array): Activation {
    return encodeEmbed(this.rec, gpuWeight(table), ids);
  }

  rmsNorm(x: Activation, weight: Weight, eps: number, groupSize?: number): Activation {
    return encodeRmsNorm(this.rec, gpuAct(x), gpuWeight(weight), eps, groupSize ?? x.cols);
  }

  matmul(x: Activation, weight: Weight, bias?: Weight): Activation {
    return encodeMatmul(
      this.rec,
      gpuAct(x),
      gpuWeight(weight),
      bias === undefined ? undefined : gpuWeight(bias),
    );
  }

  matmulAdd(x: Activation, weight: Weight, residual: Activation, bias?: Weight): Activation {
    return encodeMatmulAdd(
      this.rec,
      gpuAct(x),
      gpuWeight(weight),
      gpuAct(residual),
      bias === undefined ? undefined : gpuWeight(bias),
    );
  }

  gateUpSilu(x: Activation, gate: Weight, up: Weight): Activation {
    return encodeGateUpSilu(this.rec, gpuAct(x), gpuWeight(gate), gpuWeight(up));
  }

  qkvProject(x: Activation, q: Weight, k: Weight, v: Weight, biases: QkvBiases = {}): QkvActivations {
    const opt = (b: Weight | undefined) => (b === undefined ? undefined : gpuWeight(b));
    const [qa, ka, va] = encodeQkvProject(this.rec, gpuAct(x), gpuWeight(q), gpuWeight(k), gpuWeight(v), [
      opt(biases.q),
      opt(biases.k),
      opt(biases.v),
    ]);
    return { q: qa, k: ka, v: va };
  }

  rmsNormQkvProject(
    x: Activation,
    norm: RmsNormSpec,
    q: Weight,
    k: Weight,
    v: Weight,
    biases: QkvBiases = {},
  ): QkvActivations {
    const opt = (b: Weight | undefined) => (b === undefined ? undefined : gpuWeight(b));
    const [qa, ka, va] = encodeQkvProject(
      this.rec,
      gpuAct(x),
      gpuWeight(q),
      gpuWeight(k),
      gpuWeight(v),
      [opt(biases.q), opt(biases.k), opt(biases.v)],
      matvecNorm(norm),
    );
    return { q: qa, k: ka, v: va };
  }

  rmsNormGateUpSilu(x: Activation, norm: RmsNormSpec, gate: Weight, up: Weight): Activation {
    return encodeGateUpSilu(this.rec, gpuAct(x), gpuWeight(gate), gpuWeight(up), matvecNorm(norm));
  }

  rmsNormMatmul(x: Activation, norm: RmsNormSpec, weight: Weight): Activation {
    return encodeMatmul(this.rec, gpuAct(x), gpuWeight(weight), undefined, matvecNorm(norm));
  }

  ropeAttention(
    q: Activation,
    k: Activation,
    v: Activation,
    kv: KvStorage,
    layer: number,
    batch: PreparedBatch,
    rope: RopeSpec,
    numHeads: number,
    scale: number,
    qkNorm?: QkNormSpec,
  ): Activation {
    return encodeRopeAttention(
      this.rec,
      gpuAct(q),
      gpuAct(k),
      gpuAct(v),
      gpuKv(kv),
      layer,
      gpuBatch(batch),
      rope,
      numHeads,
      scale,
      qkNorm ? { q: gpuWeight(qkNorm.q), k: gpuWeight(qkNorm.k), eps: qkNorm.eps } : undefined,
    );
  }

  rmsNormRope(x: Activation, weight: Weight, eps: number, batch: PreparedBatch, rope: RopeSpec): Activation {
    return encodeRmsNormRope(this.rec, gpuAct(x), gpuWeight(weight), eps, gpuBatch(batch), rope);
  }

  rope(x: Activation, batch: PreparedBatch, rope: RopeSpec): Activation {
    return encodeRope(this.rec, gpuAct(x), gpuBatch(batch), rope);
  }

  writeKv(kv: KvStorage, layer: number, k: Activation, v: Activation, batch: PreparedBatch): void {
    encodeWriteKv(this.rec, gpuKv(kv), layer, gpuAct(k), gpuAct(v), gpuBatch(batch));
  }

  attention(
    q: Activation,
    kv: KvStorage,
    layer: number,
    batch: PreparedBatch,
    numHeads: number,
    scale: number,
  ): Activation {
    return encodeAttention(this.rec, gpuAct(q), gpuKv(kv), layer, gpuBatch(batch), numHeads, scale);
  }

  siluMul(gate: Activation, up: Activation): Activation {
    return encodeSiluMul(this.rec, gpuAct(gate), gpuAct(up));
  }

  add(a: Activation, b: Activation): Activation {
    return encodeAdd(this.rec, gpuAct(a), gpuAct(b));
  }

  gatherRows(x: Activation, rows: Int32Array): Activation {
    return encodeGatherRows(this.rec, gpuAct(x), rows);
  }

  copyKv(kv: KvStorage, srcSlots: Int32Array, dstSlots: Int32Array): void {
    encodeCopyKv(this.rec, gpuKv(kv), srcSlots, dstSlots);
  }

  async readRows(x: Activation): Promise<Float32Array> {
    const a = gpuAct(x);
    if (a.elements === 0) return new Float32Array(0);
    const bytes = await this.rec.read(gpuBuf(a), a.elements * 4);
    this.throwDeviceError();
    return new Float32Array(bytes);
  }

  async argmaxRows(x: Activation): Promise<Int32Array> {
    const a = gpuAct(x);
    if (a.rows === 0) return new Int32Array(0);
    const ids = encodeArgmax(this.rec, a);
    try {
      const bytes = await this.rec.read(gpuBuf(ids), a.rows * 4);
      this.throwDeviceError();
      return new Int32Array(bytes);
    } finally {
      this.release(ids);
    }
  }

  argmaxIds(x: Activation): TokenIds {
    const a = gpuAct(x);
    const bytes = Math.max(16, a.rows * 4);
    if (bytes > this.idsRingBytes) {
      // Commands already recorded may still use the old buffers: they go back after the next submit.
      for (const b of this.idsRing.splice(0)) this.rec.releaseAfterSubmit(b);
      for (let i = 0; i < IDS_RING; i++)
        this.idsRing.push(this.rec.activation(a.rows, 1).buffer as GPUBuffer);
      this.idsRingBytes = bytes;
    }
    const serial = this.idsSerial++;
    const buffer = this.idsRing[serial % IDS_RING] as GPUBuffer;
    if (a.rows > 0) dispatchArgmax(this.rec, a, buffer);
    return new GpuTokenIds(a.rows, a.cols, buffer, serial);
  }

  /** `ids` as this backend's, still in its ring (the ids of the last IDS_RING argmaxIds calls). */
  private liveIds(op: string, ids: TokenIds): GpuTokenIds {
    const g = gpuIds(ids);
    if (this.idsSerial - g.serial > IDS_RING || !this.idsRing.includes(g.buffer)) {
      throw new RangeError(
        `${op}: these ids were overwritten (the webgpu backend keeps the ids of its last ${IDS_RING} argmaxIds calls)`,
      );
    }
    return g;
  }

  embedIds(table: Weight, ids: TokenIds): Activation {
    const t = gpuWeight(table);
    const g = this.liveIds("embedIds", ids);
    if (g.bound > t.rows)
      throw new RangeError(`embedIds: ids below ${g.bound} for a table of ${t.rows} rows (${t.name})`);
    return encodeEmbedIds(this.rec, t, g.buffer, g.rows);
  }

  async readIds(ids: TokenIds): Promise<Int32Array> {
    const g = this.liveIds("readIds", ids);
    if (g.rows === 0) return new Int32Array(0);
    const bytes = await this.rec.read(g.buffer, g.rows * 4);
    this.throwDeviceError();
    return new Int32Array(bytes);
  }

  release(x: Activation): void {
    const a = gpuAct(x);
    const buffer = a.buffer as GPUBuffer;
    a.buffer = null;
    // Host-filled activations (fromHost) are upload buffers: they must not be rewritten before the commands
    // already recorded have run (see recorder.ts).
    if (this.rec.pool.usageOf(buffer) & this.copyDst) this.rec.releaseAfterSubmit(buffer);
    else this.rec.pool.release(buffer);
    if (a.argmaxParts) {
      this.rec.pool.release(a.argmaxParts.values);
      this.rec.pool.release(a.argmaxParts.indices);
      a.argmaxParts = null;
    }
  }

  /** Submits what is recorded without reading (benchmarks; a read does this itself). */
  async sync(): Promise<void> {
    this.rec.flush();
    await this.gpu.device.queue.onSubmittedWorkDone();
    this.throwDeviceError();
  }

  /** Dispatches between early submits (0: none; see WebGpuBackendOptions.submitEvery). */
  get submitEvery(): number {
    return this.rec.submitEvery;
  }

  /**
   * Starts (true) or stops timing every compute pass on the GPU (benchmarks: GPU busy time per step, see
   * Recorder.timePasses; needs timestamp-query). passTime() reads what was measured since it started.
   */
  timePasses(on: boolean): void {
    if (on && !this.gpu.features.has("timestamp-query"))
      throw new RangeError("webgpu backend: pass timing needs the timestamp-query feature");
    this.rec.timePasses(on);
  }

  passTime(): Promise<{ passes: number; ms: number }> {
    return this.rec.passTime();
  }

  /** GPU time per dispatch kind (pipeline key and workgroups), when created with `profile`. */
  profileReport(): Promise<ProfileEntry[]> {
    return this.rec.profileReport();
  }

  profileReset(): Promise<void> {
    return this.rec.profileReset();
  }

  stats(): WebGpuBackendStats {
    let kvBytes = 0;
    for (const kv of this.caches) kvBytes += kv.bytes;
    return {
      pool: this.rec.pool.stats(),
      weightBytes: this.weightBytes,
      kvBytes,
      pipelines: this.rec.pipelineCount(),
      dispatches: this.rec.dispatches,
      submits: this.rec.submits,
      bindGroups: this.rec.bindGroupsCreated,
    };
  }

  /** Frees every GPU resource and the Dawn device, so that the process can exit. Safe to call twice. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.batchSlot.destroy();
    this.rec.destroy();
    for (const w of this.weights) w.buffer.destroy();
    for (const kv of this.caches) kv.destroy();
    this.weights.clear();
    this.caches.clear();
    this.gpu.destroy();
  }

  private throwDeviceError(): void {
    if (this.deviceError !== null) {
      const message = this.deviceError;
      this.deviceError = null;
      throw new WebGpuKernelError(this.gpu.adapter.description || this.gpu.adapter.vendor, message);
    }
  }
}

function matvecNorm(norm: RmsNormSpec): MatvecNorm {
  return { weight: gpuWeight(norm.weight), eps: norm.eps };
}

/** The Backend for a device (BackendFactories.webgpu); the backend owns the device from then on. */
export function createWebGpuBackend(gpu: WebGpuDevice, options: WebGpuBackendOptions = {}): WebGpuBackend {
  return new WebGpuBackend(gpu, options);
}
