// The eagle head trainer on the bundled model (models/tiny-code): its forward is the served head's
// (parity against EagleHead on the reference backend, at step 0 and at draft depths 1 and 2, one and three
// feature layers, the full and a draft vocabulary), what it exports is a blob a node accepts, a run is a
// function of the seed and the batches (checkpoint and restore resume bit-identically), the rejected-proposal
// term pushes a rejected token down, evaluation's replay counts what greedy verification would accept,
// and bad input is refused naming the field.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DataLossError, InvalidArgumentError } from "@specloop/errors";
import { type CpuBackend, createCpuBackend } from "../backends/cpu/backend.js";
import { ReferenceBackend } from "../backends/reference/backend.js";
import { eagleConfigFor, expectedEagleTensors } from "../eagle/config.js";
import { EagleHead, type EagleInput } from "../eagle/head.js";
import { randomEagleWeights } from "../eagle/random.js";
import { validateSpeculatorBlob } from "../eagle/validate.js";
import { SpeculatorBlobError } from "../errors.js";
import { buildLayout } from "../kv/layout.js";
import { KvManager } from "../kv/manager.js";
import { type LoadedModel, loadModelDir } from "../loader/hf-model.js";
import { encodeSafetensors, parseSafetensors } from "../loader/safetensors.js";
import { Model } from "../model/model.js";
import { DRAFT_VOCAB_KEY, parseDraftVocab } from "./draft-vocab.js";
import { EagleHeadTrainer } from "./eagle-trainer.js";
import type { EagleTrainingExample } from "./examples.js";
import { targetExample, trainerTarget } from "./target.js";

const DIR = fileURLToPath(new URL("../../../../models/tiny-code", import.meta.url));
const TEXT = [
  "import os\nimport sys\n\n\ndef main(argv):\n    for name in argv:\n        print(name)\n",
  "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
  "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
];
let loaded: LoadedModel;
let cpu: CpuBackend;
let target: Model;
const examples = new Map<string, EagleTrainingExample>();

before(async () => {
  loaded = await loadModelDir(DIR);
  cpu = await createCpuBackend({ threads: 1 });
  target = Model.load(cpu, loaded);
});
after(() => cpu?.destroy());

