// The reference backend's own objects: every activation, weight and KV cache is a plain Float32Array,
// row-major, so each op can be read as the formula it implements. Other backends' objects are refused
// by name rather than misread.
import type {
  Activation,
  BatchLayout,
  KvCacheSpec,
  KvStorage,
  PreparedBatch,
  Weight,
} from "../../backend.js";
import type { DType } from "../../tensor.js";

export class RefActivation implements Activation {
  constructor(
    readonly rows: number,
    readonly cols: number,
    /** rows * cols values, row-major. */
    readonly data: Float32Array,
  ) {
    if (data.length !== rows * cols) {
      throw new RangeError(`activation [${rows}, ${cols}] given ${data.length} values`);
    }
  }

  static zeros(rows: number, cols: number): RefActivation {
    return new RefActivation(rows, cols, new Float32Array(rows * cols));
  }
}

export class RefWeight implements Weight {
  constructor(
    readonly name: string,
    readonly shape: readonly number[],
    /** The checkpoint's dtype; the values themselves are widened to f32 at load. */
    readonly dtype: DType,
    readonly data: Float32Array,
  ) {}
}

export class RefKvStorage implements KvStorage {
  /** Per layer: [numBlocks * blockSize slots, numKvHeads * headDim] for K and for V. */
  readonly k: Float32Array[] = [];
  readonly v: Float32Array[] = [];
  readonly bytes: number;

  constructor(readonly spec: KvCacheSpec) {
    const perLayer = spec.numBlocks * spec.blockSize * spec.numKvHeads * spec.headDim;
    for (let l = 0; l < spec.numLayers; l++) {
      this.k.push(new Float32Array(perLayer));
      this.v.push(new Float32Array(perLayer));
    }
    this.bytes = 2 * spec.numLayers * perLayer * 4;
  }

  /** Values per slot (one token of one layer, K or V). */
  get slotWidth(): number {
    return this.spec.numKvHeads * this.spec.headDim;
  }
}

export class RefBatch implements PreparedBatch {
  constructor(
    readonly layout: BatchLayout,
    readonly blockSize: number,
  ) {}
}

export function act(x: Activation): RefActivation {
  if (!(x instanceof RefActivation))
    throw new TypeError("reference backend: activation from another backend");
  return x;
}

export function weight(w: Weight): RefWeight {
  if (!(w instanceof RefWeight))
    throw new TypeError(`reference backend: weight ${w.name} from another backend`);
  return w;
}

export function kvStorage(kv: KvStorage): RefKvStorage {
  if (!(kv instanceof RefKvStorage))
    throw new TypeError("reference backend: KV storage from another backend");
  return kv;
}

export function batch(b: PreparedBatch): RefBatch {
  if (!(b instanceof RefBatch)) throw new TypeError("reference backend: batch prepared by another backend");
  return b;
}

/** Physical slot of a sequence's logical position: blockTable[pos / blockSize] * blockSize + pos % blockSize. */
export function slotOf(blockTable: Int32Array, blockSize: number, pos: number): number {
  const block = blockTable[Math.floor(pos / blockSize)];
  if (block === undefined) {
    throw new RangeError(
      `position ${pos} is past the block table (${blockTable.length} blocks of ${blockSize})`,
    );
  }
  return block * blockSize + (pos % blockSize);
}
