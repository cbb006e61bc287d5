// CPU decode of a model, everything bench/results/cpu-decode.md reports, in one run:
//   node --conditions=source --import tsx bench/cpu-decode.ts [--model models/tiny-code] [--backends reference,cpu]
//        [--threads 1,<all>] [--batch 1] [--prompt 16] [--new 128] [--runs 5] [--verify 1,2,4,8,16]
//        [--verify-cached 64] [--spins 20000,200000,5000,2000,0] [--skip verify,sync,topk,ceilings,rss]
//        [--wait-idle SECONDS] [--out bench/results/cpu-decode.json]
// - decode: per backend (`cpu` once per --threads count) and batch size, one 8-token warm-up then --runs greedy
//   decodes; the median decode tokens/s (aggregate over the batch) is the figure, the runs beside it;
// - verify: one whole forward pass (every layer, the LM head on every new row and the argmax read back) over k
//   new chain tokens after --verify-cached cached ones, for each k of --verify, relative to k = 1: what a
//   speculative verification of k proposed tokens costs against a plain decode step (cpu only);
// - sync: decode on all threads with the workers spinning 20000, 200000, 5000 and 2000 polls before they sleep, and
//   sleeping at once (Atomics.wait only, spin 0);
// - topk: topKRows (k = 20) and argmaxRows on vocabulary-sized rows, each row on one thread or split;
// - ceilings: the machine's memory bandwidth (a wasm memory.copy, and a read-only streaming sum at the
//   model's size and past the last-level cache) and f32x4 multiply-add peak per thread x threads
//   (cpu-ceilings.ts), and the share of each that a decode step reaches: bytes of weights + KV read per
//   step / step time against the read bandwidth, flops per step / step time against the peak;
// - rss: resident memory of a fresh process that loads the model on `cpu`, against its weight bytes and the
//   KV budget of the run (child process, see rssChild below).
// Prints JSON (machine, load average before and after: the development machine is shared) and writes it
// with --out. --wait-idle first waits, up to that many seconds, for the cores to be idle (cpu-idle.ts).
import { execFileSync } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Backend,
  type BatchLayout,
  type CpuBackend,
  createCpuBackend,
  GREEDY,
  generate,
  Model,
  type ModelConfig,
  selectBackend,
} from "@specloop/engine";
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
  weightBytesPerStep,
} from "./common.js";
import { type Ceilings, measureCeilings } from "./cpu-ceilings.js";
import { waitForIdle } from "./cpu-idle.js";
import { decodeRun } from "./decode.js";

const args = parseArgs(process.argv.slice(2), new Set(["rss-child"]));
const modelDir = args.get("model") ?? "models/tiny-code";
const promptLen = intArg(args, "prompt", 16);
const newTokens = intArg(args, "new", 128);

if (args.has("rss-child")) {
  await rssChild();
  process.exit(0);
}

const all = availableParallelism();
const backends = (args.get("backends") ?? "reference,cpu").split(",");
for (const b of backends) {
  if (b !== "reference" && b !== "cpu")
    throw new RangeError(`--backends ${b}: this benchmark takes reference and cpu (gpu-decode.ts: webgpu)`);
}
const threadCounts = intListArg(args, "threads", all > 1 ? [1, all] : [1]);
const batches = intListArg(args, "batch", [1]);
const runs = intArg(args, "runs", 5);
const spins = (args.get("spins") ?? "20000,200000,5000,2000,0").split(",").map((p) => {
  const n = Number(p);
  if (!Number.isInteger(n) || n < 0)
    throw new RangeError(`--spins ${args.get("spins")}: expected whole numbers`);
  return n;
});
const verifyKs = intListArg(args, "verify", [1, 2, 4, 8, 16]);
const verifyCached = intArg(args, "verify-cached", 64);
const skip = new Set((args.get("skip") ?? "").split(",").filter(Boolean));

