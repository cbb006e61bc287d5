// The online loop closed in one process on the CPU (issue 17, "Benchmark in bench/"): requests arrive one
// at a time (the bundled python prompts, then c: a domain shift), each is decoded with `none`, `suffix`
// and `eagle` through the SpeculativeDecoder on the real target (cpu backend), and each finished request
// feeds both learners as the fleet would: its output goes into the suffix drafter's fleet tree
// (ingestFleetOutput), and an example recomputed from its prompt + output (targetExample: one target
// prefill, features and full distributions) goes into the eagle trainer's batch. Every --every requests
// the trainer takes one AdamW step on the last --batch examples, exports a blob, and the eagle drafter
// hot-swaps to it (EagleHead.load + EagleDrafter.swap), as a node does when a version is published.
//   node --conditions=source --import tsx bench/closed-loop.ts [--model models/tiny-code] [--threads 1]
//       [--python 96] [--c 48] [--prompt 64] [--new 48] [--every 2] [--batch 4] [--unroll 2] [--lr 1e-3]
//       [--grad-clip 1] [--draft-vocab 0] [--eagle-budget 2] [--suffix-budget 4] [--version-every 1] [--window 16]
//       [--out bench/results/closed-loop-cpu.json]
// Per request index: accepted tokens per target pass (decode tokens / verification passes, the prefill's
// pass and token outside) and decode tokens/s (from the first token to the last) for each drafter, the
// eagle version drafting and the trainer's steps so far; per window of --window requests the same
// aggregated (ratios of sums). Greedy, stop tokens off, so each request makes exactly --new tokens; every
// drafter's output must equal `none`'s token for token, or the bench stops.
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
  type EagleTrainingExample,
  eagleConfigFor,
  GREEDY,
  KvManager,
  loadBundledPrompts,
  loadModelDir,
  Model,
  targetExample,
  trainerTarget,
} from "@specloop/engine";
import {
  DecodeSequence,
  type Drafter,
  type DrafterKind,
  EagleDrafter,
  SpeculativeDecoder,
  SuffixDrafter,
} from "@specloop/speculation";
import { emit, hostInfo, intArg, parseArgs, round } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set());
const modelDir = args.get("model") ?? "models/tiny-code";
const threads = intArg(args, "threads", 1);
const pythonCount = intArg(args, "python", 96);
const cCount = intArg(args, "c", 48);
const promptMax = intArg(args, "prompt", 64);
const newTokens = intArg(args, "new", 48);
const every = intArg(args, "every", 2);
const batchSize = intArg(args, "batch", 4);
const unrollSteps = intArg(args, "unroll", 2);
const lr = Number(args.get("lr") ?? "1e-3");
const gradClip = Number(args.get("grad-clip") ?? "1");
const draftVocabSize = Number(args.get("draft-vocab") ?? "0");
const eagleBudget = intArg(args, "eagle-budget", 2);
const suffixBudget = intArg(args, "suffix-budget", 4);
const windowSize = intArg(args, "window", 16);
const versionEvery = intArg(args, "version-every", 1);
if (!(Number.isInteger(draftVocabSize) && draftVocabSize >= 0))
  throw new RangeError(`--draft-vocab ${draftVocabSize}: expected an integer >= 0`);

const CONFIGS = ["none", "suffix", "eagle"] as const;
type ConfigName = (typeof CONFIGS)[number];

