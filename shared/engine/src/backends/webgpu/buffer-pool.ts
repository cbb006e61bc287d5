// GPU buffers pooled by (usage, size), as tfjs-backend-webgpu's buffer_manager: a forward pass asks for the
// same activation sizes every step, so after the first step no buffer is created. Byte counters say what is
// held, in use and free, and tests assert on them.
//
// Reuse is safe without fences because every use of a pooled buffer is ordered on the one queue: a buffer
// released while recorded commands still read it is only ever rewritten by commands recorded (or queue writes
// issued) after those reads. Queue writes are the exception inside one unsubmitted encoder (they all land
// before it runs), so the recorder keeps upload buffers out of the pool until the encoder is submitted.
//
// A free list hands out its oldest buffer (lowest creation number) rather than the last released: then the
// buffers a step gets depend only on which are free, not on the order earlier steps released them, so a
// decode step gets the very buffers the step before got and the recorder's bind groups are reused.
//
// Every acquire and release is on the recording path (a few per dispatch), so the pool keeps what it knows of
// a buffer in one record of its own and never reads Dawn's `size` or `usage` getters (calls into native code).

/** Sizes are rounded up so that near sizes share buffers: to 256 bytes, then to 1/8 of the power of two. */
export function bucketSize(bytes: number): number {
  const min = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (min <= 4096) return min;
  const step = 2 ** (Math.floor(Math.log2(min)) - 3);
  return Math.ceil(min / step) * step;
}

export interface PoolStats {
  /** Bytes of every buffer the pool created and has not destroyed. */
  allocatedBytes: number;
  /** Bytes handed out and not yet released. */
  inUseBytes: number;
  /** Bytes waiting in the pool for reuse. */
  freeBytes: number;
  /** Buffers created over the pool's life (a steady forward pass stops adding to it). */
  created: number;
}

/** What the pool knows of one of its buffers. */
interface Pooled {
  /** size * 4096 + usage (usage flags are below 4096): the free list it belongs to. */
  key: number;
  size: number;
  usage: number;
  /** Creation number (free lists are kept in descending order of it). */
  serial: number;
  inUse: boolean;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly info = new Map<GPUBuffer, Pooled>();
  private allocatedBytes = 0;
  private inUseBytes = 0;
  private freeBytes = 0;
  private created = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly label: string,
  ) {}

  acquire(bytes: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const size = bucketSize(bytes);
    const key = size * 4096 + usage;
    let buffer = this.free.get(key)?.pop();
    if (buffer) {
      this.freeBytes -= size;
      (this.info.get(buffer) as Pooled).inUse = true;
    } else {
      buffer = this.device.createBuffer({ label: `${this.label} ${size}`, size, usage });
      this.info.set(buffer, { key, size, usage, serial: this.created, inUse: true });
      this.allocatedBytes += size;
      this.created++;
    }
    this.inUseBytes += size;
    return buffer;
  }

  /** The usage flags `buffer` was acquired with (without asking Dawn); 0 for a buffer not from this pool. */
  usageOf(buffer: GPUBuffer): number {
    return this.info.get(buffer)?.usage ?? 0;
  }

  release(buffer: GPUBuffer): void {
    const p = this.info.get(buffer);
    if (!p?.inUse) throw new Error(`${this.label}: buffer released twice or not from this pool`);
    p.inUse = false;
    this.inUseBytes -= p.size;
    this.freeBytes += p.size;
    const list = this.free.get(p.key);
    if (!list) {
      this.free.set(p.key, [buffer]);
      return;
    }
    // Insert keeping descending creation order, so pop() gives the oldest free buffer (lists are short).
    let at = list.length;
    while (at > 0 && (this.info.get(list[at - 1] as GPUBuffer) as Pooled).serial < p.serial) at--;
    list.splice(at, 0, buffer);
  }

  stats(): PoolStats {
    return {
      allocatedBytes: this.allocatedBytes,
      inUseBytes: this.inUseBytes,
      freeBytes: this.freeBytes,
      created: this.created,
    };
  }

  /** Destroys every buffer, handed out or free. */
  destroy(): void {
    for (const b of this.info.keys()) b.destroy();
    this.free.clear();
    this.info.clear();
    this.allocatedBytes = this.inUseBytes = this.freeBytes = 0;
  }
}
