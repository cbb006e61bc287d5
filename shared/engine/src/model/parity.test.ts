// Parity with transformers (float32, eager attention) on every checkpoint that ships a reference.json:
// the bundled tiny-code and tiny-code-draft, and the random Llama/Qwen2/Qwen3 checkpoints under
// models/testing/ when present. All inputs go through one batched prefill (every position's logits)
// and one batched greedy generation.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ReferenceBackend } from "../backends/reference/backend.js";
import { generate } from "../generate.js";
import { buildLayout } from "../kv/layout.js";
import { KvManager } from "../kv/manager.js";
import { loadCheckpoint } from "../loader/checkpoint.js";
import { loadModelDir } from "../loader/hf-model.js";
import { Model, type ModelSource } from "./model.js";

const MODELS = fileURLToPath(new URL("../../../../models/", import.meta.url));
const LOGIT_TOLERANCE = 2e-3;

interface ReferenceInput {
  name: string;
  input_ids: number[];
  topk: [number, number][][];
  greedy: number[];
  last_logits?: number[];
}

function modelDirs(): string[] {
  const dirs = ["tiny-code", "tiny-code-draft"].map((d) => join(MODELS, d));
  const testing = join(MODELS, "testing");
  if (existsSync(testing)) {
    for (const d of readdirSync(testing).sort()) dirs.push(join(testing, d));
  }
  return dirs.filter((d) => existsSync(join(d, "reference.json")));
}

/** The full loader where the checkpoint has a tokenizer; the random test checkpoints have none (parity
 * needs none), so only their config and weights are loaded. */
async function loadForParity(dir: string): Promise<ModelSource> {
  return existsSync(join(dir, "tokenizer.json")) ? loadModelDir(dir) : loadCheckpoint(dir);
}

for (const dir of modelDirs()) {
  const name = dir.slice(MODELS.length);
  test(`model parity: ${name} matches transformers (top-8 logits at every position, greedy tokens)`, async () => {
    const inputs = (
      JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as { inputs: ReferenceInput[] }
    ).inputs;
    const loaded = await loadForParity(dir);
    const be = new ReferenceBackend();
    const model = Model.load(be, loaded);
    const vocab = loaded.config.vocabSize;

    // One prefill of every input, logits of every row.
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
      if (inp.last_logits !== undefined) {
        const last = rowStart + inp.input_ids.length - 1;
        inp.last_logits.forEach((expected, id) => {
          const diff = Math.abs(logits[last * vocab + id]! - expected);
          if (diff > maxDiff) [maxDiff, worst] = [diff, `${inp.name} last position, token ${id}`];
        });
      }
    });
    console.log(`# ${name}: max |logit diff| ${maxDiff.toExponential(2)} (${worst}) over ${total} positions`);
    assert.ok(maxDiff <= LOGIT_TOLERANCE, `max |logit diff| ${maxDiff} at ${worst}`);

    // Greedy continuations, all inputs in one batch; the references continue past eos.
    const n = inputs[0]!.greedy.length;
    const { outputs } = await generate(
      model,
      inputs.map((inp) => ({ prompt: inp.input_ids, maxTokens: n, stopTokenIds: [] })),
    );
    let matched = 0;
    inputs.forEach((inp, i) => {
      if (outputs[i]!.tokens.join() === inp.greedy.join()) matched++;
      else assert.deepEqual(outputs[i]!.tokens, inp.greedy, `greedy continuation of ${inp.name}`);
    });
    console.log(`# ${name}: greedy ${matched}/${inputs.length} inputs identical (${n} tokens each)`);
  });
}