/** Text i as a training example (prompt = its first `trainFrom` tokens), features of `layers`. */
async function example(
  i: number,
  layers: readonly number[],
  trainFrom = 8,
  len = 22,
): Promise<EagleTrainingExample> {
  const key = `${i}/${layers}/${trainFrom}/${len}`;
  const hit = examples.get(key);
  if (hit !== undefined) return hit;
  const tokens = Int32Array.from([0, ...loaded.tokenizer.encode(TEXT[i]!)].slice(0, len));
  const ex = await targetExample(target, tokens, { featureLayers: layers, trainFrom });
  examples.set(key, ex);
  return ex;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** The served head's logits columns `cols` (all when undefined) of rows [n, vocab]. */
function columns(rows: Float32Array, vocab: number, cols: Int32Array | undefined): Float32Array {
  if (cols === undefined) return rows;
  const n = rows.length / vocab;
  const out = new Float32Array(n * cols.length);
  for (let r = 0; r < n; r++) {
    cols.forEach((c, j) => {
      out[r * cols.length + j] = rows[r * vocab + c]!;
    });
  }
  return out;
}

for (const [layers, draft, kernels] of [
  [[5], false, "reference"],
  [[1, 3, 5], true, "cpu"],
] as const) {
  test(`eagle trainer - parity: the trainer's logits equal the served head's on the reference backend within 1e-4 (feature layers ${layers}${draft ? ", draft vocabulary of 300" : ""}, ${kernels} kernels)`, async () => {
    const ex = await example(0, layers);
    const config = eagleConfigFor(loaded.config, { featureLayers: layers });
    const d2t = draft
      ? Int32Array.from({ length: 300 }, (_, i) => (i * 27 + 5) % loaded.config.vocabSize)
      : undefined;
    const trainer = EagleHeadTrainer.create(trainerTarget(loaded), config, {
      seed: 3,
      lr: 1e-3,
      unrollSteps: 3,
      draftVocab: d2t,
    });
    // Two updates first, so the weights are trained ones rather than the seed's draw.
    trainer.step([ex]);
    trainer.step([ex]);
    const blob = trainer.exportBlob();
    const ours = trainer.forwardLogits(ex);

    const ref = new ReferenceBackend();
    const model = Model.load(ref, loaded);
    const head = EagleHead.load(ref, blob, model);
    const V = loaded.config.vocabSize;
    const FH = head.featureWidth;
    const H = config.hiddenSize;
    const T = ex.tokens.length;
    const feats = (from: number, to: number): EagleInput => ({
      kind: "features",
      data: ex.features.subarray(from * FH, to * FH),
    });
    let worst = 0;
    // Step 0: the head over every committed row (f_i, token i+1); row i predicts position i+1's target.
    {
      const kv = new KvManager(ref, head.kvSpec(4, 16));
      kv.allocateSlots("s", T - 1);
      const rows = Int32Array.from({ length: T - 1 }, (_, i) => i);
      const out = head.forward(
        kv.storage,
        buildLayout(kv, [{ seq: "s", newTokens: T - 1 }]),
        ex.tokens.slice(1),
        feats(0, T - 1),
        rows,
      );
      const full = await ref.readRows(out.logits);
      if (d2t !== undefined) {
        // The served head never proposes a token outside its draft vocabulary: every other logit is masked.
        const inside = new Set(d2t);
        for (let r = 0; r < T - 1; r++) {
          const row = full.subarray(r * V, (r + 1) * V);
          assert.ok(
            inside.has(row.indexOf(Math.max(...row))),
            `row ${r}: the top token is outside the draft vocabulary`,
          );
          assert.ok(row[1]! <= -1e29 && !inside.has(1), "token 1 is masked");
        }
      }
      const served = columns(full, V, d2t);
      const cols = d2t?.length ?? V;
      const s0 = ours[0]!;
      s0.positions.forEach((p, j) => {
        const d = maxDiff(
          s0.logits.subarray(j * cols, (j + 1) * cols),
          served.subarray((p - 1) * cols, p * cols),
        );
        worst = Math.max(worst, d);
      });
      assert.ok(s0.positions.length >= 10, "step 0 compared too few rows");
    }
    // Draft depths 1 and 2 from committed row i: the served drafter's chain on its own hidden.
    for (const i of [7, T - 4]) {
      const kv = new KvManager(ref, head.kvSpec(4, 16));
      kv.allocateSlots("s", i + 1, 2);
      const root = head.forward(
        kv.storage,
        buildLayout(kv, [{ seq: "s", newTokens: i + 1 }]),
        ex.tokens.slice(1, i + 2),
        feats(0, i + 1),
        Int32Array.of(i),
      );
      kv.commit("s", i + 1);
      let hidden = await ref.readRows(root.hidden);
      for (const depth of [1, 2]) {
        const out = head.forward(
          kv.storage,
          buildLayout(kv, [{ seq: "s", newTokens: 1 }]),
          Int32Array.of(ex.tokens[i + 1 + depth]!),
          { kind: "hidden", data: hidden },
          Int32Array.of(0),
        );
        kv.commit("s", 1);
        hidden = await ref.readRows(out.hidden);
        assert.equal(hidden.length, H);
        const served = columns(await ref.readRows(out.logits), V, d2t);
        const step = ours[depth]!;
        const j = step.positions.indexOf(i + 1 + depth);
        assert.ok(j >= 0, `step ${depth} has no row for position ${i + 1 + depth}`);
        const cols = d2t?.length ?? V;
        worst = Math.max(worst, maxDiff(step.logits.subarray(j * cols, (j + 1) * cols), served));
      }
    }
    console.log(
      `# trainer (${kernels} kernels) vs served head (layers ${layers}): max |diff| ${worst.toExponential(2)}`,
    );
    assert.ok(worst <= 1e-4, `max |diff| ${worst}`);
  });
}

test("eagle trainer - exportBlob: a blob the node validates, the head's tensors only (no embed or lm_head), its draft vocabulary in the metadata", async () => {
  const config = eagleConfigFor(loaded.config, { featureLayers: [2, 5] });
  const d2t = Int32Array.of(5, 0, 17, 4000);
  const trainer = EagleHeadTrainer.create(trainerTarget(loaded), config, { seed: 1, draftVocab: d2t });
  for (const dtype of ["f32", "bf16"] as const) {
    const blob = trainer.exportBlob({ dtype });
    const v = validateSpeculatorBlob(blob, loaded.config);
    assert.deepEqual([...v.tensors.keys()].sort(), [...expectedEagleTensors(config).keys()].sort());
    assert.ok([...v.tensors.values()].every((t) => t.dtype === dtype));
    assert.deepEqual(parseDraftVocab(v.metadata, config.vocabSize), d2t);
  }
  assert.equal(
    parseSafetensors(EagleHeadTrainer.create(trainerTarget(loaded), config).exportBlob(), "b").metadata[
      DRAFT_VOCAB_KEY
    ],
    undefined,
  );
  // A malformed map is refused by the node's validation, naming the key.
  const parsed = parseSafetensors(trainer.exportBlob(), "b");
  for (const bad of ["5,0,5", "5,x", "4294967296", "8192"]) {
    const blob = encodeSafetensors(parsed.tensors, { ...parsed.metadata, [DRAFT_VOCAB_KEY]: bad });
    assert.throws(
      () => validateSpeculatorBlob(blob, loaded.config),
      (err: unknown) => err instanceof SpeculatorBlobError && err.what === DRAFT_VOCAB_KEY,
      bad,
    );
  }
});

test("eagle trainer - fromBlob: a served bf16 head round-trips to the same bytes", () => {
  const blob = randomEagleWeights(loaded.config, { seed: 9, featureLayers: [1, 3, 5] });
  const trainer = EagleHeadTrainer.fromBlob(trainerTarget(loaded), blob, { lr: 1e-5 });
  assert.equal(trainer.stepCount, 0);
  assert.deepEqual(trainer.exportBlob({ dtype: "bf16" }), blob);
});

test("eagle trainer - deterministic: the same seed and batches give the same bytes; checkpoint then restore resumes bit-identically", async () => {
  const config = eagleConfigFor(loaded.config);
  const [a, b, c] = await Promise.all([example(0, [5]), example(1, [5]), example(2, [5])]);
  const opts = {
    seed: 11,
    lr: 3e-4,
    unrollSteps: 2,
    rejectedWeight: 0.5,
    acceptanceWeight: 0.2,
    weightDecay: 0.01,
    draftVocab: Int32Array.from({ length: 512 }, (_, i) => i),
  };
  const rejected = { positions: Int32Array.of(9, 12), tokens: Int32Array.of(7, 300) };
  const batches = [[a, b], [{ ...c, rejected }], [b], [a, { ...c, rejected }]];
  const t1 = EagleHeadTrainer.create(trainerTarget(loaded), config, opts);
  const t2 = EagleHeadTrainer.create(trainerTarget(loaded), config, opts);
  assert.deepEqual(t1.exportBlob(), t2.exportBlob());
  assert.notDeepEqual(
    t1.exportBlob(),
    EagleHeadTrainer.create(trainerTarget(loaded), config, { ...opts, seed: 12 }).exportBlob(),
  );
  const r1 = [t1.step(batches[0]!), t1.step(batches[1]!)];
  const ck = t1.checkpoint();
  r1.push(t1.step(batches[2]!), t1.step(batches[3]!));
  const r2 = batches.map((batch) => t2.step(batch));
  assert.deepEqual(r2, r1);
  assert.ok(r1[1]!.rejected > 0, "the rejected term was active");
  const t3 = EagleHeadTrainer.restore(trainerTarget(loaded), ck);
  assert.equal(t3.stepCount, 2);
  const r3 = [t3.step(batches[2]!), t3.step(batches[3]!)];
  assert.deepEqual(r3, r1.slice(2));
  assert.equal(t3.stepCount, 4);
  assert.deepEqual(t3.exportBlob(), t1.exportBlob());
  assert.deepEqual(t3.checkpoint(), t1.checkpoint());
});

test("eagle trainer - the rejected-proposal term lowers the head's probability of a rejected token where the target disagrees", async () => {
  const ex = await example(1, [5], 6);
  const config = eagleConfigFor(loaded.config);
  const trainer = EagleHeadTrainer.create(trainerTarget(loaded), config, {
    seed: 2,
    unrollSteps: 1,
    klWeight: 0,
    rejectedWeight: 1,
    lr: 1e-3,
    gradClip: 0,
  });
  const V = config.vocabSize;
  const probOf = (p: number, t: number) => {
    const s0 = trainer.forwardLogits(ex)[0]!;
    const j = s0.positions.indexOf(p);
    const row = s0.logits.subarray(j * V, (j + 1) * V);
    const max = Math.max(...row);
    let z = 0;
    for (const v of row) z += Math.exp(v - max);
    return Math.exp(row[t]! - max) / z;
  };
  // At position 10, reject the head's own favourite (which the target does not pick).
  const s0 = trainer.forwardLogits(ex)[0]!;
  const j = s0.positions.indexOf(10);
  const row = s0.logits.subarray(j * V, (j + 1) * V);
  const proposed = row.indexOf(Math.max(...row));
  assert.notEqual(proposed, ex.tokens[11]);
  const before = probOf(10, proposed);
  const withRejection = {
    ...ex,
    rejected: { positions: Int32Array.of(10), tokens: Int32Array.of(proposed) },
  };
  const first = trainer.step([withRejection]);
  assert.ok(first.rejected > 0 && first.kl === 0 && first.gradNorm > 0);
  const afterStep = probOf(10, proposed);
  assert.ok(afterStep < before / 2, `q(rejected) ${before} -> ${afterStep}`);
  // Once the head gives the token no more than the target does, the term is satisfied: nothing to push.
  const second = trainer.step([withRejection]);
  assert.equal(second.rejected, 0);
  assert.equal(second.gradNorm, 0);
  // Without a rejection (and no KL) a fresh trainer has nothing to learn: its weights stay as they are.
  const fresh = EagleHeadTrainer.create(trainerTarget(loaded), config, {
    seed: 2,
    unrollSteps: 1,
    klWeight: 0,
    rejectedWeight: 1,
  });
  const blob = fresh.exportBlob();
  const r = fresh.step([ex]);
  assert.equal(r.loss, 0);
  assert.equal(r.gradNorm, 0);
  assert.deepEqual(fresh.exportBlob(), blob);
});

test("eagle trainer - evaluate: a target that agrees with the head everywhere is accepted at every depth; top-k targets train too", async () => {
  const ex = await example(2, [5], 9);
  const config = eagleConfigFor(loaded.config);
  const V = config.vocabSize;
  const trainer = EagleHeadTrainer.create(trainerTarget(loaded), config, { seed: 4, unrollSteps: 1 });
  const s0 = trainer.forwardLogits(ex)[0]!;
  const agreeing = new Float32Array(ex.tokens.length * V);
  s0.positions.forEach((p, j) => {
    agreeing.set(s0.logits.subarray(j * V, (j + 1) * V), p * V);
  });
  const perfect = trainer.evaluate([{ ...ex, targetLogits: agreeing }]);
  assert.equal(perfect.accuracy, 1);
  assert.equal(perfect.simulatedAcceptedPerPass, 2);
  // p = q at every position: sampled verification accepts every draw.
  assert.ok(
    Math.abs(perfect.expectedAcceptedPerPassSampled - 2) < 1e-6,
    `${perfect.expectedAcceptedPerPassSampled}`,
  );
  assert.equal(perfect.tokens, ex.tokens.length - 9);
  assert.ok(perfect.kl < 1e-3, `KL to its own distribution ${perfect.kl}`);
  const real = trainer.evaluate([ex]);
  assert.ok(
    real.accuracy < 0.5 && real.simulatedAcceptedPerPass < 1.5,
    "a random head does not match the target",
  );
  assert.ok(real.expectedAcceptedPerPassSampled > 1 && real.expectedAcceptedPerPassSampled < 1.5);
  // The same example with a trace's top-8 at every other trained position.
  const positions = Int32Array.from({ length: ex.tokens.length }, (_, p) => p).filter(
    (p) => p >= 9 && p % 2 === 0,
  );
  const k = 8;
  const ids = new Int32Array(positions.length * k);
  const logprobs = new Float32Array(positions.length * k);
  positions.forEach((p, j) => {
    const row = ex.targetLogits!.subarray(p * V, (p + 1) * V);
    const order = Array.from(row.keys())
      .sort((x, y) => row[y]! - row[x]!)
      .slice(0, k);
    const max = row[order[0]!]!;
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    order.forEach((id, c) => {
      ids[j * k + c] = id;
      logprobs[j * k + c] = row[id]! - lse;
    });
  });
  const sparse = {
    tokens: ex.tokens,
    features: ex.features,
    trainFrom: 9,
    targetTopK: { k, ids, logprobs, positions },
  };
  const r = trainer.step([sparse]);
  assert.equal(r.tokens, positions.length);
  assert.ok(Number.isFinite(r.loss) && r.loss > 0 && r.gradNorm > 0);
});

test("eagle trainer - bad input is refused naming the field; a damaged or mismatched checkpoint is refused", async () => {
  const ex = await example(0, [5]);
  const config = eagleConfigFor(loaded.config);
  const tt = trainerTarget(loaded);
  const trainer = EagleHeadTrainer.create(tt, config, { seed: 1, unrollSteps: 1 });
  const field = (fn: () => unknown, name: string) =>
    assert.throws(fn, (err: unknown) => err instanceof InvalidArgumentError && err.field === name, name);
  field(() => trainer.step([]), "batch");
  field(() => trainer.step([{ ...ex, features: ex.features.subarray(5) }]), "batch[0].features");
  field(
    () => trainer.step([ex, { ...ex, tokens: Int32Array.of(...ex.tokens.slice(0, -1), 9000) }]),
    "batch[1].tokens",
  );
  field(() => trainer.step([{ ...ex, targetLogits: undefined }]), "batch[0].targetLogits");
  field(() => trainer.step([{ ...ex, trainFrom: 99 }]), "batch[0].trainFrom");
  field(
    () => trainer.step([{ ...ex, rejected: { positions: Int32Array.of(3), tokens: Int32Array.of() } }]),
    "batch[0].rejected",
  );
  field(
    () =>
      trainer.step([
        {
          ...ex,
          targetLogits: undefined,
          targetTopK: {
            k: 1,
            ids: Int32Array.of(1, 2),
            logprobs: Float32Array.of(-1, -1),
            positions: Int32Array.of(4, 4),
          },
        },
      ]),
    "batch[0].targetTopK.positions",
  );
  field(() => EagleHeadTrainer.create(tt, config, { lr: -1 }), "options.lr");
  field(() => EagleHeadTrainer.create(tt, config, { unrollSteps: 0 }), "options.unrollSteps");
  field(() => EagleHeadTrainer.create(tt, config, { klWeight: 0 }), "options.klWeight");
  field(() => EagleHeadTrainer.create(tt, config, { learningRate: 1 } as never), "options.learningRate");
  const ck = trainer.checkpoint();
  assert.throws(() => EagleHeadTrainer.restore(tt, ck.subarray(0, ck.length - 100)), DataLossError);
  field(() => EagleHeadTrainer.restore(tt, ck, { draftVocab: Int32Array.of(1, 2) }), "options.draftVocab");
  const other = { ...tt, config: { ...tt.config, hiddenSize: 512 } };
  assert.throws(() => EagleHeadTrainer.restore(other, ck), SpeculatorBlobError);
  assert.throws(() => EagleHeadTrainer.restore(tt, trainer.exportBlob()), /format/);
});

test("eagle trainer - examples with nothing to train (one token, trainFrom at the end) are no update and no step, beside ones that train", () => {
  const config = eagleConfigFor(loaded.config);
  const trainer = EagleHeadTrainer.create(trainerTarget(loaded), config, { seed: 1, unrollSteps: 3 });
  const V = config.vocabSize;
  const H = config.hiddenSize;
  const make = (T: number, trainFrom: number): EagleTrainingExample => ({
    tokens: Int32Array.from({ length: T }, (_, i) => i + 5),
    features: new Float32Array(T * H).fill(0.1),
    targetLogits: new Float32Array(T * V),
    trainFrom,
  });
  const blob = trainer.exportBlob();
  for (const ex of [make(1, 0), make(2, 2), make(5, 5)]) {
    assert.deepEqual(trainer.step([ex]), {
      loss: 0,
      kl: 0,
      rejected: 0,
      acceptance: 0,
      tokens: 0,
      gradNorm: 0,
    });
    assert.deepEqual(trainer.evaluate([ex]), {
      loss: 0,
      kl: 0,
      accuracy: 0,
      simulatedAcceptedPerPass: 1,
      expectedAcceptedPerPassSampled: 1,
      tokens: 0,
    });
  }
  assert.deepEqual(trainer.exportBlob(), blob);
  assert.equal(trainer.stepCount, 0, "a batch with nothing to learn is not an update");
  // Row i predicts position i + 1: T tokens with trainFrom 0 train positions 1 .. T - 1.
  assert.equal(trainer.step([make(1, 0), make(6, 2), make(2, 1)]).tokens, 4 + 1);
});

test("eagle trainer - examples in one batch do not see each other: the batch's KL is the token-weighted mean of each alone", async () => {
  const [a, b] = await Promise.all([example(0, [5]), example(1, [5], 3)]);
  const trainer = EagleHeadTrainer.create(trainerTarget(loaded), eagleConfigFor(loaded.config), {
    seed: 6,
    unrollSteps: 1,
  });
  const ea = trainer.evaluate([a]);
  const eb = trainer.evaluate([b]);
  const both = trainer.evaluate([a, b]);
  assert.equal(both.tokens, ea.tokens + eb.tokens);
  const mixed = (ea.kl * ea.tokens + eb.kl * eb.tokens) / (ea.tokens + eb.tokens);
  assert.ok(Math.abs(both.kl - mixed) < 1e-6 * mixed, `${both.kl} vs ${mixed}`);
  assert.ok(Math.abs(ea.kl - eb.kl) > 1e-3, "the two examples differ, so a leak would show");
});
