// From a whole trace to a training example for the eagle head. The trainer recomputes what the head learns
// from with its own copy of the target model: one prefill over prompt + output gives the target's hidden
// features at every position and its full next-token distribution there (not only the top-k at proposed
// positions that traces carry). That keeps traces small on the bus (token ids and steps, no fp16 feature
// rows), which is what a fleet of many nodes needs; the cost moves to the trainer (one target prefill per
// trace), measured in bench/results/trainer-throughput-cpu.md. (Nodes can still ship sampled fp16 feature
// rows in traces, traces.feature_sample_share; the trainer does not train from them yet.)
//
// Long requests are cut to a window: the last `maxTokens` tokens (the head attends over a recent window, as
// the node's drafter does), and the target's prefill runs over that window (engine train/target.ts).
import { type Model, targetExample } from "@specloop/engine";
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

/** Runs the trainer's target over the trace's newest tokens and builds the example (see the header). */
export async function exampleFromTrace(
  target: Model,
  trace: Trace,
  options: ExampleOptions,
): Promise<TrainingExample> {
  const all = Int32Array.from([...trace.promptTokenIds, ...trace.outputTokenIds]);
  const start = Math.max(0, all.length - options.maxTokens);
  const tokens = all.slice(start);
  const ex = await targetExample(target, tokens, {
    featureLayers: options.featureLayers,
    trainFrom: Math.max(0, trace.promptTokenIds.length - start),
  });
  return {
    tokens,
    features: ex.features,
    targetLogits: ex.targetLogits as Float32Array,
    trainFrom: ex.trainFrom,
    rejected: rejectedProposals(trace, start, tokens.length),
    domain: trace.domain,
    draftedBy: draftedBy(trace),
  };
}
