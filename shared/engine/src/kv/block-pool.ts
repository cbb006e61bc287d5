// Fixed-size KV blocks: a free list and a reference count per block. A block shared by forked
// sequences is returned to the free list only when its last holder lets go.

export class BlockPool {
  private readonly free: number[] = [];
  private readonly refs: Int32Array;

  constructor(readonly numBlocks: number) {
    this.refs = new Int32Array(numBlocks);
    // Handed out lowest id first (pop from the end of a descending list).
    for (let b = numBlocks - 1; b >= 0; b--) this.free.push(b);
  }

  get numFree(): number {
    return this.free.length;
  }

  /** `n` fresh blocks (refcount 1), or null when fewer than n are free (nothing is taken then). */
  take(n: number): number[] | null {
    if (n > this.free.length) return null;
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.free.pop() as number;
      this.refs[b] = 1;
      out.push(b);
    }
    return out;
  }

  /** One more holder of a block already in use. */
  share(block: number): void {
    if (this.refs[block] === 0) throw new Error(`block ${block} is free; it cannot be shared`);
    this.refs[block] = (this.refs[block] as number) + 1;
  }

  release(block: number): void {
    const r = this.refs[block] as number;
    if (r <= 0) throw new Error(`block ${block} released more often than taken`);
    this.refs[block] = r - 1;
    if (r === 1) this.free.push(block);
  }

  refCount(block: number): number {
    return this.refs[block] as number;
  }
}
