// The online loop closed in one process on the CPU (issue 17, "Benchmark in bench/"): requests arrive one
// at a time (the bundled python prompts, then c, then prose: two domain shifts), each is decoded through
// the SpeculativeDecoder on the real target (cpu backend) with every selected configuration, and each
// finished request feeds both learners as the fleet would: its output goes into the suffix drafter's fleet
// tree (ingestFleetOutput), and an example recomputed from its prompt + output (targetExample: one target
// prefill, features and full distributions) goes into the eagle trainer's batch, with the eagle drafter's
// rejected proposals of that request (as the trainer service reads them from a trace). Every --every
// requests the trainer takes one AdamW step on the last --batch examples, exports a blob, and the eagle
// drafter hot-swaps to it (EagleHead.load + EagleDrafter.swap), as a node does when a version is published.
//   node --conditions=source --import tsx bench/closed-loop.ts [--model models/tiny-code] [--threads 1]
//       [--python 48] [--c 32] [--prose 32] [--prompt 64] [--new 32] [--temperature 0]
//       [--configs none,suffix,eagle,static,draft-model,hybrid,auto] [--every 1] [--batch 4] [--unroll 2]
//       [--lr 1e-3] [--grad-clip 1] [--rejected-weight 0] [--acceptance-weight 0] [--draft-vocab 0]
//       [--eagle-budget 2] [--suffix-budget 4] [--draft-model models/tiny-code-draft] [--draft-budget 4]
//       [--version-every 1] [--window 16] [--ablation] [--ablation-every 16] [--held-out 6]
//       [--ablation-rejected 0.1] [--ablation-acceptance 0.2] [--noise-floor]
//       [--out bench/results/closed-loop-cpu.json]
// Configurations (--configs picks a subset; `none` is always run, it is the baseline):
//   none, suffix (budget --suffix-budget), eagle (the learned head, chain of --eagle-budget, hot-swapped
//   to each trainer step), static (the eagle head frozen at the first domain shift: trained on python
//   only; before the shift it is the eagle head itself, so its figures there are eagle's), draft-model
//   (models/tiny-code-draft, chain of --draft-budget: STATIC, the trainer does not learn a draft model),
//   hybrid (HybridDrafter over the suffix drafter and the eagle drafter), auto (the node's AcceptanceBook
//   from services/inference: per request it chooses among the other measured drafters + none for the
//   request's domain by their recent decode tok/s, as InferenceNode.resolve does, and learns only from the
//   request it chose; auto's figures for a request are those of the configuration it picked, whose run
//   is this request's run of that configuration, so auto costs no decode of its own), auto-pooled (the
//   same with every drafter recorded under one version: the book's cells pool across eagle versions).
// Per request index: accepted tokens per target pass (decode tokens / verification passes, the prefill's
// pass and token outside) and decode tokens/s (from the first token to the last) for each configuration,
// the eagle version drafting and the trainer's steps so far; per window of --window requests the same
// aggregated (ratios of sums; windows do not straddle a shift); per shift the drop and the requests until
// 90% of the pre-shift acceptance is back. Stop tokens off, so each request makes exactly --new tokens.
// --temperature 0 (greedy): every configuration's output must equal `none`'s token for token, or the
// bench stops. --temperature > 0: every request is sampled with seed = its index, the same seed for every
// configuration; outputs then differ by drafter (each consumes the generator its own way), so they are
// compared loosely (unigram total-variation distance to none's outputs), not for equality; that sampled
// verification keeps the target's distribution is tested in shared/speculation/src/verify.test.ts.
// --noise-floor (sampled): none once more per request with another seed, the same distance measured
// between none and itself: what sampling noise alone gives. Without eagle in --configs nothing learns
// and the trainer side is skipped.
// --ablation: two more trainers (KL + --ablation-rejected x the rejected-proposal term, KL +
// --ablation-acceptance x the acceptance term) step on exactly the batches the main trainer (forward KL
// alone unless --rejected-weight / --acceptance-weight say otherwise) steps on, same seed; every
// --ablation-every requests all three are evaluated offline (EagleHeadTrainer.evaluate) on held-out
// requests of each domain (the --held-out prompts after the stream's, greedy outputs of the target).
// --draft-vocab N > 0: the trainer learns over the N most frequent tokens of the first --batch requests'
// prompts and outputs (the head is created then; the requests before it draft with the day-0 head over the
// whole vocabulary). 0 (default): the whole vocabulary, so the domain shift is not also a vocabulary shift.
import { loadavg } from "node:os";
import {
  buildDraftVocab,
  createCpuBackend,
  DEFAULT_BLOCK_SIZE,
  EagleHead,
  EagleHeadTrainer,
  type EagleTrainerOptions,
  type EagleTrainingExample,
  type EvaluateResult,
  eagleConfigFor,
  GREEDY,
  KvManager,
  loadBundledPrompts,
  loadModelDir,
  Model,
  type SamplingParams,
  targetExample,
  trainerTarget,
} from "@specloop/engine";
// The node's own book (not exported by @specloop/inference's index, which is the service's entry point).
import { AcceptanceBook } from "@specloop/inference";
import {
  DecodeSequence,
  type Drafter,
  type DrafterKind,
  DraftModelDrafter,
  EagleDrafter,
  HybridDrafter,
  SpeculativeDecoder,
  type StepRecord,
  SuffixDrafter,
} from "@specloop/speculation";
import { emit, hostInfo, intArg, parseArgs, round } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set(["ablation", "noise-floor"]));
const modelDir = args.get("model") ?? "models/tiny-code";
const draftDir = args.get("draft-model") ?? "models/tiny-code-draft";
const threads = intArg(args, "threads", 1);
const promptMax = intArg(args, "prompt", 64);
const newTokens = intArg(args, "new", 32);
const every = intArg(args, "every", 1);
const batchSize = intArg(args, "batch", 4);
const unrollSteps = intArg(args, "unroll", 2);
const lr = Number(args.get("lr") ?? "1e-3");
const gradClip = Number(args.get("grad-clip") ?? "1");
const rejectedWeight = Number(args.get("rejected-weight") ?? "0");
const acceptanceWeight = Number(args.get("acceptance-weight") ?? "0");
const draftVocabSize = Number(args.get("draft-vocab") ?? "0");
const eagleBudget = intArg(args, "eagle-budget", 2);
const suffixBudget = intArg(args, "suffix-budget", 4);
const draftBudget = intArg(args, "draft-budget", 4);
const windowSize = intArg(args, "window", 16);
const versionEvery = intArg(args, "version-every", 1);
const temperature = Number(args.get("temperature") ?? "0");
const ablation = args.has("ablation");
const ablationEvery = intArg(args, "ablation-every", 16);
const heldOutCount = intArg(args, "held-out", 6);
const ablationRejected = Number(args.get("ablation-rejected") ?? "0.1");
const ablationAcceptance = Number(args.get("ablation-acceptance") ?? "0.2");
const noiseFloor = args.has("noise-floor");
if (!(Number.isInteger(draftVocabSize) && draftVocabSize >= 0))
  throw new RangeError(`--draft-vocab ${draftVocabSize}: expected an integer >= 0`);
