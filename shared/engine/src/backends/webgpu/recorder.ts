// Records ops into one command encoder and one open compute pass; nothing is submitted until a read is
// awaited (ggml's graph_compute, without the graph), or, when asked, every `submitEvery` dispatches. Each dispatch gets its small uniform block from an arena
// that is written with one queue write just before the submit, and its pipeline from a cache keyed by the
// op's specialisation (shapes, dtype, workgroup size), as tfjs-backend-webgpu keys its programs.
import { BufferPool } from "./buffer-pool.js";
import { GpuActivation } from "./resources.js";

/**
 * Activations never carry COPY_DST and uploads always do: the pool keys buffers by usage, so a buffer released
 * by an activation while recorded commands still read it can never be handed to a queue write (which would
 * land before those commands run).
 */
// (Functions, not constants: Dawn's GPUBufferUsage global exists only once a device was created.)
export const activationUsage = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
const uploadUsage = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;

/** One dispatch: WGSL built on a cache miss, a uniform block, storage buffers at bindings 1.. in order. */
export interface Dispatch {
  /** Pipeline cache key: op name plus everything the WGSL source depends on. */
  key: string;
  wgsl: () => string;
  /** Uniform block at binding 0 (u32/i32/f32 words), or none. */
  params?: ParamBlock;
  buffers: readonly GPUBuffer[];
  /** Workgroups in all; split over x and y when past the per-dimension limit (kernels linearise). */
  workgroups: number;
}

/** A uniform block built word by word; every field of our kernels' Params structs is 4 bytes. */
export class ParamBlock {
  private readonly words: number[] = [];
  private readonly kinds: ("u" | "i" | "f")[] = [];
  u32(v: number): this {
    this.words.push(v >>> 0);
    this.kinds.push("u");
    return this;
  }
  i32(v: number): this {
    this.words.push(v | 0);
    this.kinds.push("i");
    return this;
  }
  f32(v: number): this {
    this.words.push(v);
    this.kinds.push("f");
    return this;
  }
  /** Bytes, padded to 16 (uniform structs are sized in 16-byte units). */
  write(view: DataView, offset: number): number {
    this.words.forEach((w, i) => {
      const at = offset + 4 * i;
      const kind = this.kinds[i];
      if (kind === "f") view.setFloat32(at, w, true);
      else if (kind === "i") view.setInt32(at, w, true);
      else view.setUint32(at, w, true);
    });
    return Math.max(16, Math.ceil((4 * this.words.length) / 16) * 16);
  }
}

/** Workgroups per dispatch dimension that every adapter allows (WebGPU's default limit). */
const MAX_PER_DIM = 65535;
/** Each uniform arena chunk holds this many bytes; a forward pass of a 28-layer model uses about 100 KiB. */
const ARENA_CHUNK = 64 * 1024;

export class Recorder {
  readonly pool: BufferPool;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly arenaChunks: GPUBuffer[] = [];
  private readonly arenaHost = new ArrayBuffer(ARENA_CHUNK);
  private readonly arenaView = new DataView(this.arenaHost);
  private arenaChunk = 0;
  private arenaOffset = 0;
  private readonly arenaAlign: number;
  /** Buffers to hand back to the pool once the current encoder is submitted (uploads, staging). */
  private afterSubmit: GPUBuffer[] = [];
  /** Dispatches recorded over the recorder's life, for tests and benchmarks. */
  dispatches = 0;
  submits = 0;
  /** Bind groups created over the recorder's life (a steady decode stops adding to it). */
  bindGroupsCreated = 0;
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  /** Bind groups used since the last submit, and those of the generation before (see bindGroup). */
  private groups = new Map<string, GPUBindGroup>();
  private oldGroups = new Map<string, GPUBindGroup>();
  /**
   * Submit after this many dispatches even with no read pending (0: only reads and flush() submit). Lets the
   * GPU start on the first layers while JavaScript records the rest, instead of idling until the read.
   */
  submitEvery = 0;
  private sinceSubmit = 0;
  /** The pipeline last set on the open pass (a pass starts with none). */
  private passPipeline: GPUComputePipeline | null = null;

  constructor(readonly device: GPUDevice) {
    this.pool = new BufferPool(device, "specloop pool");
    this.arenaAlign = Math.max(16, device.limits.minUniformBufferOffsetAlignment);
  }

  pipelineCount(): number {
    return this.pipelines.size;
  }

