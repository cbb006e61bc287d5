// cpu backend parity on the bundled model: a subset of tiny-code's reference prompts (the full set runs
// on `reference` in model/parity.test.ts), through one batched prefill with the logits of every position
// and one batched greedy generation: logits within 2e-3 of transformers' reference.json, greedy tokens
// identical to it (and so to `reference`, which matches it on every prompt).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { generate } from "../../generate.js";
import { buildLayout } from "../../kv/layout.js";
import { KvManager } from "../../kv/manager.js";
import { loadModelDir } from "../../loader/hf-model.js";
import { Model } from "../../model/model.js";
import { createCpuBackend } from "./backend.js";

const MODEL = fileURLToPath(new URL("../../../../../models/tiny-code/", import.meta.url));
const LOGIT_TOLERANCE = 2e-3;
/** Short and long prompts, code and prose, the bos-only prompt (n = 1 products everywhere). */
const SUBSET = ["ids-bos", "ids-7", "py-def", "c-struct", "prose-unicode", "heldout-c"];

interface ReferenceInput {
  name: string;
  input_ids: number[];
  topk: [number, number][][];
  greedy: number[];
}

test("cpu backend parity: tiny-code matches transformers on a subset of prompts (top-8 logits, 32 greedy tokens)", async () => {
  const all = (JSON.parse(readFileSync(`${MODEL}reference.json`, "utf8")) as { inputs: ReferenceInput[] })
    .inputs;
  const inputs = SUBSET.map((name) => all.find((i) => i.name === name)!);
  const loaded = await loadModelDir(MODEL);
  const be = await createCpuBackend({ threads: 2 });
  try {
    const model = Model.load(be, loaded);
    const vocab = loaded.config.vocabSize;
    const total = inputs.reduce((n, i) => n + i.input_ids.length, 0);
    const kv = new KvManager(be, model.kvSpec(Math.ceil(total / 16) + inputs.length, 16));
    inputs.forEach((inp, i) => {
      kv.allocateSlots(String(i), inp.input_ids.length);
    });
    const layout = buildLayout(
      kv,
      inputs.map((inp, i) => ({ seq: String(i), newTokens: inp.input_ids.length })),
    );
    const ids = Int32Array.from(inputs.flatMap((i) => i.input_ids));
    const out = model.forward(kv.storage, layout, ids, { logitRows: Int32Array.from(ids, (_, r) => r) });
    const logits = await be.readRows(out.logits!);
    let maxDiff = 0;
    let worst = "";
    inputs.forEach((inp, s) => {
      const rowStart = layout.sequences[s]!.rowStart;
      inp.topk.forEach((pairs, p) => {
        for (const [id, expected] of pairs) {
          const diff = Math.abs(logits[(rowStart + p) * vocab + id]! - expected);
          if (diff > maxDiff) [maxDiff, worst] = [diff, `${inp.name} position ${p} token ${id}`];
        }
      });
    });
    console.log(`# cpu: max |logit diff| ${maxDiff.toExponential(2)} (${worst}) over ${total} positions`);
    assert.ok(maxDiff <= LOGIT_TOLERANCE, `max |logit diff| ${maxDiff} at ${worst}`);

    const n = inputs[0]!.greedy.length;
    const { outputs } = await generate(
      model,
      inputs.map((inp) => ({ prompt: inp.input_ids, maxTokens: n, stopTokenIds: [] })),
    );
    inputs.forEach((inp, i) => {
      assert.deepEqual(outputs[i]!.tokens, inp.greedy, `greedy continuation of ${inp.name}`);
    });
  } finally {
    be.destroy();
  }
});