if (!(temperature >= 0 && Number.isFinite(temperature)))
  throw new RangeError(`--temperature ${temperature}: expected a number >= 0`);
const sampling: SamplingParams = temperature > 0 ? { temperature } : GREEDY;
const greedy = temperature === 0;
if (noiseFloor && greedy) throw new RangeError("--noise-floor: only with --temperature > 0");
/** --noise-floor: none again with this offset on every request's seed (the sampled comparison's floor). */
const RESEED = 1_000_003;

const ALL_CONFIGS = [
  "none",
  "suffix",
  "eagle",
  "static",
  "draft-model",
  "hybrid",
  "auto",
  "auto-pooled",
] as const;
type ConfigName = (typeof ALL_CONFIGS)[number];
const isConfig = (s: string): s is ConfigName => (ALL_CONFIGS as readonly string[]).includes(s);
const configs: ConfigName[] = ["none"];
for (const c of (args.get("configs") ?? ALL_CONFIGS.join(",")).split(",")) {
  if (!isConfig(c)) throw new RangeError(`--configs: ${c} is not one of ${ALL_CONFIGS.join(", ")}`);
  if (!configs.includes(c)) configs.push(c);
}
if ((configs.includes("static") || configs.includes("hybrid")) && !configs.includes("eagle"))
  throw new RangeError("--configs: static and hybrid need eagle (they share its head and trainer)");
/** The configurations decoded per request (auto reuses the run of the one it picks). */
const AUTOS = ["auto", "auto-pooled"] as const;
type AutoName = (typeof AUTOS)[number];
const isAuto = (c: ConfigName): c is AutoName => (AUTOS as readonly string[]).includes(c);
const decoded = configs.filter((c) => !isAuto(c));
/** Whether anything served needs the trainer (without eagle, the trainer side is skipped). */
const learns = configs.includes("eagle");
if (ablation && !learns) throw new RangeError("--ablation needs eagle in --configs (its rejected proposals)");
/** What auto may pick, in the node's order: the offered drafters, then none (tried last). */
const autoCandidates = decoded.filter((c): c is DrafterKind => c !== "none" && c !== "static");

