// The trainer's recomputed features and distributions must be the ones the node served with: checked on
// the bundled model against a real decode (drafter none, features captured as the node captures them).
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  argmax,
  type Backend,
  GREEDY,
  KvManager,
  loadModelDir,
  Model,
  selectBackend,
} from "@specloop/engine";
import { Trace } from "@specloop/proto";
import { DecodeSequence, SpeculativeDecoder } from "@specloop/speculation";
import { exampleFromTrace, rejectedProposals } from "./examples.js";

const MODEL = fileURLToPath(new URL("../../../models/tiny-code", import.meta.url));
let backend: Backend;
let target: Model;

before(async () => {
  backend = (await selectBackend("cpu", { cpu: { threads: 1 } })).backend;
  target = Model.load(backend, await loadModelDir(MODEL));
});
after(() => backend.destroy());

it("trainer examples - recomputed features equal the node's captured ones, and the logits predict each greedy token", async () => {
  const layer = target.config.numLayers - 1;
  const prompt = [0, 333, 288, 1200, 77, 901, 45];
  const kv = new KvManager(backend, target.kvSpec(64, 16));
  const decoder = new SpeculativeDecoder({ model: target, kv, drafters: new Map(), budgetFor: () => 0 });
  const seq = new DecodeSequence({
    id: "s",
    prompt,
    maxTokens: 12,
    sampling: GREEDY,
    seed: 0,
    stopTokenIds: [],
    drafter: "none",
    captureLayers: [layer],
  });
  while (!seq.done) await decoder.step([seq], { prefillTokens: 64 });
  decoder.evict(seq);
  const trace = Trace.fromPartial({ promptTokenIds: prompt, outputTokenIds: seq.output, domain: "python" });
  const ex = await exampleFromTrace(target, trace, { featureLayers: [layer], maxTokens: 1024 });
  const h = target.config.hiddenSize;
  assert.equal(ex.tokens.length, prompt.length + 12);
  assert.equal(ex.trainFrom, prompt.length);
  const c = seq.captured;
  assert.ok(c !== undefined && c.rows.length > 0);
  c.rows.forEach((row, i) => {
    const at = prompt.length + c.firstPosition + i;
    const mine = ex.features.subarray(at * h, (at + 1) * h);
    const diff = Math.max(...Array.from(row, (v, j) => Math.abs(v - (mine[j] as number))));
    assert.ok(diff < 1e-3, `position ${at}: features differ by ${diff}`);
  });
  const vocab = target.config.vocabSize;
  for (let t = prompt.length - 1; t < ex.tokens.length - 1; t++) {
    assert.equal(
      argmax(ex.targetLogits.subarray(t * vocab, (t + 1) * vocab)),
      ex.tokens[t + 1],
      `position ${t}`,
    );
  }
  // A window keeps the newest tokens, with trainFrom moved accordingly.
  const win = await exampleFromTrace(target, trace, { featureLayers: [layer], maxTokens: 8 });
  assert.equal(win.tokens.length, 8);
  assert.deepEqual(Array.from(win.tokens), Array.from(ex.tokens.slice(-8)));
  assert.equal(win.trainFrom, 0);
});

it("trainer examples - rejected proposals sit at the position they were proposed for", () => {
  // Prompt of 3; step at output 2: proposed [a, b | c] as root children a (accepted) and c (rejected sibling),
  // b a child of a (rejected after a was accepted).
  const trace = Trace.fromPartial({
    promptTokenIds: [1, 2, 3],
    outputTokenIds: [10, 11, 12, 13, 14],
    steps: [
      {
        outputOffset: 2,
        proposedTokenIds: [12, 99, 98],
        parents: [-1, 0, -1],
        acceptedIndices: [0],
        bonusTokenId: 13,
      },
    ],
  });
  const r = rejectedProposals(trace, 0, 8);
  // After the accepted node (output 2 = tokens index 5), its rejected child 99 was the guess for index 6.
  assert.deepEqual(Array.from(r.tokens), [99]);
  assert.deepEqual(Array.from(r.positions), [5]);
});
