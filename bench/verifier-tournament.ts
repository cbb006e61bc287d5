// Top-1 accuracy of the V1 tournament against pointwise scoring, random pairs, single elimination and a
// full round robin, on simulated candidates and judges (bench/verifier-sim.ts says how they are made).
//   node --conditions=source --import tsx bench/verifier-tournament.ts [--trials 2000] [--sizes 4,8,16,32]
//     [--budgets 2,3] [--out bench/results/verifier-tournament.json]
// Every method sees the same instances (same qualities, same judge errors), so differences between
// methods are not sampling noise of the instances.
import { emit, hostInfo, intArg, intListArg, parseArgs } from "./common.js";
import { type JudgeSetting, type Method, makeInstance, pick } from "./verifier-sim.js";

/** From a sharp, unbiased judge to a noisy, strongly biased one; the last row is the control. */
export const SETTINGS: JudgeSetting[] = [
  { name: "sharp", pairNoise: 0.25, positionBias: 0, pointNoise: 0.5 },
  { name: "sharp, biased", pairNoise: 0.25, positionBias: 1.5, pointNoise: 0.5 },
  { name: "noisy, biased", pairNoise: 0.5, positionBias: 1.5, pointNoise: 1 },
  { name: "noisy, strongly biased", pairNoise: 0.5, positionBias: 3, pointNoise: 1 },
  { name: "very noisy, biased", pairNoise: 1, positionBias: 1.5, pointNoise: 2 },
  // Control: the regime V1 does not claim, where one answer scored alone is the more reliable signal.
  { name: "control: pointwise more reliable", pairNoise: 1, positionBias: 1.5, pointNoise: 0.25 },
];

interface Row {
  setting: string;
  n: number;
  method: Method;
  /** Budget as a multiple of n (V1, random pairs, single elimination); null for round robin and pointwise. */
  budgetPerN: number | null;
  meanCalls: number;
  top1: number;
  /** Mean quality lost against the best candidate. */
  meanRegret: number;
}

const args = parseArgs(process.argv.slice(2), new Set());
const trials = intArg(args, "trials", 2000);
const sizes = intListArg(args, "sizes", [4, 8, 16, 32]);
const budgets = intListArg(args, "budgets", [2, 3]);
const out = args.get("out");

const started = Date.now();
const rows: Row[] = [];
for (const setting of SETTINGS) {
  for (const n of sizes) {
    const runs: { method: Method; budgetPerN: number | null }[] = [
      { method: "pointwise", budgetPerN: null },
      { method: "round-robin", budgetPerN: null },
      ...budgets.flatMap((m) =>
        (["v1", "random-pairs", "single-elimination"] as const).map((method) => ({ method, budgetPerN: m })),
      ),
    ];
    for (const { method, budgetPerN } of runs) {
      let hits = 0;
      let calls = 0;
      let regret = 0;
      for (let t = 0; t < trials; t++) {
        const inst = makeInstance(n, setting, t * 7919 + n);
        const budget = budgetPerN === null ? (n * (n - 1)) / 2 : budgetPerN * n;
        const result = await pick(method, inst, budget, t);
        if (result.chosen === inst.best) hits++;
        calls += result.calls;
        regret += (inst.quality[inst.best] as number) - (inst.quality[result.chosen] as number);
      }
      rows.push({
        setting: setting.name,
        n,
        method,
        budgetPerN,
        meanCalls: calls / trials,
        top1: hits / trials,
        meanRegret: regret / trials,
      });
    }
  }
}

emit(
  {
    bench: "verifier-tournament",
    trials,
    settings: SETTINGS,
    rows,
    seconds: (Date.now() - started) / 1000,
    host: hostInfo(),
  },
  out,
);
