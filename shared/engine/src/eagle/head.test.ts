// The eagle head's forward on the bundled model: the cpu backend equals the reference one (a prefill of
// target features, then a tree of draft rows on the head's own hidden), and a tree row equals the chain
// it stands for.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Backend } from "../backend.js";
import { type CpuBackend, createCpuBackend } from "../backends/cpu/backend.js";
import { ReferenceBackend } from "../backends/reference/backend.js";
import { buildLayout } from "../kv/layout.js";
import { KvManager } from "../kv/manager.js";
import { type LoadedModel, loadModelDir } from "../loader/hf-model.js";
import { Model } from "../model/model.js";
import { EagleHead } from "./head.js";
import { randomEagleWeights } from "./random.js";

const DIR = fileURLToPath(new URL("../../../../models/tiny-code", import.meta.url));
const PROMPT = [0, 322, 1244, 367, 18, 7101, 18];
let loaded: LoadedModel;
let cpu: CpuBackend;

before(async () => {
  loaded = await loadModelDir(DIR);
  cpu = await createCpuBackend({ threads: 2 });
});
after(() => cpu?.destroy());

/** The target's features of PROMPT's positions (layers `layers`, concatenated per row), on `be`. */
async function targetFeatures(model: Model, layers: readonly number[]): Promise<Float32Array> {
  const be = model.backend;
  const kv = new KvManager(be, model.kvSpec(4, 16));
  kv.allocateSlots("t", PROMPT.length);
  const out = model.forward(
    kv.storage,
    buildLayout(kv, [{ seq: "t", newTokens: PROMPT.length }]),
    Int32Array.from(PROMPT),
    {
      hiddenLayers: layers,
    },
  );
  const h = model.config.hiddenSize;
  const per = await Promise.all(layers.map((l) => be.readRows(out.hidden.get(l)!)));
  const data = new Float32Array(PROMPT.length * layers.length * h);
  for (let r = 0; r < PROMPT.length; r++) {
    for (const [j, rows] of per.entries()) {
      data.set(rows.subarray(r * h, (r + 1) * h), (r * layers.length + j) * h);
    }
  }
  return data;
}

interface HeadRun {
  prefillLogits: Float32Array;
  prefillHidden: Float32Array;
  treeLogits: Float32Array;
  chainLogits: Float32Array;
}

/**
 * On `be`: the head over PROMPT's features (rows (f_i, token i+1), the last row's logits and hidden), then
 * a tree of draft rows on that hidden (two siblings, a child of the first) and the chain of the first
 * sibling and its child alone.
 */
async function runHead(be: Backend, features: Float32Array, blob: Uint8Array): Promise<HeadRun> {
  const model = Model.load(be, loaded);
  const head = EagleHead.load(be, blob, model);
  const kv = new KvManager(be, head.kvSpec(8, 4));
  const n = PROMPT.length - 1;
  kv.allocateSlots("s", n, 4);
  const pre = head.forward(
    kv.storage,
    buildLayout(kv, [{ seq: "s", newTokens: n }]),
    Int32Array.from(PROMPT.slice(1)),
    { kind: "features", data: features.subarray(0, n * head.featureWidth) },
    Int32Array.of(n - 1),
  );
  kv.commit("s", n);
  const prefillLogits = await be.readRows(pre.logits);
  const prefillHidden = await be.readRows(pre.hidden);
  const hid = head.config.hiddenSize;
  // Node 2's input is node 0's output hidden: take it from a first pass over nodes 0 and 1.
  const siblings = head.forward(
    kv.storage,
    buildLayout(kv, [{ seq: "s", newTokens: 2, treeParents: Int32Array.of(-1, -1) }]),
    Int32Array.of(203, 18),
    { kind: "hidden", data: Float32Array.from([...prefillHidden, ...prefillHidden]) },
    Int32Array.of(0, 1),
  );
  const node0 = (await be.readRows(siblings.hidden)).slice(0, hid);
  const tree = head.forward(
    kv.storage,
    buildLayout(kv, [{ seq: "s", newTokens: 3, treeParents: Int32Array.of(-1, -1, 0) }]),
    Int32Array.of(203, 18, 7),
    { kind: "hidden", data: Float32Array.from([...prefillHidden, ...prefillHidden, ...node0]) },
    Int32Array.of(0, 1, 2),
  );
  const treeLogits = await be.readRows(tree.logits);
  const chain = head.forward(
    kv.storage,
    buildLayout(kv, [{ seq: "s", newTokens: 2 }]),
    Int32Array.of(203, 7),
    { kind: "hidden", data: Float32Array.from([...prefillHidden, ...node0]) },
    Int32Array.of(0, 1),
  );
  const chainLogits = await be.readRows(chain.logits);
  return { prefillLogits, prefillHidden, treeLogits, chainLogits };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const featureLayers of [[5], [1, 3, 5]]) {
  test(`eagle head - cpu equals reference within 1e-3, and a tree row equals its chain (feature layers ${featureLayers})`, async () => {
    const ref = new ReferenceBackend();
    const features = await targetFeatures(Model.load(ref, loaded), featureLayers);
    const blob = randomEagleWeights(loaded.config, { seed: 11, featureLayers });
    const r = await runHead(ref, features, blob);
    const c = await runHead(cpu, features, blob);
    const vocab = loaded.config.vocabSize;
    let worst = 0;
    for (const key of ["prefillLogits", "prefillHidden", "treeLogits", "chainLogits"] as const) {
      const d = maxDiff(r[key], c[key]);
      assert.ok(d <= 1e-3, `${key}: cpu vs reference max |diff| ${d}`);
      worst = Math.max(worst, d);
    }
    console.log(
      `# eagle head cpu vs reference (layers ${featureLayers}): max |diff| ${worst.toExponential(2)}`,
    );
    // Tree node 2 (child of node 0) sees the same context as the chain's second row.
    const treeChild = r.treeLogits.subarray(2 * vocab, 3 * vocab);
    assert.ok(maxDiff(treeChild, r.chainLogits.subarray(vocab)) <= 1e-4, "tree child vs chain");
    assert.ok(
      maxDiff(r.treeLogits.subarray(0, vocab), r.chainLogits.subarray(0, vocab)) <= 1e-4,
      "tree root vs chain",
    );
    // Random weights still give a real distribution, not a constant row.
    assert.ok(r.prefillLogits.some((v) => v !== r.prefillLogits[0]));
  });
}
