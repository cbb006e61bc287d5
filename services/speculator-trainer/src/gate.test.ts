import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Rng } from "@specloop/engine";
import {
  compareArms,
  defaultGateOptions,
  type GateSample,
  judgeCanary,
  judgeLive,
  normalQuantile,
} from "./gate.js";

/** A request's decode tokens/s: log-normal around `median` (spread 0.25 on the log scale, as measured per request). */
function sample(rng: Rng, domain: string, median: number, acceptedPerPass = 2): GateSample {
  const u1 = Math.max(rng.next(), 1e-12);
  const u2 = rng.next();
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  return { domain, tokensPerSecond: median * Math.exp(0.25 * z), acceptedPerPass };
}

const options = { ...defaultGateOptions(), minSamples: 20 };

/** Feeds both arms one request at a time and asks the gate after each pair, as the trainer does. */
function run(
  rng: Rng,
  canaryMedian: (d: string) => number,
  liveMedian: (d: string) => number,
  domains: string[],
  max: number,
) {
  const canary: GateSample[] = [];
  const live: GateSample[] = [];
  for (let i = 0; i < max; i++) {
    const d = domains[i % domains.length] as string;
    canary.push(sample(rng, d, canaryMedian(d)));
    live.push(sample(rng, d, liveMedian(d)));
    const decision = judgeCanary(canary, live, 0, options);
    if (decision.action !== "wait") return { decision, n: i + 1 };
  }
  return { decision: judgeCanary(canary, live, 0, options), n: max };
}

describe("gate", () => {
  it("normalQuantile matches known values", () => {
    assert.ok(Math.abs(normalQuantile(0.975) - 1.959964) < 1e-5);
    assert.ok(Math.abs(normalQuantile(0.5)) < 1e-9);
    assert.ok(Math.abs(normalQuantile(0.001) + 3.090232) < 1e-5);
  });

  it("keeps its error rate under continuous monitoring: an equal canary is rarely promoted or retired", () => {
    const rng = new Rng(11);
    let decided = 0;
    const experiments = 200;
    for (let e = 0; e < experiments; e++) {
      const { decision } = run(
        rng,
        () => 100,
        () => 100,
        ["python", "c"],
        400,
      );
      if (decision.action !== "wait") decided++;
    }
    // alpha = 0.05 bounds the chance of ever deciding over all 300 looks; allow 3 binomial standard deviations.
    const bound = options.alpha + 3 * Math.sqrt((options.alpha * (1 - options.alpha)) / experiments);
    assert.ok(decided / experiments <= bound, `${decided} of ${experiments} equal canaries were decided`);
  });

  it("promotes a canary 20% faster and retires one 20% slower, with the evidence", () => {
    const rng = new Rng(5);
    const faster = run(
      rng,
      () => 120,
      () => 100,
      ["python", "c", "prose"],
      2000,
    );
    assert.equal(faster.decision.action, "promote", faster.decision.reason);
    const ev = faster.decision.evidence;
    assert.ok(ev !== undefined && ev.statistic >= ev.threshold && ev.speedup > 1.05);
    assert.ok((ev?.interval[0] ?? 0) > 0, "the interval excludes no difference");
    const slower = run(
      rng,
      () => 80,
      () => 100,
      ["python", "c", "prose"],
      2000,
    );
    assert.equal(slower.decision.action, "retire", slower.decision.reason);
  });

  it("retires a canary that accepts fewer tokens a pass than live, however fast its requests looked", () => {
    // The machine got faster while the canary ran (its requests' tokens/s 20% higher), but its drafts were
    // rejected: a speed-up with fewer accepted tokens at the same drafting cost is noise, not the canary's.
    const rng = new Rng(8);
    const canary: GateSample[] = [];
    const live: GateSample[] = [];
    for (let i = 0; i < 40; i++) {
      canary.push(sample(rng, "python", 120, 1.01));
      live.push(sample(rng, "python", 100, 1.3));
    }
    const d = judgeCanary(canary, live, 0, options);
    assert.equal(d.action, "retire", d.reason);
    assert.match(d.reason, /accepts fewer tokens a pass than live/);
    assert.deepEqual(
      d.evidence?.acceptedPerPass.map((x) => Number(x.toFixed(2))),
      [1.01, 1.3],
    );
  });

  it("does not credit a canary with easier traffic: domains are matched", () => {
    // The canary served mostly the fast domain, the live mostly the slow one; within each, they are equal.
    const rng = new Rng(9);
    const canary = [
      ...Array.from({ length: 200 }, () => sample(rng, "c", 300)),
      ...Array.from({ length: 20 }, () => sample(rng, "prose", 100)),
    ];
    const live = [
      ...Array.from({ length: 20 }, () => sample(rng, "c", 300)),
      ...Array.from({ length: 200 }, () => sample(rng, "prose", 100)),
    ];
    const naive =
      Math.log(canary.reduce((s, x) => s + x.tokensPerSecond, 0) / canary.length) -
      Math.log(live.reduce((s, x) => s + x.tokensPerSecond, 0) / live.length);
    assert.ok(naive > 0.5, "pooled means would call the canary much faster");
    const decision = judgeCanary(canary, live, 0, options);
    assert.notEqual(decision.action, "promote", decision.reason);
    assert.ok(Math.abs(compareArms(canary, live, options)?.difference ?? 1) < 0.1);
  });

  it("retires a canary that reaches no decision before the timeout", () => {
    const rng = new Rng(2);
    const a = Array.from({ length: 40 }, () => sample(rng, "python", 100));
    const b = Array.from({ length: 40 }, () => sample(rng, "python", 100));
    assert.equal(judgeCanary(a, b, 1000, options).action, "wait");
    assert.equal(judgeCanary(a, b, options.timeoutMs, options).action, "retire");
    assert.equal(judgeCanary(a.slice(0, 3), b.slice(0, 3), options.timeoutMs, options).action, "retire");
  });

  it("rolls the live version back when acceptance collapses or it degrades against its own record", () => {
    const rng = new Rng(3);
    const earlier = Array.from({ length: 100 }, () => sample(rng, "python", 100, 2.5));
    const collapsed = Array.from({ length: 30 }, () => sample(rng, "python", 100, 1.0));
    const c = judgeLive(collapsed, earlier, options);
    assert.equal(c.action, "rollback");
    assert.match(c.reason, /collapsed/);
    const slower = Array.from({ length: 100 }, () => sample(rng, "python", 70, 1.8));
    assert.equal(judgeLive(slower, earlier, options).action, "rollback");
    const same = Array.from({ length: 100 }, () => sample(rng, "python", 100, 2.5));
    assert.equal(judgeLive(same, earlier, options).action, "wait");
  });
});
