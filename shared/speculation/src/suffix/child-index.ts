// (parent node, first token of the edge) -> child node, for the suffix tree. One open-addressing table
// for the whole tree rather than a Map per node: a million-token tree has a few million nodes, and a
// Map each would cost hundreds of bytes per node and a heap number per key. Linear probing with
// backward-shift deletion (no tombstones), so evicting documents leaves no debris behind.

const EMPTY = -1;
const MIN_CAPACITY = 16;

function hash(parent: number, token: number): number {
  let h = Math.imul(parent, 0x9e3779b1) ^ Math.imul(token + 0x7f4a7c15, 0x85ebca77);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 13;
  return h >>> 0;
}

export class ChildIndex {
  #parents: Int32Array;
  #tokens: Int32Array;
  #children: Int32Array;
  #mask: number;
  #size = 0;

  constructor(capacity = MIN_CAPACITY) {
    let cap = MIN_CAPACITY;
    while (cap < capacity * 2) cap *= 2;
    this.#parents = new Int32Array(cap).fill(EMPTY);
    this.#tokens = new Int32Array(cap);
    this.#children = new Int32Array(cap);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** Slots allocated (for memory accounting). */
  get capacity(): number {
    return this.#mask + 1;
  }

  /** The child of `parent` whose edge starts with `token`, or -1. */
  get(parent: number, token: number): number {
    const parents = this.#parents;
    const mask = this.#mask;
    let i = hash(parent, token) & mask;
    for (;;) {
      const p = parents[i]!;
      if (p === EMPTY) return -1;
      if (p === parent && this.#tokens[i] === token) return this.#children[i]!;
      i = (i + 1) & mask;
    }
  }

  /** Inserts or overwrites. */
  set(parent: number, token: number, child: number): void {
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#grow();
    const parents = this.#parents;
    const mask = this.#mask;
    let i = hash(parent, token) & mask;
    for (;;) {
      const p = parents[i]!;
      if (p === EMPTY) {
        parents[i] = parent;
        this.#tokens[i] = token;
        this.#children[i] = child;
        this.#size++;
        return;
      }
      if (p === parent && this.#tokens[i] === token) {
        this.#children[i] = child;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** Removes the entry if present; returns whether it was. */
  delete(parent: number, token: number): boolean {
    const parents = this.#parents;
    const tokens = this.#tokens;
    const children = this.#children;
    const mask = this.#mask;
    let i = hash(parent, token) & mask;
    for (;;) {
      const p = parents[i]!;
      if (p === EMPTY) return false;
      if (p === parent && tokens[i] === token) break;
      i = (i + 1) & mask;
    }
    // Backward shift: move later entries of the probe run into the hole when their home slot allows
    // it, so every remaining key stays reachable from its home without tombstones.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const p = parents[j]!;
      if (p === EMPTY) break;
      const home = hash(p, tokens[j]!) & mask;
      // j's entry may move to the hole only if its home is not cyclically in (hole, j].
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (inRange) continue;
      parents[hole] = p;
      tokens[hole] = tokens[j]!;
      children[hole] = children[j]!;
      hole = j;
    }
    parents[hole] = EMPTY;
    this.#size--;
    return true;
  }

  #grow(): void {
    const oldParents = this.#parents;
    const oldTokens = this.#tokens;
    const oldChildren = this.#children;
    const cap = (this.#mask + 1) * 2;
    this.#parents = new Int32Array(cap).fill(EMPTY);
    this.#tokens = new Int32Array(cap);
    this.#children = new Int32Array(cap);
    this.#mask = cap - 1;
    this.#size = 0;
    for (let i = 0; i < oldParents.length; i++) {
      const p = oldParents[i]!;
      if (p !== EMPTY) this.set(p, oldTokens[i]!, oldChildren[i]!);
    }
  }
}