const STREAM_DOMAINS = ["python", "c", "prose"] as const;
const counts = {
  python: intArg(args, "python", 48),
  c: args.get("c") === "0" ? 0 : intArg(args, "c", 32),
  prose: args.get("prose") === "0" ? 0 : intArg(args, "prose", 32),
};

interface Run {
  output: number[];
  /** Output tokens after the prefill's (decode tokens). */
  decodeTokens: number;
  /** Target passes that verified (the prefill pass outside). */
  passes: number;
  decodeSeconds: number;
  draftMs: number;
  /** The sequence's own counters, as the node's acceptance book reads them. */
  targetPasses: number;
  verifiedTokens: number;
  steps: StepRecord[];
}

interface RequestRow {
  index: number;
  domain: string;
  promptTokens: number;
  /** The eagle version that drafted this request and the trainer's steps when it was exported. */
  eagleVersion: string;
  versionSteps: number;
  /** The trainer's steps so far (before this request's own step). */
  trainerSteps: number;
  perPass: Partial<Record<ConfigName, number>>;
  tokensPerSecond: Partial<Record<ConfigName, number>>;
  /** Drafting ms per verification pass, per drafting configuration. */
  draftMsPerPass: Partial<Record<ConfigName, number>>;
  /** What auto picked for this request. */
  picked?: Partial<Record<AutoName, DrafterKind>>;
  /** Steps the hybrid drafter took from each side on this request. */
  hybridSteps?: { suffix: number; learned: number };
  /** Sampled traffic: share of output positions where the configuration's token equals none's. */
  sameAsNone?: Partial<Record<ConfigName, number>>;
  trainStep?: {
    loss: number;
    kl: number;
    rejected: number;
    tokens: number;
    rejectedProposals: number;
    seconds: number;
  };
}

const loadBefore = loadavg();
const rssBefore = process.memoryUsage().rss;
const tStart = performance.now();
const loaded = await loadModelDir(modelDir);
const cpu = await createCpuBackend({ threads });
const model = Model.load(cpu, loaded);
const tok = loaded.tokenizer;
const all = await loadBundledPrompts(modelDir);
const stream: { domain: string; prompt: number[] }[] = [];
const heldOutPrompts: { domain: string; prompt: number[] }[] = [];
/** Request indices where a new domain starts. */
const shifts: { at: number; from: string; to: string }[] = [];
for (const domain of STREAM_DOMAINS) {
  const count = counts[domain];
  if (count === 0) continue;
  const texts = all.filter((p) => p.domain === domain).map((p) => p.prompt);
  const need = count + (ablation ? heldOutCount : 0);
  if (texts.length < need) throw new RangeError(`${domain}: ${texts.length} prompts, fewer than ${need}`);
  const prev = stream.at(-1)?.domain;
  if (prev !== undefined) shifts.push({ at: stream.length, from: prev, to: domain });
  for (const t of texts.slice(0, count)) stream.push({ domain, prompt: tok.encode(t).slice(0, promptMax) });
  if (ablation)
    for (const t of texts.slice(count, count + heldOutCount))
      heldOutPrompts.push({ domain, prompt: tok.encode(t).slice(0, promptMax) });
}
const firstShift = shifts[0]?.at ?? stream.length;

const headConfig = eagleConfigFor(loaded.config);
const target = trainerTarget(loaded);
const trainerOptions: Partial<EagleTrainerOptions> = {
  seed: 1,
  lr,
  gradClip,
  unrollSteps,
  klWeight: 1,
  rejectedWeight,
  acceptanceWeight,
};
// The ablation's arms: the main trainer's objective, then each extra term alone on top of forward KL.
const arms: { name: string; options: Partial<EagleTrainerOptions> }[] = ablation
  ? [
      { name: "forward KL", options: { ...trainerOptions, rejectedWeight: 0, acceptanceWeight: 0 } },
      {
        name: `KL + rejected (${ablationRejected})`,
        options: { ...trainerOptions, rejectedWeight: ablationRejected, acceptanceWeight: 0 },
      },
      {
        name: `KL + acceptance (${ablationAcceptance})`,
        options: { ...trainerOptions, rejectedWeight: 0, acceptanceWeight: ablationAcceptance },
      },
    ]
  : [];
// Day 0: the trainer's seeded random head is the first version served.
let trainer: EagleHeadTrainer | undefined =
  draftVocabSize > 0 ? undefined : EagleHeadTrainer.create(target, headConfig, trainerOptions);
/** The main trainer stands for the arm with its own objective (same seed, same batches: the same steps). */
const mainIsArm = (o: Partial<EagleTrainerOptions>) =>
  o.rejectedWeight === trainerOptions.rejectedWeight &&
  o.acceptanceWeight === trainerOptions.acceptanceWeight;
