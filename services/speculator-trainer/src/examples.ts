// From a whole trace to a training example for the eagle head. The trainer recomputes what the head learns
// from with its own copy of the target model: one prefill over prompt + output gives the target's hidden
// features at every position and its full next-token distribution there (not only the top-k at proposed
// positions that traces carry). That keeps traces small on the bus (token ids and steps, no fp16 feature
// rows), which is what a fleet of many nodes needs; the cost moves to the trainer (one target prefill per
// trace), measured in bench/results/trainer-throughput-cpu.md. (Nodes can still ship sampled fp16 feature
// rows in traces, traces.feature_sample_share; the trainer does not train from them yet.)
//
// Long requests are cut to a window: the last `maxTokens` tokens (the head attends over a recent window, as
// the node's drafter does); the target still runs over the whole sequence so the features see all of it.
import { buildLayout, KvManager, type Model } from "@specloop/engine";
import type { Trace } from "@specloop/proto";

/** What the eagle head trains on (the engine's EagleTrainingExample). */
export interface TrainingExample {
  tokens: Int32Array;
  /** [tokens.length, F * hidden]. */
  features: Float32Array;
  /** [tokens.length, vocab]: the target's next-token logits at every position. */
  targetLogits: Float32Array;
  /** Positions (index into tokens) whose prediction is trained: the output part. */
  trainFrom: number;
  /** Rejected proposals: at tokens index `positions[i]`, the drafter proposed `tokens[i]` and it was rejected. */
  rejected: { positions: Int32Array; tokens: Int32Array };
  domain: string;
  /** The speculator version that drafted most of the request ("" when none). */
  draftedBy: string;
}

export interface ExampleOptions {
  featureLayers: readonly number[];
  /** At most this many tokens per example (the newest). */
  maxTokens: number;
}

/**
 * The trace's rejected proposals as (position, token): the first rejected child of the accepted path's end
 * at each step, placed at the tokens index whose next-token prediction it was.
 */
export function rejectedProposals(
  trace: Trace,
  offset: number,
  length: number,
): { positions: Int32Array; tokens: Int32Array } {
  const positions: number[] = [];
  const tokens: number[] = [];
  const base = trace.promptTokenIds.length;
  for (const step of trace.steps) {
    const accepted = new Set(step.acceptedIndices);
    // The node after the accepted path: children of the last accepted node (or of the root) not accepted.
    const last = step.acceptedIndices.at(-1) ?? -1;
    step.parents.forEach((parent, i) => {
      if (parent !== last || accepted.has(i)) return;
      // Its token would have followed output position step.outputOffset + accepted count - 1.
      const at = base + step.outputOffset + step.acceptedIndices.length - 1 - offset;
      if (at >= 0 && at < length - 1) {
        positions.push(at);
        tokens.push(step.proposedTokenIds[i] as number);
      }
    });
  }
  return { positions: Int32Array.from(positions), tokens: Int32Array.from(tokens) };
}

/** The version that drafted most steps of the trace. */
function draftedBy(trace: Trace): string {
  const counts = new Map<string, number>();
  for (const s of trace.steps) counts.set(s.speculatorVersion, (counts.get(s.speculatorVersion) ?? 0) + 1);
  let best = "";
  let n = 0;
  for (const [v, c] of counts) if (c > n) [best, n] = [v, c];
  return best;
}

/** Runs the trainer's target over the trace's tokens and builds the example (see the header). */
export async function exampleFromTrace(
  target: Model,
  trace: Trace,
  options: ExampleOptions,
): Promise<TrainingExample> {
  const all = Int32Array.from([...trace.promptTokenIds, ...trace.outputTokenIds]);
  const n = all.length;
  const start = Math.max(0, n - options.maxTokens);
  const length = n - start;
  const blockSize = 16;
  const kv = new KvManager(target.backend, target.kvSpec(Math.ceil(n / blockSize) + 1, blockSize));
  const id = "example";
  if (kv.allocateSlots(id, n) === null) throw new Error("examples: KV allocation failed");
  const out = target.forward(kv.storage, buildLayout(kv, [{ seq: id, newTokens: n }]), all, {
    logitRows: Int32Array.from({ length }, (_, i) => start + i),
    hiddenLayers: options.featureLayers,
  });
  const be = target.backend;
  const hidden = target.config.hiddenSize;
  const width = options.featureLayers.length * hidden;
  const features = new Float32Array(length * width);
  for (const [j, layer] of options.featureLayers.entries()) {
    const act = out.hidden.get(layer);
    if (act === undefined) throw new Error(`examples: the target gave no features for layer ${layer}`);
    const rows = await be.readRows(act);
    be.release(act);
    for (let r = 0; r < length; r++) {
      features.set(rows.subarray((start + r) * hidden, (start + r + 1) * hidden), r * width + j * hidden);
    }
  }
  const logits = out.logits === undefined ? new Float32Array(0) : await be.readRows(out.logits);
  if (out.logits !== undefined) be.release(out.logits);
  kv.free(id);
  return {
    tokens: all.slice(start),
    features,
    targetLogits: logits,
    trainFrom: Math.max(0, trace.promptTokenIds.length - start),
    rejected: rejectedProposals(trace, start, length),
    domain: trace.domain,
    draftedBy: draftedBy(trace),
  };
}
