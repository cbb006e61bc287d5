// The eagle drafter on the bundled model with random heads (any weights are valid: verification keeps the
// output exact): proposals are well-formed trees within budget through manual verification steps (greedy
// acceptance, the head's KV truncated on rejection) and across a hot swap; a top-1 tree is the greedy
// chain; sampled chains carry their distributions; and through the real decoder the output equals plain
// greedy decoding.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  buildLayout,
  type CpuBackend,
  createCpuBackend,
  EagleHead,
  GREEDY,
  generate,
  KvManager,
  type LoadedModel,
  loadModelDir,
  Model,
  Rng,
  randomEagleWeights,
  type SamplingParams,
} from "@specloop/engine";
import type { Proposal, SequenceView } from "./drafter.js";
import { EagleDrafter, type EagleDrafterOptions } from "./eagle-drafter.js";
import { speculativeGenerate } from "./generate.js";

const DIR = fileURLToPath(new URL("../../../models/tiny-code", import.meta.url));
const PROMPT = [0, 322, 1244, 367, 18, 7101, 18, 3167, 6185];
let loaded: LoadedModel;
let be: CpuBackend;
let model: Model;

before(async () => {
  loaded = await loadModelDir(DIR);
  be = await createCpuBackend({ threads: 2 });
  model = Model.load(be, loaded);
});
after(() => be?.destroy());

function head(seed: number, featureLayers?: number[]): EagleHead {
  return EagleHead.load(be, randomEagleWeights(loaded.config, { seed, featureLayers }), model, {
    version: `random-${seed}`,
  });
}

/** Parents before children, -1 roots, siblings distinct, within budget and depth. */
function assertValid(p: Proposal, budget: number, maxDepth: number, what: string): void {
  const n = p.tokens.length;
  assert.ok(n <= budget, `${what}: ${n} nodes over budget ${budget}`);
  assert.equal(p.parents.length, n);
  assert.equal(p.draftProbs.length, n);
  const depth: number[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const parent = p.parents[i]!;
    assert.ok(parent >= -1 && parent < i, `${what}: node ${i} has parent ${parent}`);
    depth[i] = parent === -1 ? 1 : depth[parent]! + 1;
    assert.ok(depth[i]! <= maxDepth, `${what}: node ${i} at depth ${depth[i]}`);
    const key = `${parent}:${p.tokens[i]}`;
    assert.ok(!seen.has(key), `${what}: repeated sibling ${key}`);
    seen.add(key);
    assert.ok(p.tokens[i]! >= 0 && p.tokens[i]! < loaded.config.vocabSize);
    assert.ok(p.draftProbs[i]! > 0 && p.draftProbs[i]! <= 1);
  }
}

/**
 * A sequence decoded by hand: the target's prefill and tree verification with greedy acceptance (argmax
 * comparison), feeding the drafter the target's features as the decoder does.
 */
class ManualSequence implements SequenceView {
  readonly tokens: number[];
  readonly promptLength: number;
  readonly kv = new KvManager(be, model.kvSpec(16, 16));
  accepted = 0;
  constructor(
    readonly id: string,
    prompt: readonly number[],
    readonly drafter: EagleDrafter,
    readonly sampling: SamplingParams = GREEDY,
    readonly maxTokens = 24,
  ) {
    this.tokens = [...prompt];
    this.promptLength = prompt.length;
  }
  get remaining(): number {
    return this.maxTokens - (this.tokens.length - this.promptLength);
  }

  /** Target features of the given batch rows, [rows, layers * hidden]. */
  private async features(hidden: Map<number, unknown>, rows: readonly number[]): Promise<Float32Array> {
    const layers = this.drafter.featureLayers;
    const h = loaded.config.hiddenSize;
    const read = await Promise.all(layers.map((l) => be.readRows(hidden.get(l) as never)));
    const out = new Float32Array(rows.length * layers.length * h);
    for (const [i, r] of rows.entries()) {
      for (const [j, src] of read.entries())
        out.set(src.subarray(r * h, (r + 1) * h), (i * layers.length + j) * h);
    }
    return out;
  }

  async prefill(): Promise<void> {
    const n = this.tokens.length - 1; // the last prompt token is row 0 of the first verification
    this.kv.allocateSlots(this.id, n);
    const out = model.forward(
      this.kv.storage,
      buildLayout(this.kv, [{ seq: this.id, newTokens: n }]),
      Int32Array.from(this.tokens.slice(0, n)),
      {
        hiddenLayers: this.drafter.featureLayers,
      },
    );
    this.kv.commit(this.id, n);
    const data = await this.features(
      out.hidden,
      Array.from({ length: n }, (_, i) => i),
    );
    this.drafter.observe(this, { layers: this.drafter.featureLayers, firstPosition: 0, count: n, data });
  }