const armsFor = (main: EagleHeadTrainer | undefined, draftVocab?: Int32Array) =>
  arms.map((a) =>
    main !== undefined && mainIsArm(a.options)
      ? main
      : EagleHeadTrainer.create(target, headConfig, { ...a.options, ...(draftVocab && { draftVocab }) }),
  );
let armTrainers: EagleHeadTrainer[] = draftVocabSize > 0 ? [] : armsFor(trainer);
const day0 =
  trainer?.exportBlob() ?? EagleHeadTrainer.create(target, headConfig, trainerOptions).exportBlob();
let versionNo = 0;
let versionSteps = 0;
const eagle = new EagleDrafter(EagleHead.load(cpu, day0, model, { version: "v0" }), {
  depth: eagleBudget,
});
const suffix = new SuffixDrafter();
const hybrid = new HybridDrafter(suffix, eagle);
const drafters = new Map<DrafterKind, Drafter>([
  ["suffix", suffix],
  ["eagle", eagle],
  ["hybrid", hybrid],
]);
const numBlocks =
  Math.ceil(
    (promptMax + newTokens + Math.max(eagleBudget, suffixBudget, draftBudget) + 1) / DEFAULT_BLOCK_SIZE,
  ) + 1;
if (configs.includes("draft-model")) {
  const draft = Model.load(cpu, await loadModelDir(draftDir));
  drafters.set(
    "draft-model",
    new DraftModelDrafter(draft, model.config.vocabSize, {
      numBlocks,
      blockSize: DEFAULT_BLOCK_SIZE,
      maxDepth: draftBudget,
    }),
  );
}
const kv = new KvManager(cpu, model.kvSpec(numBlocks, DEFAULT_BLOCK_SIZE));
const budgetFor = (_seq: DecodeSequence, d: Drafter) =>
  d.kind === "eagle"
    ? eagleBudget
    : d.kind === "suffix" || d.kind === "hybrid"
      ? suffixBudget
      : d.kind === "draft-model"
        ? draftBudget
        : 0;
// recordSteps: the eagle drafter's rejected proposals go to the trainer as a node's traces carry them.
const decoder = new SpeculativeDecoder({ model, kv, drafters, budgetFor, recordSteps: true });
// The static head: frozen at the first shift, served by its own drafter and decoder (same target and KV).
let staticDrafter: EagleDrafter | undefined;
let staticDecoder: SpeculativeDecoder | undefined;
// auto: the book as the node keys it, (drafter, version, domain). auto-pooled: the same book given one
// version for every drafter, so a versioned drafter's measurements pool across its versions (with a new
// eagle version every step, the node's keying leaves each version one measurement that never ages).
const books: Record<AutoName, AcceptanceBook> = {
  auto: new AcceptanceBook(1),
  "auto-pooled": new AcceptanceBook(1),
};

/** One request alone through a decoder (batch 1), timed from its first token to its last. */
async function decode(
  dec: SpeculativeDecoder,
  id: string,
  prompt: number[],
  drafter: DrafterKind,
  seed: number,
): Promise<Run> {
  const seq = new DecodeSequence({
    id,
    prompt,
    maxTokens: newTokens,
    sampling,
    seed,
    stopTokenIds: [],
    drafter,
  });
  let decodeStart: number | undefined;
  let draftMs = 0;
  while (!seq.done) {
    const step = await dec.step([seq], { prefillTokens: promptMax });
    if (step.starved.length > 0) throw new Error(`${id} (${drafter}): KV starved`);
    if (decodeStart !== undefined) draftMs += step.draftMs;
    if (step.ran.some((r) => r.tokens.length > 0)) decodeStart ??= performance.now();
  }
  const decodeSeconds = (performance.now() - (decodeStart ?? performance.now())) / 1000;
  dec.evict(seq);
  if (kv.numFreeBlocks !== numBlocks) throw new Error(`${id} (${drafter}): KV blocks leaked`);
  return {
    output: seq.output,
    decodeTokens: seq.outputLength - 1,
    passes: seq.targetPasses - 1,
    decodeSeconds,
    draftMs,
    targetPasses: seq.counters.targetPasses,
    verifiedTokens: seq.counters.verifiedTokens,
    steps: seq.steps,
  };
}

/**
 * The request's rejected proposals as the trainer service reads them from a trace (speculator-trainer
 * examples.ts rejectedProposals): at each step, the children of the accepted path's end that were not
 * accepted, at the tokens index whose next-token prediction they were.
 */
