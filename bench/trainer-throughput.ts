// How fast the eagle head trainer (engine train/) learns on this CPU: trace tokens learned per second
// (the trained target positions of each step's batch, over the step's wall time), on the bundled model's
// greedy outputs from its python prompts, for a few head and objective configurations. Also what the
// trainer's own feature recompute costs (one target prefill per trace on the cpu backend), the other side
// of "ship features over the bus or recompute them".
//   node --conditions=source --import tsx bench/trainer-throughput.ts [--model models/tiny-code]
//       [--traces 8] [--prompt 32] [--new 64] [--batch 4] [--steps 5] [--threads 1]
//       [--configs default,draft1024,narrow] [--kernels cpu,reference] [--wait-idle SECONDS] [--out bench/results/trainer-throughput-cpu.json]
// Each configuration, with each kernel set (the trainer's `cpu` WebAssembly products or the plain `reference`
// ones): one warm-up step, then --steps timed steps, each over --batch traces in turn.
import { loadavg } from "node:os";
import {
  buildDraftVocab,
  createCpuBackend,
  type EagleConfig,
  EagleHeadTrainer,
  type EagleTrainerOptions,
  type EagleTrainingExample,
  eagleConfigFor,
  GREEDY,
  generate,
  loadBundledPrompts,
  loadModelDir,
  Model,
  targetExample,
  trainerTarget,
} from "@specloop/engine";
import { emit, hostInfo, intArg, median, parseArgs, round } from "./common.js";
import { waitForIdle } from "./cpu-idle.js";

const args = parseArgs(process.argv.slice(2), new Set());
const modelDir = args.get("model") ?? "models/tiny-code";
const traces = intArg(args, "traces", 8);
const promptLen = intArg(args, "prompt", 32);
const newTokens = intArg(args, "new", 64);
const batchSize = intArg(args, "batch", 4);
const steps = intArg(args, "steps", 5);
const threads = intArg(args, "threads", 1);
const configs = (args.get("configs") ?? "default,draft1024,narrow").split(",");
const kernelSets = (args.get("kernels") ?? "cpu,reference").split(",") as EagleTrainerOptions["kernels"][];
const waitIdle = args.get("wait-idle");

interface Setup {
  name: string;
  what: string;
  head(base: EagleConfig): EagleConfig;
  options: Partial<EagleTrainerOptions>;
}

async function main() {
  const loaded = await loadModelDir(modelDir);
  const cpu = await createCpuBackend({ threads });
  const model = Model.load(cpu, loaded);
  const prompts = (await loadBundledPrompts(modelDir)).filter((p) => p.domain === "python").slice(0, traces);
  const requests = prompts.map((p) => ({
    prompt: [0, ...loaded.tokenizer.encode(p.prompt)].slice(0, promptLen),
    maxTokens: newTokens,
    sampling: GREEDY,
    seed: 1,
    stopTokenIds: [],
  }));
  const { outputs } = await generate(model, requests);
  const base = eagleConfigFor(loaded.config);
  const t0 = performance.now();
  const examples: EagleTrainingExample[] = [];
  for (const [i, r] of requests.entries()) {
    const tokens = Int32Array.from([...r.prompt, ...(outputs[i]?.tokens ?? [])]);
    examples.push(
      await targetExample(model, tokens, { featureLayers: base.featureLayers, trainFrom: r.prompt.length }),
    );
  }
  const recomputeSecondsPerTrace = (performance.now() - t0) / 1000 / examples.length;
  const target = trainerTarget(loaded);
  const draft1024 = buildDraftVocab(
    examples.map((e) => e.tokens),
    1024,
    base.vocabSize,
  );
  const setups: Setup[] = [
    {
      name: "default",
      what: "eagleConfigFor(target) (6 heads, MLP 768), full vocabulary 8192, 5 unrolled steps",
      head: (c) => c,
      options: { unrollSteps: 5 },
    },
    {
      name: "draft1024",
      what: "default head, draft vocabulary of the 1024 most frequent tokens, 5 unrolled steps",
      head: (c) => c,
      options: { unrollSteps: 5, draftVocab: draft1024 },
    },
    {
      name: "narrow",
      what: "2 heads over 1 KV head, MLP 128, draft vocabulary 256, 2 unrolled steps (the learning test's head)",
      head: (c) => ({ ...c, numHeads: 2, numKvHeads: 1, intermediateSize: 128 }),
      options: { unrollSteps: 2, draftVocab: draft1024.slice(0, 256) },
    },
  ];
  const idle = waitIdle === undefined ? undefined : await waitForIdle(Number(waitIdle));
  const load = [loadavg()[0]];
  const results = [];
  for (const s of setups.filter((x) => configs.includes(x.name))) {
    for (const kernels of kernelSets) {
      const trainer = EagleHeadTrainer.create(target, s.head(base), {
        seed: 1,
        lr: 1e-4,
        ...s.options,
        kernels,
      });
      const batch = (i: number) =>
        Array.from({ length: batchSize }, (_, j) => examples[(i * batchSize + j) % examples.length]!);
      trainer.step(batch(0));
      const times: number[] = [];
      let tokens = 0;
      for (let i = 1; i <= steps; i++) {
        const t = performance.now();
        const r = trainer.step(batch(i));
        times.push((performance.now() - t) / 1000);
        tokens += r.tokens;
      }
      const total = times.reduce((a, b) => a + b, 0);
      results.push({
        config: s.name,
        kernels,
        what: s.what,
        tokensPerStep: tokens / steps,
        secondsPerStepMedian: round(median(times), 3),
        traceTokensPerSecond: round(tokens / total, 1),
      });
      console.error(
        `${s.name} (${kernels}): ${round(tokens / total, 1)} trace tokens/s, ${round(median(times), 2)} s/step`,
      );
    }
  }
  load.push(loadavg()[0]);
  cpu.destroy();
  emit(
    {
      bench: "trainer-throughput",
      host: hostInfo(),
      loadAverage1m: { before: round(load[0]!), after: round(load[1]!) },
      idleBeforeRun: idle ?? "not waited for",
      model: modelDir,
      traces: examples.length,
      promptTokens: promptLen,
      newTokens,
      batch: batchSize,
      steps,
      featureRecomputeSecondsPerTrace: round(recomputeSecondsPerTrace, 3),
      results,
    },
    args.get("out"),
  );
}

await main();
