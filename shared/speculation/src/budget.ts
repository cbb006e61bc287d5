// How many nodes to draft for a sequence this step. Drafting costs target compute (every node is a row
// of the verification pass) and pays only in accepted tokens, so the budget follows what drafting has
// been earning lately, how much generation the request has left, and how sure the drafter is now.
// DAS (arXiv 2511.13841): long requests dominate the makespan, so they get the aggressive budgets;
// a request about to finish gains little from a deep draft. Pure functions: the decoder keeps the
// per-sequence state (AcceptanceStats) and calls them, which keeps them testable without a model.

export interface BudgetPolicyOptions {
  /** Never more nodes than this. */
  maxBudget: number;
  /** Weight of the newest pass in the acceptance EWMA. */
  ewmaAlpha: number;
  /** Before any measured pass, assume this many accepted tokens per pass. */
  priorAccepted: number;
  /** Nodes per accepted token: the budget reaches past what is being accepted, so it can grow. */
  growth: number;
  /** Below this EWMA (accepted tokens per pass) a sequence stops drafting... */
  offBelow: number;
  /** ...except every probeEvery-th step, with probeBudget nodes, so it can recover. */
  probeEvery: number;
  probeBudget: number;
  /** Expected remaining tokens at which a request counts as long (full budget). */
  longRemaining: number;
  /** Share of the budget a request about to finish keeps (length factor at 0 remaining). */
  shortFactor: number;
  /** Share of the budget kept at drafter confidence 0. */
  confidenceFloor: number;
}

export function defaultBudgetPolicyOptions(): BudgetPolicyOptions {
  return {
    maxBudget: 16,
    ewmaAlpha: 0.3,
    priorAccepted: 1,
    growth: 2,
    offBelow: 0.15,
    probeEvery: 8,
    probeBudget: 2,
    longRemaining: 512,
    shortFactor: 0.4,
    confidenceFloor: 0.25,
  };
}

export class BudgetOptionsError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`budget policy option ${key}: ${message}`);
    this.name = "BudgetOptionsError";
  }
}

/** Defaults overlaid with `given`; the error names the first bad key. */
export function parseBudgetPolicyOptions(given: Partial<BudgetPolicyOptions> = {}): BudgetPolicyOptions {
  const o = { ...defaultBudgetPolicyOptions(), ...given };
  const check = (key: keyof BudgetPolicyOptions, ok: boolean, want: string) => {
    if (!ok) throw new BudgetOptionsError(key, `expected ${want}, got ${o[key]}`);
  };
  const isInt = (v: number, min: number) => Number.isInteger(v) && v >= min;
  check("maxBudget", isInt(o.maxBudget, 0), "an integer >= 0");
  check("ewmaAlpha", o.ewmaAlpha > 0 && o.ewmaAlpha <= 1, "a number in (0, 1]");
  check("priorAccepted", Number.isFinite(o.priorAccepted) && o.priorAccepted >= 0, "a number >= 0");
  check("growth", Number.isFinite(o.growth) && o.growth >= 0, "a number >= 0");
  check("offBelow", Number.isFinite(o.offBelow) && o.offBelow >= 0, "a number >= 0");
  check("probeEvery", isInt(o.probeEvery, 1), "an integer >= 1");
  check("probeBudget", isInt(o.probeBudget, 0), "an integer >= 0");
  check("longRemaining", isInt(o.longRemaining, 1), "an integer >= 1");
  check("shortFactor", o.shortFactor >= 0 && o.shortFactor <= 1, "a number in [0, 1]");
  check("confidenceFloor", o.confidenceFloor >= 0 && o.confidenceFloor <= 1, "a number in [0, 1]");
  return o;
}

/** Recent acceptance of one sequence under one drafter. */
export interface AcceptanceStats {
  /** EWMA of accepted draft tokens per verification pass that drafted. */
  ewma: number;
  /** Passes that drafted and were measured. */
  passes: number;
}

export const NO_ACCEPTANCE: AcceptanceStats = Object.freeze({ ewma: 0, passes: 0 });

/** Folds one verification pass in. A pass that drafted nothing says nothing about the drafter. */
export function updateAcceptance(
  stats: AcceptanceStats,
  accepted: number,
  drafted: number,
  options: Pick<BudgetPolicyOptions, "ewmaAlpha">,
): AcceptanceStats {
  if (drafted <= 0) return stats;
  if (stats.passes === 0) return { ewma: accepted, passes: 1 };
  return { ewma: stats.ewma + options.ewmaAlpha * (accepted - stats.ewma), passes: stats.passes + 1 };
}

export interface BudgetInputs {
  acceptance: AcceptanceStats;
  /** Output tokens generated so far. */
  generated: number;
  /** Output tokens the request may still produce (max_tokens - generated). */
  remaining: number;
  /** A predicted total output length (from history), when there is one. */
  predictedLength?: number;
  /** The drafter's own confidence now, in [0, 1] (suffix: match length and path probability). */
  confidence?: number;
  /** The sequence's step counter (drives probing). */
  step: number;
}

/**
 * Tokens the request is expected still to generate: max_tokens' bound, or less when a prediction says
 * so. A request that has outrun its prediction is expected to run about as long again (the longer a
 * request has run, the longer it tends to keep running), capped by max_tokens.
 */
export function expectedRemaining(generated: number, remaining: number, predictedLength?: number): number {
  const r = Math.max(0, remaining);
  if (predictedLength === undefined) return r;
  return Math.min(r, Math.max(predictedLength - generated, generated));
}

/** The node budget for this step, an integer in [0, maxBudget]. */
export function draftBudget(inputs: BudgetInputs, options: BudgetPolicyOptions): number {
  // A pass with one token left can accept no draft (the last token is the target's own).
  if (inputs.remaining <= 1 || options.maxBudget === 0) return 0;
  const ewma = inputs.acceptance.passes === 0 ? options.priorAccepted : inputs.acceptance.ewma;
  if (ewma < options.offBelow) {
    return inputs.step % options.probeEvery === 0 ? Math.min(options.probeBudget, options.maxBudget) : 0;
  }
  const left = expectedRemaining(inputs.generated, inputs.remaining, inputs.predictedLength);
  const lengthShare = Math.min(1, Math.log1p(left) / Math.log1p(options.longRemaining));
  const lengthFactor = options.shortFactor + (1 - options.shortFactor) * lengthShare;
  const confidence = Math.min(1, Math.max(0, inputs.confidence ?? 1));
  const confidenceFactor = options.confidenceFloor + (1 - options.confidenceFloor) * confidence;
  const raw = (options.growth * ewma + 1) * lengthFactor * confidenceFactor;
  return Math.max(1, Math.min(options.maxBudget, Math.round(raw)));
}

/** What policyBudget reads of a sequence (DecodeSequence has it). */
export interface BudgetedSequence {
  acceptance: AcceptanceStats;
  readonly outputLength: number;
  readonly remaining: number;
  readonly targetPasses: number;
}

/**
 * The decoder's budgetFor from this policy: each sequence's own acceptance, its length so far and what it
 * may still produce (DAS: long generations get the aggressive budgets).
 */
export function policyBudget(options: BudgetPolicyOptions): (seq: BudgetedSequence) => number {
  return (seq) =>
    draftBudget(
      {
        acceptance: seq.acceptance,
        generated: seq.outputLength,
        remaining: seq.remaining,
        step: seq.targetPasses,
      },
      options,
    );
}