function rejectedOf(steps: readonly StepRecord[], promptLength: number, length: number) {
  const positions: number[] = [];
  const tokens: number[] = [];
  for (const step of steps) {
    const accepted = new Set(step.accepted);
    const last = step.accepted.at(-1) ?? -1;
    step.proposal.parents.forEach((parent, i) => {
      if (parent !== last || accepted.has(i)) return;
      const at = promptLength + step.outputOffset + step.accepted.length - 1;
      if (at >= 0 && at < length - 1) {
        positions.push(at);
        tokens.push(step.proposal.tokens[i] as number);
      }
    });
  }
  return { positions: Int32Array.from(positions), tokens: Int32Array.from(tokens) };
}

async function exampleOf(prompt: number[], output: number[], steps: readonly StepRecord[]) {
  const tokens = Int32Array.from([...prompt, ...output]);
  const ex = await targetExample(model, tokens, {
    featureLayers: headConfig.featureLayers,
    trainFrom: prompt.length,
  });
  return { ...ex, rejected: rejectedOf(steps, prompt.length, tokens.length) };
}

// Held-out requests for the ablation's offline metrics: the target's greedy outputs on prompts outside
// the stream, per domain.
const heldOut = new Map<string, EagleTrainingExample[]>();
for (const [i, h] of heldOutPrompts.entries()) {
  const run = await decode(decoder, `held-${i}`, h.prompt, "none", 0);
  const list = heldOut.get(h.domain) ?? [];
  list.push(await exampleOf(h.prompt, run.output, []));
  heldOut.set(h.domain, list);
}

interface AblationPoint {
  afterRequest: number;
  trainerSteps: number;
  arms: { name: string; perDomain: Record<string, Omit<EvaluateResult, "tokens"> & { tokens: number }> }[];
}
const ablationPoints: AblationPoint[] = [];
function evaluateArms(afterRequest: number): void {
  if (armTrainers.length === 0) return;
  const point: AblationPoint = { afterRequest, trainerSteps: trainer?.stepCount ?? 0, arms: [] };
  for (const [a, t] of armTrainers.entries()) {
    const perDomain: AblationPoint["arms"][number]["perDomain"] = {};
    for (const [domain, batch] of heldOut) {
      const e = t.evaluate(batch);
      perDomain[domain] = {
        loss: round(e.loss, 4),
        kl: round(e.kl, 4),
        accuracy: round(e.accuracy, 4),
        simulatedAcceptedPerPass: round(e.simulatedAcceptedPerPass, 4),
        expectedAcceptedPerPassSampled: round(e.expectedAcceptedPerPassSampled, 4),
        tokens: e.tokens,
      };
    }
    point.arms.push({ name: arms[a]?.name ?? "", perDomain });
  }
  ablationPoints.push(point);
  console.error(
    `[closed-loop] ablation after ${afterRequest}: ${point.arms
      .map(
        (x) =>
          `${x.name} ${Object.entries(x.perDomain)
            .map(([d, e]) => `${d} ${e.simulatedAcceptedPerPass}/${e.expectedAcceptedPerPassSampled}`)
            .join(" ")}`,
      )
      .join("; ")}`,
  );
}
evaluateArms(0);

/** Share of positions where two outputs agree. */
const agreement = (a: readonly number[], b: readonly number[]) =>
  a.reduce((n, t, j) => n + (t === b[j] ? 1 : 0), 0) / Math.max(1, a.length);
/** Every configuration's outputs, for the sampled-traffic comparison of token distributions. */
const outputs = new Map<ConfigName, number[][]>();
/** --noise-floor: none's outputs under other seeds, and their positional agreement with none's. */
const reseeded: number[][] = [];
const reseededAgreement: number[] = [];