  /** One step: verify `p` (greedy), commit accepted + bonus, keep the branch, tell the drafter. */
  async verify(p: Proposal): Promise<number[]> {
    const n = p.tokens.length;
    const cached = this.kv.numTokens(this.id);
    assert.ok(this.kv.allocateSlots(this.id, 1 + n));
    const parents = Int32Array.from([-1, ...Array.from(p.parents, (q) => q + 1)]);
    const layout = buildLayout(this.kv, [{ seq: this.id, newTokens: 1 + n, treeParents: parents }]);
    const ids = Int32Array.from([this.tokens.at(-1)!, ...p.tokens]);
    const out = model.forward(this.kv.storage, layout, ids, {
      logitRows: Int32Array.from({ length: 1 + n }, (_, i) => i),
      hiddenLayers: this.drafter.featureLayers,
    });
    const argmaxes = await be.argmaxRows(out.logits!);
    const path = [0];
    for (;;) {
      const row = path.at(-1)!;
      const want = argmaxes[row]!;
      const child = Array.from(p.tokens).findIndex((t, i) => parents[i + 1] === row && t === want);
      if (child < 0) break;
      path.push(child + 1);
    }
    const emitted = [...path.slice(1).map((r) => ids[r]!), argmaxes[path.at(-1)!]!];
    this.accepted += path.length - 1;
    const data = await this.features(out.hidden, path);
    this.kv.keepBranch(this.id, path);
    this.tokens.push(...emitted);
    this.drafter.observe(this, {
      layers: this.drafter.featureLayers,
      firstPosition: cached,
      count: path.length,
      data,
    });
    return emitted;
  }
}

async function greedyReference(prompt: readonly number[], maxTokens: number): Promise<number[]> {
  const { outputs } = await generate(model, [{ prompt, maxTokens, stopTokenIds: [] }]);
  return outputs[0]!.tokens;
}

// The chain swaps to a head on the same feature layer (re-primed from the kept features: no gap); the tree
// to one on three layers (the kept features do not fit it: one empty step until new ones arrive).
for (const [options, swapLayers] of [
  [{ mode: "chain", depth: 4 }, [5]],
  [{ mode: "tree", depth: 3, topK: 3 }, [1, 3, 5]],
] as [EagleDrafterOptions, number[]][]) {
  test(`eagle drafter - ${options.mode}: manual verify steps stay valid through rejections and a hot swap, output is the target's`, async () => {
    const drafter = new EagleDrafter(head(1), { ...options, numBlocks: 32, blockSize: 8 });
    assert.equal(drafter.kind, "eagle");
    assert.equal(drafter.version, "random-1");
    assert.deepEqual(drafter.featureLayers, [5]);
    const seq = new ManualSequence("a", PROMPT, drafter);
    await seq.prefill();
    const budget = 6;
    for (let step = 0; seq.remaining > 0; step++) {
      if (step === 3) {
        drafter.swap(head(2, swapLayers));
        assert.equal(drafter.version, "random-1", "a swap takes effect at the next propose");
      }
      const [p] = await drafter.propose([{ seq, budget, rng: new Rng(step) }]);
      if (step >= 3) assert.equal(drafter.version, "random-2");
      if (step >= 3) assert.deepEqual(drafter.featureLayers, swapLayers);
      const gap = step === 3 && swapLayers.length > 1;
      assert.equal(p!.tokens.length > 0, !gap, `step ${step}: ${p!.tokens.length} nodes`);
      assertValid(p!, budget, options.depth!, `step ${step}`);
      await seq.verify(p!);
    }
    const output = seq.tokens.slice(PROMPT.length, PROMPT.length + 24);
    assert.deepEqual(output, await greedyReference(PROMPT, 24));
    drafter.release("a");
  });
}

test("eagle drafter - a top-1 tree is the greedy chain, a top-3 tree starts with it and keeps to its budget", async () => {
  const h = head(5);
  const drafters = {
    chain: new EagleDrafter(h, { mode: "chain", depth: 5 }),
    top1: new EagleDrafter(h, { mode: "tree", depth: 5, topK: 1 }),
    top3: new EagleDrafter(h, { mode: "tree", depth: 4, topK: 3 }),
  };
  const proposals: Record<string, Proposal> = {};
  for (const [name, d] of Object.entries(drafters)) {
    const seq = new ManualSequence(name, PROMPT, d);
    await seq.prefill();
    const [p] = await d.propose([{ seq, budget: 9, rng: new Rng(0) }]);
    proposals[name] = p!;
  }
  const chain = Array.from(proposals.chain!.tokens);
  assert.equal(chain.length, 5);
  assert.deepEqual(Array.from(proposals.top1!.tokens), chain);
  assert.deepEqual(Array.from(proposals.top1!.parents), [-1, 0, 1, 2, 3]);
  const tree = proposals.top3!;
  assertValid(tree, 9, 4, "top-3 tree");
  assert.equal(
    tree.tokens.length,
    9,
    "a tree of depth 4 and top-3 has more than 9 candidates: the budget is filled",
  );
  assert.equal(tree.draftDists, undefined, "tree nodes are point masses");
  // Following each node's first (most likely) child walks the greedy chain.
  const firstPath: number[] = [];
  for (let at = -1; ; ) {
    const child = Array.from(tree.parents).indexOf(at);
    if (child < 0) break;
    firstPath.push(tree.tokens[child]!);
    at = child;
  }
  assert.ok(firstPath.length >= 1);
  assert.deepEqual(firstPath, chain.slice(0, firstPath.length));
});

