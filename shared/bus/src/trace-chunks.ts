// Splitting a long request's trace into messages under a byte limit. Chunk 0 carries the prompt, the
// last chunk has final = true, and chunk i has trace_id "<request_id>:<i>". A chunk holds whole
// verification steps (a step and the output tokens it committed are never split), the output tokens
// those steps committed, and the hidden-feature rows of those output positions.
import { HiddenFeatures, Trace, VerificationStep } from "@specloop/proto";
import { DEFAULT_TRACE_MAX_MESSAGE_BYTES } from "./config.js";
import { MessageTooLargeError } from "./errors.js";
import { validateTrace } from "./traces.js";

/** The trace_id of chunk `index` of a request. */
export function chunkTraceId(requestId: string, index: number): string {
  return `${requestId}:${index}`;
}

/** A span of output positions [start, end) and the steps that committed them. */
interface Unit {
  start: number;
  end: number;
  steps: VerificationStep[];
}

/**
 * Splits a whole-request trace into chunks whose encoded size is at most `maxBytes`. A trace that fits
 * comes back as one chunk (with its trace_id, chunk_index and final set). Throws MessageTooLargeError
 * when one step (with its tokens and hidden rows), or the prompt, cannot fit in a chunk alone.
 */
export function chunkTrace(trace: Trace, maxBytes = DEFAULT_TRACE_MAX_MESSAGE_BYTES): Trace[] {
  validateTrace(trace);
  const whole = { ...trace, traceId: chunkTraceId(trace.requestId, 0), chunkIndex: 0, final: true };
  if (Trace.encode(whole).finish().length <= maxBytes) return [whole];

  // Sizes are summed from an upper bound per unit (its steps, token varints and hidden rows) over a
  // skeleton, so packing is linear in the trace; every chunk is still encoded once and checked.
  const units = splitUnits(trace);
  const groups: Unit[][] = [];
  let current: Unit[] = [];
  let used = 0;
  for (const unit of units) {
    const cost = unitCost(trace, unit);
    const skeleton = skeletonSize(trace, groups.length === 0);
    if (skeleton + used + cost <= maxBytes) {
      current.push(unit);
      used += cost;
      continue;
    }
    if (current.length > 0 && skeletonSize(trace, false) + cost <= maxBytes) {
      groups.push(current);
      current = [unit];
      used = cost;
      continue;
    }
    const what =
      groups.length === 0 && current.length === 0
        ? "the prompt with the first step"
        : `step at output ${unit.start}`;
    throw new MessageTooLargeError(`trace ${trace.requestId}: ${what}`, skeleton + cost, maxBytes);
  }
  groups.push(current);
  const chunks = groups.map((g, i) => makeChunk(trace, g, i, i === groups.length - 1));
  for (const chunk of chunks) {
    const n = size(chunk);
    if (n > maxBytes) throw new MessageTooLargeError(`trace ${chunk.traceId}`, n, maxBytes);
  }
  return chunks;
}

/** Bytes of a chunk with no outputs, steps or hidden rows, plus room for what grows with them. */
function skeletonSize(trace: Trace, first: boolean): number {
  const bare = makeChunk(trace, [], first ? 0 : MAX_CHUNK_INDEX, true);
  const hidden = trace.hidden
    ? HiddenFeatures.encode({ ...trace.hidden, data: Buffer.alloc(0) }).finish().length
    : 0;
  // Tags and length varints of the packed outputs, of the hidden message and its data, the offset.
  return size(bare) + hidden + SKELETON_SLACK;
}

const MAX_CHUNK_INDEX = 0xffffffff;
const SKELETON_SLACK = 40;

/** Upper bound of the bytes a unit adds to a chunk. */
function unitCost(trace: Trace, unit: Unit): number {
  let bytes = 0;
  for (const step of unit.steps) bytes += 6 + VerificationStep.encode(step).finish().length;
  for (let p = unit.start; p < unit.end; p++)
    bytes += varintSize(trace.outputTokenIds[p - trace.outputOffset] ?? 0);
  const h = trace.hidden;
  if (h !== undefined) {
    const rows = Math.max(
      0,
      Math.min(unit.end, h.firstPosition + h.numPositions) - Math.max(unit.start, h.firstPosition),
    );
    bytes += rows * h.layers.length * h.hiddenSize * 2;
  }
  return bytes;
}

function varintSize(n: number): number {
  let bytes = 1;
  for (let v = n >>> 7; v > 0; v >>>= 7) bytes++;
  return bytes;
}

function size(trace: Trace): number {
  return Trace.encode(trace).finish().length;
}

/** Cuts the output into spans at step boundaries (or one span per token when there are no steps). */
function splitUnits(trace: Trace): Unit[] {
  const base = trace.outputOffset;
  const end = base + trace.outputTokenIds.length;
  if (trace.steps.length === 0) {
    const units: Unit[] = [];
    for (let p = base; p < end; p++) units.push({ start: p, end: p + 1, steps: [] });
    if (units.length === 0) units.push({ start: base, end: base, steps: [] });
    return units;
  }
  const steps = [...trace.steps].sort((a, b) => a.outputOffset - b.outputOffset);
  const units: Unit[] = [];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i] as VerificationStep;
    const next = steps[i + 1];
    const start = i === 0 ? base : Math.max(base, Math.min(end, step.outputOffset));
    const stop = next === undefined ? end : Math.max(start, Math.min(end, next.outputOffset));
    units.push({ start, end: stop, steps: [step] });
  }
  return units;
}

function makeChunk(trace: Trace, units: Unit[], index: number, final: boolean): Trace {
  const start = units[0]?.start ?? trace.outputOffset;
  const end = units[units.length - 1]?.end ?? start;
  const from = start - trace.outputOffset;
  const to = end - trace.outputOffset;
  return {
    ...trace,
    traceId: chunkTraceId(trace.requestId, index),
    chunkIndex: index,
    final,
    promptTokenIds: index === 0 ? trace.promptTokenIds : [],
    outputTokenIds: trace.outputTokenIds.slice(from, to),
    outputOffset: start,
    steps: units.flatMap((u) => u.steps),
    hidden: sliceHidden(trace.hidden, start, end),
    timings: final ? trace.timings : undefined,
    finishedAt: final ? trace.finishedAt : undefined,
    finishReason: final ? trace.finishReason : Trace.fromPartial({}).finishReason,
  };
}

/** The hidden-feature rows of output positions [start, end), or undefined when there are none. */
function sliceHidden(
  hidden: HiddenFeatures | undefined,
  start: number,
  end: number,
): HiddenFeatures | undefined {
  if (hidden === undefined) return undefined;
  const first = Math.max(start, hidden.firstPosition);
  const last = Math.min(end, hidden.firstPosition + hidden.numPositions);
  if (last <= first) return undefined;
  const rowBytes = hidden.layers.length * hidden.hiddenSize * 2;
  const offset = (first - hidden.firstPosition) * rowBytes;
  return HiddenFeatures.fromPartial({
    layers: hidden.layers,
    hiddenSize: hidden.hiddenSize,
    firstPosition: first,
    numPositions: last - first,
    data: hidden.data.subarray(offset, offset + (last - first) * rowBytes),
  });
}
