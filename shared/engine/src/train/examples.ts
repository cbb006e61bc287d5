// The trainer's input: one EagleTrainingExample per finished request, checked here (each refusal an
// InvalidArgumentError naming the example and field), and a batch of them turned into what one unrolled
// pass needs: the TttLayout, step 0's feature rows, the token each row reads, and per step the rows that
// carry a loss with their targets.
import { InvalidArgumentError } from "@specloop/errors";
import type { EagleConfig } from "../eagle/config.js";
import { type TargetRow, targetFromLogits, targetFromTopK } from "./ops/cross-entropy.js";
import { type TttLayout, tttLayout } from "./ttt-layout.js";

export interface EagleTrainingExample {
  /** Committed tokens of one request: prompt then output (T tokens). */
  tokens: Int32Array;
  /**
   * The target's features at every position, [T, F * hidden] (the feature layers concatenated per row, as
   * the node ships them); [T - 1, F * hidden] is accepted too: the last position's feature is never read.
   */
  features: Float32Array;
  /** The target's next-token logits at every position, [T, vocab] (the trainer's own target prefill). */
  targetLogits?: Float32Array;
  /**
   * Or a trace's sparse top-k: for each of `positions`, k target ids and their logprobs ([positions, k]
   * row-major). Positions without an entry carry no KL term.
   */
  targetTopK?: { k: number; ids: Int32Array; logprobs: Float32Array; positions: Int32Array };
  /**
   * The first trained target position: the head's prediction of token p + 1 from position p is trained for
   * p >= trainFrom. A node drafts a request's output from its first output token on, so the prompt's
   * length trains exactly the predictions a node makes (earlier positions still serve as context).
   */
  trainFrom: number;
  /**
   * Rejected proposals: at position positions[j] the drafter proposed tokens[j] as token positions[j] + 1
   * and the target rejected it (the negative signal; see EagleTrainerOptions.rejectedWeight).
   *
   * From a trace (proto specloop.v1.VerificationStep): a proposed node whose ancestors were all accepted
   * and that stands for token index q (prompt length + output_offset + its depth) gives its target top-k
   * row at position q - 1 (targetTopK), and, if it was not accepted, a rejected entry (q - 1, its token).
   * Nodes under a rejected one saw a context that was never committed and carry nothing here.
   */
  rejected?: { positions: Int32Array; tokens: Int32Array };
}

const bad = (at: number, field: string, message: string) =>
  new InvalidArgumentError(`batch[${at}].${field}`, message);