const waitIdle = args.get("wait-idle");
const idleAtStart = waitIdle === undefined ? undefined : await waitForIdle(Number(waitIdle));
const loadBefore = loadavg();
const { id, source } = await loadBenchModel(modelDir);
const config = source.config;
const weightBytes = weightBytesPerStep(config, source.tensors);

interface Config {
  name: string;
  backend: "reference" | "cpu";
  threads: number;
}
const configs: Config[] = backends.flatMap((b): Config[] =>
  b === "reference"
    ? [{ name: "reference", backend: "reference", threads: 1 }]
    : threadCounts.map((t) => ({ name: `cpu ${t} thread${t === 1 ? "" : "s"}`, backend: "cpu", threads: t })),
);

const decodeRows = [];
const verifyRows = [];
for (const c of configs) {
  const selected = await selectBackend(c.backend, { cpu: { threads: c.threads } });
  const model = Model.load(selected.backend, source);
  try {
    for (const batch of batches) {
      await decodeRun(model, batch, promptLen, 8);
      const measured = [];
      for (let r = 0; r < runs; r++) measured.push(await decodeRun(model, batch, promptLen, newTokens));
      const tps = measured.map((m) => m.stats.decodeTokensPerSecond);
      const ms = measured.map((m) => (1000 * m.stats.decodeSeconds) / m.stats.decodeSteps);
      decodeRows.push({
        config: c.name,
        backend_used: selected.used,
        backend_notes: selected.notes,
        threads: c.threads,
        batch,
        decode_tokens_per_second: round(median(tps)),
        ms_per_step: round(median(ms), 3),
        runs_tokens_per_second: tps.map((x) => round(x)),
        prefill_seconds: round(median(measured.map((m) => m.stats.prefillSeconds)), 4),
        decode_steps: measured[0]?.stats.decodeSteps,
        first_tokens: measured[0]?.firstSequence.slice(0, 16),
      });
      console.error(
        `[cpu-decode] ${id} ${c.name} batch ${batch}: ${round(median(tps))} tok/s (runs ${tps.map((x) => round(x))})`,
      );
    }
    if (c.backend === "cpu" && !skip.has("verify")) {
      const passes = await verifyPasses(model, verifyKs, verifyCached);
      const base = passes[0]?.ms as number;
      verifyRows.push({
        config: c.name,
        threads: c.threads,
        cached_tokens: verifyCached,
        passes: passes.map((p) => ({
          k: p.k,
          ms_per_pass: round(p.ms, 3),
          cost_vs_first: round(p.ms / base, 2),
        })),
      });
      console.error(
        `[cpu-decode] ${c.name} verify: ${passes.map((p) => `k=${p.k} ${round(p.ms / base, 2)}x`).join(", ")}`,
      );
    }
  } finally {
    selected.backend.destroy();
  }
}

/**
 * One sequence with `cached` tokens in its cache, then a pass of k new chain tokens with logits on every new
 * row and the argmax ids read back (what verifying k proposals costs); median milliseconds of 25 passes after
 * 3 warm-ups, per k. The same slots are rewritten each time, as a rejected proposal's would be.
 */
async function verifyPasses(
  model: Model,
  ks: readonly number[],
  cached: number,
): Promise<{ k: number; ms: number }[]> {
  const be: Backend = model.backend;
  const blockSize = 16;
  const maxK = Math.max(...ks);
  const numBlocks = Math.ceil((cached + maxK) / blockSize);
  const kv = be.createKvStorage(model.kvSpec(numBlocks, blockSize));
  const blockTable = Int32Array.from({ length: numBlocks }, (_, i) => i);
  const layout = (from: number, n: number): BatchLayout => ({
    sequences: [{ rowStart: 0, newTokens: n, cachedTokens: from, blockTable }],
    rows: n,
    positions: Int32Array.from({ length: n }, (_, i) => from + i),
    slots: Int32Array.from({ length: n }, (_, i) => from + i),
  });
  const tokens = benchPrompt(0, cached + maxK, config.vocabSize);
  model.forward(kv, layout(0, cached), Int32Array.from(tokens.slice(0, cached)), {
    logitRows: new Int32Array(0),
  });
  const pass = async (k: number) => {
    const ids = Int32Array.from(tokens.slice(cached, cached + k));
    const rows = Int32Array.from({ length: k }, (_, i) => i);
    const t0 = performance.now();
    const { logits } = model.forward(kv, layout(cached, k), ids, { logitRows: rows });
    await be.argmaxRows(logits!);
    be.release(logits!);
    return performance.now() - t0;
  };
  // Round robin over the ks, so that a change of load on the (shared) machine falls on every k alike.
  const samples = new Map<number, number[]>(ks.map((k) => [k, []]));
  for (let i = 0; i < 3; i++) for (const k of ks) await pass(k);
  for (let i = 0; i < 25; i++) for (const k of ks) samples.get(k)?.push(await pass(k));
  return ks.map((k) => ({ k, ms: median(samples.get(k) as number[]) }));
}