const rows: RequestRow[] = [];
function done(row: RequestRow): void {
  rows.push(row);
  console.error(
    `[closed-loop] ${row.index} ${row.domain} ${row.eagleVersion}: per pass ${decoded.map((c) => `${c} ${row.perPass[c]}`).join(" ")}` +
      `${Object.entries(row.picked ?? {})
        .map(([a, d]) => ` ${a}->${d}`)
        .join("")}; tok/s ${decoded.map((c) => row.tokensPerSecond[c]).join(" / ")}` +
      `${row.trainStep === undefined ? "" : `; step ${versionSteps} kl ${row.trainStep.kl} in ${row.trainStep.seconds} s`}`,
  );
}
const recent: EagleTrainingExample[] = [];
let trainSeconds = 0;
let exampleSeconds = 0;
let ablationSeconds = 0;
for (const [i, r] of stream.entries()) {
  if (i === firstShift && configs.includes("static")) {
    // The static head: the adapted head as it stands when the traffic shifts, frozen from here on.
    staticDrafter = new EagleDrafter(
      EagleHead.load(cpu, trainer?.exportBlob() ?? day0, model, { version: `static-${eagle.version}` }),
      { depth: eagleBudget },
    );
    staticDecoder = new SpeculativeDecoder({
      model,
      kv,
      drafters: new Map<DrafterKind, Drafter>([["eagle", staticDrafter]]),
      budgetFor,
    });
  }
  const hybridBefore = hybrid.counts;
  const runs: Partial<Record<ConfigName, Run>> = {};
  for (const c of decoded) {
    if (c === "static") {
      // Before the shift the static head is the eagle head: its run is eagle's.
      if (staticDecoder !== undefined)
        runs.static = await decode(staticDecoder, `${i}-static`, r.prompt, "eagle", i);
      continue;
    }
    runs[c] = await decode(decoder, `${i}-${c}`, r.prompt, c, i);
  }
  if (configs.includes("static") && runs.static === undefined) runs.static = runs.eagle;
  const none = runs.none as Run;
  if (noiseFloor) {
    const other = await decode(decoder, `${i}-none-reseeded`, r.prompt, "none", i + RESEED);
    reseeded.push(other.output);
    reseededAgreement.push(agreement(other.output, none.output));
  }
  const ref = none.output;
  const row: RequestRow = {
    index: i,
    domain: r.domain,
    promptTokens: r.prompt.length,
    eagleVersion: eagle.version,
    versionSteps,
    trainerSteps: trainer?.stepCount ?? 0,
    perPass: {},
    tokensPerSecond: {},
    draftMsPerPass: {},
  };
  if (greedy) {
    for (const c of decoded) {
      const out = (runs[c] as Run).output;
      if (out.length !== ref.length || out.some((t, j) => t !== ref[j]))
        throw new Error(`request ${i}: ${c}'s output differs from none's (greedy must be lossless)`);
    }
  } else {
    row.sameAsNone = {};
    for (const c of decoded) row.sameAsNone[c] = round(agreement((runs[c] as Run).output, ref), 3);
  }
  for (const c of decoded) {
    const run = runs[c] as Run;
    row.perPass[c] = round(run.decodeTokens / run.passes, 3);
    row.tokensPerSecond[c] = round(run.decodeTokens / run.decodeSeconds, 1);
    if (c !== "none") row.draftMsPerPass[c] = round(run.draftMs / Math.max(1, run.passes), 3);
    const list = outputs.get(c) ?? [];
    list.push(run.output);
    outputs.set(c, list);
  }
  if (configs.includes("hybrid")) {
    const h = hybrid.counts;
    row.hybridSteps = { suffix: h.suffix - hybridBefore.suffix, learned: h.learned - hybridBefore.learned };
  }
  for (const a of AUTOS) {
    if (!configs.includes(a)) continue;
    // As InferenceNode.resolve: the book picks among the offered drafters and none for the domain, and
    // learns from the finished request (InferenceNode.finished: target passes, verified tokens, decode tok/s).
    const pick = books[a].choose([...autoCandidates, "none"], r.domain);
    const run = runs[pick] as Run;
    const version = a === "auto" && (pick === "eagle" || pick === "hybrid") ? eagle.version : "";
    books[a].record(
      pick,
      version,
      r.domain,
      run.targetPasses,
      run.verifiedTokens,
      run.decodeTokens / run.decodeSeconds,
    );
    row.picked ??= {};
    row.picked[a] = pick;
    row.perPass[a] = row.perPass[pick];
    row.tokensPerSecond[a] = row.tokensPerSecond[pick];
  }

  // The finished request feeds the fleet: the suffix tree and the trainer's buffer. The trace is the
  // eagle-drafted request's (its rejected proposals are the eagle head's; greedy: the same tokens as none's).
  const traced = runs.eagle ?? none;
  suffix.ingestFleetOutput(traced.output, r.prompt);
  if (!learns) {
    done(row);
    continue;
  }
  const t0 = performance.now();
  recent.push(await exampleOf(r.prompt, traced.output, runs.eagle?.steps ?? []));
  exampleSeconds += (performance.now() - t0) / 1000;
  if (recent.length > batchSize) recent.shift();
  if (trainer === undefined && recent.length === batchSize) {
    const draftVocab = buildDraftVocab(
      recent.map((e) => e.tokens),
      draftVocabSize,
      headConfig.vocabSize,
    );
    trainer = EagleHeadTrainer.create(target, headConfig, { ...trainerOptions, draftVocab });
    armTrainers = armsFor(trainer, draftVocab);
  }
  if (trainer !== undefined && (i + 1) % every === 0) {
    const t1 = performance.now();
    const s = trainer.step(recent);
    const seconds = (performance.now() - t1) / 1000;
    trainSeconds += seconds;
    row.trainStep = {
      loss: round(s.loss, 4),
      kl: round(s.kl, 4),
      rejected: round(s.rejected, 4),
      tokens: s.tokens,
      rejectedProposals: recent.reduce((n, e) => n + (e.rejected?.positions.length ?? 0), 0),
      seconds: round(seconds, 3),
    };
    // Every --version-every steps a version, swapped in before the next request.
    if (trainer.stepCount % versionEvery === 0) {
      versionNo++;
      versionSteps = trainer.stepCount;
      eagle.swap(EagleHead.load(cpu, trainer.exportBlob(), model, { version: `v${versionNo}` }));
    }
    const t2 = performance.now();
    for (const t of armTrainers) if (t !== trainer) t.step(recent);
    ablationSeconds += (performance.now() - t2) / 1000;
  }
  if (ablation && ((i + 1) % ablationEvery === 0 || i + 1 === stream.length)) {
    const t3 = performance.now();
    evaluateArms(i + 1);
    ablationSeconds += (performance.now() - t3) / 1000;
  }
  done(row);
}

