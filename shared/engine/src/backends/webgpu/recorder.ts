// Records ops into one command encoder and one open compute pass, submitted when a read is awaited (ggml's
// graph_compute, without the graph) and every `submitEvery` dispatches (so the GPU starts on the first layers
// while the rest is recorded). Each dispatch gets its small uniform block from an arena that is written with
// one queue write just before the submit, its pipeline from a cache keyed by the op's specialisation
// (shapes, dtype, workgroup size), as tfjs-backend-webgpu keys its programs, and its bind group from the
// same dispatch of recent steps (see bindGroup). Every dispatch costs microseconds of CPU in Dawn, so this
// path allocates little and builds no strings.
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
  /** Bit i set: field i is an f32 (the others are written as u32 bit patterns; i32s wrap to the same bits). */
  private floats = 0;
  u32(v: number): this {
    this.words.push(v >>> 0);
    return this;
  }
  i32(v: number): this {
    this.words.push(v | 0);
    return this;
  }
  f32(v: number): this {
    if (this.words.length >= 31) throw new RangeError("ParamBlock: an f32 past field 31");
    this.floats |= 1 << this.words.length;
    this.words.push(v);
    return this;
  }
  /** Writes the words from word `at` on (u32 and f32 views of one buffer); returns bytes, padded to 16. */
  write(u: Uint32Array, f: Float32Array, at: number): number {
    const w = this.words;
    for (let i = 0; i < w.length; i++) {
      if ((this.floats >>> i) & 1) f[at + i] = w[i] as number;
      else u[at + i] = w[i] as number;
    }
    return Math.max(16, Math.ceil((4 * w.length) / 16) * 16);
  }
}

interface BindGroupEntry {
  pipeline: GPUComputePipeline;
  uniform: GPUBuffer | null;
  offset: number;
  size: number;
  buffers: GPUBuffer[];
  group: GPUBindGroup;
}

