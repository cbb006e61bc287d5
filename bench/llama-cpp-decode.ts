// llama.cpp beside the engine's cpu backend, on the same weights and token ids, through npm node-llama-cpp
// (its prebuilt CPU binary). node-llama-cpp is not a dependency of the workspace (its prebuilt binaries
// weigh 669 MB): install it for this benchmark only, without touching package.json or the lock,
//   npm install --no-save node-llama-cpp
// (its install script stays off through package.json's allowScripts, so nothing is downloaded or built but
// the package); the benchmark fails with that command when the package is missing.
//   node --conditions=source --import tsx bench/llama-cpp-decode.ts [--gguf models/tiny-code/gguf/tiny-code-bf16.gguf]
//        [--model models/tiny-code] [--threads 1,<all>] [--prompt 16] [--new 128] [--runs 5] [--verify 1,2,4,8,16]
//        [--verify-cached 64] [--no-engine] [--wait-idle SECONDS] [--out bench/results/llama-cpp-decode.json]
// The GGUF is made by llama.cpp's own converter (bench/results/cpu-decode.md gives the command and its
// sha256); it is not committed. When the file is missing, or the package has no prebuilt binary for this
// machine, the benchmark prints why and exits 0 with `skipped` in its JSON.
//
// Decode: greedy (temperature 0) from benchPrompt(0, --prompt) for --new tokens, one sequence, EOS not
// stopping (yieldEogToken), timed as the engine's generate() counts it: from the first token (the prefill's)
// to the last, over new - 1 decode steps. Per thread count, one 8-token warm-up then --runs runs, median;
// unless --no-engine, each run is followed by the same decode on the engine's cpu backend (same threads,
// safetensors of --model), and each round's ratio engine / llama.cpp is kept: paired rounds, since the
// development machine is shared and its load moves between runs.
// Verify: one evaluation of k more tokens after --verify-cached cached ones with logits for each of them
// (controlledEvaluate, what a verification pass needs), relative to k = 1, median of 12, round robin over k.
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join, relative, resolve } from "node:path";
import { Model, selectBackend } from "@specloop/engine";
import {
  benchPrompt,
  emit,
  hostInfo,
  intArg,
  intListArg,
  loadBenchModel,
  median,
  parseArgs,
  round,
} from "./common.js";
import { waitForIdle } from "./cpu-idle.js";
import { decodeRun } from "./decode.js";

const args = parseArgs(process.argv.slice(2), new Set(["no-engine"]));
const modelDir = resolve(args.get("model") ?? "models/tiny-code");
const ggufPath = resolve(args.get("gguf") ?? join(modelDir, "gguf", "tiny-code-bf16.gguf"));
const all = availableParallelism();
const threadCounts = intListArg(args, "threads", all > 1 ? [1, all] : [1]);
const promptLen = intArg(args, "prompt", 16);
const newTokens = intArg(args, "new", 128);
const runs = intArg(args, "runs", 5);
const verifyKs = intListArg(args, "verify", [1, 2, 4, 8, 16]);
const verifyCached = intArg(args, "verify-cached", 64);
const paired = !args.has("no-engine");
const out = args.get("out");
const waitIdle = args.get("wait-idle");

function skip(reason: string): never {
  console.error(`[llama-cpp-decode] skipped: ${reason}`);
  emit(
    { benchmark: "llama-cpp-decode", date: new Date().toISOString(), host: hostInfo(), skipped: reason },
    out,
  );
  process.exit(0);
}

