import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fitBradleyTerry, rankByScore } from "./bradley-terry.js";
import { Rng } from "./rng.js";
import { type Comparison, type PairJudge, runTournament } from "./tournament.js";

/** A judge that always prefers the higher hidden quality, counting its calls. */
function perfectJudge(quality: readonly number[]): PairJudge & { calls: number } {
  const judge = Object.assign(
    async (a: number, b: number) => {
      judge.calls++;
      return (quality[a] as number) > (quality[b] as number) ? 1 : 0;
    },
    { calls: 0 },
  );
  return judge;
}

/** Distinct qualities in a random order. */
function qualities(n: number, seed: number): number[] {
  return new Rng(seed + 1000).shuffled(Array.from({ length: n }, (_, i) => i));
}

function argmax(xs: readonly number[]): number {
  return xs.indexOf(Math.max(...xs));
}

function degrees(n: number, comparisons: readonly Comparison[]): number[] {
  const d = new Array<number>(n).fill(0);
  for (const c of comparisons) {
    d[c.a] = (d[c.a] as number) + 1;
    d[c.b] = (d[c.b] as number) + 1;
  }
  return d;
}

function connected(n: number, comparisons: readonly Comparison[]): boolean {
  const parent = Array.from({ length: n }, (_, i) => i);
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] as number;
    return x;
  };
  for (const c of comparisons) parent[find(c.a)] = find(c.b);
  return new Set(parent.map((_, i) => find(i))).size === 1;
}

const SIZES = [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32];

describe("tournament - invariants", () => {
  test("tournament - with a budget of n every candidate is compared at least twice (n >= 3) in a connected graph", async () => {
    for (const n of SIZES.filter((x) => x >= 2)) {
      for (let seed = 0; seed < 10; seed++) {
        const { comparisons } = await runTournament(n, perfectJudge(qualities(n, seed)), { budget: n, seed });
        const d = degrees(n, comparisons);
        assert.ok(Math.min(...d) >= Math.min(2, n - 1), `n=${n} seed=${seed} degrees ${d}`);
        assert.ok(connected(n, comparisons), `n=${n} seed=${seed}`);
        assert.ok(comparisons.every((c) => c.phase === 1));
      }
    }
  });

  test("tournament - one call short of a cycle still leaves the graph connected", async () => {
    for (const n of [3, 6, 9, 32]) {
      const { comparisons } = await runTournament(n, perfectJudge(qualities(n, 1)), {
        budget: n - 1,
        seed: 1,
      });
      assert.equal(comparisons.length, n - 1);
      assert.ok(connected(n, comparisons), `n=${n}`);
    }
  });

  test("tournament - never spends more than the budget, and never judges a pair twice", async () => {
    for (const n of SIZES) {
      for (const budget of [0, 1, n - 1, n, 2 * n, 3 * n, n * n]) {
        if (budget < 0) continue;
        const judge = perfectJudge(qualities(n, budget));
        const { comparisons } = await runTournament(n, judge, { budget, seed: 7 });
        const pairs = (n * (n - 1)) / 2;
        assert.equal(judge.calls, comparisons.length);
        assert.equal(comparisons.length, Math.min(budget, pairs), `n=${n} budget=${budget}`);
        const keys = comparisons.map((c) => `${Math.min(c.a, c.b)}-${Math.max(c.a, c.b)}`);
        assert.equal(new Set(keys).size, keys.length, `n=${n} budget=${budget}: a pair judged twice`);
        assert.ok(comparisons.every((c) => c.a !== c.b && c.a >= 0 && c.a < n && c.b >= 0 && c.b < n));
      }
    }
  });

  test("tournament - the same seed replays the same tournament; another seed pairs differently", async () => {
    const n = 16;
    const q = qualities(n, 3);
    // A judge with graded, order-dependent answers, and answers that arrive out of order.
    const judge: PairJudge = async (a, b) => {
      await new Promise((r) => setTimeout(r, (a * 7 + b * 3) % 5));
      return 1 / (1 + Math.exp((q[b] as number) - (q[a] as number) - 0.3));
    };
    const one = await runTournament(n, judge, { budget: 3 * n, seed: 42 });
    const two = await runTournament(n, judge, { budget: 3 * n, seed: 42 });
    const other = await runTournament(n, judge, { budget: 3 * n, seed: 43 });
    assert.deepEqual(two, one);
    assert.notDeepEqual(
      other.comparisons.map((c) => [c.a, c.b]),
      one.comparisons.map((c) => [c.a, c.b]),
    );
  });

  test("tournament - a perfect judge always finds the best at budgets 2n and 3n", async () => {
    for (const n of SIZES) {
      for (const mult of [2, 3]) {
        for (let seed = 0; seed < 40; seed++) {
          const q = qualities(n, seed);
          const { ranking } = await runTournament(n, perfectJudge(q), { budget: mult * n, seed });
          assert.equal(ranking[0], argmax(q), `n=${n} budget=${mult}n seed=${seed}`);
        }
      }
    }
  });

  test("tournament - a full budget with a perfect judge ranks every candidate in order", async () => {
    const n = 12;
    const q = qualities(n, 5);
    const { ranking } = await runTournament(n, perfectJudge(q), { budget: (n * (n - 1)) / 2, seed: 5 });
    assert.deepEqual(
      ranking,
      [...q.keys()].sort((x, y) => (q[y] as number) - (q[x] as number)),
    );
  });

  test("tournament - n = 1 needs no judge; n = 2 is one comparison; budget 0 keeps index order", async () => {
    const never: PairJudge = async () => assert.fail("the judge must not be called");
    assert.deepEqual(await runTournament(1, never, { budget: 10 }), {
      ranking: [0],
      scores: [0],
      comparisons: [],
    });
    const two = await runTournament(2, async (a) => (a === 1 ? 0.9 : 0.1), { budget: 6 });
    assert.equal(two.comparisons.length, 1);
    assert.deepEqual(two.ranking, [1, 0]);
    assert.deepEqual((await runTournament(3, never, { budget: 0 })).ranking, [0, 1, 2]);
  });

  test("tournament - streams each comparison in order as it is judged", async () => {
    const seen: [number, Comparison][] = [];
    const result = await runTournament(8, perfectJudge(qualities(8, 2)), {
      budget: 16,
      onComparison: (c, i) => seen.push([i, c]),
    });
    assert.deepEqual(
      seen,
      result.comparisons.map((c, i) => [i, c]),
    );
    assert.deepEqual([...new Set(result.comparisons.map((c) => c.phase))], [1, 2]);
  });
});

