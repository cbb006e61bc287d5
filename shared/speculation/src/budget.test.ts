import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type AcceptanceStats,
  type BudgetInputs,
  BudgetOptionsError,
  defaultBudgetPolicyOptions,
  draftBudget,
  expectedRemaining,
  NO_ACCEPTANCE,
  parseBudgetPolicyOptions,
  updateAcceptance,
} from "./budget.js";

const options = defaultBudgetPolicyOptions();
// A step that is not a probing step, so monotonicity is checked within one regime.
const STEP = 3;

function inputs(over: Partial<BudgetInputs> & { ewma?: number }): BudgetInputs {
  const acceptance: AcceptanceStats = over.acceptance ?? { ewma: over.ewma ?? 2, passes: 10 };
  return { generated: 100, remaining: 400, step: STEP, confidence: 1, ...over, acceptance };
}

describe("budget", () => {
  test("budget - always an integer within [0, maxBudget]", () => {
    for (const maxBudget of [0, 1, 5, 16, 64]) {
      const o = { ...options, maxBudget };
      for (const ewma of [0, 0.1, 0.5, 1, 3, 10, 100]) {
        for (const remaining of [0, 1, 2, 10, 1000, 100000]) {
          for (const confidence of [0, 0.3, 1]) {
            for (let step = 0; step < 10; step++) {
              const b = draftBudget(inputs({ ewma, remaining, confidence, step }), o);
              assert.ok(Number.isInteger(b) && b >= 0 && b <= maxBudget, `budget ${b}`);
            }
          }
        }
      }
    }
  });

  test("budget - longer expected remaining generation never gets a smaller budget (DAS)", () => {
    for (const ewma of [0.3, 1, 2.5, 6]) {
      let prev = 0;
      for (const remaining of [2, 4, 8, 16, 32, 64, 128, 256, 512, 2048, 10000]) {
        const b = draftBudget(inputs({ ewma, remaining }), options);
        assert.ok(b >= prev, `remaining ${remaining}: ${b} < ${prev}`);
        prev = b;
      }
    }
    // A long request gets a strictly more aggressive budget than one about to finish.
    assert.ok(
      draftBudget(inputs({ ewma: 3, remaining: 2000 }), options) >
        draftBudget(inputs({ ewma: 3, remaining: 3 }), options),
    );
  });

  test("budget - a predicted length shortens the expected remaining; outrunning it lengthens it", () => {
    assert.equal(expectedRemaining(100, 900), 900);
    assert.equal(expectedRemaining(100, 900, 150), 100, "past half of a short prediction: as long again");
    assert.equal(expectedRemaining(10, 900, 500), 490);
    assert.equal(expectedRemaining(10, 40, 500), 40, "max_tokens still bounds it");
    const short = draftBudget(
      inputs({ ewma: 3, generated: 10, remaining: 2000, predictedLength: 14 }),
      options,
    );
    const long = draftBudget(
      inputs({ ewma: 3, generated: 10, remaining: 2000, predictedLength: 1500 }),
      options,
    );
    assert.ok(long > short, `long ${long} vs short ${short}`);
  });

  test("budget - more recent acceptance and more confidence never shrink the budget", () => {
    let prev = 0;
    for (const ewma of [0.15, 0.3, 0.6, 1, 1.5, 2, 3, 5, 8, 20]) {
      const b = draftBudget(inputs({ ewma }), options);
      assert.ok(b >= prev, `ewma ${ewma}: ${b} < ${prev}`);
      prev = b;
    }
    prev = 0;
    for (const confidence of [0, 0.1, 0.25, 0.5, 0.75, 1]) {
      const b = draftBudget(inputs({ ewma: 4, confidence }), options);
      assert.ok(b >= prev, `confidence ${confidence}: ${b} < ${prev}`);
      prev = b;
    }
    assert.ok(
      draftBudget(inputs({ ewma: 4, confidence: 0 }), options) < draftBudget(inputs({ ewma: 4 }), options),
    );
    assert.equal(draftBudget(inputs({ ewma: 50 }), options), options.maxBudget);
  });

  test("budget - nothing to draft when one token or none is left", () => {
    assert.equal(draftBudget(inputs({ remaining: 1 }), options), 0);
    assert.equal(draftBudget(inputs({ remaining: 0 }), options), 0);
  });

  test("budget - a drafter that stops being accepted is switched off, probed, and recovers", () => {
    // The sequence drafts; then its text turns unpredictable (nothing accepted), then predictable again.
    let acc = NO_ACCEPTANCE;
    const trace: number[] = [];
    const acceptable = (step: number) => (step < 20 || step >= 60 ? 100 : 0);
    for (let step = 0; step < 100; step++) {
      const budget = draftBudget({ acceptance: acc, generated: step, remaining: 1000 - step, step }, options);
      trace.push(budget);
      // The drafted chain is accepted up to what the text allows.
      acc = updateAcceptance(acc, Math.min(budget, acceptable(step)), budget, options);
    }
    assert.ok(trace[0]! > 0, "drafts before anything is measured (prior)");
    assert.ok(Math.min(...trace.slice(5, 20)) >= 8, "good acceptance gives a large budget");
    const off = trace.slice(35, 60);
    assert.ok(off.filter((b) => b === 0).length >= 20, "poor acceptance switches drafting off");
    assert.ok(
      off.some((b) => b > 0),
      "but it keeps probing",
    );
    const recovered = trace.findIndex((b, i) => i > 60 && b >= 8);
    assert.ok(recovered > 60 && recovered <= 80, `back to a large budget at step ${recovered}`);
  });

  test("budget - the acceptance EWMA ignores passes that drafted nothing", () => {
    const a = updateAcceptance(NO_ACCEPTANCE, 3, 4, options);
    assert.deepEqual(a, { ewma: 3, passes: 1 });
    assert.equal(updateAcceptance(a, 0, 0, options), a);
    const b = updateAcceptance(a, 0, 4, options);
    assert.ok(Math.abs(b.ewma - 3 * (1 - options.ewmaAlpha)) < 1e-12);
  });

  test("budget - bad options are refused by name", () => {
    assert.throws(() => parseBudgetPolicyOptions({ maxBudget: -1 }), BudgetOptionsError);
    assert.throws(() => parseBudgetPolicyOptions({ ewmaAlpha: 0 }), /ewmaAlpha/);
    assert.throws(() => parseBudgetPolicyOptions({ probeEvery: 0.5 }), /probeEvery/);
    assert.deepEqual(parseBudgetPolicyOptions(), defaultBudgetPolicyOptions());
  });
});