/** Checks one example against the head and its target; throws InvalidArgumentError naming the field. */
export function checkExample(ex: EagleTrainingExample, at: number, config: EagleConfig): void {
  const V = config.vocabSize;
  const FH = config.featureLayers.length * config.hiddenSize;
  if (!(ex.tokens instanceof Int32Array)) throw bad(at, "tokens", "must be an Int32Array");
  const T = ex.tokens.length;
  for (const t of ex.tokens) if (!(t >= 0 && t < V)) throw bad(at, "tokens", `token ${t} outside [0, ${V})`);
  if (
    !(ex.features instanceof Float32Array) ||
    (ex.features.length !== T * FH && ex.features.length !== (T - 1) * FH)
  )
    throw bad(at, "features", `${ex.features?.length} values, expected [${T}, ${FH}] (T rows of F * hidden)`);
  for (const v of ex.features) if (!Number.isFinite(v)) throw bad(at, "features", `holds ${v}`);
  if (!(Number.isInteger(ex.trainFrom) && ex.trainFrom >= 0 && ex.trainFrom <= T))
    throw bad(at, "trainFrom", `${ex.trainFrom} is not a position in [0, ${T}]`);
  if (ex.targetLogits === undefined && ex.targetTopK === undefined)
    throw bad(at, "targetLogits", "give the target's distribution: targetLogits or targetTopK");
  if (ex.targetLogits !== undefined) {
    if (ex.targetLogits.length !== T * V)
      throw bad(at, "targetLogits", `${ex.targetLogits.length} values, expected [${T}, ${V}]`);
    for (const v of ex.targetLogits)
      if (Number.isNaN(v) || v === Number.POSITIVE_INFINITY) throw bad(at, "targetLogits", `holds ${v}`);
  }
  if (ex.targetTopK !== undefined) {
    const { k, ids, logprobs, positions } = ex.targetTopK;
    if (!(Number.isInteger(k) && k >= 1)) throw bad(at, "targetTopK.k", `${k} is not a positive integer`);
    if (ids.length !== positions.length * k || logprobs.length !== ids.length)
      throw bad(
        at,
        "targetTopK",
        `${ids.length} ids and ${logprobs.length} logprobs for ${positions.length} positions of ${k}`,
      );
    const seen = new Set<number>();
    for (const p of positions) {
      if (!(p >= 0 && p < T)) throw bad(at, "targetTopK.positions", `position ${p} outside [0, ${T})`);
      if (seen.has(p)) throw bad(at, "targetTopK.positions", `position ${p} listed twice`);
      seen.add(p);
    }
    for (const t of ids)
      if (!(t >= 0 && t < V)) throw bad(at, "targetTopK.ids", `token ${t} outside [0, ${V})`);
    for (const lp of logprobs)
      if (!(lp <= 0)) throw bad(at, "targetTopK.logprobs", `${lp} is not a log-probability`);
  }
  if (ex.rejected !== undefined) {
    const { positions, tokens } = ex.rejected;
    if (positions.length !== tokens.length)
      throw bad(at, "rejected", `${positions.length} positions for ${tokens.length} tokens`);
    for (const p of positions)
      if (!(p >= 0 && p < T)) throw bad(at, "rejected.positions", `position ${p} outside [0, ${T})`);
    for (const t of tokens)
      if (!(t >= 0 && t < V)) throw bad(at, "rejected.tokens", `token ${t} outside [0, ${V})`);
  }
}

/** A query row of some step with something to learn (or evaluate) at its target position. */
export interface LossRow {
  /** Index among the step's query rows. */
  row: number;
  example: number;
  /** The target position i + 1 + step. */
  position: number;
  /** Whether the target's distribution is given at this position. */
  hasTarget: boolean;
  /** Whether the KL term applies (a target whose argmax the trained vocabulary holds). */
  kl: boolean;
  /** Trained-vocabulary columns of proposals rejected at this position. */
  rejected: number[];
}

export interface BatchPlan {
  layout: TttLayout;
  features: Float32Array;
  tokens: Int32Array[];
  /** Per step, the rows with a loss (or, for evaluation, every row with a target position trained). */
  rows: LossRow[][];
  /** Per step, how many rows carry the KL term. */
  klRows: number[];
  /**
   * The target's distribution at a row's position, restricted to the trained vocabulary: computed when
   * first asked and kept for the plan's life (one step), so each position costs one pass over the
   * vocabulary however many unrolled steps score it.
   */
  target(row: LossRow): TargetRow | undefined;
}

export interface VocabMap {
  /** Draft column -> target id (undefined: the whole vocabulary). */
  d2t: Int32Array | undefined;
  /** Target id -> draft column or -1 (undefined: the identity). */
  t2d: Int32Array | undefined;
  cols: number;
}

/** The target's distribution at position p of an example, restricted to the trained vocabulary. */
function targetAt(
  ex: EagleTrainingExample,
  p: number,
  vocab: VocabMap,
  V: number,
  topKIndex: Map<number, number> | undefined,
): TargetRow | undefined {
  if (ex.targetLogits !== undefined)
    return targetFromLogits(ex.targetLogits.subarray(p * V, (p + 1) * V), vocab.d2t);
  const tk = ex.targetTopK;
  const j = topKIndex?.get(p);
  if (tk === undefined || j === undefined) return undefined;
  return targetFromTopK(
    tk.ids.subarray(j * tk.k, (j + 1) * tk.k),
    tk.logprobs.subarray(j * tk.k, (j + 1) * tk.k),
    vocab.t2d,
    vocab.cols,
  );
}

/**
 * Plans one unrolled pass over `batch` (already checked). `allRows`: every query row whose target
 * position is trained gets logits (evaluation), not only those with a loss.
 */
