// A depth-bounded, path-compressed suffix tree over token ids, maintained incrementally (SuffixDecoding's
// structure). Every suffix of every held document is inserted truncated to `maxDepth` tokens, so a
// node's count is the number of occurrences of its string in the held documents (for strings up to
// maxDepth long) and count(child) / childSum(parent) is the empirical probability of the child's token
// after the parent's string.
//
// Why compressed rather than a plain trie: a trie of depth 64 over a million tokens of non-repetitive
// text holds nearly 64 nodes per token (most substrings of length > a few are unique); a compressed tree
// holds at most about two per held suffix, edges being (document, start, length) references into the
// documents' own token arrays.
//
// Invariants: (1) every inserted suffix ends on a node boundary (a suffix that would stop inside an
// edge splits it), so every string along an edge has the edge's count; (2) a node's reference points at
// the most recent document that passed through it. With (2), and documents inserted one at a time,
// evicting the oldest document leaves no dangling reference: a surviving node was passed by a newer
// document, which it now references. That is why a tree either takes whole documents and evicts (the
// fleet's tree) or grows one live document and is dropped whole (a request's tree), never both at once.
import { ChildIndex } from "./child-index.js";
import { SuffixTreeError } from "./errors.js";

export const ROOT = 0;

export interface SuffixTreeOptions {
  /** Longest string the tree distinguishes: a match plus its speculation must fit in it. */
  maxDepth: number;
  /** Tokens held over all documents; the oldest documents are evicted past it (Infinity: unbounded). */
  maxTokens: number;
}

export interface SuffixTreeStats {
  documents: number;
  tokens: number;
  /** Nodes alive, the root included. */
  nodes: number;
  /** Node slots allocated (alive + free). */
  nodeCapacity: number;
  /** Entries in the child index (one per non-root node). */
  indexEntries: number;
}

/** A position in the tree: `depth` tokens down, on the edge into `node` (depth in (start, end]). */
export interface TreePosition {
  node: number;
  depth: number;
}

interface Doc {
  tokens: Int32Array;
  length: number;
}

function checkToken(t: number): void {
  if (!(Number.isInteger(t) && t >= 0 && t <= 0x7fffffff)) {
    throw new SuffixTreeError(`token ids must be integers in [0, 2^31), got ${t}`);
  }
}

export class SuffixTree {
  readonly maxDepth: number;
  readonly maxTokens: number;
  // Nodes as parallel typed arrays (struct of arrays); slot 0 is the root.
  #parent: Int32Array;
  #count: Int32Array;
  /** Sum of the children's counts: occurrences of the node's string that have a continuation. */
  #childSum: Int32Array;
  #length: Int32Array;
  #depth: Int32Array;
  #refDoc: Int32Array;
  #refStart: Int32Array;
  #firstToken: Int32Array;
  #firstChild: Int32Array;
  #nextSibling: Int32Array;
  #prevSibling: Int32Array;
  #capacity = 0;
  #used = 1;
  #freeHead = -1;
  #alive = 1;
  #index = new ChildIndex();
  #docs = new Map<number, Doc>();
  #nextDocId = 0;
  #tokens = 0;
  // The document being inserted (a live one or a whole one in progress) and the nodes where its still
  // growing suffixes end, oldest suffix first.
  #open = -1;
  #active: Int32Array;
  #activeCount = 0;

  constructor(options: SuffixTreeOptions) {
    const { maxDepth, maxTokens } = options;
    if (!(Number.isInteger(maxDepth) && maxDepth >= 1 && maxDepth <= 4096)) {
      throw new SuffixTreeError(`maxDepth must be an integer in [1, 4096], got ${maxDepth}`);
    }
    if (!(maxTokens === Number.POSITIVE_INFINITY || (Number.isInteger(maxTokens) && maxTokens >= 1))) {
      throw new SuffixTreeError(`maxTokens must be a positive integer or Infinity, got ${maxTokens}`);
    }
    this.maxDepth = maxDepth;
    this.maxTokens = maxTokens;
    this.#parent = new Int32Array(0);
    this.#count = new Int32Array(0);
    this.#childSum = new Int32Array(0);
    this.#length = new Int32Array(0);
    this.#depth = new Int32Array(0);
    this.#refDoc = new Int32Array(0);
    this.#refStart = new Int32Array(0);
    this.#firstToken = new Int32Array(0);
    this.#firstChild = new Int32Array(0);
    this.#nextSibling = new Int32Array(0);
    this.#prevSibling = new Int32Array(0);
    this.#grow(64);
    this.#parent[ROOT] = -1;
    this.#firstChild[ROOT] = -1;
    this.#refDoc[ROOT] = -1;
    this.#active = new Int32Array(maxDepth);
  }

