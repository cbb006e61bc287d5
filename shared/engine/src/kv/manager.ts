// The paged KV manager, host side: which blocks each sequence holds and how many of its tokens are in
// the cache. It answers "blocks or null" (allocateSlots) and the caller preempts on null; it forks a
// sequence without copying its full blocks; it drops rejected tokens (truncate) and keeps an accepted
// tree branch (keepBranch). The only backend calls are creating the storage and copyKv.
import type { Backend, KvCacheSpec, KvStorage } from "../backend.js";
import { BlockPool } from "./block-pool.js";

/** Bytes one block takes: K and V, every layer, f32 (what the reference backend stores). */
export function blockBytes(spec: Omit<KvCacheSpec, "numBlocks">, bytesPerValue = 4): number {
  return 2 * spec.numLayers * spec.blockSize * spec.numKvHeads * spec.headDim * bytesPerValue;
}

/** How many blocks fit in a memory budget of `bytes`. */
export function blocksForBudget(
  bytes: number,
  spec: Omit<KvCacheSpec, "numBlocks">,
  bytesPerValue = 4,
): number {
  return Math.floor(bytes / blockBytes(spec, bytesPerValue));
}

interface SeqState {
  blocks: number[];
  /** Tokens whose K and V are in the cache, at logical positions 0 .. numTokens - 1. */
  numTokens: number;
}

export class KvManager {
  readonly storage: KvStorage;
  private readonly pool: BlockPool;
  private readonly seqs = new Map<string, SeqState>();

  constructor(
    private readonly backend: Backend,
    readonly spec: KvCacheSpec,
  ) {
    this.storage = backend.createKvStorage(spec);
    this.pool = new BlockPool(spec.numBlocks);
  }

  get blockSize(): number {
    return this.spec.blockSize;
  }

  get numFreeBlocks(): number {
    return this.pool.numFree;
  }

  has(seq: string): boolean {
    return this.seqs.has(seq);
  }

  /** Tokens of `seq` in the cache (0 for a sequence never allocated). */
  numTokens(seq: string): number {
    return this.seqs.get(seq)?.numTokens ?? 0;
  }

  /** The sequence's block table, in logical order. */
  blockTable(seq: string): Int32Array {
    return Int32Array.from(this.state(seq).blocks);
  }

  refCount(block: number): number {
    return this.pool.refCount(block);
  }

  /**
   * Makes room for `numNewTokens` more tokens plus `numLookahead` proposals past the cached ones.
   * Returns the block table, or null when the pool is short (nothing changes then: the caller preempts).
   * A shared block that the new tokens would write into is replaced by a private copy first.
   */
  allocateSlots(seq: string, numNewTokens: number, numLookahead = 0): Int32Array | null {
    const s = this.seqs.get(seq) ?? { blocks: [], numTokens: 0 };
    const bs = this.spec.blockSize;
    const needed = Math.ceil((s.numTokens + numNewTokens + numLookahead) / bs);
    const writeBlock = Math.floor(s.numTokens / bs);
    const cow = writeBlock < s.blocks.length && this.pool.refCount(s.blocks[writeBlock] as number) > 1;
    const fresh = this.pool.take(Math.max(0, needed - s.blocks.length) + (cow ? 1 : 0));
    if (fresh === null) return null;
    if (cow) this.copyOnWrite(s, writeBlock, fresh.pop() as number);
    s.blocks.push(...fresh);
    this.seqs.set(seq, s);
    return Int32Array.from(s.blocks);
  }

  /** Replaces shared block `index` of `s` by `fresh`, copying the tokens already in it. */
  private copyOnWrite(s: SeqState, index: number, fresh: number): void {
    const bs = this.spec.blockSize;
    const old = s.blocks[index] as number;
    const used = Math.min(bs, s.numTokens - index * bs);
    const src = Int32Array.from({ length: used }, (_, i) => old * bs + i);
    const dst = Int32Array.from({ length: used }, (_, i) => fresh * bs + i);
    if (used > 0) this.backend.copyKv(this.storage, src, dst);
    this.pool.release(old);
    s.blocks[index] = fresh;
  }

  /** Records that a pass wrote `n` more tokens of `seq` (its blocks must already hold them). */
  commit(seq: string, n: number): void {
    const s = this.state(seq);
    if (s.numTokens + n > s.blocks.length * this.spec.blockSize) {
      throw new RangeError(`commit: ${seq} has room for ${s.blocks.length * this.spec.blockSize} tokens`);
    }
    s.numTokens += n;
  }

  /** Keeps the first `numTokens` tokens of `seq` (drops rejected ones) and frees the blocks past them. */
  truncate(seq: string, numTokens: number): void {
    const s = this.state(seq);
    if (numTokens > s.numTokens)
      throw new RangeError(`truncate: ${seq} has ${s.numTokens} tokens, not ${numTokens}`);
    s.numTokens = numTokens;
    const keep = Math.ceil(numTokens / this.spec.blockSize);
    for (const b of s.blocks.splice(keep)) this.pool.release(b);
  }

  /** Returns every block of `seq` (shared ones when their last holder goes). */
  free(seq: string): void {
    const s = this.seqs.get(seq);
    if (s === undefined) return;
    for (const b of s.blocks) this.pool.release(b);
    this.seqs.delete(seq);
  }

  /**
   * `child` starts with the first `numTokens` (default: all) of `parent`'s cached tokens, sharing every
   * block that holds them (no copy). The last, partly filled block is copied only when one of them writes
   * into it (allocateSlots).
   */
  fork(parent: string, child: string, numTokens?: number): void {
    if (this.seqs.has(child)) throw new Error(`fork: ${child} already exists`);
    const p = this.state(parent);
    const n = numTokens ?? p.numTokens;
    if (!(Number.isInteger(n) && n >= 0 && n <= p.numTokens)) {
      throw new RangeError(`fork: ${parent} has ${p.numTokens} cached tokens, cannot share ${n}`);
    }
    const blocks = p.blocks.slice(0, Math.ceil(n / this.spec.blockSize));
    for (const b of blocks) this.pool.share(b);
    this.seqs.set(child, { blocks, numTokens: n });
  }

  /**
   * After a tree pass wrote its nodes at positions numTokens + i, keeps only the accepted branch:
   * `path` lists the accepted nodes root first (each the parent of the next), and node path[d] moves to
   * position numTokens + d. The tree's other tokens are dropped.
   */
  keepBranch(seq: string, path: readonly number[]): void {
    const s = this.state(seq);
    const bs = this.spec.blockSize;
    const slot = (pos: number) => (s.blocks[Math.floor(pos / bs)] as number) * bs + (pos % bs);
    const src: number[] = [];
    const dst: number[] = [];
    path.forEach((node, d) => {
      if (node < d) throw new RangeError(`keepBranch: node ${node} cannot sit at depth ${d}`);
      if (s.numTokens + node >= s.blocks.length * bs)
        throw new RangeError(`keepBranch: node ${node} was never allocated`);
      if (node !== d) {
        src.push(slot(s.numTokens + node));
        dst.push(slot(s.numTokens + d));
      }
    });
    if (src.length > 0) this.backend.copyKv(this.storage, Int32Array.from(src), Int32Array.from(dst));
    s.numTokens += path.length;
    this.truncate(seq, s.numTokens);
  }

  private state(seq: string): SeqState {
    const s = this.seqs.get(seq);
    if (s === undefined) throw new RangeError(`unknown sequence ${seq}`);
    return s;
  }
}
