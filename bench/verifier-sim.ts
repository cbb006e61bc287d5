// The verifier's simulation: candidates with a hidden true quality, simulated judges, and the selection
// methods the V1 tournament is measured against. No model: what is measured is how well each method turns
// judge calls into picking the best candidate, so the judges' noise and position bias are set by hand.
//
// Judges are deterministic, as the model's are at temperature 0 (Score is teacher forcing): asking the same
// question twice gives the same answer, so extra calls only help by asking different questions.
//   pairwise: presenting x first and y second, the judge's logit is
//     sharpness * (q_x - q_y + e_xy) + bias, e_xy ~ N(0, pairNoise), one draw per ordered pair;
//     a call asks both orders and averages (as the service's pairwise judge does), which cancels the bias
//     to first order: pA = (sigmoid(L_xy) + 1 - sigmoid(L_yx)) / 2.
//   pointwise: each answer scored alone, q_i + u_i, u_i ~ N(0, pointNoise), one draw per answer.
import {
  fitBradleyTerry,
  type PairJudge,
  Rng,
  rankByScore,
  runTournament,
  sigmoid,
} from "@specloop/verifier/tournament";

export interface JudgeSetting {
  name: string;
  /** Std of the pairwise judge's error on a quality difference (qualities are N(0, 1)). */
  pairNoise: number;
  /** Logit added in favour of whichever answer is shown first. */
  positionBias: number;
  /** Std of the pointwise judge's error on one answer's quality. */
  pointNoise: number;
}

/** How decisive the pairwise judge is: the logit per unit of quality difference. */
export const JUDGE_SHARPNESS = 2;

/** One simulated question: n candidates, their qualities and the judges' fixed errors. */
export interface Instance {
  n: number;
  quality: number[];
  best: number;
  /** pair error per ordered pair, row-major n x n. */
  pairError: Float64Array;
  pointError: number[];
  setting: JudgeSetting;
}

function gaussian(rng: Rng): number {
  // Box-Muller; 1 - u keeps log away from 0.
  const u = 1 - rng.next();
  const v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export function makeInstance(n: number, setting: JudgeSetting, seed: number): Instance {
  const rng = new Rng(seed);
  const quality = Array.from({ length: n }, () => gaussian(rng));
  const pairError = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) pairError[i] = gaussian(rng) * setting.pairNoise;
  const pointError = Array.from({ length: n }, () => gaussian(rng) * setting.pointNoise);
  return { n, quality, best: rankByScore(quality)[0] as number, pairError, pointError, setting };
}

/** The pairwise judge of an instance, counting its calls (each call = both orders). */
export function pairJudge(inst: Instance): PairJudge & { calls: number } {
  const { quality: q, pairError: e, n, setting } = inst;
  const shown = (x: number, y: number): number =>
    sigmoid(
      JUDGE_SHARPNESS * ((q[x] as number) - (q[y] as number) + (e[x * n + y] as number)) +
        setting.positionBias,
    );
  const judge = Object.assign(
    async (a: number, b: number) => {
      judge.calls++;
      return (shown(a, b) + 1 - shown(b, a)) / 2;
    },
    { calls: 0 },
  );
  return judge;
}

export interface Pick {
  chosen: number;
  calls: number;
}

export const METHODS = ["v1", "random-pairs", "single-elimination", "round-robin", "pointwise"] as const;
export type Method = (typeof METHODS)[number];

/** Runs one method on one instance with at most `budget` judge calls (round robin ignores the budget). */
export async function pick(method: Method, inst: Instance, budget: number, seed: number): Promise<Pick> {
  const n = inst.n;
  const judge = pairJudge(inst);
  switch (method) {
    case "v1": {
      const { ranking } = await runTournament(n, judge, { budget, seed });
      return { chosen: ranking[0] as number, calls: judge.calls };
    }
    case "random-pairs": {
      // Distinct pairs drawn uniformly, scored by the same Bradley-Terry fit as V1.
      const all: [number, number][] = [];
      for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) all.push([a, b]);
      const chosenPairs = new Rng(seed).shuffled(all).slice(0, budget);
      const outcomes = [];
      for (const [a, b] of chosenPairs) outcomes.push({ a, b, pA: await judge(a, b) });
      return { chosen: rankByScore(fitBradleyTerry(n, outcomes))[0] as number, calls: judge.calls };
    }
    case "single-elimination": {
      // A random bracket; the odd one out of a round gets a bye. n - 1 calls whatever the budget above that.
      let alive = new Rng(seed).shuffled(Array.from({ length: n }, (_, i) => i));
      while (alive.length > 1 && judge.calls < budget) {
        const next: number[] = [];
        for (let i = 0; i + 1 < alive.length; i += 2) {
          const a = alive[i] as number;
          const b = alive[i + 1] as number;
          next.push(judge.calls < budget ? ((await judge(a, b)) >= 0.5 ? a : b) : a);
        }
        if (alive.length % 2 === 1) next.push(alive[alive.length - 1] as number);
        alive = next;
      }
      return { chosen: alive[0] as number, calls: judge.calls };
    }
    case "round-robin": {
      const outcomes = [];
      for (let a = 0; a < n; a++)
        for (let b = a + 1; b < n; b++) outcomes.push({ a, b, pA: await judge(a, b) });
      return { chosen: rankByScore(fitBradleyTerry(n, outcomes))[0] as number, calls: judge.calls };
    }
    case "pointwise": {
      // A deterministic scorer: one call per answer; more calls would repeat the same scores.
      const scores = inst.quality.map((q, i) => q + (inst.pointError[i] as number));
      return { chosen: rankByScore(scores)[0] as number, calls: n };
    }
  }
}