const shown: ConfigName[] = [...decoded, ...AUTOS.filter((a) => configs.includes(a))];
/** Harmonic mean: each request made the same number of decode tokens, so this is the ratio of sums. */
const harmonic = (xs: readonly number[]) => xs.length / xs.reduce((n, x) => n + 1 / x, 0);

/** Ratios of sums over a window of requests (each request made the same number of tokens). */
function aggregate(from: number, to: number) {
  const w = rows.slice(from, to);
  const perPass: Partial<Record<ConfigName, number>> = {};
  const tokensPerSecond: Partial<Record<ConfigName, number>> = {};
  const speedup: Partial<Record<ConfigName, number>> = {};
  const draftMsPerPass: Partial<Record<ConfigName, number>> = {};
  for (const c of shown) {
    perPass[c] = round(harmonic(w.map((x) => x.perPass[c] as number)), 3);
    tokensPerSecond[c] = round(harmonic(w.map((x) => x.tokensPerSecond[c] as number)), 1);
    if (c !== "none" && !isAuto(c))
      draftMsPerPass[c] = round(w.reduce((n, x) => n + (x.draftMsPerPass[c] ?? 0), 0) / w.length, 3);
  }
  for (const c of shown) speedup[c] = round((tokensPerSecond[c] ?? 0) / (tokensPerSecond.none ?? 1), 3);
  const picks: Partial<Record<AutoName, Record<string, number>>> = {};
  for (const x of w)
    for (const [a, d] of Object.entries(x.picked ?? {}) as [AutoName, DrafterKind][]) {
      const m = picks[a] ?? {};
      m[d] = (m[d] ?? 0) + 1;
      picks[a] = m;
    }
  return {
    requests: `${from}-${to - 1}`,
    domain: [...new Set(w.map((x) => x.domain))].join("+"),
    eagleVersions: `${w[0]?.eagleVersion}..${w.at(-1)?.eagleVersion}`,
    trainerStepsAtEnd: w.at(-1)?.trainerSteps ?? 0,
    perPass,
    tokensPerSecond,
    speedup,
    draftMsPerPass,
    autoPicks: picks,
  };
}
const boundaries = [0, ...shifts.map((s) => s.at), rows.length];
const windows = [];
for (let b = 0; b + 1 < boundaries.length; b++) {
  const end = boundaries[b + 1] as number;
  for (let from = boundaries[b] as number; from < end; from += windowSize)
    windows.push(aggregate(from, Math.min(end, from + windowSize)));
}

// The shifts: per configuration, acceptance over the last --window requests before the shift, over the
// first 8 after it, and the requests into the new domain until a trailing 8-request mean is back to 90%.
const TRAIL = 8;
const shiftRows = shifts.map((s, k) => {
  const end = boundaries[k + 2] as number;
  const per = {} as Record<string, unknown>;
  for (const c of shown) {
    const pre = harmonic(rows.slice(Math.max(0, s.at - windowSize), s.at).map((x) => x.perPass[c] as number));
    const firstAfter = harmonic(rows.slice(s.at, s.at + TRAIL).map((x) => x.perPass[c] as number));
    let back: number | undefined;
    for (let j = s.at + TRAIL; j <= end; j++) {
      const m = harmonic(rows.slice(j - TRAIL, j).map((x) => x.perPass[c] as number));
      if (m >= 0.9 * pre) {
        back = j - s.at;
        break;
      }
    }
    per[c] = {
      preShiftPerPass: round(pre, 3),
      first8PerPass: round(firstAfter, 3),
      dropPercent: round((1 - firstAfter / pre) * 100, 1),
      requestsUntil90PercentBack: back ?? `not within ${end - s.at}`,
      lastWindowPerPass: round(
        harmonic(rows.slice(Math.max(s.at, end - windowSize), end).map((x) => x.perPass[c] as number)),
        3,
      ),
    };
  }
  return { ...s, versionAtShift: rows[s.at]?.eagleVersion, perConfig: per };
});