/** Bind groups kept per dispatch index (see Recorder.bindGroup). */
const BIND_WAYS = 4;

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
  private readonly arenaWords = new Uint32Array(this.arenaHost);
  private readonly arenaFloats = new Float32Array(this.arenaHost);
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
  /** The bind groups dispatch i of recent steps used, and what they were made of (see bindGroup). */
  private readonly byIndex: BindGroupEntry[][] = [];
  /** Dispatches recorded since the last read (the index into byIndex). */
  private stepDispatches = 0;
  /**
   * Submit after this many dispatches even with no read pending (0: only reads and flush() submit). Lets the
   * GPU start on the first layers while JavaScript records the rest, instead of idling until the read.
   */
  submitEvery = 0;
  private sinceSubmit = 0;
  /**
   * Which program products of 2-16 rows take (ops/matmul.ts): "auto" (the skinny program for wide products,
   * the matrix-vector program for narrow ones), or one of them for all (benchmarks comparing them).
   */
  fewRows: "auto" | "matvec" | "skinny" = "auto";
  /**
   * Splits of k for skinny products (ops/matmul.ts's skinnySplits): "auto" by the workgroups a product has,
   * 0 never (the default, see WebGpuBackendOptions.skinnySplits), N > 0 that many for every product that can
   * take them (tests and benchmarks).
   */
  skinnySplits: "auto" | number = 0;
  /** One-row products of ARGMAX_FUSED_MIN_OUTPUTS or more write argmax partials too (ops/matmul.ts). */
  fuseArgmax = true;
  /**
   * One-row products read the next product's weights into the GPU's L2 cache with extra workgroups
   * (ops/matmul.ts, MatvecSpec.prefetch), the next product being the one that followed this one in the last
   * step (see prefetchTarget).
   */
  prefetch = false;
  /** The weights of each product of this step and the last, in order (see prefetchTarget). */
  private productWeights: GPUBuffer[][] = [];
  private lastProductWeights: GPUBuffer[][] = [];
  /** The pipeline last set on the open pass (a pass starts with none). */
  private passPipeline: GPUComputePipeline | null = null;
  /** The most threads of a one-dimensional workgroup, and its workgroup memory (the device's limits). */
  readonly maxWorkgroupThreads: number;
  readonly maxWorkgroupBytes: number;
  /** activationUsage(), read once. */
  private readonly actUsage: number;
  /** Per-dispatch GPU timing (see enableProfile), or null. */
  private profiler: Profiler | null = null;
  /** GPU time of every compute pass (see timePasses), or null. */
  private passTimer: Profiler | null = null;

  /**
   * @param subgroupSize the fixed subgroup size kernels may be built for (subgroupAdd reductions), or 0: no
   *   subgroup operations (workgroup-memory reductions instead).
   */
  constructor(
    readonly device: GPUDevice,
    readonly subgroupSize = 0,
  ) {
    this.actUsage = activationUsage();
    const l = device.limits;
    this.maxWorkgroupThreads = Math.min(l.maxComputeInvocationsPerWorkgroup, l.maxComputeWorkgroupSizeX);
    this.maxWorkgroupBytes = l.maxComputeWorkgroupStorageSize;
    this.pool = new BufferPool(device, "specloop pool");
    this.arenaAlign = Math.max(16, device.limits.minUniformBufferOffsetAlignment);
  }

  /**
   * Notes `weights` as this step's next product and returns the weights of the product that followed it in
   * the last step (the first product's after the last one: the next step's), or null. A decode step records
   * the same products in the same order each time, so this is the product recorded next; where it is not
   * (another model's step), it is weights that stay resident, read for nothing.
   */
  prefetchTarget(weights: readonly GPUBuffer[]): GPUBuffer[] | null {
    const j = this.productWeights.length;
    this.productWeights.push(weights.slice());
    const last = this.lastProductWeights;
    if (last.length === 0) return null;
    return (j + 1 < last.length ? last[j + 1] : last[0]) ?? null;
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
      if (this.passTimer && !this.passTimer.hasRoom()) {
        this.flush();
        this.encoder = this.device.createCommandEncoder({ label: "specloop forward" });
      }
      this.pass = this.passTimer
        ? this.encoder.beginComputePass({ timestampWrites: this.passTimer.next("pass") })
        : this.encoder.beginComputePass();
      this.passPipeline = null;
    }
    return this.pass;
  }

  /** A slot of the uniform arena for one block; the whole arena is written to the GPU at submit. */
  private paramSlot(block: ParamBlock): GPUBufferBinding {
    if (this.arenaOffset + 256 > ARENA_CHUNK) {
      // This chunk is full: write it now (it is read by commands of this encoder only, submitted later).
      this.flushArenaChunk();
      this.arenaChunk++;
      this.arenaOffset = 0;
    }
    // Offsets are multiples of the arena alignment (>= 16 bytes): a whole word index.
    const size = block.write(this.arenaWords, this.arenaFloats, this.arenaOffset / 4);
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

  /**
   * The bind group for a dispatch, reused across steps. A decode step records the same dispatches in the same
   * order each time: the arena hands dispatch i the same uniform slot (it restarts at every submit) and the
   * pool hands back the same buffers (oldest free first), so dispatch i of this step finds the group dispatch
   * i of the last step made by comparing a few references, with no key built; creating bind groups was most
   * of the ~22 us a dispatch once cost in JavaScript. Each index keeps the groups of the last BIND_WAYS
   * different steps seen there, most recent first, so that steps of a few kinds taking turns (a draft model's
   * steps and the target's verification) reuse theirs too.
   */
  private bindGroup(d: Dispatch, pipeline: GPUComputePipeline, slot: GPUBufferBinding | null): GPUBindGroup {
    const i = this.stepDispatches++;
    let ways = this.byIndex[i];
    if (ways === undefined) {
      ways = [];
      this.byIndex[i] = ways;
    }
    const buffers = d.buffers;
    const uniform = slot ? slot.buffer : null;
    const offset = slot ? (slot.offset as number) : 0;
    const size = slot ? (slot.size as number) : 0;
    for (let w = 0; w < ways.length; w++) {
      const e = ways[w] as BindGroupEntry;
      if (
        e.pipeline !== pipeline ||
        e.uniform !== uniform ||
        e.offset !== offset ||
        e.size !== size ||
        e.buffers.length !== buffers.length
      )
        continue;
      let same = true;
      for (let b = 0; b < buffers.length; b++) {
        if (e.buffers[b] !== buffers[b]) {
          same = false;
          break;
        }
      }
      if (!same) continue;
      if (w > 0) {
        ways[w] = ways[0] as BindGroupEntry;
        ways[0] = e;
      }
      return e.group;
    }
    const entries: GPUBindGroupEntry[] = [];
    if (slot) entries.push({ binding: 0, resource: slot });
    buffers.forEach((buffer, j) => {
      entries.push({ binding: j + 1, resource: { buffer } });
    });
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    this.bindGroupsCreated++;
    ways.unshift({ pipeline, uniform, offset, size, buffers: buffers.slice(), group });
    if (ways.length > BIND_WAYS) ways.pop();
    return group;
  }

  /**
   * Times every dispatch on the GPU from now on (timestamp-query): each dispatch gets a compute pass of its
   * own with timestamps at its start and end, so the times are the kernels' own, without what a shared pass
   * overlaps or serialises between them. For benchmarks only: it changes what it measures a little.
   */
  enableProfile(): void {
    if (!this.profiler) this.profiler = new Profiler(this.device);
  }

  /**
   * Times every compute pass on the GPU from now on (timestamp-query at each pass's start and end; a step is a
   * few passes, one per submit): GPU busy time without changing how dispatches are recorded, but for a
   * staging buffer and a read per submit. `false` stops, and passTime() gives what was measured.
   */
  timePasses(on: boolean): void {
    this.passTimer = on ? (this.passTimer ?? new Profiler(this.device)) : null;
  }

  /** Passes timed and their GPU time since timePasses(true) (awaits the timestamps still being read). */
  async passTime(): Promise<{ passes: number; ms: number }> {
    const e = (await this.passTimer?.report())?.[0];
    return { passes: e?.count ?? 0, ms: e?.totalMs ?? 0 };
  }

  /** GPU time per dispatch kind since enableProfile (awaits the timestamps still being read). */
  async profileReport(): Promise<ProfileEntry[]> {
    if (!this.profiler) return [];
    return this.profiler.report();
  }

  /** Forgets the GPU times measured so far (after a warm-up). */
  async profileReset(): Promise<void> {
    await this.profiler?.reset();
  }

  dispatch(d: Dispatch): void {
    if (d.workgroups === 0) return;
    const pipeline = this.pipeline(d);
    const slot = d.params ? this.paramSlot(d.params) : null;
    const group = this.bindGroup(d, pipeline, slot);
    if (this.profiler) {
      this.profiledDispatch(d, pipeline, group);
      return;
    }
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

  private profiledDispatch(d: Dispatch, pipeline: GPUComputePipeline, group: GPUBindGroup): void {
    const prof = this.profiler as Profiler;
    if (!prof.hasRoom()) this.flush();
    this.pass?.end();
    this.pass = null;
    if (!this.encoder) this.encoder = this.device.createCommandEncoder({ label: "specloop forward" });
    const pass = this.encoder.beginComputePass({ timestampWrites: prof.next(`${d.key} x${d.workgroups}`) });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    const x = Math.min(d.workgroups, MAX_PER_DIM);
    pass.dispatchWorkgroups(x, Math.ceil(d.workgroups / x));
    pass.end();
    this.dispatches++;
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
    return new GpuActivation(rows, cols, this.pool.acquire(Math.max(16, rows * cols * 4), this.actUsage));
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
    // A read ends a step (a decode step's argmax): the next dispatch is dispatch 0 of the next step.
    this.stepDispatches = 0;
    if (this.productWeights.length > 0) {
      this.lastProductWeights = this.productWeights;
      this.productWeights = [];
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
    const resolved = this.profiler?.resolve(encoder);
    const timed = this.passTimer?.resolve(encoder);
    this.device.queue.submit([encoder.finish()]);
    resolved?.();
    timed?.();
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
    this.byIndex.length = 0;
  }
}

export interface ProfileEntry {
  /** The dispatch's pipeline key and workgroup count. */
  kind: string;
  count: number;
  totalMs: number;
}

const PROFILE_QUERIES = 4096;

/** Timestamp pairs of the dispatches of one encoder, resolved at its submit and read back asynchronously. */
class Profiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private kinds: string[] = [];
  private readonly totals = new Map<string, { count: number; ns: number }>();
  private readonly pending: Promise<void>[] = [];

  constructor(private readonly device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: "timestamp", count: PROFILE_QUERIES });
    this.resolveBuffer = device.createBuffer({
      size: PROFILE_QUERIES * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
  }

  hasRoom(): boolean {
    return 2 * (this.kinds.length + 1) <= PROFILE_QUERIES;
  }

  next(kind: string): GPUComputePassTimestampWrites {
    const i = this.kinds.length;
    this.kinds.push(kind);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Adds the resolve to `encoder`; the returned function, called after the submit, starts the read. */
  resolve(encoder: GPUCommandEncoder): (() => void) | undefined {
    const kinds = this.kinds;
    if (kinds.length === 0) return undefined;
    this.kinds = [];
    const bytes = kinds.length * 16;
    const staging = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    encoder.resolveQuerySet(this.querySet, 0, 2 * kinds.length, this.resolveBuffer, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer, 0, staging, 0, bytes);
    return () => {
      this.pending.push(
        staging.mapAsync(GPUMapMode.READ).then(() => {
          const t = new BigUint64Array(staging.getMappedRange());
          kinds.forEach((kind, i) => {
            const ns = Number((t[2 * i + 1] as bigint) - (t[2 * i] as bigint));
            const e = this.totals.get(kind) ?? { count: 0, ns: 0 };
            e.count++;
            e.ns += ns;
            this.totals.set(kind, e);
          });
          staging.destroy();
        }),
      );
    };
  }

  async report(): Promise<ProfileEntry[]> {
    await Promise.all(this.pending.splice(0));
    return [...this.totals]
      .map(([kind, e]) => ({ kind, count: e.count, totalMs: e.ns / 1e6 }))
      .sort((a, b) => b.totalMs - a.totalMs);
  }

  /** Forgets what was measured so far (e.g. after a warm-up). */
  async reset(): Promise<void> {
    await Promise.all(this.pending.splice(0));
    this.totals.clear();
  }
}
