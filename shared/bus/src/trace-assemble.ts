// The inverse of chunkTrace: joins the chunks of one request's trace, in whatever order they arrive, into
// the whole trace (prompt from chunk 0, outputs, steps and hidden rows in order, timings and finish reason
// from the final chunk). Bounded: at most `maxPending` requests wait for missing chunks, each at most
// `maxAgeMs`; past either, the oldest partial trace is dropped and counted (a node that died mid-publish
// must not hold the trainer's memory).
import { HiddenFeatures, Trace } from "@specloop/proto";

export interface TraceAssemblerOptions {
  maxPending: number;
  maxAgeMs: number;
}

export interface AssemblerStats {
  assembled: number;
  /** Partial traces given up (too old, too many pending, or inconsistent chunks). */
  dropped: number;
  pending: number;
}

interface Partial {
  chunks: Map<number, Trace>;
  /** Index of the final chunk, once it arrived. */
  finalIndex: number | undefined;
  firstSeen: number;
}

export class TraceAssembler {
  private readonly pending = new Map<string, Partial>();
  private assembled = 0;
  private dropped = 0;

  constructor(
    private readonly options: TraceAssemblerOptions = { maxPending: 4096, maxAgeMs: 10 * 60_000 },
  ) {}

  /** Adds one chunk; returns the whole trace when this chunk completes it. */
  add(chunk: Trace, now = Date.now()): Trace | undefined {
    this.expire(now);
    if (chunk.final && chunk.chunkIndex === 0) {
      this.assembled++;
      return chunk;
    }
    const key = `${chunk.nodeId}\u0000${chunk.requestId}`;
    let p = this.pending.get(key);
    if (p === undefined) {
      if (this.pending.size >= this.options.maxPending) this.dropOldest();
      p = { chunks: new Map(), finalIndex: undefined, firstSeen: now };
      this.pending.set(key, p);
    }
    p.chunks.set(chunk.chunkIndex, chunk);
    if (chunk.final) p.finalIndex = chunk.chunkIndex;
    if (p.finalIndex === undefined || p.chunks.size < p.finalIndex + 1) return undefined;
    this.pending.delete(key);
    const whole = join(p, p.finalIndex);
    if (whole === undefined) {
      this.dropped++;
      return undefined;
    }
    this.assembled++;
    return whole;
  }

  stats(): AssemblerStats {
    return { assembled: this.assembled, dropped: this.dropped, pending: this.pending.size };
  }

  private expire(now: number): void {
    for (const [key, p] of this.pending) {
      if (now - p.firstSeen < this.options.maxAgeMs) break;
      this.pending.delete(key);
      this.dropped++;
    }
  }

  private dropOldest(): void {
    const first = this.pending.keys().next();
    if (first.done) return;
    this.pending.delete(first.value);
    this.dropped++;
  }
}

/** The chunks 0..last joined; undefined when they do not fit together (a gap in outputs or hidden rows). */
function join(p: Partial, last: number): Trace | undefined {
  const chunks = Array.from({ length: last + 1 }, (_, i) => p.chunks.get(i) as Trace);
  const first = chunks[0] as Trace;
  const final = chunks[last] as Trace;
  const outputs: number[] = [];
  let expected = first.outputOffset;
  for (const c of chunks) {
    if (c.outputOffset !== expected) return undefined;
    outputs.push(...c.outputTokenIds);
    expected += c.outputTokenIds.length;
  }
  const hidden = joinHidden(chunks.map((c) => c.hidden).filter((h): h is HiddenFeatures => h !== undefined));
  if (hidden === null) return undefined;
  return Trace.fromPartial({
    ...first,
    traceId: first.traceId,
    chunkIndex: 0,
    final: true,
    outputTokenIds: outputs,
    steps: chunks.flatMap((c) => c.steps),
    hidden,
    timings: final.timings,
    finishedAt: final.finishedAt,
    finishReason: final.finishReason,
  });
}

/** Contiguous hidden rows joined; null when they are not contiguous or not of one shape. */
function joinHidden(parts: HiddenFeatures[]): HiddenFeatures | undefined | null {
  if (parts.length === 0) return undefined;
  const head = parts[0] as HiddenFeatures;
  let next = head.firstPosition;
  for (const h of parts) {
    if (
      h.firstPosition !== next ||
      h.hiddenSize !== head.hiddenSize ||
      h.layers.join() !== head.layers.join()
    ) {
      return null;
    }
    next += h.numPositions;
  }
  return HiddenFeatures.fromPartial({
    layers: head.layers,
    hiddenSize: head.hiddenSize,
    firstPosition: head.firstPosition,
    numPositions: next - head.firstPosition,
    data: Buffer.concat(parts.map((h) => h.data)),
  });
}