// Sampled traffic: each configuration's output tokens against none's as distributions (unigram total
// variation distance over the whole run), beside the positional agreement; a loose check, not a test.
function unigram(list: readonly number[][]): Map<number, number> {
  const m = new Map<number, number>();
  let n = 0;
  for (const o of list)
    for (const t of o) {
      m.set(t, (m.get(t) ?? 0) + 1);
      n++;
    }
  for (const [t, c] of m) m.set(t, c / n);
  return m;
}
const noneUnigram = unigram(outputs.get("none") ?? []);
function tvToNone(list: readonly number[][]): number {
  const u = unigram(list);
  let tv = 0;
  for (const t of new Set([...u.keys(), ...noneUnigram.keys()]))
    tv += Math.abs((u.get(t) ?? 0) - (noneUnigram.get(t) ?? 0));
  return round(tv / 2, 3);
}
const mean = (xs: readonly number[]) => round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length), 3);
const distributions = greedy
  ? undefined
  : {
      ...Object.fromEntries(
        decoded.map((c) => [
          c,
          {
            unigramTvToNone: tvToNone(outputs.get(c) ?? []),
            meanPositionalAgreement: mean(rows.map((x) => x.sameAsNone?.[c] ?? 0)),
          },
        ]),
      ),
      // The floor: none against itself under other seeds (what sampling noise alone gives).
      ...(noiseFloor && {
        [`none, seed + ${RESEED}`]: {
          unigramTvToNone: tvToNone(reseeded),
          meanPositionalAgreement: mean(reseededAgreement),
        },
      }),
    };

const loadAfter = loadavg();
const rssAfter = process.memoryUsage().rss;
cpu.destroy();
for (const w of windows) {
  console.error(
    `| ${w.requests} | ${w.domain} | ${w.eagleVersions} | ${shown.map((c) => `${w.perPass[c]} ${w.speedup[c]}x`).join(" | ")} |`,
  );
}
emit(
  {
    bench: "closed-loop",
    host: hostInfo(),
    loadAverage: { before: loadBefore.map((x) => round(x)), after: loadAfter.map((x) => round(x)) },
    wallSeconds: round((performance.now() - tStart) / 1000, 1),
    rssMiB: { start: round(rssBefore / 2 ** 20, 0), end: round(rssAfter / 2 ** 20, 0) },
    headsLoaded: versionNo + 1,
    model: modelDir,
    backend: `cpu, ${threads} thread(s)`,
    sampling: greedy
      ? "greedy"
      : { temperature, seed: "the request's index, the same for every configuration" },
    configs: shown,
    stream: { ...counts, shifts, promptMaxTokens: promptMax, newTokens },
    drafters: {
      suffix: { budget: suffixBudget, fleet: "every finished output, ingestFleetOutput(output, prompt)" },
      eagle: { budget: eagleBudget, mode: "chain", head: headConfig },
      static: "the eagle head exported at the first shift, frozen (before the shift: eagle's own runs)",
      "draft-model": { dir: draftDir, budget: draftBudget, learned: false },
      hybrid:
        "HybridDrafter(suffix, eagle), default options; budget as suffix, eagle chain capped at its depth",
      auto: { book: "services/inference AcceptanceBook(seed 1)", candidates: [...autoCandidates, "none"] },
      "auto-pooled": "auto's book and candidates, every drafter recorded under one version",
    },
    trainer: {
      ...trainerOptions,
      draftVocab: draftVocabSize === 0 ? "whole vocabulary" : draftVocabSize,
      batch: `the last ${batchSize} finished requests`,
      stepEvery: every,
      versionEvery: `${versionEvery} step(s) (exported and hot-swapped before the next request)`,
      steps: versionSteps,
      trainSeconds: round(trainSeconds, 1),
      exampleRecomputeSeconds: round(exampleSeconds, 1),
    },
    windows,
    shifts: shiftRows,
    distributions,
    ablation: ablation
      ? {
          arms,
          heldOut: Object.fromEntries([...heldOut].map(([d, l]) => [d, l.length])),
          evaluateEvery: ablationEvery,
          seconds: round(ablationSeconds, 1),
          points: ablationPoints,
        }
      : undefined,
    requests: rows,
  },
  args.get("out"),
);
