// Helpers of the op conformance test (conformance.test.ts): seeded inputs in every weight dtype, batch
// layouts over shuffled block tables, and the error measures ggml's test-backend-ops uses.
import type { Activation, Backend, BatchLayout, SequenceLayout } from "../backend.js";
import { Rng } from "../sampling/rng.js";
import { type DType, type HostTensor, hostTensor, numel } from "../tensor.js";

/** A backend under test: the Backend interface plus a way to put host values into an activation. */
export interface TestBackend extends Backend {
  fromHost(rows: number, cols: number, values: ArrayLike<number>): Activation;
}

/** Uniform values in [lo, hi). */
export function uniform(rng: Rng, n: number, lo = -1, hi = 1): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
}

/**
 * A weight of the given dtype from uniform values. Magnitudes below 2^-10 are pushed up to it so f16 never
 * meets a subnormal (which a GPU may flush to zero, a difference no model cares about).
 */
export function randomWeight(rng: Rng, shape: readonly number[], dtype: DType, lo = -1, hi = 1): HostTensor {
  const n = numel(shape);
  const values = uniform(rng, n, lo, hi).map((v) =>
    Math.abs(v) < 2 ** -10 ? Math.sign(v || 1) * 2 ** -10 : v,
  );
  return hostTensor(shape, values, dtype);
}

export interface SeqSpec {
  cached: number;
  newTokens: number;
  parents?: number[];
}

/** Depth of each tree node (a root is 0), parents before children. */
function depths(parents: readonly number[]): number[] {
  const d: number[] = [];
  parents.forEach((p, i) => {
    d[i] = p < 0 ? 0 : (d[p] as number) + 1;
  });
  return d;
}

/**
 * A batch over `seqs` with each sequence's blocks drawn at random from a shuffled pool of `numBlocks`, so
 * that logical and physical order differ; positions follow tree depth, slots follow the block tables.
 */
export function makeLayout(
  rng: Rng,
  seqs: readonly SeqSpec[],
  blockSize: number,
  numBlocks: number,
): BatchLayout {
  const free = Array.from({ length: numBlocks }, (_, i) => i);
  for (let i = free.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [free[i], free[j]] = [free[j] as number, free[i] as number];
  }
  const sequences: SequenceLayout[] = [];
  const positions: number[] = [];
  const slots: number[] = [];
  let row = 0;
  for (const s of seqs) {
    const blocks = Math.ceil((s.cached + s.newTokens) / blockSize);
    const blockTable = Int32Array.from(free.splice(0, blocks));
    if (blockTable.length < blocks) throw new RangeError("makeLayout: not enough blocks");
    const layout: SequenceLayout = {
      rowStart: row,
      newTokens: s.newTokens,
      cachedTokens: s.cached,
      blockTable,
    };
    if (s.parents) layout.treeParents = Int32Array.from(s.parents);
    sequences.push(layout);
    const d = s.parents ? depths(s.parents) : Array.from({ length: s.newTokens }, (_, i) => i);
    for (let i = 0; i < s.newTokens; i++) {
      const p = s.cached + i;
      positions.push(s.cached + (d[i] as number));
      slots.push((blockTable[Math.floor(p / blockSize)] as number) * blockSize + (p % blockSize));
    }
    row += s.newTokens;
  }
  return { sequences, rows: row, positions: Int32Array.from(positions), slots: Int32Array.from(slots) };
}

/** The same sequences' cached tokens as one pass of new chain tokens (to fill the cache before a test). */
export function prefillLayout(layout: BatchLayout, blockSize: number): BatchLayout {
  const sequences: SequenceLayout[] = [];
  const positions: number[] = [];
  const slots: number[] = [];
  for (const s of layout.sequences) {
    sequences.push({
      rowStart: positions.length,
      newTokens: s.cachedTokens,
      cachedTokens: 0,
      blockTable: s.blockTable,
    });
    for (let p = 0; p < s.cachedTokens; p++) {
      positions.push(p);
      slots.push((s.blockTable[Math.floor(p / blockSize)] as number) * blockSize + (p % blockSize));
    }
  }
  return {
    sequences,
    rows: positions.length,
    positions: Int32Array.from(positions),
    slots: Int32Array.from(slots),
  };
}

/** ggml's normalised mean squared error: sum (a - b)^2 / sum b^2. */
export function nmse(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = (actual[i] as number) - (expected[i] as number);
    num += d * d;
    den += (expected[i] as number) ** 2;
  }
  return den === 0 ? num : num / den;
}

export function maxAbs(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < expected.length; i++)
    m = Math.max(m, Math.abs((actual[i] as number) - (expected[i] as number)));
  return m;
}

/** Index of the first NaN or infinity, or -1. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i] as number)) return i;
  return -1;
}

export function seeded(name: string): Rng {
  // FNV-1a of the case's name: every backend sees the same inputs for a case, and cases differ.
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return new Rng(h);
}
