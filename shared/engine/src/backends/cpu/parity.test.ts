// cpu backend parity on the bundled model: a subset of tiny-code's reference prompts (the full set runs
// on `reference` in model/parity.test.ts), through one batched prefill with the logits of every position
// and one batched greedy generation: logits within 2e-3 of transformers' reference.json, greedy tokens
// identical to it (and so to `reference`, which matches it on every prompt).
import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { runParity } from "../../model/parity-support.js";
import { createCpuBackend } from "./backend.js";

const MODEL = fileURLToPath(new URL("../../../../../models/tiny-code/", import.meta.url));
const LOGIT_TOLERANCE = 2e-3;
/** Short and long prompts, code and prose, the bos-only prompt (n = 1 products everywhere). */
const SUBSET = ["ids-bos", "ids-7", "py-def", "c-struct", "prose-unicode", "heldout-c"];

test("cpu backend parity: tiny-code matches transformers on a subset of prompts (top-8 logits, 32 greedy tokens)", async () => {
  const be = await createCpuBackend({ threads: 2 });
  try {
    const { maxDiff, where, greedy } = await runParity(be, MODEL, { inputs: SUBSET, label: "cpu" });
    assert.ok(maxDiff <= LOGIT_TOLERANCE, `max |logit diff| ${maxDiff} at ${where}`);
    for (const g of greedy) assert.deepEqual(g.tokens, g.expected, `greedy continuation of ${g.name}`);
  } finally {
    be.destroy();
  }
});
