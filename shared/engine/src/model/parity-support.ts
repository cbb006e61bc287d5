// Test support: parity with transformers on a checkpoint that ships a reference.json (written by
// tools/test-checkpoints from transformers, float32, eager attention), on any backend. The chosen inputs go
// through one batched prefill with the logits of every position, compared with the reference's top-8 (and
// its full last-position logits where it has them), and one batched greedy generation. The caller asserts
// on the result with its own bounds; used by model/parity.test.ts (reference backend, every checkpoint),
// backends/cpu/parity.test.ts and backends/webgpu/backend.test.ts.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../backend.js";
import { generate } from "../generate.js";
import { buildLayout } from "../kv/layout.js";
import { KvManager } from "../kv/manager.js";
import { loadCheckpoint } from "../loader/checkpoint.js";
import { loadModelDir } from "../loader/hf-model.js";
import { Model, type ModelSource } from "./model.js";

export interface ReferenceInput {
  name: string;
  input_ids: number[];
  topk: [number, number][][];
  greedy: number[];
  last_logits?: number[];
}

export interface ParityOptions {
  /** The inputs to run: reference.json names (in this order), or a filter; every input by default. */
  inputs?: readonly string[] | ((input: ReferenceInput) => boolean);
  /** How many greedy tokens to generate and compare; the reference's full continuation by default. */
  greedyTokens?: number;
  /** Prefix of the two `# …` summary lines written to the test log. */
  label: string;
}

export interface ParityResult {
  /** The largest |logit - reference| over every compared logit, and where it was. */
  maxDiff: number;
  where: string;
  /** Prompt positions run through the prefill. */
  total: number;
  /** Per input: the greedy tokens generated and the reference's (cut to the tokens generated). */
  greedy: { name: string; tokens: number[]; expected: number[] }[];
  greedyMatched: number;
}

/** The full loader where the checkpoint has a tokenizer; the random test checkpoints have none (parity
 * needs none), so only their config and weights are loaded. */
function loadForParity(dir: string): Promise<ModelSource> {
  return existsSync(join(dir, "tokenizer.json")) ? loadModelDir(dir) : loadCheckpoint(dir);
}

function pickInputs(dir: string, pick: ParityOptions["inputs"]): ReferenceInput[] {
  const all = (JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as { inputs: ReferenceInput[] })
    .inputs;
  if (pick === undefined) return all;
  if (typeof pick === "function") return all.filter(pick);
  return pick.map((name) => {
    const found = all.find((i) => i.name === name);
    if (found === undefined) throw new Error(`${dir}reference.json has no input ${name}`);
    return found;
  });
}

export async function runParity(be: Backend, dir: string, options: ParityOptions): Promise<ParityResult> {
  const inputs = pickInputs(dir, options.inputs);
  const loaded = await loadForParity(dir);
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
  let where = "";
  // A NaN logit sticks as the maximum (so it fails any bound) rather than comparing false and vanishing.
  const note = (diff: number, at: string) => {
    if (!Number.isNaN(maxDiff) && !(diff <= maxDiff)) [maxDiff, where] = [diff, at];
  };
  inputs.forEach((inp, s) => {
    const rowStart = layout.sequences[s]!.rowStart;
    inp.topk.forEach((pairs, p) => {
      for (const [id, expected] of pairs) {
        note(
          Math.abs(logits[(rowStart + p) * vocab + id]! - expected),
          `${inp.name} position ${p} token ${id}`,
        );
      }
    });
    if (inp.last_logits !== undefined) {
      const last = rowStart + inp.input_ids.length - 1;
      inp.last_logits.forEach((expected, id) => {
        note(Math.abs(logits[last * vocab + id]! - expected), `${inp.name} last position, token ${id}`);
      });
    }
  });
  console.log(
    `# ${options.label}: max |logit diff| ${maxDiff.toExponential(2)} (${where}) over ${total} positions`,
  );

  // Greedy continuations, all inputs in one batch; the references continue past eos.
  const n = options.greedyTokens ?? inputs[0]!.greedy.length;
  const { outputs } = await generate(
    model,
    inputs.map((inp) => ({ prompt: inp.input_ids, maxTokens: n, stopTokenIds: [] })),
  );
  const greedy = inputs.map((inp, i) => ({
    name: inp.name,
    tokens: outputs[i]!.tokens,
    expected: inp.greedy.slice(0, n),
  }));
  const greedyMatched = greedy.filter((g) => g.tokens.join() === g.expected.join()).length;
  console.log(
    `# ${options.label}: greedy ${greedyMatched}/${inputs.length} inputs identical (${n} tokens each)`,
  );
  return { maxDiff, where, total, greedy, greedyMatched };
}