describe("tournament - bad input and failing judges", () => {
  test("tournament - refuses n < 1, a fractional n, budget < 0 and a negative seed, naming the field", async () => {
    const judge = perfectJudge([0, 1]);
    await assert.rejects(runTournament(0, judge, { budget: 1 }), /n: must be an integer >= 1/);
    await assert.rejects(runTournament(2.5, judge, { budget: 1 }), /n: must be an integer >= 1/);
    await assert.rejects(runTournament(2, judge, { budget: -1 }), /budget: must be an integer >= 0/);
    await assert.rejects(runTournament(2, judge, { budget: 1, seed: -3 }), /seed: must be/);
  });

  test("tournament - a judge that throws mid-tournament fails the tournament with its error", async () => {
    let calls = 0;
    const judge: PairJudge = async () => {
      calls++;
      if (calls === 10) throw new Error("node went away");
      return 0.5;
    };
    await assert.rejects(runTournament(16, judge, { budget: 48 }), /node went away/);
  });

  test("tournament - a judge answering something other than a probability is an error", async () => {
    for (const bad of [Number.NaN, 1.5, -0.1]) {
      await assert.rejects(
        runTournament(4, async () => bad, { budget: 4 }),
        /expected a probability/,
      );
    }
  });
});

describe("tournament - bradley-terry", () => {
  test("bradley-terry - recovers the order of strengths from many soft outcomes", () => {
    const truth = [1.5, -0.5, 0.8, -1.2, 0];
    const outcomes = [];
    for (let a = 0; a < truth.length; a++) {
      for (let b = 0; b < truth.length; b++) {
        if (a !== b)
          outcomes.push({ a, b, pA: 1 / (1 + Math.exp((truth[b] as number) - (truth[a] as number))) });
      }
    }
    const s = fitBradleyTerry(truth.length, outcomes, 1e-6);
    assert.deepEqual(rankByScore(s), [0, 2, 4, 1, 3]);
    // The differences are the true ones (the fit is exact for exact probabilities).
    assert.ok(Math.abs((s[0] as number) - (s[3] as number) - 2.7) < 1e-3, `${s}`);
  });

  test("bradley-terry - an undefeated candidate gets a finite, highest score", () => {
    const s = fitBradleyTerry(3, [
      { a: 0, b: 1, pA: 1 },
      { a: 0, b: 2, pA: 1 },
      { a: 1, b: 2, pA: 1 },
    ]);
    assert.ok(s.every(Number.isFinite));
    assert.deepEqual(rankByScore(s), [0, 1, 2]);
  });
});
