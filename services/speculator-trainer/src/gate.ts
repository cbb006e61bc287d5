// The promotion gate: decides from live traffic whether a canary speculator is faster than the live one,
// and whether the live one has degraded. What it measures is what users feel: each request's decode tokens
// per second (on the log scale, so a ratio is a difference) and its accepted tokens per target pass, from
// the traces of requests the nodes routed to the canary and to the live version.
//
// The test is sequential: the gate looks after every batch of traces, so a fixed-sample test would be
// wrong at its stated error rate. It uses a mixture sequential probability ratio test (mSPRT; Robbins 1970,
// Johari et al. 2017, "always valid p-values") for the difference of means between the arms, stratified
// by domain (only domains both arms served count, each weighted by the canary's share of them, so a
// canary that happened to get easier traffic is not credited with it): with d the estimated difference
// and v its variance,
//     Λ = sqrt(v / (v + τ²)) · exp(τ² d² / (2 v (v + τ²)))
// and H0 (no difference) is rejected when Λ >= 1 / α. Under H0 the chance that Λ ever crosses 1 / α is at
// most α, however often the gate looks. Promotion needs the rejection with d > 0 on tokens per second, at
// least `minSamples` requests in each arm, and no drop in accepted tokens per pass that is itself
// significant; a significant d < 0, or no decision by `timeoutMs`, retires the canary.
//
// Rollback: the live version is compared with its own earlier record (the same test, recent window against
// the window before it), and with an absolute floor: accepted tokens per pass collapsing toward one token a
// pass (mean under `collapseAcceptedPerPass` over `minSamples` requests) rolls back at once.

/** One request as the gate sees it. */
export interface GateSample {
  domain: string;
  /** Decode tokens per second of the request (output tokens after the first / decode time). */
  tokensPerSecond: number;
  /** Output tokens per target pass. */
  acceptedPerPass: number;
}

export interface GateOptions {
  /** Error rate of each test (the chance of a false promotion or rollback over the whole canary). */
  alpha: number;
  /** Mixture variance τ² on the log-ratio scale (the size of effect the test is tuned to find). */
  tau2: number;
  /** Requests each arm needs before any decision. */
  minSamples: number;
  /** A canary with no decision this long after it started is retired. */
  timeoutMs: number;
  /** Mean accepted tokens per pass under this (over minSamples requests) is a collapse: roll back. */
  collapseAcceptedPerPass: number;
  /**
   * A canary accepting this many tokens a pass fewer than live is retired, whatever its tokens/s say: with
   * the same drafting cost, fewer accepted tokens cannot make decoding faster, so a measured speed-up is the
   * machine's noise, not the canary's doing.
   */
  acceptanceMargin: number;
}

export function defaultGateOptions(): GateOptions {
  return {
    alpha: 0.05,
    tau2: 0.01,
    minSamples: 30,
    timeoutMs: 30 * 60_000,
    collapseAcceptedPerPass: 1.05,
    acceptanceMargin: 0.05,
  };
}

/** What a decision rests on, stored with it and readable through the API. */
export interface GateEvidence {
  /** Requests per arm (canary, live; or recent, earlier for a rollback check). */
  samples: [number, number];
  /** Mean log tokens/s per arm (matched domains, canary-weighted) and their difference. */
  meanLogTokensPerSecond: [number, number];
  difference: number;
  /** 1 - alpha interval of the difference (normal approximation, for reading; the decision is Λ's). */
  interval: [number, number];
  /** The mSPRT statistic and its threshold 1 / alpha. */
  statistic: number;
  threshold: number;
  /** Mean accepted tokens per pass per arm. */
  acceptedPerPass: [number, number];
  /** tokens/s ratio exp(difference): what users feel, as a speed-up. */
  speedup: number;
  domains: string[];
}

export type GateDecision =
  | { action: "wait"; reason: string; evidence: GateEvidence | undefined }
  | { action: "promote" | "retire" | "rollback"; reason: string; evidence: GateEvidence | undefined };

interface Moments {
  n: number;
  mean: number;
  /** Sum of squared deviations (Welford). */
  m2: number;
}

function moments(values: readonly number[]): Moments {
  let n = 0;
  let mean = 0;
  let m2 = 0;
  for (const v of values) {
    n++;
    const d = v - mean;
    mean += d / n;
    m2 += d * (v - mean);
  }
  return { n, mean, m2 };
}

function variance(m: Moments): number {
  return m.n > 1 ? m.m2 / (m.n - 1) : 0;
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const poly = (k: number[], x: number) => k.reduce((acc, v) => acc * x + v, 0);
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    return poly(c, q) / (poly(d, q) * q + 1);
  }
  if (p > 1 - 0.02425) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (poly(a, r) * q) / (poly(b, r) * r + 1);
}

/** The mixture SPRT statistic for a difference d with variance v under a N(0, τ²) mixture. */
export function msprt(d: number, v: number, tau2: number): number {
  if (!(v > 0)) return d === 0 ? 1 : Number.POSITIVE_INFINITY;
  return Math.sqrt(v / (v + tau2)) * Math.exp((tau2 * d * d) / (2 * v * (v + tau2)));
}

/**
 * Compares arm A with arm B (A - B) on log tokens/s, stratified by the domains both served, weighted by A's
 * share of them. Undefined when no domain has at least two requests in each arm.
 */