export function planBatch(
  batch: readonly EagleTrainingExample[],
  config: EagleConfig,
  unroll: number,
  vocab: VocabMap,
  allRows: boolean,
): BatchPlan {
  const H = config.hiddenSize;
  const FH = config.featureLayers.length * H;
  const V = config.vocabSize;
  const layout = tttLayout(
    batch.map((ex) => ({ length: ex.tokens.length, trainFrom: ex.trainFrom })),
    unroll,
  );
  const s0 = layout.steps[0]!;
  const features = new Float32Array(s0.count * FH);
  for (let r = 0; r < s0.count; r++) {
    const ex = batch[s0.example[r]!]!;
    const i = s0.index[r]!;
    features.set(ex.features.subarray(i * FH, (i + 1) * FH), r * FH);
  }
  const tokens = layout.steps.map((st, k) =>
    Int32Array.from({ length: st.count }, (_, r) => batch[st.example[r]!]!.tokens[st.index[r]! + 1 + k]!),
  );
  const topKIndex = batch.map((ex) =>
    ex.targetTopK === undefined
      ? undefined
      : new Map(Array.from(ex.targetTopK.positions, (p, j) => [p, j] as const)),
  );
  const rejectedAt = batch.map((ex) => {
    const m = new Map<number, number[]>();
    if (ex.rejected === undefined) return m;
    ex.rejected.positions.forEach((p, j) => {
      const t = ex.rejected!.tokens[j]!;
      const col = vocab.t2d === undefined ? t : vocab.t2d[t]!;
      if (col < 0) return; // a token the head cannot propose: nothing to push down
      const list = m.get(p) ?? [];
      if (!list.includes(col)) list.push(col);
      m.set(p, list);
    });
    return m;
  });
  const rows: LossRow[][] = [];
  const klRows: number[] = [];
  layout.steps.forEach((st, k) => {
    const out: LossRow[] = [];
    let kl = 0;
    for (let r = st.context; r < st.count; r++) {
      const e = st.example[r]!;
      const ex = batch[e]!;
      const position = st.index[r]! + 1 + k;
      if (position < ex.trainFrom) continue;
      const argmax = targetArgmax(ex, position, V, topKIndex[e]);
      const rejected = rejectedAt[e]!.get(position) ?? [];
      const hasKl = argmax >= 0 && (vocab.t2d === undefined || vocab.t2d[argmax]! >= 0);
      if (!allRows && !hasKl && rejected.length === 0) continue;
      if (hasKl) kl++;
      out.push({ row: r - st.context, example: e, position, hasTarget: argmax >= 0, kl: hasKl, rejected });
    }
    rows.push(out);
    klRows.push(kl);
  });
  // A position is the target of one row per unrolled step: its restricted distribution is computed once.
  const cache = new Map<number, TargetRow>();
  const target = (row: LossRow) => {
    if (!row.hasTarget) return undefined;
    const key = row.example * (V + 1) + row.position;
    let t = cache.get(key);
    if (t === undefined) {
      t = targetAt(batch[row.example]!, row.position, vocab, V, topKIndex[row.example]);
      if (t !== undefined) cache.set(key, t);
    }
    return t;
  };
  return { layout, features, tokens, rows, klRows, target };
}

/** The target's most likely token at position p (-1: no distribution given there). */
function targetArgmax(
  ex: EagleTrainingExample,
  p: number,
  V: number,
  topKIndex: Map<number, number> | undefined,
): number {
  if (ex.targetLogits !== undefined) {
    let best = 0;
    for (let i = 1; i < V; i++) if (ex.targetLogits[p * V + i]! > ex.targetLogits[p * V + best]!) best = i;
    return best;
  }
  const tk = ex.targetTopK;
  const j = topKIndex?.get(p);
  if (tk === undefined || j === undefined) return -1;
  let best = j * tk.k;
  for (let i = j * tk.k + 1; i < (j + 1) * tk.k; i++) if (tk.logprobs[i]! > tk.logprobs[best]!) best = i;
  return tk.ids[best]!;
}
