// Parity with transformers (float32, eager attention) on every checkpoint that ships a reference.json:
// the bundled tiny-code and tiny-code-draft, and the random Llama/Qwen2/Qwen3 checkpoints under
// models/testing/ when present. All inputs go through one batched prefill (every position's logits)
// and one batched greedy generation (./parity-support.ts, shared with the other backends' parity tests).
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ReferenceBackend } from "../backends/reference/backend.js";
import { runParity } from "./parity-support.js";

const MODELS = fileURLToPath(new URL("../../../../models/", import.meta.url));
const LOGIT_TOLERANCE = 2e-3;

function modelDirs(): string[] {
  const dirs = ["tiny-code", "tiny-code-draft"].map((d) => join(MODELS, d));
  const testing = join(MODELS, "testing");
  if (existsSync(testing)) {
    for (const d of readdirSync(testing).sort()) dirs.push(join(testing, d));
  }
  return dirs.filter((d) => existsSync(join(d, "reference.json")));
}

for (const dir of modelDirs()) {
  const name = dir.slice(MODELS.length);
  test(`model parity: ${name} matches transformers (top-8 logits at every position, greedy tokens)`, async () => {
    const { maxDiff, where, greedy } = await runParity(new ReferenceBackend(), dir, { label: name });
    assert.ok(maxDiff <= LOGIT_TOLERANCE, `max |logit diff| ${maxDiff} at ${where}`);
    for (const g of greedy) assert.deepEqual(g.tokens, g.expected, `greedy continuation of ${g.name}`);
  });
}