  stats(): SuffixTreeStats {
    return {
      documents: this.#docs.size,
      tokens: this.#tokens,
      nodes: this.#alive,
      nodeCapacity: this.#capacity,
      indexEntries: this.#index.size,
    };
  }

  /** Ids of the held documents, oldest first. */
  documentIds(): number[] {
    return [...this.#docs.keys()];
  }

  documentTokens(id: number): Int32Array | undefined {
    const d = this.#docs.get(id);
    return d?.tokens.subarray(0, d.length);
  }

  /**
   * Inserts a whole document, evicting the oldest documents first so that at most maxTokens are held
   * (a document longer than maxTokens keeps only its last maxTokens tokens). Returns its id.
   */
  appendDocument(tokens: ArrayLike<number>): number {
    if (this.#open !== -1) throw new SuffixTreeError("a live document is open: close it before appending");
    let from = 0;
    if (tokens.length > this.maxTokens) from = tokens.length - this.maxTokens;
    const n = tokens.length - from;
    for (let i = from; i < tokens.length; i++) checkToken(tokens[i]!);
    while (this.#docs.size > 0 && this.#tokens + n > this.maxTokens) this.evictOldest();
    const id = this.#openDocument(n);
    for (let i = from; i < tokens.length; i++) this.#push(tokens[i]!);
    this.#open = -1;
    this.#activeCount = 0;
    return id;
  }

  /** Starts the document a request's tree grows token by token (extendLive). Returns its id. */
  openLiveDocument(): number {
    if (this.#open !== -1) throw new SuffixTreeError("a live document is already open");
    return this.#openDocument(64);
  }

  /** Appends tokens to the open live document. */
  extendLive(tokens: ArrayLike<number>): void {
    if (this.#open === -1) throw new SuffixTreeError("no live document is open");
    for (let i = 0; i < tokens.length; i++) checkToken(tokens[i]!);
    for (let i = 0; i < tokens.length; i++) this.#push(tokens[i]!);
  }

  /** Removes the oldest document and frees every node and count it alone held. False when empty. */
  evictOldest(): boolean {
    if (this.#open !== -1) throw new SuffixTreeError("cannot evict while a live document is open");
    const first = this.#docs.keys().next();
    if (first.done) return false;
    this.#remove(first.value);
    return true;
  }

  // --- reading the tree (matching and speculation) ---

  /** Number of occurrences of `tokens` (1 to maxDepth long) in the held documents. */
  occurrences(tokens: ArrayLike<number>): number {
    if (tokens.length === 0 || tokens.length > this.maxDepth) {
      throw new SuffixTreeError(`occurrences() takes 1 to ${this.maxDepth} tokens, got ${tokens.length}`);
    }
    const pos = this.walk(tokens, 0, tokens.length);
    return pos === undefined ? 0 : this.#count[pos.node]!;
  }

  /** Follows tokens[from, to) from the root; undefined where the tree has no such string. */
  walk(tokens: ArrayLike<number>, from: number, to: number): TreePosition | undefined {
    let node = ROOT;
    let depth = 0;
    let edgeEnd = 0;
    let edge: Int32Array | undefined;
    let edgeBase = 0; // index in `edge` of string depth 0 along this node's path
    for (let i = from; i < to; i++) {
      const t = tokens[i]!;
      if (depth === edgeEnd) {
        const c = this.#index.get(node, t);
        if (c < 0) return undefined;
        node = c;
        edgeEnd = this.#depth[c]!;
        // Depth d (1-based) on this edge is the token at refStart + (d - 1 - edgeStart).
        edge = this.#docs.get(this.#refDoc[c]!)!.tokens;
        edgeBase = this.#refStart[c]! - (edgeEnd - this.#length[c]!);
      } else if (edge![edgeBase + depth] !== t) {
        return undefined;
      }
      depth++;
    }
    return { node, depth };
  }

  /** Whether some occurrence of the position's string is followed by another token. */
  hasContinuation(pos: TreePosition): boolean {
    return pos.depth < this.#depth[pos.node]! || this.#firstChild[pos.node]! !== -1;
  }

  /**
   * The longest suffix of context[0, end) of at most maxLength tokens that occurs followed by some
   * token (a match with nothing after it proposes nothing). Binary search on the length: if a suffix
   * of length L occurs with a continuation, so does every shorter one.
   */
  longestMatch(
    context: ArrayLike<number>,
    end: number,
    maxLength: number,
  ): { length: number; pos: TreePosition } {
    let lo = 0;
    let loPos: TreePosition = { node: ROOT, depth: 0 };
    let hi = Math.min(maxLength, end, this.maxDepth - 1);
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const pos = this.walk(context, end - mid, end);
      if (pos !== undefined && this.hasContinuation(pos)) {
        lo = mid;
        loPos = pos;
      } else hi = mid - 1;
    }
    return { length: lo, pos: loPos };
  }

  count(node: number): number {
    return this.#count[node]!;
  }
  childSum(node: number): number {
    return this.#childSum[node]!;
  }
  /** String depth at the end of the node's edge. */
  depth(node: number): number {
    return this.#depth[node]!;
  }
  firstChild(node: number): number {
    return this.#firstChild[node]!;
  }
  nextSibling(node: number): number {
    return this.#nextSibling[node]!;
  }
  firstToken(node: number): number {
    return this.#firstToken[node]!;
  }
  /** The token at string depth `depth` (1-based) on the edge into `node`. */
  tokenAt(node: number, depth: number): number {
    const start = this.#depth[node]! - this.#length[node]!;
    return this.#docs.get(this.#refDoc[node]!)!.tokens[this.#refStart[node]! + depth - 1 - start]!;
  }

  // --- insertion ---

  #openDocument(capacity: number): number {
    const id = this.#nextDocId++;
    this.#docs.set(id, { tokens: new Int32Array(Math.max(1, capacity)), length: 0 });
    this.#open = id;
    this.#activeCount = 0;
    return id;
  }

  /** Appends one token to the open document: every growing suffix gains it, and a new suffix starts. */
  #push(token: number): void {
    const docId = this.#open;
    const doc = this.#docs.get(docId)!;
    if (doc.length === doc.tokens.length) {
      const bigger = new Int32Array(doc.tokens.length * 2);
      bigger.set(doc.tokens);
      doc.tokens = bigger;
    }
    const pos = doc.length;
    doc.tokens[pos] = token;
    doc.length++;
    this.#tokens++;
    const active = this.#active;
    let kept = 0;
    for (let i = 0; i < this.#activeCount; i++) {
      const n = this.#extend(active[i]!, token, docId, pos);
      if (this.#depth[n]! < this.maxDepth) active[kept++] = n;
    }
    const n = this.#extend(ROOT, token, docId, pos);
    if (this.#depth[n]! < this.maxDepth) active[kept++] = n;
    this.#activeCount = kept;
  }

  /** The suffix ending at `node` gains `token` (at `pos` of document `docId`); returns its new end. */
  #extend(node: number, token: number, docId: number, pos: number): number {
    // A leaf this suffix alone passes through, ending at the document's end: lengthen it in place.
    if (
      node !== ROOT &&
      this.#count[node] === 1 &&
      this.#firstChild[node] === -1 &&
      this.#refDoc[node] === docId &&
      this.#refStart[node]! + this.#length[node]! === pos
    ) {
      this.#length[node]!++;
      this.#depth[node]!++;
      return node;
    }
    let c = this.#index.get(node, token);
    if (c < 0) {
      c = this.#newNode(node, token, 1, docId, pos);
      this.#count[c] = 1;
      this.#childSum[node]!++;
      return c;
    }
    if (this.#length[c]! > 1) c = this.#splitAfterFirst(node, c, token);
    this.#count[c]!++;
    this.#childSum[node]!++;
    this.#refDoc[c] = docId;
    this.#refStart[c] = pos;
    return c;
  }

  /** Splits child c of `node` after its first token; returns the new one-token node above c. */
  #splitAfterFirst(node: number, c: number, token: number): number {
    // Unlink c before m takes its (node, token) slot in the index.
    this.#unlinkChild(node, c);
    const m = this.#newNode(node, token, 1, this.#refDoc[c]!, this.#refStart[c]!);
    this.#count[m] = this.#count[c]!;
    this.#childSum[m] = this.#count[c]!;
    this.#refStart[c]!++;
    this.#length[c]!--;
    this.#firstToken[c] = this.#docs.get(this.#refDoc[c]!)!.tokens[this.#refStart[c]!]!;
    this.#linkChild(m, c);
    this.#index.set(m, this.#firstToken[c]!, c);
    return m;
  }

  #newNode(parent: number, token: number, length: number, docId: number, start: number): number {
    let n: number;
    if (this.#freeHead !== -1) {
      n = this.#freeHead;
      this.#freeHead = this.#nextSibling[n]!;
    } else {
      if (this.#used === this.#capacity) this.#grow(this.#capacity * 2);
      n = this.#used++;
    }
    this.#alive++;
    this.#count[n] = 0;
    this.#childSum[n] = 0;
    this.#length[n] = length;
    this.#depth[n] = this.#depth[parent]! + length;
    this.#refDoc[n] = docId;
    this.#refStart[n] = start;
    this.#firstToken[n] = token;
    this.#firstChild[n] = -1;
    this.#linkChild(parent, n);
    this.#index.set(parent, token, n);
    return n;
  }

  #linkChild(parent: number, c: number): void {
    const head = this.#firstChild[parent]!;
    this.#parent[c] = parent;
    this.#prevSibling[c] = -1;
    this.#nextSibling[c] = head;
    if (head !== -1) this.#prevSibling[head] = c;
    this.#firstChild[parent] = c;
  }

  #unlinkChild(parent: number, c: number): void {
    const prev = this.#prevSibling[c]!;
    const next = this.#nextSibling[c]!;
    if (prev === -1) this.#firstChild[parent] = next;
    else this.#nextSibling[prev] = next;
    if (next !== -1) this.#prevSibling[next] = prev;
    this.#index.delete(parent, this.#firstToken[c]!);
  }

  #grow(capacity: number): void {
    const resize = (a: Int32Array): Int32Array => {
      const b = new Int32Array(capacity);
      b.set(a);
      return b;
    };
    this.#parent = resize(this.#parent);
    this.#count = resize(this.#count);
    this.#childSum = resize(this.#childSum);
    this.#length = resize(this.#length);
    this.#depth = resize(this.#depth);
    this.#refDoc = resize(this.#refDoc);
    this.#refStart = resize(this.#refStart);
    this.#firstToken = resize(this.#firstToken);
    this.#firstChild = resize(this.#firstChild);
    this.#nextSibling = resize(this.#nextSibling);
    this.#prevSibling = resize(this.#prevSibling);
    this.#capacity = capacity;
  }

  // --- eviction ---

  /** Walks every suffix of the document down from the root, taking its count off each node. */
  #remove(docId: number): void {
    const doc = this.#docs.get(docId)!;
    const toks = doc.tokens;
    const len = doc.length;
    const path = this.#active; // free while no document is open
    for (let s = 0; s < len; s++) {
      const end = Math.min(this.maxDepth, len - s);
      let node = ROOT;
      let d = 0;
      let pathLen = 0;
      while (d < end) {
        const c = this.#index.get(node, toks[s + d]!);
        if (c < 0) throw new SuffixTreeError(`suffix tree corrupt: document ${docId} suffix ${s} not found`);
        this.#childSum[node]!--;
        if (--this.#count[c]! === 0) {
          this.#unlinkChild(node, c);
          this.#freeSubtree(c);
          break;
        }
        path[pathLen++] = c;
        d += this.#length[c]!;
        node = c;
      }
      // Nodes left with one child and no occurrence ending on them are merged with that child, so
      // the tree stays compressed as documents come and go.
      for (let i = pathLen - 1; i >= 0; i--) this.#mergeWithOnlyChild(path[i]!);
    }
    this.#tokens -= len;
    this.#docs.delete(docId);
  }