/** Multiply-adds per decode step as flops: every weight once (2 flops) plus attention's q.k and p.v. */
function flopsPerStep(c: ModelConfig, weights: number, meanContext: number): number {
  const attention = c.numLayers * c.numHeads * c.headDim * meanContext * 2 * 2;
  return 2 * weights + attention;
}

// Synchronisation: decode on all threads with the workers sleeping at once (spin 0: Atomics.wait only)
// against spinning first, batch 1.
const syncRows = [];
if (!skip.has("sync") && backends.includes("cpu") && all > 1) {
  for (const spin of spins) {
    const selected = await selectBackend("cpu", { cpu: { threads: all, spin } });
    const model = Model.load(selected.backend, source);
    try {
      await decodeRun(model, 1, promptLen, 8);
      const tps = [];
      for (let r = 0; r < runs; r++)
        tps.push((await decodeRun(model, 1, promptLen, newTokens)).stats.decodeTokensPerSecond);
      syncRows.push({
        threads: all,
        spin,
        decode_tokens_per_second: round(median(tps)),
        runs_tokens_per_second: tps.map((x) => round(x)),
      });
      console.error(
        `[cpu-decode] ${all} threads, spin ${spin}: ${round(median(tps))} tok/s (runs ${tps.map((x) => round(x))})`,
      );
    } finally {
      selected.backend.destroy();
    }
  }
}

// Softmax + top-k (topKRows) on all threads, each row's columns split over the threads or not
// (minTopKSplit), k = 20; argmaxRows beside it.
const topkRows = [];
if (!skip.has("topk") && backends.includes("cpu")) {
  for (const split of [false, true]) {
    const b = await createCpuBackend({ threads: all, minTopKSplit: split ? 0 : Number.MAX_SAFE_INTEGER });
    try {
      for (const [rows, cols] of [
        [1, config.vocabSize],
        [16, config.vocabSize],
        [1, 151936],
        [4, 151936],
      ] as const) {
        const x = b.fromHost(
          rows,
          cols,
          Float32Array.from({ length: rows * cols }, (_, i) => 12 * Math.sin(i * 12.9898)),
        );
        const reps = Math.max(20, Math.round(2e7 / (rows * cols)));
        const time = async (f: () => Promise<unknown>) => {
          for (let i = 0; i < reps; i++) await f();
          const samples = [];
          for (let s = 0; s < 5; s++) {
            const t0 = performance.now();
            for (let i = 0; i < reps; i++) await f();
            samples.push(((performance.now() - t0) * 1000) / reps);
          }
          return round(median(samples), 1);
        };
        topkRows.push({
          threads: all,
          split,
          rows,
          cols,
          k: 20,
          us_per_call: await time(() => b.topKRows(x, 20)),
          argmax_us_per_call: await time(() => b.argmaxRows(x)),
        });
        b.release(x);
      }
    } finally {
      b.destroy();
    }
  }
  console.error(
    `[cpu-decode] topKRows: ${topkRows.map((r) => `[${r.rows}, ${r.cols}] ${r.split ? "split" : "one thread"} ${r.us_per_call} us`).join(", ")}`,
  );
}

