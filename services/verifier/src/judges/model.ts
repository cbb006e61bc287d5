// The model judges, both clients of the inference node's Score (teacher forcing: log-probabilities of
// given continuations, no sampling, so a verdict is deterministic).
//   pairwise: both answers in one prompt, asked which is better; P(A) is read from the verdict tokens'
//     probabilities, renormalised over the two verdicts. Asked in both orders and averaged, which cancels the
//     model's preference for whichever answer it reads first. One judge call = both orders.
//   pointwise: each answer alone, asked whether it is correct; its score is P(yes) over {yes, no}. The
//     baseline V1 improves on: the model tends to call its own wrong answers correct.
import type { PairJudge } from "../tournament/index.js";
import type { InferenceNode } from "./inference.js";

export const PAIRWISE_VERDICTS = [" A", " B"] as const;
export const POINTWISE_VERDICTS = [" yes", " no"] as const;

export function pairwisePrompt(question: string, first: string, second: string): string {
  return (
    `Question:\n${question}\n\nAnswer A:\n${first}\n\nAnswer B:\n${second}\n\n` +
    "Which answer is better, A or B?\nBetter answer:"
  );
}

export function pointwisePrompt(question: string, answer: string): string {
  return `Question:\n${question}\n\nAnswer:\n${answer}\n\nIs the answer correct, yes or no?\nCorrect:`;
}

/** P(first of two continuations) from their total log-probabilities. */
export function firstOfTwo(logpFirst: number, logpSecond: number): number {
  const m = Math.max(logpFirst, logpSecond);
  const a = Math.exp(logpFirst - m);
  const b = Math.exp(logpSecond - m);
  return a / (a + b);
}

export interface ModelJudgeContext {
  node: InferenceNode;
  question: string;
  candidates: readonly string[];
  signal: AbortSignal;
  timeoutMs: number;
}

async function twoWay(
  ctx: ModelJudgeContext,
  prompt: string,
  verdicts: readonly [string, string],
): Promise<number> {
  const res = await ctx.node.score(
    { prompt, continuations: verdicts.map((text) => ({ text, tokenIds: [] })) },
    ctx.signal,
    ctx.timeoutMs,
  );
  const [first, second] = res.scores;
  if (first === undefined || second === undefined) {
    throw new Error(`Score answered ${res.scores.length} scores for 2 continuations`);
  }
  return firstOfTwo(first.totalLogprob, second.totalLogprob);
}

export function pairwiseJudge(ctx: ModelJudgeContext): PairJudge {
  const text = (i: number): string => ctx.candidates[i] as string;
  return async (a, b) => {
    const [ab, ba] = await Promise.all([
      twoWay(ctx, pairwisePrompt(ctx.question, text(a), text(b)), PAIRWISE_VERDICTS),
      twoWay(ctx, pairwisePrompt(ctx.question, text(b), text(a)), PAIRWISE_VERDICTS),
    ]);
    return (ab + (1 - ba)) / 2;
  };
}

/** One score per candidate, in candidate order. */
export async function pointwiseScores(ctx: ModelJudgeContext): Promise<number[]> {
  return Promise.all(
    ctx.candidates.map((answer) => twoWay(ctx, pointwisePrompt(ctx.question, answer), POINTWISE_VERDICTS)),
  );
}