  #mergeWithOnlyChild(n: number): void {
    const c = this.#firstChild[n]!;
    if (c === -1 || this.#nextSibling[c] !== -1 || this.#childSum[n] !== this.#count[n]) return;
    // c's occurrence covers n's edge just before its own, in the most recent document to pass both.
    const nLen = this.#length[n]!;
    this.#index.delete(n, this.#firstToken[c]!);
    this.#refDoc[n] = this.#refDoc[c]!;
    this.#refStart[n] = this.#refStart[c]! - nLen;
    this.#length[n] = nLen + this.#length[c]!;
    this.#depth[n] = this.#depth[c]!;
    this.#childSum[n] = this.#childSum[c]!;
    let g = this.#firstChild[c]!;
    this.#firstChild[n] = g;
    while (g !== -1) {
      this.#parent[g] = n;
      this.#index.delete(c, this.#firstToken[g]!);
      this.#index.set(n, this.#firstToken[g]!, g);
      g = this.#nextSibling[g]!;
    }
    this.#freeNode(c);
  }

  #freeSubtree(n: number): void {
    let c = this.#firstChild[n]!;
    while (c !== -1) {
      const next = this.#nextSibling[c]!;
      this.#index.delete(n, this.#firstToken[c]!);
      this.#freeSubtree(c);
      c = next;
    }
    this.#freeNode(n);
  }

  #freeNode(n: number): void {
    this.#firstChild[n] = -1;
    this.#parent[n] = -1;
    this.#nextSibling[n] = this.#freeHead;
    this.#freeHead = n;
    this.#alive--;
  }
}