let ceilings: Ceilings[] = [];
if (!skip.has("ceilings")) {
  ceilings = [];
  for (const t of threadCounts) ceilings.push(await measureCeilings(t));
  for (const x of ceilings) {
    console.error(
      `[cpu-decode] ceilings ${x.threads} thread(s): copy ${round(x.copy.gbPerSecond)} GB/s, read ${x.read
        .map((r) => `${round(r.bytes / 2 ** 20)} MiB ${round(r.gbPerSecond)} GB/s`)
        .join(", ")}, madd ${round(x.madd.gflopsPerSecond)} GFLOP/s`,
    );
  }
}

// Shares of the ceilings a decode step reaches (batch 1 rows of the cpu configurations).
const kvBytesPerToken = config.numLayers * 2 * config.numKvHeads * config.headDim * 4; // f32 K and V
const steps = newTokens - 1;
const meanContext = promptLen + 1 + (steps - 1) / 2;
const bytesPerStep = weightBytes + meanContext * kvBytesPerToken;
const flops = flopsPerStep(config, weightBytes / 2, meanContext);
const shares = decodeRows
  .filter((r) => r.batch === 1)
  .map((r) => {
    const stepSeconds = r.ms_per_step / 1000;
    const c = ceilings.find((x) => x.threads === r.threads);
    const gbs = bytesPerStep / stepSeconds / 1e9;
    const gflops = flops / stepSeconds / 1e9;
    return {
      config: r.config,
      bytes_per_step: Math.round(bytesPerStep),
      achieved_gb_per_second: round(gbs),
      share_of_read_at_model_size: c ? round(gbs / (c.read[0]?.gbPerSecond as number), 3) : undefined,
      share_of_read_past_cache: c ? round(gbs / (c.read.at(-1)?.gbPerSecond as number), 3) : undefined,
      flops_per_step: Math.round(flops),
      achieved_gflops_per_second: round(gflops),
      share_of_madd_peak: c ? round(gflops / c.madd.gflopsPerSecond, 3) : undefined,
    };
  });

/**
 * The same readings for the compiled engine (shared/engine/dist, what the CLI and the services run), in a
 * plain `node` with no tsx loader: an inline module, since the benchmark itself runs under tsx.
 */
function rssCompiled(): unknown {
  const dist = fileURLToPath(new URL("../shared/engine/dist/index.js", import.meta.url));
  const dir = resolve(modelDir);
  const script = `
const mib = (x) => Math.round((x / 2 ** 20) * 10) / 10;
const sample = async () => { gc(); await new Promise((r) => setTimeout(r, 20)); gc(); return mib(process.memoryUsage().rss); };
const nodeOnly = await sample();
const eng = await import(${JSON.stringify(dist)});
const imported = await sample();
let loaded = await eng.loadModelDir(${JSON.stringify(dir)});
const afterRead = await sample();
const sel = await eng.selectBackend("cpu");
const model = eng.Model.load(sel.backend, loaded);
const vocab = loaded.config.vocabSize;
loaded = undefined;
const afterUpload = await sample();
const prompt = Array.from({ length: ${promptLen} }, (_, i) => 16 + ((i * 7919) % (Math.min(vocab, 8192) - 16)));
await eng.generate(model, [{ prompt, maxTokens: ${newTokens}, sampling: eng.GREEDY, seed: 0, stopTokenIds: [] }]);
const afterDecode = await sample();
sel.backend.destroy();
console.log(JSON.stringify({ node_only_mib: nodeOnly, engine_imported_mib: imported, after_read_mib: afterRead,
  after_upload_host_tensors_dropped_mib: afterUpload, after_decode_mib: afterDecode }));
`;
  try {
    return JSON.parse(
      execFileSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
      }),
    );
  } catch (err) {
    return { skipped: `compiled engine not measured (npm run build first?): ${String(err).split("\n")[0]}` };
  }
}