export function compareArms(
  a: readonly GateSample[],
  b: readonly GateSample[],
  options: GateOptions,
): GateEvidence | undefined {
  const byDomain = (xs: readonly GateSample[]) => {
    const m = new Map<string, GateSample[]>();
    for (const x of xs) {
      if (!(x.tokensPerSecond > 0)) continue;
      const list = m.get(x.domain) ?? [];
      list.push(x);
      m.set(x.domain, list);
    }
    return m;
  };
  const da = byDomain(a);
  const db = byDomain(b);
  const domains = [...da.keys()]
    .filter((k) => (da.get(k)?.length ?? 0) >= 2 && (db.get(k)?.length ?? 0) >= 2)
    .sort();
  if (domains.length === 0) return undefined;
  const weightTotal = domains.reduce((n, k) => n + (da.get(k)?.length ?? 0), 0);
  let d = 0;
  let v = 0;
  let meanA = 0;
  let meanB = 0;
  let na = 0;
  let nb = 0;
  let accA = 0;
  let accB = 0;
  for (const k of domains) {
    const xa = da.get(k) as GateSample[];
    const xb = db.get(k) as GateSample[];
    const w = xa.length / weightTotal;
    const ma = moments(xa.map((x) => Math.log(x.tokensPerSecond)));
    const mb = moments(xb.map((x) => Math.log(x.tokensPerSecond)));
    d += w * (ma.mean - mb.mean);
    v += w * w * (variance(ma) / ma.n + variance(mb) / mb.n);
    meanA += w * ma.mean;
    meanB += w * mb.mean;
    na += xa.length;
    nb += xb.length;
    accA += xa.reduce((s, x) => s + x.acceptedPerPass, 0);
    accB += xb.reduce((s, x) => s + x.acceptedPerPass, 0);
  }
  const z = normalQuantile(1 - options.alpha / 2);
  const sd = Math.sqrt(v);
  return {
    samples: [na, nb],
    meanLogTokensPerSecond: [meanA, meanB],
    difference: d,
    interval: [d - z * sd, d + z * sd],
    // Stored as JSON: an overwhelming statistic is capped, never Infinity (which JSON turns into null).
    statistic: Math.min(msprt(d, v, options.tau2), Number.MAX_VALUE),
    threshold: 1 / options.alpha,
    acceptedPerPass: [accA / na, accB / nb],
    speedup: Math.exp(d),
    domains,
  };
}

/** The canary against the live version: promote, retire, or wait. */
export function judgeCanary(
  canary: readonly GateSample[],
  live: readonly GateSample[],
  ageMs: number,
  options: GateOptions,
): GateDecision {
  const evidence = compareArms(canary, live, options);
  const timedOut = ageMs >= options.timeoutMs;
  if (evidence === undefined || Math.min(...evidence.samples) < options.minSamples) {
    if (timedOut)
      return {
        action: "retire",
        reason: `no decision after ${Math.round(ageMs / 1000)} s (too little matched traffic)`,
        evidence,
      };
    return {
      action: "wait",
      reason: `fewer than ${options.minSamples} matched requests in an arm`,
      evidence,
    };
  }
  const [canaryAccepted, liveAccepted] = evidence.acceptedPerPass;
  if (canaryAccepted < liveAccepted - options.acceptanceMargin) {
    return {
      action: "retire",
      reason: `accepts fewer tokens a pass than live: ${fmt(canaryAccepted)} against ${fmt(liveAccepted)}`,
      evidence,
    };
  }
  const significant = evidence.statistic >= evidence.threshold;
  if (significant && evidence.difference < 0) {
    return { action: "retire", reason: `slower than live: ${fmt(evidence.speedup)}x tokens/s`, evidence };
  }
  if (significant && evidence.difference > 0) {
    return { action: "promote", reason: `faster than live: ${fmt(evidence.speedup)}x tokens/s`, evidence };
  }
  if (timedOut)
    return { action: "retire", reason: `not proven faster in ${Math.round(ageMs / 1000)} s`, evidence };
  return { action: "wait", reason: "no significant difference yet", evidence };
}

/**
 * The live version against its own earlier record (recent - earlier) and the collapse floor: roll back, or
 * wait. `recent` and `earlier` are the live version's own requests, in two consecutive windows.
 */
export function judgeLive(
  recent: readonly GateSample[],
  earlier: readonly GateSample[],
  options: GateOptions,
): GateDecision {
  if (recent.length >= options.minSamples) {
    const acc = recent.reduce((s, x) => s + x.acceptedPerPass, 0) / recent.length;
    if (acc < options.collapseAcceptedPerPass) {
      return {
        action: "rollback",
        reason: `acceptance collapsed to ${fmt(acc)} tokens a pass over ${recent.length} requests`,
        evidence: compareArms(recent, earlier, options),
      };
    }
  }
  const evidence = compareArms(recent, earlier, options);
  if (evidence === undefined || Math.min(...evidence.samples) < options.minSamples) {
    return { action: "wait", reason: "too few requests in a window", evidence };
  }
  if (evidence.statistic >= evidence.threshold && evidence.difference < 0) {
    return {
      action: "rollback",
      reason: `degraded against its own record: ${fmt(evidence.speedup)}x tokens/s`,
      evidence,
    };
  }
  return { action: "wait", reason: "no significant degradation", evidence };
}

function fmt(x: number): string {
  return x.toFixed(3);
}