test("eagle drafter - sampled chains hand over the distribution each token was drawn from; budget 0 drafts nothing", async () => {
  const drafter = new EagleDrafter(head(3), { mode: "chain", depth: 4 });
  const sampling = { temperature: 0.8, topK: 50 };
  const seq = new ManualSequence("s", PROMPT, drafter, sampling);
  await seq.prefill();
  const [p] = await drafter.propose([{ seq, budget: 3, rng: new Rng(9) }]);
  assertValid(p!, 3, 4, "sampled chain");
  assert.equal(p!.tokens.length, 3, "the budget caps a chain");
  assert.equal(p!.draftDists?.length, 3);
  p!.draftDists!.forEach((dist, i) => {
    const sum = dist!.reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-4, `dist ${i} sums to ${sum}`);
    assert.ok(dist!.filter((v) => v > 0).length <= 50, "the request's top-k applies");
    assert.equal(p!.draftProbs[i], dist![p!.tokens[i]!]);
  });
  const [again] = await drafter.propose([{ seq, budget: 3, rng: new Rng(9) }]);
  assert.deepEqual(again!.tokens, p!.tokens, "same rng seed, same draft (and the head's KV was restored)");
  const [none] = await drafter.propose([{ seq, budget: 0, rng: new Rng(9) }]);
  assert.equal(none!.tokens.length, 0);
});

test("eagle drafter - through the decoder, greedy output equals plain decoding for a batch (tree drafts)", async () => {
  const drafter = new EagleDrafter(head(4, [2, 5]), { mode: "tree", depth: 3, topK: 2 });
  const prompts = [PROMPT, [0, 7536, 366, 4658, 1943], [0, 203, 18]];
  const requests = prompts.map((prompt) => ({ prompt, maxTokens: 20, stopTokenIds: [] }));
  const { outputs } = await speculativeGenerate(model, requests, {
    drafter: "eagle",
    drafters: new Map([["eagle", drafter]]),
    budget: 5,
  });
  const plain = await generate(model, requests);
  for (const [i, o] of outputs.entries()) assert.deepEqual(o.tokens, plain.outputs[i]!.tokens, `prompt ${i}`);
});

test("eagle drafter - a node swapping heads all day holds two, not one per version: swapped-out heads are freed", async () => {
  const drafter = new EagleDrafter(head(40), { mode: "chain", depth: 2, numBlocks: 16, blockSize: 8 });
  const seq = new ManualSequence("swaps", PROMPT, drafter);
  await seq.prefill();
  const swapIn = async (seed: number) => {
    drafter.swap(head(seed));
    const [p] = await drafter.propose([{ seq, budget: 2, rng: new Rng(seed) }]);
    assert.equal(drafter.version, `random-${seed}`);
    assert.ok(p!.tokens.length > 0);
  };
  await swapIn(41);
  const settled = be.wasmLiveBytes;
  for (let seed = 42; seed < 50; seed++) await swapIn(seed);
  // A head swapped in and replaced before any step drafted with it is freed too.
  drafter.swap(head(50));
  await swapIn(51);
  const headBytes = randomEagleWeights(loaded.config, { seed: 0 }).byteLength;
  assert.ok(
    be.wasmLiveBytes - settled < headBytes,
    `live bytes grew by ${be.wasmLiveBytes - settled} over 10 swaps (one head is ${headBytes})`,
  );
  drafter.release("swaps");
});

test("eagle drafter - after a swap the batch re-primes a few sequences a step: the rest draft nothing until their turn", async () => {
  const drafter = new EagleDrafter(head(70), {
    mode: "chain",
    depth: 2,
    reprimeRows: 8,
    reprimeRowsPerStep: 16,
  });
  const seqs = Array.from(
    { length: 6 },
    (_, i) => new ManualSequence(`r${i}`, [...PROMPT, 400 + i], drafter),
  );
  for (const s of seqs) await s.prefill();
  const drafting = async () => {
    const ps = await drafter.propose(seqs.map((seq, i) => ({ seq, budget: 2, rng: new Rng(i) })));
    for (const [i, seq] of seqs.entries()) await seq.verify(ps[i] as Proposal);
    return ps.filter((p) => p.tokens.length > 0).length;
  };
  assert.equal(await drafting(), 6, "before the swap every sequence drafts");
  drafter.swap(head(71));
  // 16 rows a step, 8 per sequence: two sequences re-prime and draft per step, the others wait their turn.
  assert.equal(await drafting(), 2);
  assert.equal(await drafting(), 4);
  assert.equal(await drafting(), 6);
  for (const s of seqs) drafter.release(s.id);
});
