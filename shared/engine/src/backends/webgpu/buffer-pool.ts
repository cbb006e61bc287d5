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

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly out = new Set<GPUBuffer>();
  /** Creation number of every buffer the pool made (free lists are kept in descending order of it). */
  private readonly serial = new Map<GPUBuffer, number>();
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
    const key = `${usage}:${size}`;
    let buffer = this.free.get(key)?.pop();
    if (buffer) {
      this.freeBytes -= size;
    } else {
      buffer = this.device.createBuffer({ label: `${this.label} ${size}`, size, usage });
      this.serial.set(buffer, this.created);
      this.allocatedBytes += size;
      this.created++;
    }
    this.out.add(buffer);
    this.inUseBytes += size;
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    if (!this.out.delete(buffer))
      throw new Error(`${this.label}: buffer released twice or not from this pool`);
    this.inUseBytes -= buffer.size;
    this.freeBytes += buffer.size;
    const key = `${buffer.usage}:${buffer.size}`;
    const list = this.free.get(key);
    if (!list) {
      this.free.set(key, [buffer]);
      return;
    }
    // Insert keeping descending creation order, so pop() gives the oldest free buffer (lists are short).
    const n = this.serial.get(buffer) as number;
    let at = list.length;
    while (at > 0 && (this.serial.get(list[at - 1] as GPUBuffer) as number) < n) at--;
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
    for (const list of this.free.values()) for (const b of list) b.destroy();
    for (const b of this.out) b.destroy();
    this.free.clear();
    this.out.clear();
    this.serial.clear();
    this.allocatedBytes = this.inUseBytes = this.freeBytes = 0;
  }
}