let rss: unknown;
if (!skip.has("rss")) {
  const file = fileURLToPath(import.meta.url);
  const text = execFileSync(
    process.execPath,
    [
      "--expose-gc",
      "--conditions=source",
      "--import",
      "tsx",
      file,
      "--rss-child",
      "--model",
      modelDir,
      "--prompt",
      String(promptLen),
      "--new",
      String(newTokens),
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
  );
  rss = { ...JSON.parse(text), compiled_engine: rssCompiled() };
}

emit(
  {
    benchmark: "cpu-decode",
    date: new Date().toISOString(),
    host: hostInfo(),
    idle_at_start: idleAtStart,
    load_average_before: loadBefore.map((x) => round(x)),
    load_average_after: loadavg().map((x) => round(x)),
    model: id,
    weight_bytes: weightBytes,
    prompt_tokens: promptLen,
    new_tokens: newTokens,
    runs,
    greedy: true,
    decode: decodeRows,
    verify: verifyRows,
    sync: syncRows,
    topk: topkRows,
    ceilings,
    shares,
    rss,
  },
  args.get("out"),
);

/**
 * The resident-memory probe, run as its own process (`--rss-child`, with --expose-gc) so that nothing the
 * parent measured is counted: RSS right after start, after the checkpoint is read, after it is uploaded to
 * the `cpu` backend (all threads) with the host tensors dropped and collected, and after a greedy decode of
 * the benchmark's shape, against weight bytes and the decode's KV budget. Prints JSON on stdout.
 */
async function rssChild(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
  const mib = (x: number) => round(x / 2 ** 20, 1);
  // A collection, a turn of the event loop (freed ArrayBuffers' memory and FinalizationRegistry callbacks
  // come after it), and another collection, then the reading.
  const sample = async () => {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
    gc();
    const m = process.memoryUsage();
    return {
      rss_mib: mib(m.rss),
      heap_used_mib: mib(m.heapUsed),
      external_mib: mib(m.external),
      array_buffers_mib: mib(m.arrayBuffers),
    };
  };
  const start = await sample();
  let loaded: Awaited<ReturnType<typeof loadBenchModel>> | undefined = await loadBenchModel(modelDir);
  const afterRead = await sample();
  const cfg = loaded.source.config;
  const weights = weightBytesPerStep(cfg, loaded.source.tensors);
  const checkpointBytes = [...loaded.source.tensors.values()].reduce((n, t) => n + t.data.byteLength, 0);
  const selected = await selectBackend("cpu");
  const model = Model.load(selected.backend, loaded.source);
  const afterUploadKept = await sample();
  loaded = undefined; // the host tensors: nothing else holds them once the model is uploaded
  const afterUpload = await sample();
  const prompt = benchPrompt(0, promptLen, cfg.vocabSize);
  await generate(model, [{ prompt, maxTokens: newTokens, sampling: GREEDY, seed: 0, stopTokenIds: [] }]);
  const afterDecode = await sample();
  const kvBudget =
    Math.ceil((promptLen + newTokens) / 16) * 16 * cfg.numLayers * 2 * cfg.numKvHeads * cfg.headDim * 4;
  const be = selected.backend as CpuBackend;
  const wasmBytes = be.wasmBytes;
  be.destroy();
  process.stdout.write(
    `${JSON.stringify({
      weight_bytes_per_step: weights,
      checkpoint_bytes: checkpointBytes,
      kv_budget_bytes: kvBudget,
      target_mib: mib(3 * checkpointBytes + kvBudget),
      wasm_heap_mib: mib(wasmBytes),
      at_start: start,
      after_read: afterRead,
      after_upload_host_tensors_kept: afterUploadKept,
      after_upload: afterUpload,
      after_decode: afterDecode,
      rss_over_target: round(afterDecode.rss_mib / mib(3 * checkpointBytes + kvBudget), 2),
      rss_growth_over_target: round(
        (afterDecode.rss_mib - start.rss_mib) / mib(3 * checkpointBytes + kvBudget),
        2,
      ),
    })}\n`,
  );
}