  private pipeline(d: Dispatch): GPUComputePipeline {
    let p = this.pipelines.get(d.key);
    if (!p) {
      const module = this.device.createShaderModule({ label: d.key, code: d.wgsl() });
      p = this.device.createComputePipeline({
        label: d.key,
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      this.pipelines.set(d.key, p);
    }
    return p;
  }

  private openPass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: "specloop forward" });
    if (!this.pass) {
      this.pass = this.encoder.beginComputePass();
      this.passPipeline = null;
    }
    return this.pass;
  }

  /** A slot of the uniform arena for one block; the whole arena is written to the GPU at submit. */
  private paramSlot(block: ParamBlock): GPUBufferBinding {
    const view = this.arenaView;
    if (this.arenaOffset + 256 > ARENA_CHUNK) {
      // This chunk is full: write it now (it is read by commands of this encoder only, submitted later).
      this.flushArenaChunk();
      this.arenaChunk++;
      this.arenaOffset = 0;
    }
    const size = block.write(view, this.arenaOffset);
    const chunk = this.arenaChunkBuffer(this.arenaChunk);
    const binding = { buffer: chunk, offset: this.arenaOffset, size };
    this.arenaOffset += Math.ceil(size / this.arenaAlign) * this.arenaAlign;
    return binding;
  }

  private arenaChunkBuffer(i: number): GPUBuffer {
    let b = this.arenaChunks[i];
    if (!b) {
      b = this.device.createBuffer({
        label: `specloop params ${i}`,
        size: ARENA_CHUNK,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      this.arenaChunks[i] = b;
    }
    return b;
  }

  private flushArenaChunk(): void {
    if (this.arenaOffset === 0) return;
    this.device.queue.writeBuffer(
      this.arenaChunkBuffer(this.arenaChunk),
      0,
      this.arenaHost,
      0,
      this.arenaOffset,
    );
  }

  /** A small integer naming a buffer in bind group keys (buffers are never renamed while alive). */
  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(b, id);
    }
    return id;
  }

  /**
   * The bind group for a dispatch, reused across steps. A decode step records the same dispatches in the same
   * order each time: the arena hands dispatch i the same uniform slot (it restarts at every submit) and the
   * pool hands back the same buffers (LIFO per size), so after the first step every lookup hits and no bind
   * group is created; creating one was most of the ~22 µs a dispatch cost in JavaScript. Entries live two
   * generations (the steps between reads): what the last step used survives, what a step stopped using
   * (e.g. a batch buffer that went back to the pool) is dropped, so the cache stays the size of one step.
   */
  private bindGroup(d: Dispatch, pipeline: GPUComputePipeline, slot: GPUBufferBinding | null): GPUBindGroup {
    let key = d.key;
    if (slot) key += `|${this.arenaChunk}:${slot.offset}:${slot.size}`;
    for (const b of d.buffers) key += `,${this.bufferId(b)}`;
    let group = this.groups.get(key);
    if (group) return group;
    group = this.oldGroups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = [];
      if (slot) entries.push({ binding: 0, resource: slot });
      d.buffers.forEach((buffer, i) => {
        entries.push({ binding: i + 1, resource: { buffer } });
      });
      group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      this.bindGroupsCreated++;
    }
    this.groups.set(key, group);
    return group;
  }

  dispatch(d: Dispatch): void {
    if (d.workgroups === 0) return;
    const pipeline = this.pipeline(d);
    const slot = d.params ? this.paramSlot(d.params) : null;
    const group = this.bindGroup(d, pipeline, slot);
    const pass = this.openPass();
    if (pipeline !== this.passPipeline) {
      pass.setPipeline(pipeline);
      this.passPipeline = pipeline;
    }
    pass.setBindGroup(0, group);
    const x = Math.min(d.workgroups, MAX_PER_DIM);
    pass.dispatchWorkgroups(x, Math.ceil(d.workgroups / x));
    this.dispatches++;
    // Safe at any point: everything recorded so far is ordered before what follows on the one queue, and the
    // uniform arena restarts only after its contents for this encoder were written (see submit).
    if (this.submitEvery > 0 && ++this.sinceSubmit >= this.submitEvery) this.flush();
  }

  /**
   * A storage buffer holding `data`, usable by commands recorded from now until the next submit. Its queue
   * write lands before the encoder runs, so the buffer is not reused until that submit has been made.
   */
  upload(data: ArrayBufferView): GPUBuffer {
    const buffer = this.pool.acquire(Math.max(16, data.byteLength), uploadUsage());
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    this.afterSubmit.push(buffer);
    return buffer;
  }

  /** A new f32 [rows, cols] activation in a pooled buffer (never COPY_DST, see activationUsage). */
  activation(rows: number, cols: number): GpuActivation {
    return new GpuActivation(rows, cols, this.pool.acquire(Math.max(16, rows * cols * 4), activationUsage()));
  }

  /** An upload buffer kept beyond the next submit (a batch's metadata); give it back with releaseAfterSubmit. */
  persistentUpload(data: ArrayBufferView): GPUBuffer {
    const buffer = this.pool.acquire(Math.max(16, data.byteLength), uploadUsage());
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }

  /** Returns a buffer to the pool after the next submit (the recorded commands may still read it). */
  releaseAfterSubmit(buffer: GPUBuffer): void {
    this.afterSubmit.push(buffer);
  }

  /** Submits what was recorded (if anything), then copies `bytes` of `source` back to the host. */
  async read(source: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    const staging = this.pool.acquire(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    this.pass?.end();
    this.pass = null;
    const encoder = this.encoder ?? this.device.createCommandEncoder({ label: "specloop read" });
    this.encoder = null;
    encoder.copyBufferToBuffer(source, 0, staging, 0, Math.ceil(bytes / 4) * 4);
    this.submit(encoder);
    // A read ends a step (a decode step's argmax): the bind group generation turns over, once it holds
    // something (a second read of the same step, with nothing recorded, must not age out the step's groups).
    if (this.groups.size > 0) {
      this.oldGroups = this.groups;
      this.groups = new Map();
    }
    await staging.mapAsync(GPUMapMode.READ, 0, staging.size);
    const out = staging.getMappedRange(0, staging.size).slice(0, bytes);
    staging.unmap();
    this.pool.release(staging);
    return out;
  }

  /** Submits what was recorded without reading anything (e.g. before freeing resources it used). */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    const encoder = this.encoder;
    this.encoder = null;
    this.submit(encoder);
  }

  private submit(encoder: GPUCommandEncoder): void {
    this.flushArenaChunk();
    this.device.queue.submit([encoder.finish()]);
    this.submits++;
    this.sinceSubmit = 0;
    this.arenaChunk = 0;
    this.arenaOffset = 0;
    for (const b of this.afterSubmit) this.pool.release(b);
    this.afterSubmit = [];
  }

  destroy(): void {
    this.pass = null;
    this.encoder = null;
    this.pool.destroy();
    for (const b of this.arenaChunks) b.destroy();
    this.arenaChunks.length = 0;
    this.pipelines.clear();
    this.groups.clear();
    this.oldGroups.clear();
  }
}