interface Run {
  output: number[];
  /** Output tokens after the prefill's (decode tokens). */
  decodeTokens: number;
  /** Target passes that verified (the prefill pass outside). */
  passes: number;
  decodeSeconds: number;
  draftMs: number;
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
  perPass: Record<ConfigName, number>;
  tokensPerSecond: Record<ConfigName, number>;
  eagleDraftMsPerPass: number;
  trainStep?: { loss: number; kl: number; tokens: number; seconds: number };
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
for (const [domain, count] of [
  ["python", pythonCount],
  ["c", cCount],
] as const) {
  const texts = all.filter((p) => p.domain === domain).map((p) => p.prompt);
  if (texts.length < count) throw new RangeError(`${domain}: ${texts.length} prompts, fewer than ${count}`);
  for (const t of texts.slice(0, count)) stream.push({ domain, prompt: tok.encode(t).slice(0, promptMax) });
}
const shiftAt = pythonCount;

const headConfig = eagleConfigFor(loaded.config);
const target = trainerTarget(loaded);
const trainerOptions = { seed: 1, lr, gradClip, unrollSteps };
// Day 0: the trainer's seeded random head is the first version served.
let trainer: EagleHeadTrainer | undefined =
  draftVocabSize > 0 ? undefined : EagleHeadTrainer.create(target, headConfig, trainerOptions);
const day0 =
  trainer?.exportBlob() ?? EagleHeadTrainer.create(target, headConfig, trainerOptions).exportBlob();
let versionNo = 0;
let versionSteps = 0;
const eagle = new EagleDrafter(EagleHead.load(cpu, day0, model, { version: "v0" }), {
  depth: eagleBudget,
});
const suffix = new SuffixDrafter();
const drafters = new Map<DrafterKind, Drafter>([
  ["suffix", suffix],
  ["eagle", eagle],
]);
const numBlocks =
  Math.ceil((promptMax + newTokens + Math.max(eagleBudget, suffixBudget) + 1) / DEFAULT_BLOCK_SIZE) + 1;
const kv = new KvManager(cpu, model.kvSpec(numBlocks, DEFAULT_BLOCK_SIZE));
const decoder = new SpeculativeDecoder({
  model,
  kv,
  drafters,
  budgetFor: (_seq, d) => (d.kind === "eagle" ? eagleBudget : d.kind === "suffix" ? suffixBudget : 0),
});

/** One request alone through the decoder (batch 1), timed from its first token to its last. */
async function decode(id: string, prompt: number[], drafter: DrafterKind): Promise<Run> {
  const seq = new DecodeSequence({
    id,
    prompt,
    maxTokens: newTokens,
    sampling: GREEDY,
    seed: 0,
    stopTokenIds: [],
    drafter,
  });
  let decodeStart: number | undefined;
  let draftMs = 0;
  while (!seq.done) {
    const step = await decoder.step([seq], { prefillTokens: promptMax });
    if (step.starved.length > 0) throw new Error(`${id} (${drafter}): KV starved`);
    if (decodeStart !== undefined) draftMs += step.draftMs;
    if (step.ran.some((r) => r.tokens.length > 0)) decodeStart ??= performance.now();
  }
  const decodeSeconds = (performance.now() - (decodeStart ?? performance.now())) / 1000;
  decoder.evict(seq);
  if (kv.numFreeBlocks !== numBlocks) throw new Error(`${id} (${drafter}): KV blocks leaked`);
  return {
    output: seq.output,
    decodeTokens: seq.outputLength - 1,
    passes: seq.targetPasses - 1,
    decodeSeconds,
    draftMs,
  };
}

const rows: RequestRow[] = [];
const recent: EagleTrainingExample[] = [];
let trainSeconds = 0;
let exampleSeconds = 0;
for (const [i, r] of stream.entries()) {
  const runs = {} as Record<ConfigName, Run>;
  for (const c of CONFIGS) runs[c] = await decode(`${i}-${c}`, r.prompt, c);
  const ref = runs.none.output;
  for (const c of CONFIGS) {
    const out = runs[c].output;
    if (out.length !== ref.length || out.some((t, j) => t !== ref[j]))
      throw new Error(`request ${i}: ${c}'s output differs from none's (greedy must be lossless)`);
  }
  const row: RequestRow = {
    index: i,
    domain: r.domain,
    promptTokens: r.prompt.length,
    eagleVersion: eagle.version,
    versionSteps,
    trainerSteps: trainer?.stepCount ?? 0,
    perPass: {} as Record<ConfigName, number>,
    tokensPerSecond: {} as Record<ConfigName, number>,
    eagleDraftMsPerPass: round(runs.eagle.draftMs / Math.max(1, runs.eagle.passes), 3),
  };
  for (const c of CONFIGS) {
    row.perPass[c] = round(runs[c].decodeTokens / runs[c].passes, 3);
    row.tokensPerSecond[c] = round(runs[c].decodeTokens / runs[c].decodeSeconds, 1);
  }

  // The finished request feeds the fleet: the suffix tree and the trainer's buffer.
  suffix.ingestFleetOutput(ref, r.prompt);
  const t0 = performance.now();
  recent.push(
    await targetExample(model, Int32Array.from([...r.prompt, ...ref]), {
      featureLayers: headConfig.featureLayers,
      trainFrom: r.prompt.length,
    }),
  );
  exampleSeconds += (performance.now() - t0) / 1000;
  if (recent.length > batchSize) recent.shift();
  if (trainer === undefined && recent.length === batchSize) {
    const draftVocab = buildDraftVocab(
      recent.map((e) => e.tokens),
      draftVocabSize,
      headConfig.vocabSize,
    );
    trainer = EagleHeadTrainer.create(target, headConfig, { ...trainerOptions, draftVocab });
  }
  if (trainer !== undefined && (i + 1) % every === 0) {
    const t1 = performance.now();
    const s = trainer.step(recent);
    const seconds = (performance.now() - t1) / 1000;
    trainSeconds += seconds;
    row.trainStep = {
      loss: round(s.loss, 4),
      kl: round(s.kl, 4),
      tokens: s.tokens,
      seconds: round(seconds, 3),
    };
    // Every --version-every steps a version, swapped in before the next request.
    if (trainer.stepCount % versionEvery === 0) {
      versionNo++;
      versionSteps = trainer.stepCount;
      eagle.swap(EagleHead.load(cpu, trainer.exportBlob(), model, { version: `v${versionNo}` }));
    }
  }
  rows.push(row);
  console.error(
    `[closed-loop] ${i} ${r.domain} ${row.eagleVersion}: per pass none ${row.perPass.none} suffix ${row.perPass.suffix} ` +
      `eagle ${row.perPass.eagle}; tok/s ${row.tokensPerSecond.none} / ${row.tokensPerSecond.suffix} / ` +
      `${row.tokensPerSecond.eagle}${row.trainStep === undefined ? "" : `; step ${versionSteps} kl ${row.trainStep.kl} in ${row.trainStep.seconds} s`}`,
  );
}

/** Ratios of sums over a window of requests (each request made the same number of tokens). */
function aggregate(from: number, to: number) {
  const w = rows.slice(from, to);
  const perPass = {} as Record<ConfigName, number>;
  const tokensPerSecond = {} as Record<ConfigName, number>;
  const speedup = {} as Record<ConfigName, number>;
  for (const c of CONFIGS) {
    // Per request: decodeTokens / passes and decodeTokens / seconds with decodeTokens fixed, so the
    // window's ratio of sums is the harmonic mean of the per-request figures.
    perPass[c] = round(w.length / w.reduce((n, x) => n + 1 / x.perPass[c], 0), 3);
    tokensPerSecond[c] = round(w.length / w.reduce((n, x) => n + 1 / x.tokensPerSecond[c], 0), 1);
  }
  for (const c of CONFIGS) speedup[c] = round((tokensPerSecond[c] ?? 0) / (tokensPerSecond.none ?? 1), 3);
  return {
    requests: `${from}-${to - 1}`,
    domain: [...new Set(w.map((x) => x.domain))].join("+"),
    eagleVersions: `${w[0]?.eagleVersion}..${w.at(-1)?.eagleVersion}`,
    trainerStepsAtEnd: w.at(-1)?.trainerSteps ?? 0,
    perPass,
    tokensPerSecond,
    speedup,
    eagleDraftMsPerPass: round(w.reduce((n, x) => n + x.eagleDraftMsPerPass, 0) / w.length, 3),
  };
}
const windows = [];
for (let from = 0; from < rows.length; from += windowSize) {
  // Windows do not straddle the shift.
  const to = Math.min(rows.length, from + windowSize, from < shiftAt ? shiftAt : rows.length);
  windows.push(aggregate(from, to));
  from = to - windowSize;
}
const loadAfter = loadavg();
const rssAfter = process.memoryUsage().rss;
cpu.destroy();
for (const w of windows) {
  console.error(
    `| ${w.requests} | ${w.domain} | ${w.eagleVersions} | ${w.trainerStepsAtEnd} | ${w.perPass.none} | ${w.perPass.suffix} | ${w.perPass.eagle} | ` +
      `${w.tokensPerSecond.none} | ${w.tokensPerSecond.suffix} (${w.speedup.suffix}x) | ${w.tokensPerSecond.eagle} (${w.speedup.eagle}x) | ${w.eagleDraftMsPerPass} |`,
  );
}
emit(
  {
    bench: "closed-loop",
    host: hostInfo(),
    loadAverage: { before: loadBefore.map((x) => round(x)), after: loadAfter.map((x) => round(x)) },
    wallSeconds: round((performance.now() - tStart) / 1000, 1),
    // The cpu backend never frees a loaded weight, so every hot-swapped head stays in its heap.
    rssMiB: { start: round(rssBefore / 2 ** 20, 0), end: round(rssAfter / 2 ** 20, 0) },
    headsLoaded: versionNo + 1,
    model: modelDir,
    backend: `cpu, ${threads} thread(s)`,
    stream: {
      python: pythonCount,
      c: cCount,
      shiftAtRequest: shiftAt,
      promptMaxTokens: promptMax,
      newTokens,
    },
    drafters: {
      suffix: { budget: suffixBudget, fleet: "every finished output, ingestFleetOutput(output, prompt)" },
      eagle: { budget: eagleBudget, mode: "chain", head: headConfig },
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
    requests: rows,
  },
  args.get("out"),
);