// The part of node-llama-cpp 3.x this benchmark calls, declared here: the package is installed on demand,
// so the workspace typechecks without it (tokens are plain numbers here, branded ones there).
interface LlamaSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: number[], options: { temperature: number; yieldEogToken: boolean }): AsyncIterable<number>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  controlledEvaluate(input: [number, { generateNext: { token: boolean } }][]): Promise<unknown>;
}
interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
interface LlamaModel {
  createContext(options: {
    contextSize: number;
    batchSize: number;
    sequences: number;
    threads: { ideal: number; min: number };
  }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface Llama {
  readonly buildType: string;
  loadModel(options: { modelPath: string; gpuLayers: number }): Promise<LlamaModel>;
  dispose(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama(options: { gpu: false; build: "never"; maxThreads: number; logLevel: string }): Promise<Llama>;
  LlamaLogLevel: { error: string };
}

const INSTALL_COMMAND = "npm install --no-save node-llama-cpp";
// A specifier in a variable: TypeScript does not resolve it, so a missing package is a runtime matter.
const LIBRARY: string = "node-llama-cpp";
let lib: NodeLlamaCpp;
try {
  lib = (await import(LIBRARY)) as NodeLlamaCpp;
} catch (err) {
  const code = (err as NodeJS.ErrnoException).code;
  // Only the package itself missing: a broken install of it fails with its own error.
  if (code !== "ERR_MODULE_NOT_FOUND" || !String((err as Error).message).includes(`'${LIBRARY}'`)) throw err;
  console.error(
    `[llama-cpp-decode] node-llama-cpp is not installed (it is not a workspace dependency).\n` +
      `Install it for this benchmark, without changing package.json or the lock:\n  ${INSTALL_COMMAND}`,
  );
  process.exit(1);
}

if (!existsSync(ggufPath)) {
  skip(
    `no GGUF at ${ggufPath}: convert models/tiny-code with llama.cpp's convert_hf_to_gguf.py ` +
      "(bench/results/cpu-decode.md has the command and the file's sha256)",
  );
}

// build "never": use a prebuilt binary or fail, never compile llama.cpp here; CPU only, as the engine's
// cpu backend. maxThreads 0: each context's `threads` is the exact number it runs on.
let llama: Llama;
try {
  llama = await lib.getLlama({
    gpu: false,
    build: "never",
    maxThreads: 0,
    logLevel: lib.LlamaLogLevel.error,
  });
} catch (err) {
  skip(
    `node-llama-cpp has no usable prebuilt binary here (${err instanceof Error ? err.message : String(err)})`,
  );
}

const idleAtStart = waitIdle === undefined ? undefined : await waitForIdle(Number(waitIdle));
const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as { vocab_size: number };
const prompt = benchPrompt(0, promptLen, config.vocab_size);
const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
const promptTokens = prompt;

/** One greedy decode of `n` tokens from a cleared sequence: seconds from the first token to the last. */
async function decode(
  sequence: LlamaSequence,
  n: number,
): Promise<{ seconds: number; tokens: number[]; prefillSeconds: number }> {
  await sequence.clearHistory();
  const tokens: number[] = [];
  const t0 = performance.now();
  let first = 0;
  let last = 0;
  for await (const token of sequence.evaluate(promptTokens, { temperature: 0, yieldEogToken: true })) {
    last = performance.now();
    if (tokens.length === 0) first = last;
    tokens.push(token);
    if (tokens.length >= n) break;
  }
  return { seconds: (last - first) / 1000, tokens, prefillSeconds: (first - t0) / 1000 };
}

// The engine's cpu backend on the same checkpoint (safetensors), for the paired rounds.
const engine = paired ? await loadBenchModel(modelDir) : undefined;

const loadBefore = loadavg();
const rows = [];
for (const threads of threadCounts) {
  const context = await model.createContext({
    contextSize: Math.max(256, promptLen + newTokens + 32, verifyCached + Math.max(...verifyKs) + 8),
    batchSize: 512,
    sequences: 1,
    threads: { ideal: threads, min: threads },
  });
  const sequence = context.getSequence();
  const selected = engine ? await selectBackend("cpu", { cpu: { threads } }) : undefined;
  const cpuModel = engine && selected ? Model.load(selected.backend, engine.source) : undefined;
  await decode(sequence, 8);
  if (cpuModel) await decodeRun(cpuModel, 1, promptLen, 8);
  // Rounds alternate llama.cpp and the engine, so that a change of load on the (shared) machine falls on
  // both alike; each round's ratio is engine / llama.cpp.
  const measured = [];
  const engineTps: number[] = [];
  for (let r = 0; r < runs; r++) {
    measured.push(await decode(sequence, newTokens));
    if (cpuModel)
      engineTps.push((await decodeRun(cpuModel, 1, promptLen, newTokens)).stats.decodeTokensPerSecond);
  }
  selected?.backend.destroy();
  const tps = measured.map((m) => (m.tokens.length - 1) / m.seconds);
  const row: Record<string, unknown> = {
    threads,
    decode_tokens_per_second: round(median(tps)),
    ms_per_step: round(1000 / median(tps), 3),
    runs_tokens_per_second: tps.map((x) => round(x)),
    prefill_seconds: round(median(measured.map((m) => m.prefillSeconds)), 4),
    decode_steps: (measured[0]?.tokens.length ?? 1) - 1,
    first_tokens: measured[0]?.tokens.slice(0, 16),
  };
  if (cpuModel) {
    const ratios = engineTps.map((e, i) => e / (tps[i] as number));
    row.engine_cpu = {
      backend_notes: selected?.notes,
      decode_tokens_per_second: round(median(engineTps)),
      runs_tokens_per_second: engineTps.map((x) => round(x)),
      ratio_to_llama_cpp_per_round: ratios.map((x) => round(x, 3)),
      median_ratio_to_llama_cpp: round(median(ratios), 3),
    };
  }
  // Verification-shaped passes: k tokens after verifyCached cached ones in one evaluation, logits wanted for
  // every one (what the engine's bench/cpu-decode.ts verify section runs), round robin over the ks.
  if (verifyKs.length > 0) {
    const tokens = benchPrompt(0, verifyCached + Math.max(...verifyKs), config.vocab_size);
    const samples = new Map<number, number[]>(verifyKs.map((k) => [k, []]));
    for (let s = 0; s < 13; s++) {
      for (const k of verifyKs) {
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, verifyCached));
        const t0 = performance.now();
        await sequence.controlledEvaluate(
          tokens.slice(verifyCached, verifyCached + k).map((t) => [t, { generateNext: { token: true } }]),
        );
        if (s > 0) samples.get(k)?.push(performance.now() - t0);
      }
    }
    const ms = (k: number) => median(samples.get(k) as number[]);
    const base = ms(verifyKs[0] as number);
    row.verify = verifyKs.map((k) => ({
      k,
      ms_per_pass: round(ms(k), 3),
      cost_vs_first: round(ms(k) / base, 2),
    }));
  }
  rows.push(row);
  console.error(
    `[llama-cpp-decode] ${threads} thread(s): ${round(median(tps))} tok/s (runs ${tps.map((x) => round(x))})` +
      (cpuModel
        ? `; engine cpu ${round(median(engineTps))} tok/s (runs ${engineTps.map((x) => round(x))})`
        : ""),
  );
  await context.dispose();
}
await model.dispose();
await llama.dispose();

emit(
  {
    benchmark: "llama-cpp-decode",
    date: new Date().toISOString(),
    host: hostInfo(),
    idle_at_start: idleAtStart,
    load_average_before: loadBefore.map((x) => round(x)),
    load_average_after: loadavg().map((x) => round(x)),
    // Relative to the working directory: the result files are committed, a machine path is not.
    gguf: relative(process.cwd(), ggufPath),
    node_llama_cpp: JSON.parse(
      readFileSync(join(resolve("node_modules/node-llama-cpp"), "package.json"), "utf8"),
    ).version,
    llama_cpp_release: JSON.parse(
      readFileSync(join(resolve("node_modules/node-llama-cpp"), "llama", "llama.cpp.info.json"), "utf8"),
    ).tag,
    build_type: llama.buildType,
    prompt_tokens: promptLen,
    new_tokens: newTokens,
    runs,
    greedy: true,
    results: rows,
  },
  out,
);
